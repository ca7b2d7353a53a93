// Registration and sign-in, end to end (docs/PROTOCOL.md §2–§4 and §6). Pure logic over an Api instance:
// no DOM and no IndexedDB, so the same code runs in the unit tests under Node.

import { ApiError, tokensFrom } from './api.js';
import { decode as b64decode, encode as b64encode } from './b64.js';
import {
  DEFAULT_ITERATIONS,
  KDF_ALG,
  MIN_ITERATIONS,
  SALT_BYTES,
  KeyMismatchError,
  UnwrapError,
  checkKdfParams,
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
export async function register(api, { username, password, iterations = DEFAULT_ITERATIONS, onProgress = noop }) {
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
    try {
      await api.post('/api/auth/register', {
        username,
        auth_key: b64encode(authKey),
        kdf: { alg: KDF_ALG, iterations, salt: b64encode(salt) },
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
    onProgress('login');
    try {
      return await completeSignIn(api, { username, authKey, kek });
    } catch (err) {
      const reason = err instanceof AuthError || err instanceof ApiError ? err.message : 'unexpected error';
      throw new AuthError('login_after_register', `Your account was created, but signing in failed (${reason}). Please sign in.`);
    }
  } finally {
    authKey.fill(0);
    kek.fill(0);
  }
}

/** prelogin -> derive -> login -> unwrap -> verify against the directory. Returns the session. */
export async function signIn(api, { username, password, minIterations = MIN_ITERATIONS, onProgress = noop }) {
  onProgress('prelogin');
  const pre = await api.post('/api/auth/prelogin', { username });
  let salt;
  try {
    salt = checkKdfParams(pre?.kdf, { minIterations });
  } catch (err) {
    throw new AuthError('weak_kdf', `The server sent unacceptable password-hashing parameters (${err.message}); not signing in.`);
  }
  onProgress('kdf');
  const { authKey, kek } = await deriveKeys(password, salt, pre.kdf.iterations);
  try {
    onProgress('login');
    return await completeSignIn(api, { username, authKey, kek });
  } finally {
    authKey.fill(0);
    kek.fill(0);
  }
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
      if (err instanceof UnwrapError) throw new AuthError('invalid_credentials', WRONG_CREDENTIALS);
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
      signed_in_at: Date.now(),
    };
  } catch (err) {
    await api.post('/api/auth/logout', { refresh_token: tokens.refresh_token }, { auth: true }).catch(() => {});
    api.setTokens(null);
    throw err;
  }
}

/**
 * A directory entry, checked: the self-signature must verify and the fingerprint is computed
 * here (the server's "fingerprint" field is only compared, never trusted).
 */
export async function fetchVerifiedKeys(api, username) {
  const dir = await api.get(`/api/users/${encodeURIComponent(username)}/keys`, { auth: true });
  const encSpki = b64decode(dir.enc_public_key);
  const signSpki = b64decode(dir.sign_public_key);
  const selfSigValid =
    dir.username === username && (await verifySelfSig(signSpki, dir.self_sig, username, dir.key_version, encSpki, signSpki));
  const fp = await fingerprint(username, encSpki, signSpki);
  return {
    username,
    key_version: dir.key_version,
    fingerprint: fp,
    selfSigValid,
    serverFingerprintMatches: dir.fingerprint === fp,
  };
}

/**
 * Key rotation (docs/PROTOCOL.md §4.2): fresh keys, wrapped under the same kek (derived again
 * from the password) for version current+1, self-signed with the new signing key and chained
 * with prev_sig by the current one. The session's keys are the old ones afterwards: sign in
 * again to use the new ones. Returns the server's answer {username, key_version}.
 */
export async function rotateKeys(api, { session, password }) {
  const username = session.username;
  const pre = await api.post('/api/auth/prelogin', { username });
  const salt = checkKdfParams(pre?.kdf);
  const { authKey, kek } = await deriveKeys(password, salt, pre.kdf.iterations);
  authKey.fill(0);
  try {
    const version = session.key_version + 1;
    const identity = await generateIdentity();
    const keyBundle = await wrapBundle(kek, username, version, identity.encPkcs8, identity.signPkcs8);
    identity.encPkcs8.fill(0);
    identity.signPkcs8.fill(0);
    const self = await selfSig(identity.signPrivateKey, username, version, identity.encSpki, identity.signSpki);
    const prev = await prevSig(session.signPrivateKey, username, version, identity.encSpki, identity.signSpki);
    return await api.post(
      '/api/keys/rotate',
      {
        key_version: version,
        enc_public_key: b64encode(identity.encSpki),
        sign_public_key: b64encode(identity.signSpki),
        key_bundle: keyBundle,
        self_sig: b64encode(self),
        prev_sig: b64encode(prev),
      },
      { auth: true },
    );
  } finally {
    kek.fill(0);
  }
}

/** Describes an error for the page: AuthError and ApiError messages are shown as they are. */
export function authErrorMessage(err) {
  if (err instanceof AuthError) return err.message;
  if (err instanceof ApiError) {
    if (err.code === 'network') return 'Could not reach the server. Check your connection and try again.';
    if (err.code === 'username_taken') return 'That username is taken';
    if (err.code === 'invalid_credentials') return WRONG_CREDENTIALS;
    return err.message;
  }
  if (err instanceof UnwrapError) return WRONG_CREDENTIALS;
  return 'Something went wrong. Please try again.';
}
