// All client-side cryptography of securechat, on the Web Crypto API only.
// The byte layouts follow docs/PROTOCOL.md §1–§5 exactly; the Rust test client
// implements the same functions and testdata/crypto-vectors.json pins both.
//
// Runs unchanged in the browser and in Node >= 20 (globalThis.crypto.subtle).

import { encode as b64encode, decode as b64decode } from './b64.js';

const subtle = globalThis.crypto.subtle;
const encoder = new TextEncoder();

export const KDF_ALG = 'PBKDF2-SHA256';
/** Iterations used for every account this client creates. */
export const DEFAULT_ITERATIONS = 600000;
/** A login refuses KDF parameters weaker than this (a server must not be able to downgrade us). */
export const MIN_ITERATIONS = 600000;
/** ... or absurdly expensive ones (a server must not be able to hang the tab). */
export const MAX_ITERATIONS = 10000000;
export const SALT_BYTES = 16;
export const FINGERPRINT_ITERATIONS = 5200; // SHA-512(d), then 5199 more rounds

const INFO_AUTH = 'securechat/v1/auth';
const INFO_WRAP = 'securechat/v1/wrap';

const RSA_ALG = { name: 'RSA-OAEP', hash: 'SHA-256' };
const RSA_GEN = { ...RSA_ALG, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256' };
const ECDSA_SIGN = { name: 'ECDSA', hash: 'SHA-256' };

/** Raised when the key bundle does not decrypt or is malformed (wrong password, or tampering). */
export class UnwrapError extends Error {
  constructor(message = 'the key bundle could not be decrypted') {
    super(message);
    this.name = 'UnwrapError';
  }
}

/** The key bundle decrypted, but to other keys than the ones published for the account. */
export class KeyMismatchError extends Error {
  constructor(message = 'the key bundle holds other keys than the published ones') {
    super(message);
    this.name = 'KeyMismatchError';
  }
}

// ---------------------------------------------------------------- helpers

export function utf8(text) {
  return encoder.encode(text);
}

export function concatBytes(...parts) {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

function asBytes(value, what) {
  if (typeof value === 'string') return b64decode(value);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`${what} must be bytes or a base64url string`);
}

function checkKeyVersion(keyVersion) {
  if (!Number.isSafeInteger(keyVersion) || keyVersion < 1) {
    throw new TypeError('key_version must be a positive integer');
  }
  return String(keyVersion); // decimal, no sign, no leading zeros
}

/** Bytewise comparison of two user names (PROTOCOL.md §1.4: "first" means bytewise order). */
export function compareUsernames(a, b) {
  const x = utf8(a);
  const y = utf8(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// ---------------------------------------------------------------- password KDF

/**
 * master = PBKDF2-HMAC-SHA256(NFC(password), salt, iterations, 32 bytes);
 * auth_key = HKDF-SHA256(master, salt = empty, info "securechat/v1/auth", 32);
 * kek = HKDF-SHA256(master, salt = empty, info "securechat/v1/wrap", 32).
 * Returns { authKey, kek } as 32-byte Uint8Arrays; callers should .fill(0) them when done.
 * PROTOCOL.md §2.1–§2.3.
 */
export async function deriveKeys(password, salt, iterations) {
  if (typeof password !== 'string') throw new TypeError('password must be a string');
  const saltBytes = asBytes(salt, 'salt');
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new TypeError('iterations must be a positive integer');
  const passwordBytes = utf8(password.normalize('NFC'));
  const pbkdf2Key = await subtle.importKey('raw', passwordBytes, 'PBKDF2', false, ['deriveBits']);
  passwordBytes.fill(0);
  const master = new Uint8Array(
    await subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt: saltBytes, iterations }, pbkdf2Key, 256),
  );
  const hkdfKey = await subtle.importKey('raw', master, 'HKDF', false, ['deriveBits']);
  master.fill(0);
  const hkdf = async (info) =>
    new Uint8Array(
      await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: utf8(info) }, hkdfKey, 256),
    );
  return { authKey: await hkdf(INFO_AUTH), kek: await hkdf(INFO_WRAP) };
}

/** Checks KDF parameters that came from a server; returns the salt bytes or throws (PROTOCOL.md §2.4). */
export function checkKdfParams(kdf, { minIterations = MIN_ITERATIONS } = {}) {
  if (!kdf || typeof kdf !== 'object') throw new TypeError('missing KDF parameters');
  if (kdf.alg !== KDF_ALG) throw new TypeError(`unsupported KDF algorithm ${String(kdf.alg)}`);
  if (!Number.isSafeInteger(kdf.iterations) || kdf.iterations < minIterations || kdf.iterations > MAX_ITERATIONS) {
    throw new RangeError(`the server asked for ${String(kdf.iterations)} KDF iterations, outside [${minIterations}, ${MAX_ITERATIONS}]`);
  }
  const salt = b64decode(kdf.salt);
  if (salt.length !== SALT_BYTES) throw new RangeError('the KDF salt must be 16 bytes');
  return salt;
}

/** HKDF info of the local search index key (PROTOCOL.md §8.10). */
export const INFO_SEARCH_INDEX = 'securechat/v1/search-index';

/**
 * index_key = HKDF-SHA256(ikm = kek, salt = empty, info "securechat/v1/search-index", 32), as a
 * NON-extractable AES-GCM CryptoKey (encrypt, decrypt): the key of the local search index.
 * PROTOCOL.md §8.10.
 */
export async function deriveIndexKey(kek) {
  if (!(kek instanceof Uint8Array) || kek.length !== 32) throw new TypeError('kek must be 32 bytes');
  const hkdfKey = await subtle.importKey('raw', kek, 'HKDF', false, ['deriveKey']);
  return subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: utf8(INFO_SEARCH_INDEX) },
    hkdfKey,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

async function kekKey(kek, usages) {
  if (kek instanceof Uint8Array) {
    if (kek.length !== 32) throw new TypeError('kek must be 32 bytes');
    return subtle.importKey('raw', kek, { name: 'AES-GCM' }, false, usages);
  }
  return kek; // already a CryptoKey
}

// ---------------------------------------------------------------- identity keys

/**
 * Fresh identity: RSA-OAEP-2048 (SHA-256, e = 65537) for key wrapping and ECDSA P-256 for signing.
 * The generated keys are extractable only so that they can be wrapped once at registration;
 * the session keeps the non-extractable copies that unwrapBundle() makes.
 */
export async function generateIdentity() {
  const enc = await subtle.generateKey(RSA_GEN, true, ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey']);
  const sign = await subtle.generateKey(EC_ALG, true, ['sign', 'verify']);
  return {
    encPkcs8: new Uint8Array(await subtle.exportKey('pkcs8', enc.privateKey)),
    signPkcs8: new Uint8Array(await subtle.exportKey('pkcs8', sign.privateKey)),
    encSpki: new Uint8Array(await subtle.exportKey('spki', enc.publicKey)),
    signSpki: new Uint8Array(await subtle.exportKey('spki', sign.publicKey)),
    signPrivateKey: sign.privateKey,
  };
}

export function importEncPublicKey(spki) {
  return subtle.importKey('spki', asBytes(spki, 'enc_public_key'), RSA_ALG, true, ['encrypt', 'wrapKey']);
}

export function importSignPublicKey(spki) {
  return subtle.importKey('spki', asBytes(spki, 'sign_public_key'), EC_ALG, true, ['verify']);
}

export async function exportSpki(publicKey) {
  return new Uint8Array(await subtle.exportKey('spki', publicKey));
}

/** PKCS#8 private keys -> CryptoKeys (non-extractable unless asked). */
export async function importPrivateKeys(encPkcs8, signPkcs8, { extractable = false } = {}) {
  const encPrivateKey = await subtle.importKey('pkcs8', encPkcs8, RSA_ALG, extractable, ['decrypt', 'unwrapKey']);
  const signPrivateKey = await subtle.importKey('pkcs8', signPkcs8, EC_ALG, extractable, ['sign']);
  return { encPrivateKey, signPrivateKey };
}

/**
 * Whether private CryptoKeys belong to the public keys given as SPKI, by round trips: a
 * random challenge RSA-OAEP-encrypted to `encSpki` must decrypt with `encPrivateKey`, and
 * an ECDSA signature by `signPrivateKey` over it must verify with `signSpki`. The private
 * keys never leave Web Crypto (no export, so they can stay non-extractable).
 */
export async function keysMatch({ encPrivateKey, signPrivateKey }, encSpki, signSpki) {
  const challenge = randomBytes(32);
  try {
    const encPublic = await importEncPublicKey(encSpki);
    const wrapped = await subtle.encrypt(RSA_ALG, encPublic, challenge);
    const back = new Uint8Array(await subtle.decrypt(RSA_ALG, encPrivateKey, wrapped));
    if (!bytesEqual(back, challenge)) return false;
    const sig = await subtle.sign(ECDSA_SIGN, signPrivateKey, challenge);
    return await subtle.verify(ECDSA_SIGN, await importSignPublicKey(signSpki), sig, challenge);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- key bundle

// PROTOCOL.md §3.3
export function bundleAad(username, keyVersion) {
  return utf8(`securechat/v1/keys|${username}|${checkKeyVersion(keyVersion)}`);
}

/**
 * key_bundle = AES-256-GCM(kek, iv, JSON {"enc": b64(PKCS#8 RSA), "sign": b64(PKCS#8 P-256)},
 *                          aad = "securechat/v1/keys|" || username || "|" || key_version).
 * Returns { iv, ct } as base64url strings. PROTOCOL.md §3.2–§3.3.
 */
export async function wrapBundle(kek, username, keyVersion, encPkcs8, signPkcs8, iv = randomBytes(12)) {
  if (iv.length !== 12) throw new TypeError('iv must be 12 bytes');
  const key = await kekKey(kek, ['encrypt']);
  const plaintext = utf8(JSON.stringify({ enc: b64encode(encPkcs8), sign: b64encode(signPkcs8) }));
  const ct = new Uint8Array(
    await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: bundleAad(username, keyVersion), tagLength: 128 }, key, plaintext),
  );
  plaintext.fill(0);
  return { iv: b64encode(iv), ct: b64encode(ct) };
}

/** Decrypts a key bundle to its raw PKCS#8 bytes (PROTOCOL.md §3.4). Throws UnwrapError. Prefer unwrapBundle(). */
export async function decryptBundle(kek, username, keyVersion, bundle) {
  let iv;
  let ct;
  try {
    iv = asBytes(bundle?.iv, 'key_bundle.iv');
    ct = asBytes(bundle?.ct, 'key_bundle.ct');
  } catch {
    throw new UnwrapError('the key bundle is malformed');
  }
  if (iv.length !== 12) throw new UnwrapError('the key bundle iv must be 12 bytes');
  const key = await kekKey(kek, ['decrypt']);
  let plaintext;
  try {
    plaintext = new Uint8Array(
      await subtle.decrypt({ name: 'AES-GCM', iv, additionalData: bundleAad(username, keyVersion), tagLength: 128 }, key, ct),
    );
  } catch {
    throw new UnwrapError();
  }
  try {
    const parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plaintext));
    if (typeof parsed?.enc !== 'string' || typeof parsed?.sign !== 'string') throw new Error('fields');
    return { encPkcs8: b64decode(parsed.enc), signPkcs8: b64decode(parsed.sign) };
  } catch {
    throw new UnwrapError('the key bundle decrypted to something that is not a key bundle');
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Decrypts the key bundle to NON-extractable private CryptoKeys and checks that they belong
 * to `expected` = { encSpki, signSpki } (the public keys the directory publishes for this
 * version) with keysMatch. Returns { encPrivateKey, signPrivateKey, encSpki, signSpki }.
 * Throws UnwrapError on a wrong kek or a malformed bundle, KeyMismatchError when the keys
 * inside are not the published ones.
 */
export async function unwrapBundle(kek, username, keyVersion, bundle, expected) {
  const { encPkcs8, signPkcs8 } = await decryptBundle(kek, username, keyVersion, bundle);
  let keys;
  try {
    keys = await importPrivateKeys(encPkcs8, signPkcs8, { extractable: false });
  } catch {
    throw new UnwrapError('the key bundle holds keys of the wrong type');
  } finally {
    encPkcs8.fill(0);
    signPkcs8.fill(0);
  }
  if (!(await keysMatch(keys, expected?.encSpki, expected?.signSpki))) {
    throw new KeyMismatchError();
  }
  return { ...keys, encSpki: expected.encSpki, signSpki: expected.signSpki };
}

// ---------------------------------------------------------------- self-signature

// PROTOCOL.md §4.1
export function selfSigMessage(username, keyVersion, encSpki, signSpki) {
  return concatBytes(
    utf8(`securechat/v1/self|${username}|${checkKeyVersion(keyVersion)}|`),
    asBytes(encSpki, 'enc_public_key'),
    asBytes(signSpki, 'sign_public_key'),
  );
}

/** self_sig = ECDSA-P256-SHA256(sign_private, "securechat/v1/self|" || username || "|" || key_version || "|" || enc_spki || sign_spki), raw r||s. */
export async function selfSig(signPrivateKey, username, keyVersion, encSpki, signSpki) {
  const message = selfSigMessage(username, keyVersion, encSpki, signSpki);
  return new Uint8Array(await subtle.sign(ECDSA_SIGN, signPrivateKey, message));
}

/** True when sig is a valid self-signature by the signing key given as SPKI (or a CryptoKey). */
export async function verifySelfSig(signPublicKey, sig, username, keyVersion, encSpki, signSpki) {
  try {
    const signature = asBytes(sig, 'self_sig');
    if (signature.length !== 64) return false;
    const key =
      signPublicKey instanceof Uint8Array || typeof signPublicKey === 'string'
        ? await importSignPublicKey(signPublicKey)
        : signPublicKey;
    return await subtle.verify(ECDSA_SIGN, key, signature, selfSigMessage(username, keyVersion, encSpki, signSpki));
  } catch {
    return false;
  }
}

/** The bytes a key rotation's prev_sig covers (PROTOCOL.md §4.2). */
export function prevSigMessage(username, newVersion, newEncSpki, newSignSpki) {
  return concatBytes(
    utf8(`securechat/v1/rotate|${username}|${checkKeyVersion(newVersion)}|`),
    asBytes(newEncSpki, 'enc_public_key'),
    asBytes(newSignSpki, 'sign_public_key'),
  );
}

/** prev_sig = ECDSA-P256-SHA256(OLD sign_private, "securechat/v1/rotate|" || username || "|" || new_version || "|" || new_enc_spki || new_sign_spki). */
export async function prevSig(oldSignPrivateKey, username, newVersion, newEncSpki, newSignSpki) {
  const message = prevSigMessage(username, newVersion, newEncSpki, newSignSpki);
  return new Uint8Array(await subtle.sign(ECDSA_SIGN, oldSignPrivateKey, message));
}

/** True when sig shows that the holder of the old signing key (SPKI or CryptoKey) made the new keys. */
export async function verifyPrevSig(oldSignPublicKey, sig, username, newVersion, newEncSpki, newSignSpki) {
  try {
    const signature = asBytes(sig, 'prev_sig');
    if (signature.length !== 64) return false;
    const key =
      oldSignPublicKey instanceof Uint8Array || typeof oldSignPublicKey === 'string'
        ? await importSignPublicKey(oldSignPublicKey)
        : oldSignPublicKey;
    return await subtle.verify(ECDSA_SIGN, key, signature, prevSigMessage(username, newVersion, newEncSpki, newSignSpki));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- fingerprints

/**
 * 30-digit fingerprint (PROTOCOL.md §5.1): d = "securechat/v1/fp|" || username || "|" || enc_spki || sign_spki;
 * h = SHA-512(d), then 5199 more times h = SHA-512(h || enc_spki || sign_spki); the first 30 bytes
 * as six 5-byte big-endian numbers, each mod 100000, written as 5 digits.
 */
export async function fingerprint(username, encSpki, signSpki) {
  const keys = concatBytes(asBytes(encSpki, 'enc_public_key'), asBytes(signSpki, 'sign_public_key'));
  let h = new Uint8Array(await subtle.digest('SHA-512', concatBytes(utf8(`securechat/v1/fp|${username}|`), keys)));
  const buf = new Uint8Array(64 + keys.length);
  buf.set(keys, 64);
  for (let i = 1; i < FINGERPRINT_ITERATIONS; i++) {
    buf.set(h, 0);
    h = new Uint8Array(await subtle.digest('SHA-512', buf));
  }
  let digits = '';
  for (let chunk = 0; chunk < 6; chunk++) {
    let n = 0;
    for (let j = 0; j < 5; j++) n = n * 256 + h[chunk * 5 + j]; // < 2^40: exact in a double
    digits += String(n % 100000).padStart(5, '0');
  }
  return digits;
}

/** 60-digit safety number: the two users' fingerprints, the bytewise-lower user name first (PROTOCOL.md §5.2). */
export function safetyNumber(a, b) {
  for (const side of [a, b]) {
    if (!side || typeof side.username !== 'string' || !/^\d{30}$/.test(side.fingerprint ?? '')) {
      throw new TypeError('safetyNumber expects {username, fingerprint (30 digits)} twice');
    }
  }
  return compareUsernames(a.username, b.username) <= 0 ? a.fingerprint + b.fingerprint : b.fingerprint + a.fingerprint;
}

/** "123456789012345..." -> ["12345", "67890", ...] */
export function digitGroups(digits, size = 5) {
  const groups = [];
  for (let i = 0; i < digits.length; i += size) groups.push(digits.slice(i, i + size));
  return groups;
}
