import { test } from 'node:test';
import assert from 'node:assert/strict';
import nodeCrypto from 'node:crypto';
import { frontendModule } from './paths.mjs';
import { refDeriveKeys, refFingerprint, refOpenBundle, refVerifySelfSig } from './reference.mjs';

const c = await frontendModule('crypto.js');
const b64 = await frontendModule('b64.js');

// One identity for the whole file: RSA key generation is the slow part.
const identity = await c.generateIdentity();

test('deriveKeys matches PBKDF2 + HKDF computed independently with node:crypto', async () => {
  const salt = new Uint8Array(16).map((_, i) => i);
  for (const password of ['correct horse battery staple', 'pässwörd-with-ümlauts', '']) {
    const got = await c.deriveKeys(password, salt, 1000);
    const want = refDeriveKeys(password, salt, 1000);
    assert.deepEqual(got.authKey, want.authKey);
    assert.deepEqual(got.kek, want.kek);
    assert.equal(got.authKey.length, 32);
    assert.notDeepEqual(got.authKey, got.kek);
  }
});

test('deriveKeys NFC-normalizes the password', async () => {
  const salt = new Uint8Array(16).fill(7);
  const composed = 'caf\u00e9-password';
  const decomposed = 'cafe\u0301-password';
  assert.notEqual(composed, decomposed);
  const a = await c.deriveKeys(composed, salt, 1000);
  const b = await c.deriveKeys(decomposed, salt, 1000);
  assert.deepEqual(a.authKey, b.authKey);
  assert.deepEqual(a.kek, b.kek);
});

test('deriveKeys accepts the salt as base64url text', async () => {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const a = await c.deriveKeys('x'.repeat(12), salt, 1000);
  const b = await c.deriveKeys('x'.repeat(12), b64.encode(salt), 1000);
  assert.deepEqual(a.authKey, b.authKey);
});

test('generateIdentity: RSA-OAEP-2048 e=65537 and P-256, exported as Web Crypto does', () => {
  const rsa = nodeCrypto.createPublicKey({ key: Buffer.from(identity.encSpki), format: 'der', type: 'spki' });
  assert.equal(rsa.asymmetricKeyType, 'rsa'); // rsaEncryption OID, not RSAES-OAEP
  assert.equal(rsa.asymmetricKeyDetails.modulusLength, 2048);
  assert.equal(rsa.asymmetricKeyDetails.publicExponent, 65537n);
  const ec = nodeCrypto.createPublicKey({ key: Buffer.from(identity.signSpki), format: 'der', type: 'spki' });
  assert.equal(ec.asymmetricKeyType, 'ec');
  assert.equal(ec.asymmetricKeyDetails.namedCurve, 'prime256v1');
  assert.equal(identity.signSpki.length, 91); // uncompressed point
  assert.equal(identity.signSpki[26], 0x04);
});

test('wrapBundle is AES-256-GCM over {"enc","sign"} with the keys AAD; unwrapBundle reverses it', async () => {
  const kek = crypto.getRandomValues(new Uint8Array(32));
  const bundle = await c.wrapBundle(kek, 'alice', 1, identity.encPkcs8, identity.signPkcs8);
  assert.equal(b64.decode(bundle.iv).length, 12);
  const plain = refOpenBundle(kek, 'alice', 1, b64.decode(bundle.iv), b64.decode(bundle.ct));
  assert.deepEqual(Object.keys(plain), ['enc', 'sign']);
  assert.deepEqual(b64.decode(plain.enc), identity.encPkcs8);
  assert.deepEqual(b64.decode(plain.sign), identity.signPkcs8);

  const raw = await c.decryptBundle(kek, 'alice', 1, bundle);
  assert.deepEqual(raw.encPkcs8, identity.encPkcs8);
  assert.deepEqual(raw.signPkcs8, identity.signPkcs8);

  const keys = await c.unwrapBundle(kek, 'alice', 1, bundle, { encSpki: identity.encSpki, signSpki: identity.signSpki });
  assert.equal(keys.encPrivateKey.extractable, false);
  assert.equal(keys.signPrivateKey.extractable, false);
  assert.equal(keys.encPrivateKey.type, 'private');
  assert.equal(keys.signPrivateKey.type, 'private');
  assert.deepEqual(keys.encSpki, identity.encSpki);
  assert.deepEqual(keys.signSpki, identity.signSpki);
  await assert.rejects(crypto.subtle.exportKey('pkcs8', keys.signPrivateKey));

  // the non-extractable keys still work
  const sig = await c.selfSig(keys.signPrivateKey, 'alice', 1, keys.encSpki, keys.signSpki);
  assert.ok(await c.verifySelfSig(identity.signSpki, sig, 'alice', 1, identity.encSpki, identity.signSpki));
  const encPub = await c.importEncPublicKey(identity.encSpki);
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const wrapped = await crypto.subtle.encrypt({ name: 'RSA-OAEP' }, encPub, secret);
  assert.deepEqual(new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, keys.encPrivateKey, wrapped)), secret);
});

// issue #13: the private keys are never exported (no JWK) to learn their public halves
test('unwrapBundle checks the keys inside against the published ones by round trips, without exporting them', async () => {
  const kek = crypto.getRandomValues(new Uint8Array(32));
  const bundle = await c.wrapBundle(kek, 'alice', 1, identity.encPkcs8, identity.signPkcs8);
  const other = await c.generateIdentity();
  const mixes = [
    { encSpki: other.encSpki, signSpki: identity.signSpki },
    { encSpki: identity.encSpki, signSpki: other.signSpki },
    { encSpki: other.encSpki, signSpki: other.signSpki },
    { encSpki: new Uint8Array(3), signSpki: identity.signSpki },
    undefined,
  ];
  for (const published of mixes) await assert.rejects(c.unwrapBundle(kek, 'alice', 1, bundle, published), c.KeyMismatchError);
  const keys = await c.importPrivateKeys(identity.encPkcs8, identity.signPkcs8);
  assert.equal(await c.keysMatch(keys, identity.encSpki, identity.signSpki), true);
  assert.equal(await c.keysMatch(keys, other.encSpki, identity.signSpki), false);
  assert.equal(await c.keysMatch(keys, identity.encSpki, other.signSpki), false);
  assert.equal(c.publicSpkisOf, undefined, 'no helper exports private keys to JWK');
});

test('unwrapBundle fails with UnwrapError for a wrong kek, user name, key version or tampered bytes', async () => {
  const published = { encSpki: identity.encSpki, signSpki: identity.signSpki };
  const kek = crypto.getRandomValues(new Uint8Array(32));
  const bundle = await c.wrapBundle(kek, 'alice', 1, identity.encPkcs8, identity.signPkcs8);
  const wrongKek = crypto.getRandomValues(new Uint8Array(32));
  await assert.rejects(c.unwrapBundle(wrongKek, 'alice', 1, bundle, published), c.UnwrapError);
  await assert.rejects(c.unwrapBundle(kek, 'alicf', 1, bundle, published), c.UnwrapError);
  await assert.rejects(c.unwrapBundle(kek, 'alice', 2, bundle, published), c.UnwrapError);
  const ct = b64.decode(bundle.ct);
  ct[5] ^= 1;
  await assert.rejects(c.unwrapBundle(kek, 'alice', 1, { iv: bundle.iv, ct: b64.encode(ct) }, published), c.UnwrapError);
  await assert.rejects(c.unwrapBundle(kek, 'alice', 1, { iv: 'AAAA', ct: bundle.ct }, published), c.UnwrapError);
  await assert.rejects(c.unwrapBundle(kek, 'alice', 1, { iv: bundle.iv + '=', ct: bundle.ct }, published), c.UnwrapError);
  await assert.rejects(c.unwrapBundle(kek, 'alice', 1, null, published), c.UnwrapError);
});

test('selfSig is 64 raw bytes over the exact PROTOCOL.md §4.1 message and verifies independently', async () => {
  const sig = await c.selfSig(identity.signPrivateKey, 'alice', 1, identity.encSpki, identity.signSpki);
  assert.equal(sig.length, 64);
  assert.ok(refVerifySelfSig(identity.signSpki, sig, 'alice', 1, identity.encSpki));
  assert.ok(await c.verifySelfSig(identity.signSpki, sig, 'alice', 1, identity.encSpki, identity.signSpki));
  assert.ok(await c.verifySelfSig(b64.encode(identity.signSpki), b64.encode(sig), 'alice', 1, b64.encode(identity.encSpki), b64.encode(identity.signSpki)));
  assert.equal(await c.verifySelfSig(identity.signSpki, sig, 'bob', 1, identity.encSpki, identity.signSpki), false);
  assert.equal(await c.verifySelfSig(identity.signSpki, sig, 'alice', 2, identity.encSpki, identity.signSpki), false);
  const other = await c.generateIdentity();
  assert.equal(await c.verifySelfSig(identity.signSpki, sig, 'alice', 1, other.encSpki, identity.signSpki), false);
  assert.equal(await c.verifySelfSig(identity.signSpki, sig.subarray(0, 63), 'alice', 1, identity.encSpki, identity.signSpki), false);
  assert.equal(await c.verifySelfSig(identity.signSpki, 'not b64!', 'alice', 1, identity.encSpki, identity.signSpki), false);
});

test('verifySelfSig accepts a signature made by node:crypto (a second implementation)', async () => {
  const { privateKey, publicKey } = nodeCrypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signSpki = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
  const message = Buffer.concat([Buffer.from('securechat/v1/self|bob|3|'), identity.encSpki, signSpki]);
  const sig = new Uint8Array(nodeCrypto.sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' }));
  assert.ok(await c.verifySelfSig(signSpki, sig, 'bob', 3, identity.encSpki, signSpki));
});

test('fingerprint follows the iterated SHA-512 of PROTOCOL.md §5.1 (30 digits)', async () => {
  const fp = await c.fingerprint('alice', identity.encSpki, identity.signSpki);
  assert.match(fp, /^\d{30}$/);
  assert.equal(fp, refFingerprint('alice', identity.encSpki, identity.signSpki));
  assert.notEqual(await c.fingerprint('alicf', identity.encSpki, identity.signSpki), fp);
  assert.deepEqual(c.digitGroups(fp), fp.match(/\d{5}/g));
});

test('safetyNumber puts the bytewise-lower user name first', () => {
  const a = { username: 'alice', fingerprint: '1'.repeat(30) };
  const b = { username: 'bob', fingerprint: '2'.repeat(30) };
  assert.equal(c.safetyNumber(a, b), '1'.repeat(30) + '2'.repeat(30));
  assert.equal(c.safetyNumber(b, a), '1'.repeat(30) + '2'.repeat(30));
  // bytewise: '-' (0x2d) < '.' (0x2e) < '0' < '_' (0x5f) < 'a'; a prefix sorts first
  const dash = { username: 'a-b', fingerprint: '3'.repeat(30) };
  const under = { username: 'a_b', fingerprint: '4'.repeat(30) };
  assert.equal(c.safetyNumber(under, dash), dash.fingerprint + under.fingerprint);
  const short = { username: 'abc', fingerprint: '5'.repeat(30) };
  const long = { username: 'abcd', fingerprint: '6'.repeat(30) };
  assert.equal(c.safetyNumber(long, short), short.fingerprint + long.fingerprint);
  assert.throws(() => c.safetyNumber(a, { username: 'x', fingerprint: '123' }), TypeError);
});

test('checkKdfParams refuses downgrades and malformed answers', () => {
  const salt = b64.encode(new Uint8Array(16));
  assert.equal(c.checkKdfParams({ alg: 'PBKDF2-SHA256', iterations: 600000, salt }).length, 16);
  assert.throws(() => c.checkKdfParams({ alg: 'PBKDF2-SHA256', iterations: 1000, salt }), RangeError);
  assert.equal(c.checkKdfParams({ alg: 'PBKDF2-SHA256', iterations: 1000, salt }, { minIterations: 1000 }).length, 16);
  assert.throws(() => c.checkKdfParams({ alg: 'PBKDF2-SHA256', iterations: 1e9, salt }), RangeError);
  assert.throws(() => c.checkKdfParams({ alg: 'argon2id', iterations: 600000, salt }), TypeError);
  assert.throws(() => c.checkKdfParams({ alg: 'PBKDF2-SHA256', iterations: 600000, salt: b64.encode(new Uint8Array(8)) }), RangeError);
  assert.throws(() => c.checkKdfParams({ alg: 'PBKDF2-SHA256', iterations: 600000, salt: salt + '==' }));
  assert.throws(() => c.checkKdfParams(undefined), TypeError);
});

test('AADs and signed bytes write key_version as plain decimal', () => {
  assert.equal(new TextDecoder().decode(c.bundleAad('bob', 12)), 'securechat/v1/keys|bob|12');
  assert.throws(() => c.bundleAad('bob', 0), TypeError);
  assert.throws(() => c.bundleAad('bob', '1'), TypeError);
  assert.throws(() => c.bundleAad('bob', 1.5), TypeError);
});
