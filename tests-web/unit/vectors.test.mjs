// testdata/crypto-vectors.json is produced by the Rust client (crate securechat-client); these
// tests prove the browser code agrees with it byte for byte. What each entry pins:
// docs/PROTOCOL.md §11.2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { TESTDATA, frontendModule } from './paths.mjs';

const c = await frontendModule('crypto.js');
const b64 = await frontendModule('b64.js');
const v = JSON.parse(await readFile(new URL('crypto-vectors.json', TESTDATA), 'utf8'));
const bytes = (s) => b64.decode(s);

// PROTOCOL.md §2.1
test('the password in the vectors is not NFC, so normalization is exercised', () => {
  assert.notEqual(v.password, v.password.normalize('NFC'));
  if (v.password_nfc !== undefined) assert.equal(v.password.normalize('NFC'), v.password_nfc);
});

// PROTOCOL.md §2.2–§2.3
test('deriveKeys gives the same auth_key and kek', async () => {
  const { authKey, kek } = await c.deriveKeys(v.password, bytes(v.salt), v.iterations);
  assert.equal(b64.encode(authKey), v.auth_key);
  assert.equal(b64.encode(kek), v.kek);
});

// PROTOCOL.md §3.2–§3.4
test('decryptBundle opens bundle_ct to the same PKCS#8s (and the same plaintext JSON)', async () => {
  const { kek } = await c.deriveKeys(v.password, bytes(v.salt), v.iterations);
  const raw = await c.decryptBundle(kek, v.username, v.key_version, { iv: v.bundle_iv, ct: v.bundle_ct });
  assert.equal(b64.encode(raw.encPkcs8), v.enc_pkcs8);
  assert.equal(b64.encode(raw.signPkcs8), v.sign_pkcs8);
  if (v.bundle_plaintext !== undefined) {
    assert.equal(JSON.stringify({ enc: v.enc_pkcs8, sign: v.sign_pkcs8 }), v.bundle_plaintext);
  }
});

// PROTOCOL.md §3.3
test('wrapBundle with the same iv reproduces bundle_ct exactly', async () => {
  const { kek } = await c.deriveKeys(v.password, bytes(v.salt), v.iterations);
  const bundle = await c.wrapBundle(kek, v.username, v.key_version, bytes(v.enc_pkcs8), bytes(v.sign_pkcs8), bytes(v.bundle_iv));
  assert.deepEqual(bundle, { iv: v.bundle_iv, ct: v.bundle_ct });
});

// PROTOCOL.md §3.4, §1.6
test('unwrapBundle yields non-extractable keys that match enc_spki / sign_spki', async () => {
  const keys = await c.unwrapBundle(bytes(v.kek), v.username, v.key_version, { iv: v.bundle_iv, ct: v.bundle_ct }, { encSpki: bytes(v.enc_spki), signSpki: bytes(v.sign_spki) });
  assert.equal(b64.encode(keys.encSpki), v.enc_spki);
  assert.equal(b64.encode(keys.signSpki), v.sign_spki);
  assert.equal(keys.encPrivateKey.extractable, false);
  assert.equal(keys.signPrivateKey.extractable, false);
  if (v.oaep) {
    const key = new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, keys.encPrivateKey, bytes(v.oaep.ct)));
    assert.equal(b64.encode(key), v.oaep.key);
  }
  // a Web Crypto self-signature by the unwrapped key verifies against the vector's SPKI
  const sig = await c.selfSig(keys.signPrivateKey, v.username, v.key_version, bytes(v.enc_spki), bytes(v.sign_spki));
  assert.ok(await c.verifySelfSig(bytes(v.sign_spki), sig, v.username, v.key_version, bytes(v.enc_spki), bytes(v.sign_spki)));
});

// PROTOCOL.md §3.3
test('the wrong kek or AAD does not open the bundle', async () => {
  const wrong = bytes(v.kek);
  wrong[0] ^= 1;
  await assert.rejects(c.unwrapBundle(wrong, v.username, v.key_version, { iv: v.bundle_iv, ct: v.bundle_ct }), c.UnwrapError);
  await assert.rejects(c.unwrapBundle(bytes(v.kek), v.username, v.key_version + 1, { iv: v.bundle_iv, ct: v.bundle_ct }), c.UnwrapError);
});

// PROTOCOL.md §4.1, §1.6
test('verifySelfSig accepts self_sig (low-S and high-S forms) and rejects it for other data', async () => {
  const args = [v.username, v.key_version, bytes(v.enc_spki), bytes(v.sign_spki)];
  assert.ok(await c.verifySelfSig(bytes(v.sign_spki), bytes(v.self_sig), ...args));
  if (v.self_sig_other_s !== undefined) {
    assert.ok(await c.verifySelfSig(bytes(v.sign_spki), bytes(v.self_sig_other_s), ...args));
  }
  assert.equal(await c.verifySelfSig(bytes(v.sign_spki), bytes(v.self_sig), v.username + 'x', ...args.slice(1)), false);
});

// PROTOCOL.md §6.1
test('the registration request in the vectors carries the same values', () => {
  const r = v.register_request;
  if (!r) return;
  assert.equal(r.username, v.username);
  assert.equal(r.auth_key, v.auth_key);
  assert.deepEqual(r.kdf, { alg: 'PBKDF2-SHA256', iterations: v.iterations, salt: v.salt });
  assert.equal(r.enc_public_key, v.enc_spki);
  assert.equal(r.sign_public_key, v.sign_spki);
  assert.deepEqual(r.key_bundle, { iv: v.bundle_iv, ct: v.bundle_ct });
  assert.equal(r.self_sig, v.self_sig);
});

// PROTOCOL.md §5.1
test('fingerprint of the user and of the peer match', async () => {
  assert.equal(await c.fingerprint(v.username, bytes(v.enc_spki), bytes(v.sign_spki)), v.fingerprint);
  assert.equal(await c.fingerprint(v.peer.username, bytes(v.peer.enc_spki), bytes(v.peer.sign_spki)), v.peer.fingerprint);
});

// PROTOCOL.md §5.2
test('safetyNumber matches, in either argument order', () => {
  const me = { username: v.username, fingerprint: v.fingerprint };
  const peer = { username: v.peer.username, fingerprint: v.peer.fingerprint };
  assert.equal(c.safetyNumber(me, peer), v.safety_number);
  assert.equal(c.safetyNumber(peer, me), v.safety_number);
  assert.match(v.safety_number, /^\d{60}$/);
});

// PROTOCOL.md §4.2
test('verifyPrevSig accepts rotation.prev_sig made with the old signing key', async () => {
  const r = v.rotation;
  assert.ok(await c.verifyPrevSig(bytes(v.sign_spki), bytes(r.prev_sig), v.username, r.new_version, bytes(r.new_enc_spki), bytes(r.new_sign_spki)));
  assert.equal(
    await c.verifyPrevSig(bytes(v.sign_spki), bytes(r.prev_sig), v.username, r.new_version + 1, bytes(r.new_enc_spki), bytes(r.new_sign_spki)),
    false,
  );
  assert.equal(
    await c.verifyPrevSig(bytes(r.new_sign_spki), bytes(r.prev_sig), v.username, r.new_version, bytes(r.new_enc_spki), bytes(r.new_sign_spki)),
    false,
  );
});
