// The session in IndexedDB: user name, key version, tokens and the NON-extractable private
// CryptoKeys (IndexedDB structured-clones CryptoKey objects; their key material never becomes
// readable to script). Never the password, never raw key bytes; nothing in localStorage or
// sessionStorage.
//
// Record layout (object store "session", key "current"):
//   { username, key_version, access_token, refresh_token, access_expires_at,
//     encPrivateKey: CryptoKey (RSA-OAEP, private, extractable false),
//     signPrivateKey: CryptoKey (ECDSA P-256, private, extractable false),
//     encPublicKey: CryptoKey, signPublicKey: CryptoKey (public halves),
//     fingerprint: "30 digits", signed_in_at: ms,
//     notify?: { enabled, previews } (the settings view's notification choices, chat/notify.js) }
//
// Messaging adds two stores, both keyed by "<me>\n<...>" so that accounts used in the same
// browser never see each other's records, and both holding public data only:
//   "pins": "<me>\n<peer>" -> the peer's pinned keys (see pins.js): versions, fingerprints and
//           public keys (base64url text), never private material;
//   "seen": "<me>\n<from>\n<message id>" -> seq, the replay guard of envelope.js (no plaintext).
// and one keyed by user name, also public data:
//   "kdf": "<username>" -> {alg, iterations, salt} of the last successful sign-in or registration
//          with that name here; prelogin answers are checked against it (auth.js, PROTOCOL.md §2.4).
// Files add one more, keyed "<me>\n<file_id>":
//   "uploads": an unfinished upload (uploads.js), so that a reload can resume it: upload URL,
//           peer, file_id, nonce, record_size, size, sha256, name, mime, and the file key as a
//           NON-extractable CryptoKey (structured clone; never raw key bytes). Deleted when the
//           upload finishes, is cancelled or is gone on the server.
// Issue #17 adds two more, keyed "<me>\n<...>", neither holding anything in clear:
//   "outbox": "<me>\n<message id>" -> { peer, envelope, order }: a send made while the relay was
//           down (messenger.js), kept as the SEALED envelope (ciphertext for the two readers),
//           so a reload sends it, once, with the same id. Deleted on the ack or a refusal.
//   "search": "<me>\n<from>\n<message id>" -> { iv, ct }: the local search index (search-index.js,
//           PROTOCOL.md §8.10), each record AES-GCM under the index key derived from the kek.
//   The session record also holds that index key as a NON-extractable CryptoKey (indexKey).
// forgetAccount(<me>) deletes every record of one account and leaves the others alone.

const DB_NAME = 'securechat';
const DB_VERSION = 5;
const STORE = 'session';
const KEY = 'current';
export const PINS = 'pins';
export const SEEN = 'seen';
export const KDF = 'kdf';
export const UPLOADS = 'uploads';
export const OUTBOX = 'outbox';
export const SEARCH = 'search';
const STORES = [STORE, PINS, SEEN, KDF, UPLOADS, OUTBOX, SEARCH];

let dbPromise = null;

function openDb() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        for (const name of STORES) if (!db.objectStoreNames.contains(name)) db.createObjectStore(name);
      };
      request.onsuccess = () => {
        const db = request.result;
        db.onversionchange = () => {
          db.close();
          dbPromise = null;
        };
        // the browser closed it (Clear-Site-Data, storage cleared): open it again next time
        db.onclose = () => {
          dbPromise = null;
        };
        resolve(db);
      };
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error('the session database is blocked by another tab'));
    }).catch((err) => {
      dbPromise = null;
      throw err;
    });
  }
  return dbPromise;
}

async function transact(mode, fn, storeName = STORE) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(storeName, mode);
    const store = Array.isArray(storeName) ? storeName.map((name) => tx.objectStore(name)) : tx.objectStore(storeName);
    let result;
    Promise.resolve(fn(store, (value) => (result = value))).catch(reject);
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('the session transaction was aborted'));
  });
}

function assertStorable(session) {
  for (const name of ['encPrivateKey', 'signPrivateKey']) {
    const key = session[name];
    if (!(key instanceof CryptoKey) || key.type !== 'private' || key.extractable) {
      throw new TypeError(`${name} must be a non-extractable private CryptoKey`);
    }
  }
  for (const [name, value] of Object.entries(session)) {
    if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
      throw new TypeError(`refusing to store raw bytes (${name}) in the session`);
    }
  }
}

/** The stored session, or null. */
export async function loadSession() {
  try {
    return await transact('readonly', (store, done) => {
      const req = store.get(KEY);
      req.onsuccess = () => done(req.result ?? null);
    });
  } catch {
    return null;
  }
}

export async function saveSession(session) {
  assertStorable(session);
  await transact('readwrite', (store) => {
    store.put(session, KEY);
  });
}

/** Replaces the tokens of the stored session in one transaction (after a refresh rotated them). */
export async function saveTokens(tokens) {
  await transact('readwrite', (store) => {
    const req = store.get(KEY);
    req.onsuccess = () => {
      if (!req.result) return;
      store.put({ ...req.result, ...tokens }, KEY);
    };
  });
}

/** Merges `fields` into the stored session in one transaction (the page's own choices, such as notifications). */
export async function updateSession(fields) {
  for (const name of Object.keys(fields)) {
    if (/key|token/i.test(name)) throw new TypeError(`updateSession does not change ${name}`);
  }
  await transact('readwrite', (store) => {
    const req = store.get(KEY);
    req.onsuccess = () => {
      if (!req.result) return;
      store.put({ ...req.result, ...fields }, KEY);
    };
  });
}

/** The stored tokens only, or null. */
export async function loadTokens() {
  const session = await loadSession();
  if (!session) return null;
  const { access_token, refresh_token, access_expires_at } = session;
  return { access_token, refresh_token, access_expires_at };
}

export async function clearSession() {
  await transact('readwrite', (store) => {
    store.delete(KEY);
  });
}

/** Serializes token refreshes across tabs (Web Locks API when present). */
export function withRefreshLock(fn) {
  if (globalThis.navigator?.locks?.request) return navigator.locks.request('securechat-token-refresh', fn);
  return fn();
}

/** One record of a messaging store (PINS or SEEN), or undefined. */
export async function getRecord(storeName, key) {
  return transact(
    'readonly',
    (store, done) => {
      const req = store.get(key);
      req.onsuccess = () => done(req.result);
    },
    storeName,
  );
}

/** Writes one record of a messaging store. Refuses raw bytes and private keys. */
export async function putRecord(storeName, key, value) {
  const text = JSON.stringify(value, (_k, v) => {
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) throw new TypeError('refusing to store raw bytes');
    if (typeof CryptoKey !== 'undefined' && v instanceof CryptoKey) throw new TypeError('refusing to store a key object here');
    return v;
  });
  await transact('readwrite', (store) => {
    store.put(JSON.parse(text), key);
  }, storeName);
}

/** A { get, put } view of one messaging store under a per-user prefix (for pins.js and envelope.js). */
export function recordStore(storeName, prefix) {
  return {
    get: (key) => getRecord(storeName, `${prefix}\n${key}`),
    put: (key, value) => putRecord(storeName, `${prefix}\n${key}`, value),
  };
}

/** The remembered KDF parameters by user name, as auth.js wants them ({ get, put }). */
export const kdfMemory = {
  get: (username) => getRecord(KDF, username),
  put: (username, kdf) => putRecord(KDF, username, { alg: kdf.alg, iterations: kdf.iterations, salt: kdf.salt }),
};

/**
 * "Forget this device": in one transaction, deletes the session if it is `username`'s, every
 * pins, seen, uploads, outbox and search record under "<username>\n", and the remembered KDF
 * parameters of `username`.
 * Records of other accounts stay.
 */
export async function forgetAccount(username) {
  // every key that starts with "<username>\n": "\n" is U+000A, so they sort below "<username>\u000b"
  const own = IDBKeyRange.bound(`${username}\n`, `${username}\u000b`, false, true);
  await transact(
    'readwrite',
    ([session, pins, seen, kdf, uploads, outbox, search]) => {
      const req = session.get(KEY);
      req.onsuccess = () => {
        if (req.result?.username === username) session.delete(KEY);
      };
      pins.delete(own);
      seen.delete(own);
      kdf.delete(username);
      uploads.delete(own);
      outbox.delete(own);
      search.delete(own);
    },
    [STORE, PINS, SEEN, KDF, UPLOADS, OUTBOX, SEARCH],
  );
}

/**
 * The unfinished uploads of `me` ({ put(key, record), delete(key), list() }, keys "<me>\n<file_id>"
 * as uploads.js makes them). A record may hold a non-extractable CryptoKey, never raw bytes.
 */
export function uploadStore(me) {
  const own = () => IDBKeyRange.bound(`${me}\n`, `${me}\u000b`, false, true);
  const check = (key) => {
    if (typeof key !== 'string' || !key.startsWith(`${me}\n`)) throw new TypeError('an upload key of another account');
  };
  return {
    async put(key, record) {
      check(key);
      for (const [name, value] of Object.entries(record)) {
        if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) throw new TypeError(`refusing to store raw bytes (${name})`);
        if (value instanceof CryptoKey && value.extractable) throw new TypeError(`refusing to store an extractable key (${name})`);
      }
      await transact('readwrite', (store) => {
        store.put(record, key);
      }, UPLOADS);
    },
    async delete(key) {
      check(key);
      await transact('readwrite', (store) => {
        store.delete(key);
      }, UPLOADS);
    },
    async list() {
      return transact('readonly', (store, done) => {
        const req = store.getAll(own());
        req.onsuccess = () => done(req.result ?? []);
      }, UPLOADS);
    },
  };
}

/**
 * A { put(key, value), delete(key), list() } view of one store under "<me>\n" (the outbox and
 * the search index). Values are structured-cloned as they are: the callers put only sealed
 * envelopes (outbox) and { iv, ct } text (search); raw bytes and key objects are refused.
 */
export function ownStore(storeName, me) {
  const own = () => IDBKeyRange.bound(`${me}\n`, `${me}\u000b`, false, true);
  const full = (key) => `${me}\n${key}`;
  return {
    async put(key, value) {
      JSON.stringify(value, (_k, v) => {
        if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) throw new TypeError('refusing to store raw bytes');
        if (typeof CryptoKey !== 'undefined' && v instanceof CryptoKey) throw new TypeError('refusing to store a key object here');
        return v;
      });
      await transact('readwrite', (store) => {
        store.put(value, full(key));
      }, storeName);
    },
    async delete(key) {
      await transact('readwrite', (store) => {
        store.delete(full(key));
      }, storeName);
    },
    async list() {
      return transact('readonly', (store, done) => {
        const req = store.getAll(own());
        req.onsuccess = () => done(req.result ?? []);
      }, storeName);
    },
    /** [key without the "<me>\n" prefix, value] pairs. */
    async entries() {
      return transact('readonly', (store, done) => {
        const out = [];
        const req = store.openCursor(own());
        req.onsuccess = () => {
          const cursor = req.result;
          if (!cursor) return done(out);
          out.push([String(cursor.key).slice(me.length + 1), cursor.value]);
          cursor.continue();
        };
      }, storeName);
    },
  };
}

/** Replaces the session record's search-index key (after a password change). */
export async function saveIndexKey(indexKey) {
  await transact('readwrite', (store) => {
    const req = store.get(KEY);
    req.onsuccess = () => {
      if (!req.result) return;
      store.put({ ...req.result, indexKey }, KEY);
    };
  });
}
