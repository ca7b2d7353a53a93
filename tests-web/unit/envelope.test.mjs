// js/envelope.js: the message envelope of docs/PROTOCOL.md §8, against the Rust client's vectors
// (testdata/crypto-vectors.json "message"), round trips, tampering and the replay guard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { TESTDATA, frontendModule } from './paths.mjs';

const e = await frontendModule('envelope.js');
const c = await frontendModule('crypto.js');
const b64 = await frontendModule('b64.js');
const v = JSON.parse(await readFile(new URL('crypto-vectors.json', TESTDATA), 'utf8'));
const m = v.message;
const bytes = (s) => b64.decode(s);
const text = (u8) => new TextDecoder().decode(u8);

// carol (the vectors' user) holds enc_pkcs8 / sign_pkcs8; bob (v.peer) only his public keys.
const carol = await c.importPrivateKeys(bytes(v.enc_pkcs8), bytes(v.sign_pkcs8));
const carolSign = bytes(v.sign_spki);
const bobSign = bytes(v.peer.sign_spki);

// Two fresh identities for round trips (RSA generation is the slow part: once per file).
async function identity(name) {
  const id = await c.generateIdentity();
  const keys = await c.importPrivateKeys(id.encPkcs8, id.signPkcs8);
  return { name, encSpki: id.encSpki, signSpki: id.signSpki, ...keys };
}
const alice = await identity('alice');
const bob = await identity('bob');

function sealText(from, to, words, extra = {}) {
  return e.seal({
    from: from.name,
    to: to.name,
    plaintext: { text: words },
    signKey: from.signPrivateKey,
    readers: { [from.name]: from.encSpki, [to.name]: to.encSpki },
    ...extra,
  });
}

const openAs = (who, env, senderSign) => e.open(env, { me: who.name, encPrivateKey: who.encPrivateKey, senderSignKeys: senderSign });

// ---------------------------------------------------------------- vectors

// PROTOCOL.md §8.2, §8.4
test('vectors: aad, K_list and the signed bytes are rebuilt exactly', () => {
  const env = m.envelope;
  assert.equal(text(e.messageAad(env.id, env.from, env.to, env.sent_at)), m.aad);
  assert.equal(e.kList(env.keys), m.k_list);
  assert.equal(b64.encode(e.signedBytes(env)), m.signed);
  assert.equal(text(e.messageAad(m.note.envelope.id, 'carol', 'carol', m.note.envelope.sent_at)), m.note.aad);
  assert.equal(e.kList(m.note.envelope.keys), m.note.k_list);
  assert.equal(b64.encode(e.signedBytes(m.note.envelope)), m.note.signed);
});

// PROTOCOL.md §8.6
test('vectors: the envelope from bob opens as carol with bob\'s signing key', async () => {
  const opened = await e.open(m.envelope, { me: 'carol', encPrivateKey: carol.encPrivateKey, senderSignKeys: bobSign });
  assert.deepEqual(opened.plaintext, JSON.parse(m.plaintext));
  assert.equal(JSON.stringify(opened.plaintext), m.plaintext, 'the plaintext is compact JSON');
  assert.equal(opened.text, 'Grüße, carol 👋');
  assert.ok(await e.verifyEnvelope(m.envelope, bobSign));
  // carol's wrapped K is the vector's key
  const k = new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, carol.encPrivateKey, bytes(m.envelope.keys.carol)));
  assert.equal(b64.encode(k), m.key);
});

// PROTOCOL.md §8.3, §8.6
test('vectors: the note to oneself has one key and opens with carol\'s own key', async () => {
  const note = m.note.envelope;
  assert.deepEqual(Object.keys(note.keys), ['carol']);
  const opened = await e.open(note, { me: 'carol', encPrivateKey: carol.encPrivateKey, senderSignKeys: carolSign });
  assert.equal(JSON.stringify(opened.plaintext), m.note.plaintext);
  assert.equal(opened.text, 'note to self');
});

// PROTOCOL.md §8.2
test('vectors: seal with the same K, iv, id and sent_at reproduces ct byte for byte', async () => {
  const env = m.envelope;
  const sealed = await e.seal({
    from: 'bob',
    to: 'carol',
    plaintext: JSON.parse(m.plaintext),
    signKey: carol.signPrivateKey, // bob's private key is not in the file; the ct does not depend on it
    readers: { bob: v.peer.enc_spki, carol: v.enc_spki },
    id: env.id,
    sentAt: env.sent_at,
    key: bytes(m.key),
    iv: bytes(env.iv),
    padding: false, // the vectors hold an unpadded plaintext
  });
  assert.equal(sealed.ct, env.ct);
  assert.equal(sealed.iv, env.iv);
  assert.deepEqual(Object.keys(sealed), ['v', 'id', 'from', 'to', 'sent_at', 'iv', 'ct', 'keys', 'sig']);
  assert.deepEqual(Object.keys(sealed.keys), ['bob', 'carol']);
  // RSA-OAEP is randomized: the wrapped key differs but unwraps to the same K
  assert.notEqual(sealed.keys.carol, env.keys.carol);
  const k = new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, carol.encPrivateKey, bytes(sealed.keys.carol)));
  assert.equal(b64.encode(k), m.key);
  assert.ok(await e.verifyEnvelope(sealed, carolSign));
  assert.equal((await e.open(sealed, { me: 'carol', encPrivateKey: carol.encPrivateKey, senderSignKeys: carolSign })).text, 'Grüße, carol 👋');
  // the note reproduces too
  const note = m.note.envelope;
  const sealedNote = await e.seal({
    from: 'carol',
    to: 'carol',
    plaintext: JSON.parse(m.note.plaintext),
    signKey: carol.signPrivateKey,
    readers: { carol: v.enc_spki },
    id: note.id,
    sentAt: note.sent_at,
    key: bytes(m.note.key),
    iv: bytes(note.iv),
    padding: false,
  });
  assert.equal(sealedNote.ct, note.ct);
  assert.deepEqual(Object.keys(sealedNote.keys), ['carol']);
});

// PROTOCOL.md §8.6
test('vectors: wrong addressee, wrong signing key and a tampered field are refused', async () => {
  const carolOpen = (env, sign = bobSign) => e.open(env, { me: 'carol', encPrivateKey: carol.encPrivateKey, senderSignKeys: sign });
  await assert.rejects(e.open(m.envelope, { me: 'dave', encPrivateKey: carol.encPrivateKey, senderSignKeys: bobSign }), { code: 'not_for_me' });
  await assert.rejects(carolOpen(m.envelope, carolSign), { code: 'bad_signature' });
  await assert.rejects(carolOpen({ ...m.envelope, sent_at: m.envelope.sent_at + 1 }), { code: 'bad_signature' });
  assert.equal(await e.verifyEnvelope({ ...m.envelope, to: 'carl' }, bobSign), false);
});

// API-CONTRACT.md "Report body"
test('reporting the vector message discloses exactly its K and plaintext bytes, after the same checks as open', async () => {
  const body = await e.disclose(m.envelope, { me: 'carol', encPrivateKey: carol.encPrivateKey, senderSignKeys: bobSign });
  assert.deepEqual(Object.keys(body).sort(), ['key', 'message_id', 'plaintext']);
  assert.equal(body.message_id, m.envelope.id);
  assert.equal(body.key, m.key);
  assert.equal(text(bytes(body.plaintext)), m.plaintext);
  await assert.rejects(e.disclose(m.envelope, { me: 'carol', encPrivateKey: carol.encPrivateKey, senderSignKeys: carolSign }), { code: 'bad_signature' });
  await assert.rejects(e.disclose(m.envelope, { me: 'dave', encPrivateKey: carol.encPrivateKey, senderSignKeys: bobSign }), { code: 'not_for_me' });
});

test('a report discloses the padded plaintext as decrypted, and its key opens the ciphertext', async () => {
  const env = await sealText(alice, bob, 'buy now');
  const body = await e.disclose(env, { me: 'bob', encPrivateKey: bob.encPrivateKey, senderSignKeys: alice.signSpki });
  const plain = bytes(body.plaintext);
  assert.equal(plain.length, 256);
  assert.equal(text(plain).trimEnd(), '{"text":"buy now"}');
  const aes = await crypto.subtle.importKey('raw', bytes(body.key), 'AES-GCM', false, ['decrypt']);
  const aad = e.messageAad(env.id, env.from, env.to, env.sent_at);
  const opened = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: bytes(env.iv), additionalData: aad }, aes, bytes(env.ct)));
  assert.deepEqual(opened, plain);
});

// PROTOCOL.md §1.6
test('a high-S signature (the other valid s) verifies too', async () => {
  const n = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
  const sig = bytes(m.envelope.sig);
  const s = BigInt(`0x${Buffer.from(sig.slice(32)).toString('hex')}`);
  const other = (n - s).toString(16).padStart(64, '0');
  const flipped = new Uint8Array([...sig.slice(0, 32), ...Buffer.from(other, 'hex')]);
  const env = { ...m.envelope, sig: b64.encode(flipped) };
  assert.notEqual(env.sig, m.envelope.sig);
  assert.ok(await e.verifyEnvelope(env, bobSign));
  const opened = await e.open(env, { me: 'carol', encPrivateKey: carol.encPrivateKey, senderSignKeys: bobSign });
  assert.equal(opened.text, 'Grüße, carol 👋');
});

// ---------------------------------------------------------------- round trips

test('seal then open: the recipient and the sender (own copy) both read it', async () => {
  const env = await sealText(alice, bob, 'hi bob');
  assert.ok(e.isUuidV4(env.id));
  assert.ok(Math.abs(env.sent_at - Date.now()) < 5000);
  const json = e.envelopeJson(env);
  assert.match(json, /^\{"v":1,"id":"[0-9a-f-]{36}","from":"alice","to":"bob","sent_at":\d+,"iv":"[\w-]{16}","ct":"[\w-]+","keys":\{"alice":"[\w-]+","bob":"[\w-]+"\},"sig":"[\w-]{86}"\}$/);
  assert.equal(bytes(env.ct).length, 256 + 16, 'padded to the first bucket');
  const parsed = JSON.parse(json);
  assert.equal((await openAs(bob, parsed, alice.signSpki)).text, 'hi bob');
  assert.equal((await openAs(alice, parsed, alice.signSpki)).text, 'hi bob');
  // keys given as CryptoKeys work the same
  const pub = await c.importSignPublicKey(alice.signSpki);
  assert.equal((await openAs(bob, parsed, pub)).text, 'hi bob');
  // each message gets a fresh K, iv and id
  const again = await sealText(alice, bob, 'hi bob');
  assert.notEqual(again.id, env.id);
  assert.notEqual(again.iv, env.iv);
  assert.notEqual(again.ct, env.ct);
});

test('a note to oneself has exactly one key', async () => {
  const env = await e.seal({
    from: 'alice',
    to: 'alice',
    plaintext: { text: 'remember the milk' },
    signKey: alice.signPrivateKey,
    readers: { alice: alice.encSpki },
  });
  assert.deepEqual(Object.keys(env.keys), ['alice']);
  assert.equal((await openAs(alice, env, alice.signSpki)).text, 'remember the milk');
});

// PROTOCOL.md §1.4, §8.4
test('keys and K_list are in byte order of names, not locale order', async () => {
  // "-" < "." < digits < "_" < letters in bytes; localeCompare would put "_" elsewhere
  const names = ['bob_', 'boba', 'bob.x', 'bob-x', 'bob9'];
  assert.deepEqual([...names].sort(c.compareUsernames), ['bob-x', 'bob.x', 'bob9', 'bob_', 'boba']);
  assert.equal(e.kList({ boba: 'B', bob_: 'A' }), 'bob_=A;boba=B;');
  const env = await e.seal({
    from: 'boba',
    to: 'bob_',
    plaintext: { text: 'x' },
    signKey: bob.signPrivateKey,
    readers: { boba: bob.encSpki, bob_: alice.encSpki },
  });
  assert.deepEqual(Object.keys(env.keys), ['bob_', 'boba']);
  const opened = await e.open(env, { me: 'bob_', encPrivateKey: alice.encPrivateKey, senderSignKeys: bob.signSpki });
  assert.equal(opened.text, 'x');
  // the JSON member order of keys is not signed: reversed, it still opens
  const reversed = { ...env, keys: { boba: env.keys.boba, bob_: env.keys.bob_ } };
  assert.equal((await e.open(reversed, { me: 'bob_', encPrivateKey: alice.encPrivateKey, senderSignKeys: bob.signSpki })).text, 'x');
});

// PROTOCOL.md §8.4
test('the signature is over aad || 0 || iv || ct || 0 || K_list', async () => {
  const env = await sealText(alice, bob, 'layout');
  const want = c.concatBytes(
    c.utf8(`securechat/v1/msg|${env.id}|alice|bob|${env.sent_at}`),
    new Uint8Array([0]),
    bytes(env.iv),
    bytes(env.ct),
    new Uint8Array([0]),
    c.utf8(`alice=${env.keys.alice};bob=${env.keys.bob};`),
  );
  assert.deepEqual(e.signedBytes(env), want);
  const key = await c.importSignPublicKey(alice.signSpki);
  assert.ok(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, bytes(env.sig), want));
});

test('several sender keys: the one that verifies is used (an earlier accepted key)', async () => {
  const env = await sealText(alice, bob, 'old key');
  const opened = await openAs(bob, env, [bob.signSpki, alice.signSpki]);
  assert.equal(opened.signKeyIndex, 1);
  await assert.rejects(openAs(bob, env, [bob.signSpki]), { code: 'bad_signature' });
  await assert.rejects(openAs(bob, env, []), { code: 'bad_signature' });
});

function flip(value, index = 0) {
  const raw = bytes(value);
  raw[index < 0 ? raw.length + index : index] ^= 1;
  return b64.encode(raw);
}

test('every kind of tampering is refused, for both readers', async () => {
  const env = await sealText(alice, bob, 'the original');
  const otherId = crypto.randomUUID();
  const cases = {
    v: (x) => ({ ...x, v: 2 }),
    id: (x) => ({ ...x, id: otherId }),
    'id upper-case': (x) => ({ ...x, id: x.id.toUpperCase() }),
    from: (x) => ({ ...x, from: 'carol' }),
    to: (x) => ({ ...x, to: 'carol' }),
    sent_at: (x) => ({ ...x, sent_at: x.sent_at + 1 }),
    'sent_at float': (x) => ({ ...x, sent_at: x.sent_at + 0.5 }),
    'sent_at string': (x) => ({ ...x, sent_at: String(x.sent_at) }),
    iv: (x) => ({ ...x, iv: flip(x.iv) }),
    'ct first byte': (x) => ({ ...x, ct: flip(x.ct) }),
    'ct tag': (x) => ({ ...x, ct: flip(x.ct, -1) }),
    'ct truncated': (x) => ({ ...x, ct: b64.encode(bytes(x.ct).slice(0, -1)) }),
    'keys[alice]': (x) => ({ ...x, keys: { ...x.keys, alice: flip(x.keys.alice, 10) } }),
    'keys[bob]': (x) => ({ ...x, keys: { ...x.keys, bob: flip(x.keys.bob, 10) } }),
    'keys swapped': (x) => ({ ...x, keys: { alice: x.keys.bob, bob: x.keys.alice } }),
    'keys renamed': (x) => ({ ...x, keys: { alice: x.keys.alice, carol: x.keys.bob } }),
    'keys dropped': (x) => ({ ...x, keys: { bob: x.keys.bob } }),
    'keys added': (x) => ({ ...x, keys: { ...x.keys, carol: x.keys.bob } }),
    sig: (x) => ({ ...x, sig: flip(x.sig, 5) }),
    'sig s': (x) => ({ ...x, sig: flip(x.sig, 40) }),
    'sig padded': (x) => ({ ...x, sig: `${x.sig}==` }),
    'ct standard alphabet': (x) => ({ ...x, ct: `${x.ct.slice(0, -4)}+/+/` }),
    'extra field': (x) => ({ ...x, extra: 1 }),
    'missing field': ({ sig, ...rest }) => rest,
  };
  for (const [what, doctor] of Object.entries(cases)) {
    const bad = doctor(structuredClone(env));
    assert.notDeepEqual(bad, env, what);
    await assert.rejects(openAs(bob, bad, alice.signSpki), e.EnvelopeError, `bob opened: ${what}`);
    await assert.rejects(openAs(alice, bad, alice.signSpki), e.EnvelopeError, `alice opened: ${what}`);
    assert.equal(await e.verifyEnvelope(bad, alice.signSpki), false, what);
  }
});

test('re-addressing is caught even when the sender re-signs: the AAD binds to', async () => {
  // alice moves bob's copy to carol and signs again; carol (here: bob's key under carol's name) cannot decrypt
  const env = await sealText(alice, bob, 'for bob');
  const moved = { ...env, to: 'carol', keys: { alice: env.keys.alice, carol: env.keys.bob } };
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, alice.signPrivateKey, e.signedBytes(moved));
  moved.sig = b64.encode(new Uint8Array(sig));
  assert.ok(await e.verifyEnvelope(moved, alice.signSpki));
  await assert.rejects(e.open(moved, { me: 'carol', encPrivateKey: bob.encPrivateKey, senderSignKeys: alice.signSpki }), {
    code: 'undecryptable',
  });
});

test('a signed envelope whose plaintext is not a JSON object is refused after decryption', async () => {
  const id = crypto.randomUUID();
  const sentAt = Date.now();
  const k = crypto.getRandomValues(new Uint8Array(32));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const aesKey = await crypto.subtle.importKey('raw', k, 'AES-GCM', false, ['encrypt']);
  const aad = e.messageAad(id, 'alice', 'bob', sentAt);
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, aesKey, c.utf8('[1]')));
  const wrap = async (spki) =>
    b64.encode(new Uint8Array(await crypto.subtle.encrypt({ name: 'RSA-OAEP' }, await c.importEncPublicKey(spki), k)));
  const env = { v: 1, id, from: 'alice', to: 'bob', sent_at: sentAt, iv: b64.encode(iv), ct: b64.encode(ct), keys: { alice: await wrap(alice.encSpki), bob: await wrap(bob.encSpki) }, sig: '' };
  env.sig = b64.encode(new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, alice.signPrivateKey, e.signedBytes(env))));
  await assert.rejects(openAs(bob, env, alice.signSpki), { code: 'invalid_plaintext' });
});

// PROTOCOL.md §8.2 (padding)
test('the plaintext is padded with spaces to its size bucket, and the padding is invisible to the reader', async () => {
  assert.deepEqual([1, 256, 257, 1024, 1025, 4097, 16385, 32768, 32769, 40000].map(e.paddedLength), [256, 256, 1024, 1024, 4096, 8192, 32768, 32768, 36864, 40960]);
  const sizes = new Set();
  for (const words of ['hi', 'a somewhat longer message of a few words', 'x'.repeat(200)]) {
    const env = await sealText(alice, bob, words);
    sizes.add(b64.decode(env.ct).length);
    assert.equal((await openAs(bob, env, alice.signSpki)).text, words);
  }
  assert.deepEqual([...sizes], [256 + 16], 'three lengths under 256 bytes give one ciphertext size');
  const longer = await sealText(alice, bob, 'y'.repeat(300));
  assert.equal(b64.decode(longer.ct).length, 1024 + 16);
  // the reader sees the object, not the padding
  const opened = await openAs(bob, longer, alice.signSpki);
  assert.deepEqual(opened.plaintext, { text: 'y'.repeat(300) });
  const unpadded = await sealText(alice, bob, 'hi', { padding: false });
  assert.equal(b64.decode(unpadded.ct).length, '{"text":"hi"}'.length + 16);
});

test('seal refuses bad input', async () => {
  await assert.rejects(sealText(alice, bob, 'x', { id: 'not-a-uuid' }), TypeError);
  await assert.rejects(sealText(alice, { ...bob, name: 'Bob!' }, 'x'), TypeError);
  await assert.rejects(
    e.seal({ from: 'alice', to: 'bob', plaintext: 'text', signKey: alice.signPrivateKey, readers: { alice: alice.encSpki, bob: bob.encSpki } }),
    TypeError,
  );
  await assert.rejects(
    e.seal({ from: 'alice', to: 'bob', plaintext: { text: 'x' }, signKey: alice.signPrivateKey, readers: { alice: alice.encSpki } }),
    /no public key for reader bob/,
  );
});

// PROTOCOL.md §8.5–§8.6
test('checkShape accepts the vectors and refuses malformed envelopes', () => {
  e.checkShape(m.envelope);
  e.checkShape(m.note.envelope);
  const bad = [
    null,
    [],
    { ...m.envelope, v: '1' },
    { ...m.envelope, id: m.envelope.id.replace(/-/g, '') },
    { ...m.envelope, id: '00000000-0000-1000-8000-000000000000' },
    { ...m.envelope, from: 'Bob' },
    { ...m.envelope, sent_at: -1 },
    { ...m.envelope, iv: b64.encode(new Uint8Array(11)) },
    { ...m.envelope, ct: b64.encode(new Uint8Array(15)) },
    { ...m.envelope, keys: { ...m.envelope.keys, bob: b64.encode(new Uint8Array(128)) } },
    { ...m.envelope, keys: [] },
    { ...m.envelope, sig: b64.encode(new Uint8Array(63)) },
    { ...m.note.envelope, keys: { carol: m.note.envelope.keys.carol, bob: m.note.envelope.keys.carol } },
  ];
  for (const env of bad) assert.throws(() => e.checkShape(env), { code: 'invalid_envelope' }, JSON.stringify(env)?.slice(0, 80));
});

// ---------------------------------------------------------------- replays

// PROTOCOL.md §8.6 step 7
test('ReplayGuard: the same seq is a duplicate, another seq is a replay', async () => {
  const guard = new e.ReplayGuard();
  assert.equal(await guard.check('bob', 'id-1', 7), 'new');
  await guard.record('bob', 'id-1', 7);
  assert.equal(await guard.check('bob', 'id-1', 7), 'duplicate');
  assert.equal(await guard.check('bob', 'id-1', 9), 'replayed');
  await assert.rejects(guard.record('bob', 'id-1', 9), { code: 'replayed' });
  // the same id from someone else is another message
  assert.equal(await guard.check('carol', 'id-1', 9), 'new');
});

// issue #13: a message without an integer seq used to skip the guard
test('ReplayGuard: a message without an integer seq is refused, never recorded', async () => {
  const stored = new Map();
  const guard = new e.ReplayGuard({ backing: { get: async (k) => stored.get(k), put: async (k, s) => void stored.set(k, s) } });
  await guard.record('bob', 'id-1', 7);
  for (const seq of [undefined, null, '7', 7.5, -0.5, Number.NaN]) {
    assert.equal(await guard.check('bob', 'id-1', seq), 'no_seq', String(seq));
    assert.equal(await guard.check('bob', 'id-2', seq), 'no_seq', String(seq));
    await assert.rejects(guard.record('bob', 'id-2', seq), { code: 'no_seq' });
  }
  assert.deepEqual([...stored.keys()], ['bob\nid-1']);
});

test('ReplayGuard: bounded in memory, backed by a persistent store', async () => {
  const stored = new Map();
  const backing = { get: async (k) => stored.get(k), put: async (k, s) => void stored.set(k, s) };
  const guard = new e.ReplayGuard({ capacity: 2, backing });
  await guard.record('bob', 'a', 1);
  await guard.record('bob', 'b', 2);
  await guard.record('bob', 'c', 3);
  assert.equal(guard.seen.size, 2);
  assert.equal(stored.size, 3);
  // forgotten in memory, remembered by the backing store (a reload)
  const fresh = new e.ReplayGuard({ backing });
  assert.equal(await fresh.check('bob', 'a', 1), 'duplicate');
  assert.equal(await fresh.check('bob', 'a', 40), 'replayed');
  assert.equal(await fresh.check('bob', 'z', 41), 'new');
});
