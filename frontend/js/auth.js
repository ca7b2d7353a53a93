// Registration, sign-in, key rotation, password change and account deletion, end to end (docs/PROTOCOL.md §2–§4 and §6). Pure logic
// over an Api instance: no DOM and no IndexedDB (the remembered KDF parameters come in as a
// { get, put } `kdfMemory`), so the same code runs in the unit tests under Node.

import { Api, ApiError, tokensFrom } from './api.js';
import { decode as b64decode, encode as b64encode } from './b64.js';
import {
  DEFAULT_ITERATIONS,
  KDF_ALG,
  MIN_ITERATIONS,
  SALT_BYTES,
  KeyMismatchError,
  UnwrapError,
  bytesEqual,
  checkKdfParams,
  decryptBundle,
  deriveIndexKey,
  deriveKeys,
  fingerprint,
  generateIdentity,
  importEncPublicKey,
  importSignPublicKey,
  prevSig,
  randomBytes,
  selfSig,
  unwrapBundle,
  verifySelfSig,
  wrapBundle,
} from './crypto.js';
import { describeError } from './errors.js';

export const USERNAME_RE = /^[a-z0-9_.-]{3,32}$/;
export const MIN_PASSWORD_LENGTH = 12;

/** A failure the user should read as is (the message is written for them). */
export class AuthError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'AuthError';
    this.code = code;
  }
}

export const WRONG_CREDENTIALS = 'Wrong username or password';
export const FOREIGN_BUNDLE =
  'The server returned a key bundle that is not yours: your password was accepted, but the keys it sent do not open with it. Not signing in.';

/** Lower-cases ASCII letters only (no Unicode case folding into ASCII) and trims. */
export function normalizeUsername(input) {
  return String(input ?? '')
    .trim()
    .replace(/[A-Z]/g, (c) => c.toLowerCase());
}

export function usernameProblem(username) {
  if (!USERNAME_RE.test(username)) {
    return 'Usernames are 3 to 32 characters: letters a–z, digits, and . _ -';
  }
  return null;
}

export function passwordLength(password) {
  return [...String(password ?? '').normalize('NFC')].length;
}

export function passwordProblem(password, confirmation) {
  if (passwordLength(password) < MIN_PASSWORD_LENGTH) {
    return `Use a password of at least ${MIN_PASSWORD_LENGTH} characters`;
  }
  if (confirmation !== undefined && password !== confirmation) return 'The passwords do not match';
  return null;
}

const noop = () => {};

/**
 * Creates the account: keys generated and wrapped here, the server gets auth_key, public keys,
 * the wrapped bundle, KDF parameters and the self-signature. Then signs in with the same derived
 * keys (no second KDF run) and returns the session (see completeSignIn).
 */
export async function register(api, { username, password, iterations = DEFAULT_ITERATIONS, kdfMemory = null, onProgress = noop }) {
  onProgress('keys');
  const identity = await generateIdentity();
  onProgress('kdf');
  const salt = randomBytes(SALT_BYTES);
  const { authKey, kek } = await deriveKeys(password, salt, iterations);
  try {
    const keyVersion = 1;
    const keyBundle = await wrapBundle(kek, username, keyVersion, identity.encPkcs8, identity.signPkcs8);
    identity.encPkcs8.fill(0);
    identity.signPkcs8.fill(0);
    const sig = await selfSig(identity.signPrivateKey, username, keyVersion, identity.encSpki, identity.signSpki);
    onProgress('register');
    const kdf = { alg: KDF_ALG, iterations, salt: b64encode(salt) };
    try {
      await api.post('/api/auth/register', {
        username,
        auth_key: b64encode(authKey),
        kdf,
        enc_public_key: b64encode(identity.encSpki),
        sign_public_key: b64encode(identity.signSpki),
        key_bundle: keyBundle,
        self_sig: b64encode(sig),
      });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'username_taken') {
        throw new AuthError('username_taken', 'That username is taken');
      }
      throw err;
    }
    await kdfMemory?.put(username, kdf);
    onProgress('login');
    try {
      return await completeSignIn(api, { username, authKey, kek });
    } catch (err) {
      throw new AuthError('login_after_register', `Your account was created, but signing in failed (${describeError(err)}). Please sign in.`);
    }
  } finally {
    authKey.fill(0);
    kek.fill(0);
  }
}

export const KDF_CHANGED =
  'This browser has signed in with this name before, and the server now sends other password-hashing parameters ' +
  '(another salt, or fewer rounds). A server doing that may be trying to obtain a key derived from your password. ' +
  'Not signing in.';

function sameKdf(known, kdf) {
  try {
    return known.alg === kdf.alg && bytesEqual(b64decode(known.salt), b64decode(kdf.salt));
  } catch {
    return false;
  }
}

/**
 * POST /api/auth/prelogin and the checks before any CPU is spent on its answer: the KDF floor
 * and ceiling (crypto.js), and, when this browser remembers the name's parameters from an
 * earlier sign-in or registration, the same algorithm and salt and no fewer iterations.
 * Returns { kdf, salt }.
 */
async function checkedPrelogin(api, username, { minIterations = MIN_ITERATIONS, kdfMemory = null } = {}) {
  const pre = await api.post('/api/auth/prelogin', { username });
  let salt;
  try {
    salt = checkKdfParams(pre?.kdf, { minIterations });
  } catch {
    // crypto.js's reason quotes the server's values: not shown
    throw new AuthError(
      'weak_kdf',
      'The server sent unacceptable password-hashing parameters (too few or too many rounds, another algorithm, or a malformed salt); not signing in.',
    );
  }
  const known = await kdfMemory?.get(username);
  if (known && (!sameKdf(known, pre.kdf) || pre.kdf.iterations < known.iterations)) {
    throw new AuthError('kdf_changed', KDF_CHANGED);
  }
  return { kdf: { alg: pre.kdf.alg, iterations: pre.kdf.iterations, salt: pre.kdf.salt }, salt };
}

/** Checked prelogin, then `fn(authKey, kek, kdf)` with the keys derived from the password (wiped afterwards). */
async function withPasswordKeys(api, { username, password, minIterations, kdfMemory, onProgress = noop }, fn) {
  onProgress('prelogin');
  const { kdf, salt } = await checkedPrelogin(api, username, { minIterations, kdfMemory });
  onProgress('kdf');
  const { authKey, kek } = await deriveKeys(password, salt, kdf.iterations);
  try {
    return await fn(authKey, kek, kdf);
  } finally {
    authKey.fill(0);
    kek.fill(0);
  }
}

/**
 * prelogin -> derive -> login -> unwrap -> verify against the directory. Returns the session.
 * With a `kdfMemory`, the parameters are checked against the remembered ones and remembered
 * after a successful sign-in.
 */
export async function signIn(api, { username, password, minIterations = MIN_ITERATIONS, kdfMemory = null, onProgress = noop }) {
  return withPasswordKeys(api, { username, password, minIterations, kdfMemory, onProgress }, async (authKey, kek, kdf) => {
    onProgress('login');
    const session = await completeSignIn(api, { username, authKey, kek });
    await kdfMemory?.put(username, kdf);
    return session;
  });
}

/**
 * With the derived auth_key and kek: POST /api/auth/login, unwrap the key bundle into
 * non-extractable CryptoKeys, check that the directory publishes exactly the public halves of
 * those keys with a valid self-signature, and return the session record for store.js.
 * Any failure after the server issued tokens revokes them again.
 */
export async function completeSignIn(api, { username, authKey, kek }) {
  let answer;
  try {
    answer = await api.post('/api/auth/login', { username, auth_key: b64encode(authKey) });
  } catch (err) {
    if (err instanceof ApiError && err.code === 'invalid_credentials') {
      throw new AuthError('invalid_credentials', WRONG_CREDENTIALS);
    }
    throw err;
  }
  const tokens = tokensFrom(answer);
  api.setTokens(tokens);
  try {
    const keyVersion = answer.key_version;
    if (!Number.isSafeInteger(keyVersion) || keyVersion < 1) {
      throw new AuthError('invalid_response', 'The server sent an invalid key version');
    }
    const dir = await api.get(`/api/users/${encodeURIComponent(username)}/keys`, { auth: true });
    const dirEnc = b64decode(dir.enc_public_key);
    const dirSign = b64decode(dir.sign_public_key);
    const mismatch = () =>
      new AuthError(
        'key_mismatch',
        'The server’s directory does not publish your public keys. Not signing in: your account’s keys may have been tampered with.',
      );
    if (dir.username !== username || dir.key_version !== keyVersion) throw mismatch();
    let keys;
    try {
      // the private keys are checked against the published ones by round trips, never exported
      keys = await unwrapBundle(kek, username, keyVersion, answer.key_bundle, { encSpki: dirEnc, signSpki: dirSign });
    } catch (err) {
      // the server accepted auth_key, so the password is right: the bundle is someone else's
      if (err instanceof UnwrapError) throw new AuthError('foreign_key_bundle', FOREIGN_BUNDLE);
      if (err instanceof KeyMismatchError) throw mismatch();
      throw err;
    }
    if (!(await verifySelfSig(dirSign, dir.self_sig, username, keyVersion, dirEnc, dirSign))) {
      throw new AuthError('bad_self_sig', 'Your published keys carry an invalid self-signature. Not signing in.');
    }
    const fp = await fingerprint(username, keys.encSpki, keys.signSpki);
    return {
      username,
      key_version: keyVersion,
      ...tokens,
      encPrivateKey: keys.encPrivateKey,
      signPrivateKey: keys.signPrivateKey,
      encPublicKey: await importEncPublicKey(keys.encSpki),
      signPublicKey: await importSignPublicKey(keys.signSpki),
      fingerprint: fp,
      // the local search index's key (PROTOCOL.md §8.10), non-extractable
      indexKey: await deriveIndexKey(kek),
      signed_in_at: Date.now(),
    };
  } catch (err) {
    await api.post('/api/auth/logout', { refresh_token: tokens.refresh_token }, { auth: true }).catch(() => {});
    api.setTokens(null);
    throw err;
  }
}

/** "<username>\n<version>" of the rotations this page made (its relay then hears of them as keys_changed). */
const ownRotations = new Set();

/** Whether the rotation of `username` to `keyVersion` was made by this page (rotateKeys / replaceKeys). */
export function isOwnRotation(username, keyVersion) {
  return ownRotations.has(`${username}\n${keyVersion}`);
}

async function rotateWith(api, session, authKey, kek) {
  const username = session.username;
  const version = session.key_version + 1;
  const identity = await generateIdentity();
  const keyBundle = await wrapBundle(kek, username, version, identity.encPkcs8, identity.signPkcs8);
  identity.encPkcs8.fill(0);
  identity.signPkcs8.fill(0);
  const self = await selfSig(identity.signPrivateKey, username, version, identity.encSpki, identity.signSpki);
  const prev = await prevSig(session.signPrivateKey, username, version, identity.encSpki, identity.signSpki);
  const mark = `${username}\n${version}`;
  ownRotations.add(mark);
  try {
    return await api.post(
      '/api/keys/rotate',
      {
        key_version: version,
        auth_key: b64encode(authKey),
        enc_public_key: b64encode(identity.encSpki),
        sign_public_key: b64encode(identity.signSpki),
        key_bundle: keyBundle,
        self_sig: b64encode(self),
        prev_sig: b64encode(prev),
      },
      { auth: true },
    );
  } catch (err) {
    ownRotations.delete(mark);
    if (err instanceof ApiError && err.code === 'invalid_credentials') throw new AuthError('invalid_credentials', 'Wrong password');
    throw err;
  }
}

/**
 * Key rotation (docs/PROTOCOL.md §4.2): fresh keys, wrapped under the same kek (derived again
 * from the password) for version current+1, self-signed with the new signing key and chained
 * with prev_sig by the current one; the request carries the auth_key derived with them, so
 * the server can check the password. The session's keys are the old ones afterwards: sign in
 * again to use the new ones (replaceKeys does both). Returns the server's answer
 * {username, key_version}.
 */
export async function rotateKeys(api, { session, password, kdfMemory = null }) {
  const username = session.username;
  return withPasswordKeys(api, { username, password, kdfMemory }, (authKey, kek) => rotateWith(api, session, authKey, kek));
}

/**
 * rotateKeys, then a new sign-in with the same derived keys (no second KDF run) on a fresh Api,
 * so that the returned session holds the new keys. The caller stores it and ends the old one.
 */
export async function replaceKeys(api, { session, password, kdfMemory = null }) {
  const username = session.username;
  return withPasswordKeys(api, { username, password, kdfMemory }, async (authKey, kek) => {
    await rotateWith(api, session, authKey, kek);
    return completeSignIn(new Api({ baseUrl: api.baseUrl, fetch: api.fetch }), { username, authKey, kek });
  });
}

/** Describes an error for the page: the client's own sentences only (errors.js), never the server's. */
export function authErrorMessage(err) {
  if (err instanceof UnwrapError) return WRONG_CREDENTIALS;
  return describeError(err);
}

/**
 * Changes the password (PROTOCOL.md §2, API-CONTRACT.md POST /api/auth/password): the current
 * password's keys are derived (checked prelogin) and prove it; the key bundle is fetched again
 * with a sign-in under a throwaway Api (the session holds only non-extractable keys) and
 * decrypted with the current kek; a new salt gives a new auth_key and kek, the same private
 * keys are wrapped under the new kek for the same key version, and one POST replaces the auth
 * key, the KDF parameters and the bundle and signs out every other session (the throwaway
 * one included). Returns { kdf, indexKey } (the new search-index key, §8.10); the caller
 * updates the stored session. Throws AuthError('invalid_credentials') for a wrong password.
 */
export async function changePassword(api, { session, password, newPassword, iterations = DEFAULT_ITERATIONS, minIterations = MIN_ITERATIONS, kdfMemory = null }) {
  const problem = passwordProblem(newPassword);
  if (problem) throw new AuthError('weak_password', problem);
  const username = session.username;
  return withPasswordKeys(api, { username, password, minIterations, kdfMemory }, async (authKey, kek) => {
    const side = new Api({ baseUrl: api.baseUrl, fetch: api.fetch });
    let login;
    try {
      login = await side.post('/api/auth/login', { username, auth_key: b64encode(authKey) });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'invalid_credentials') throw new AuthError('invalid_credentials', 'Wrong password');
      throw err;
    }
    side.setTokens(tokensFrom(login));
    const salt = randomBytes(SALT_BYTES);
    const fresh = await deriveKeys(newPassword, salt, iterations);
    let pkcs8 = null;
    let changed = false;
    try {
      if (login.key_version !== session.key_version) throw new AuthError('key_version_changed', 'Your keys changed meanwhile; sign in again first.');
      try {
        pkcs8 = await decryptBundle(kek, username, login.key_version, login.key_bundle);
      } catch {
        throw new AuthError('foreign_key_bundle', FOREIGN_BUNDLE);
      }
      const keyBundle = await wrapBundle(fresh.kek, username, login.key_version, pkcs8.encPkcs8, pkcs8.signPkcs8);
      const kdf = { alg: KDF_ALG, iterations, salt: b64encode(salt) };
      try {
        await api.post(
          '/api/auth/password',
          () => ({ auth_key: b64encode(authKey), new_auth_key: b64encode(fresh.authKey), kdf, key_bundle: keyBundle, refresh_token: api.tokens?.refresh_token }),
          { auth: true },
        );
      } catch (err) {
        if (err instanceof ApiError && err.code === 'invalid_credentials') throw new AuthError('invalid_credentials', 'Wrong password');
        throw err;
      }
      changed = true;
      await kdfMemory?.put(username, kdf);
      return { kdf, indexKey: await deriveIndexKey(fresh.kek) };
    } finally {
      pkcs8?.encPkcs8.fill(0);
      pkcs8?.signPkcs8.fill(0);
      fresh.authKey.fill(0);
      fresh.kek.fill(0);
      // the throwaway session: already revoked by a successful change, ended here otherwise
      if (!changed) await side.post('/api/auth/logout', { refresh_token: side.tokens?.refresh_token }, { auth: true }).catch(() => {});
    }
  });
}

/**
 * Deletes the account (DELETE /api/me with the current auth_key, derived after a checked
 * prelogin). Throws AuthError('invalid_credentials') for a wrong password. The caller then
 * forgets the device (store.js forgetAccount) and leaves the page.
 */
export async function deleteAccount(api, { session, password, minIterations = MIN_ITERATIONS, kdfMemory = null }) {
  return withPasswordKeys(api, { username: session.username, password, minIterations, kdfMemory }, async (authKey) => {
    try {
      await api.del('/api/me', { auth: true, body: { auth_key: b64encode(authKey) } });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'invalid_credentials') throw new AuthError('invalid_credentials', 'Wrong password');
      throw err;
    }
  });
}
