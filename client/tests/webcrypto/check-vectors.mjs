// Checks testdata/crypto-vectors.json with Web Crypto alone (Node >= 20, no imports from
// the project), then prints one JSON line of values made by Web Crypto for the Rust side
// to check in turn: a self_sig, an RSA-OAEP ciphertext, and a fresh identity's keys.
// Usage: node check-vectors.mjs PATH/TO/crypto-vectors.json

import { readFileSync } from 'node:fs';

const subtle = globalThis.crypto.subtle;
const te = new TextEncoder();

const b64u = {
  enc(bytes) {
    return Buffer.from(bytes).toString('base64url');
  },
  dec(text) {
    if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) throw new Error(`not base64url: ${text}`);
    const out = new Uint8Array(Buffer.from(text, 'base64url'));
    if (b64u.enc(out) !== text) throw new Error(`non-canonical base64url: ${text}`);
    return out;
  },
};
const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};
const eq = (a, b, what) => {
  const x = typeof a === 'string' ? a : b64u.enc(a);
  const y = typeof b === 'string' ? b : b64u.enc(b);
  if (x !== y) throw new Error(`${what}: ${x} != ${y}`);
};
const ok = (cond, what) => { if (!cond) throw new Error(what); };

const RSA = { name: 'RSA-OAEP', hash: 'SHA-256' };
const EC = { name: 'ECDSA', namedCurve: 'P-256' };
const SIG = { name: 'ECDSA', hash: 'SHA-256' };

// PROTOCOL.md §2.1–§2.3
async function deriveKeys(password, salt, iterations) {
  const pw = await subtle.importKey('raw', te.encode(password.normalize('NFC')), 'PBKDF2', false, ['deriveBits']);
  const master = await subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, pw, 256);
  const hk = await subtle.importKey('raw', master, 'HKDF', false, ['deriveBits']);
  const h = async (info) => new Uint8Array(await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: te.encode(info) }, hk, 256));
  return { authKey: await h('securechat/v1/auth'), kek: await h('securechat/v1/wrap') };
}

async function publicSpkis(encPkcs8, signPkcs8) {
  const e = await subtle.exportKey('jwk', await subtle.importKey('pkcs8', encPkcs8, RSA, true, ['decrypt']));
  const s = await subtle.exportKey('jwk', await subtle.importKey('pkcs8', signPkcs8, EC, true, ['sign']));
  const ep = await subtle.importKey('jwk', { kty: 'RSA', n: e.n, e: e.e }, RSA, true, ['encrypt']);
  const sp = await subtle.importKey('jwk', { kty: 'EC', crv: s.crv, x: s.x, y: s.y }, EC, true, ['verify']);
  return {
    encSpki: new Uint8Array(await subtle.exportKey('spki', ep)),
    signSpki: new Uint8Array(await subtle.exportKey('spki', sp)),
  };
}

// PROTOCOL.md §5.1
async function fingerprint(username, encSpki, signSpki) {
  let h = new Uint8Array(await subtle.digest('SHA-512', cat(te.encode(`securechat/v1/fp|${username}|`), encSpki, signSpki)));
  for (let i = 1; i < 5200; i++) h = new Uint8Array(await subtle.digest('SHA-512', cat(h, encSpki, signSpki)));
  let out = '';
  for (let i = 0; i < 30; i += 5) {
    let n = 0n;
    for (let j = 0; j < 5; j++) n = (n << 8n) | BigInt(h[i + j]);
    out += String(n % 100000n).padStart(5, '0');
  }
  return out;
}

async function verify(spki, msg, sig) {
  const key = await subtle.importKey('spki', spki, EC, false, ['verify']);
  return subtle.verify(SIG, key, sig, msg);
}

const v = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const salt = b64u.dec(v.salt);
eq(v.password.normalize('NFC'), v.password_nfc, 'password NFC');
const { authKey, kek } = await deriveKeys(v.password, salt, v.iterations);
eq(authKey, v.auth_key, 'auth_key');
eq(kek, v.kek, 'kek');

const encPkcs8 = b64u.dec(v.enc_pkcs8);
const signPkcs8 = b64u.dec(v.sign_pkcs8);
const { encSpki, signSpki } = await publicSpkis(encPkcs8, signPkcs8);
eq(encSpki, v.enc_spki, 'enc_spki');
eq(signSpki, v.sign_spki, 'sign_spki');

// Key bundle: PROTOCOL.md §3.2–§3.3
const bundlePlain = te.encode(JSON.stringify({ enc: v.enc_pkcs8, sign: v.sign_pkcs8 }));
eq(bundlePlain, te.encode(v.bundle_plaintext), 'bundle_plaintext');
const kekKey = await subtle.importKey('raw', kek, 'AES-GCM', false, ['encrypt', 'decrypt']);
const aad = te.encode(`securechat/v1/keys|${v.username}|${v.key_version}`);
const iv = b64u.dec(v.bundle_iv);
const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, kekKey, bundlePlain));
eq(ct, v.bundle_ct, 'bundle_ct');
const back = new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv, additionalData: aad }, kekKey, ct));
eq(back, bundlePlain, 'bundle decrypt');

// Self-signature, both S forms: PROTOCOL.md §4.1, §1.6
const selfMsg = cat(te.encode(`securechat/v1/self|${v.username}|${v.key_version}|`), encSpki, signSpki);
ok(await verify(signSpki, selfMsg, b64u.dec(v.self_sig)), 'self_sig does not verify');
ok(await verify(signSpki, selfMsg, b64u.dec(v.self_sig_other_s)), 'self_sig_other_s does not verify');

// Fingerprints and safety number: PROTOCOL.md §5.1–§5.2
eq(await fingerprint(v.username, encSpki, signSpki), v.fingerprint, 'fingerprint');
eq(await fingerprint(v.peer.username, b64u.dec(v.peer.enc_spki), b64u.dec(v.peer.sign_spki)), v.peer.fingerprint, 'peer fingerprint');
const [first, second] = Buffer.compare(Buffer.from(v.username), Buffer.from(v.peer.username)) <= 0
  ? [v.fingerprint, v.peer.fingerprint] : [v.peer.fingerprint, v.fingerprint];
eq(first + second, v.safety_number, 'safety_number');

// Rotation: PROTOCOL.md §4.2
const r = v.rotation;
const rotMsg = cat(te.encode(`securechat/v1/rotate|${v.username}|${r.new_version}|`), b64u.dec(r.new_enc_spki), b64u.dec(r.new_sign_spki));
ok(await verify(signSpki, rotMsg, b64u.dec(r.prev_sig)), 'rotation.prev_sig does not verify');

// RSA-OAEP: PROTOCOL.md §1.6
const encPriv = await subtle.importKey('pkcs8', encPkcs8, RSA, false, ['decrypt']);
eq(new Uint8Array(await subtle.decrypt({ name: 'RSA-OAEP' }, encPriv, b64u.dec(v.oaep.ct))), v.oaep.key, 'oaep');

// Registration body: PROTOCOL.md §6.1
const rq = v.register_request;
eq(JSON.stringify(Object.keys(rq)), JSON.stringify(['username', 'auth_key', 'kdf', 'enc_public_key', 'sign_public_key', 'key_bundle', 'self_sig']), 'register_request keys');
eq(JSON.stringify(rq.kdf), JSON.stringify({ alg: 'PBKDF2-SHA256', iterations: v.iterations, salt: v.salt }), 'register_request.kdf');
eq(rq.auth_key, v.auth_key, 'register auth_key');
eq(rq.enc_public_key, v.enc_spki, 'register enc');
eq(rq.sign_public_key, v.sign_spki, 'register sign');
eq(JSON.stringify(rq.key_bundle), JSON.stringify({ iv: v.bundle_iv, ct: v.bundle_ct }), 'register key_bundle');

// Message envelopes (PROTOCOL.md §8): rebuild aad, K_list and the signed bytes from the
// envelope, verify the signature, unwrap K as carol, re-encrypt the plaintext to the same ct.
const AES = { name: 'AES-GCM' };
const kList = (keys) => Object.keys(keys)
  .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  .map((n) => `${n}=${keys[n]};`).join('');
const signedBytes = (env) => cat(
  te.encode(`securechat/v1/msg|${env.id}|${env.from}|${env.to}|${env.sent_at}`), new Uint8Array([0]),
  b64u.dec(env.iv), b64u.dec(env.ct), new Uint8Array([0]), te.encode(kList(env.keys)));
async function checkSealed(s, signerSpki, what) {
  const env = s.envelope;
  eq(JSON.stringify(Object.keys(env)), JSON.stringify(['v', 'id', 'from', 'to', 'sent_at', 'iv', 'ct', 'keys', 'sig']), `${what} field order`);
  eq(s.aad, `securechat/v1/msg|${env.id}|${env.from}|${env.to}|${env.sent_at}`, `${what} aad`);
  eq(s.k_list, kList(env.keys), `${what} k_list`);
  eq(signedBytes(env), s.signed, `${what} signed bytes`);
  ok(await verify(signerSpki, signedBytes(env), b64u.dec(env.sig)), `${what} sig does not verify`);
  const k = new Uint8Array(await subtle.decrypt({ name: 'RSA-OAEP' }, encPriv, b64u.dec(env.keys[v.username])));
  eq(k, s.key, `${what} K`);
  const kKey = await subtle.importKey('raw', k, AES, false, ['encrypt', 'decrypt']);
  const params = { ...AES, iv: b64u.dec(env.iv), additionalData: te.encode(s.aad) };
  eq(new Uint8Array(await subtle.encrypt(params, kKey, te.encode(s.plaintext))), env.ct, `${what} ct`);
  eq(new Uint8Array(await subtle.decrypt(params, kKey, b64u.dec(env.ct))), te.encode(s.plaintext), `${what} decrypt`);
}
await checkSealed(v.message, b64u.dec(v.peer.sign_spki), 'message');
await checkSealed(v.message.note, signSpki, 'message.note');
ok(Object.keys(v.message.note.envelope.keys).length === 1, 'a note has one key');

// Values made by Web Crypto for the Rust side.
const signPriv = await subtle.importKey('pkcs8', signPkcs8, EC, false, ['sign']);
const wcSelfSig = new Uint8Array(await subtle.sign(SIG, signPriv, selfMsg));
const encPub = await subtle.importKey('spki', encSpki, RSA, false, ['encrypt']);
const wcOaep = new Uint8Array(await subtle.encrypt({ name: 'RSA-OAEP' }, encPub, b64u.dec(v.oaep.key)));
// A note from carol to herself, sealed by Web Crypto alone.
const noteKey = crypto.getRandomValues(new Uint8Array(32));
const noteIv = crypto.getRandomValues(new Uint8Array(12));
const note = {
  v: 1, id: crypto.randomUUID(), from: v.username, to: v.username, sent_at: Date.now(),
  iv: b64u.enc(noteIv), ct: '', keys: {}, sig: '',
};
const noteAes = await subtle.importKey('raw', noteKey, AES, false, ['encrypt']);
note.ct = b64u.enc(new Uint8Array(await subtle.encrypt(
  { ...AES, iv: noteIv, additionalData: te.encode(`securechat/v1/msg|${note.id}|${note.from}|${note.to}|${note.sent_at}`) },
  noteAes, te.encode(JSON.stringify({ text: 'from Web Crypto' })))));
note.keys[v.username] = b64u.enc(new Uint8Array(await subtle.encrypt({ name: 'RSA-OAEP' }, encPub, noteKey)));
note.sig = b64u.enc(new Uint8Array(await subtle.sign(SIG, signPriv, signedBytes(note))));
const fresh = {
  enc: await subtle.generateKey({ ...RSA, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) }, true, ['encrypt', 'decrypt']),
  sign: await subtle.generateKey(EC, true, ['sign', 'verify']),
};
console.log(JSON.stringify({
  self_sig: b64u.enc(wcSelfSig),
  oaep_ct: b64u.enc(wcOaep),
  note: JSON.stringify(note),
  fresh: {
    enc_pkcs8: b64u.enc(new Uint8Array(await subtle.exportKey('pkcs8', fresh.enc.privateKey))),
    sign_pkcs8: b64u.enc(new Uint8Array(await subtle.exportKey('pkcs8', fresh.sign.privateKey))),
    enc_spki: b64u.enc(new Uint8Array(await subtle.exportKey('spki', fresh.enc.publicKey))),
    sign_spki: b64u.enc(new Uint8Array(await subtle.exportKey('spki', fresh.sign.publicKey))),
  },
}));
