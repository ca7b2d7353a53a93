// File records and file manifests (DESIGN §4, §8 "File records"; the issue #14 contract): the
// pure crypto the upload and download code of the UI builds on. Owns: the record layout (count,
// ciphertext size, nonce and AAD of record i), sealing and opening single records and streams of
// records (RecordSealer / RecordOpener), the manifest envelope (sealed and opened like a message,
// with a checked plaintext of exactly eight keys), the tus Upload-Metadata header and
// Upload-Checksum, and an incremental SHA-256 (Web Crypto has no streaming digest, and a file is
// never held whole). Byte for byte as client/src/files.rs; testdata/file-vectors.json pins both.
//
//   record i (0-based): nonce = N with its last 4 bytes xor i (big-endian u32)
//                       aad   = "securechat/v1/file|" || file_id || "|" || i || "|" || (1 if last else 0)
//                       ct    = AES-256-GCM(K, nonce, plaintext record, aad)   (record + 16 bytes)
//   records n = max(1, ceil(size / record_size)); Upload-Length = size + 16 * n
//
// Runs unchanged in the browser and in Node >= 20. Imports no UI module.

import { decode as b64decode, encode as b64encode } from './b64.js';
import { concatBytes, randomBytes, utf8 } from './crypto.js';
import { EnvelopeError, isUsername, isUuidV4, open as openEnvelope, ordered, seal as sealEnvelope } from './envelope.js';

const subtle = globalThis.crypto.subtle;

export const DEFAULT_RECORD_SIZE = 65536;
export const MIN_RECORD_SIZE = 1024;
export const MAX_RECORD_SIZE = 1048576;
export const TAG_BYTES = 16;
export const FILE_KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const SHA256_BYTES = 32;
export const RECORD_AAD_PREFIX = 'securechat/v1/file|';
/** The manifest plaintext's keys, in the order they are written. */
export const MANIFEST_KEYS = ['file_id', 'name', 'mime', 'size', 'sha256', 'record_size', 'nonce', 'file_key'];
/** The Upload-Metadata keys, in the order they are written. */
export const TUS_METADATA_KEYS = ['recipient', 'file_id', 'record_size', 'manifest'];

/**
 * Why a file operation was refused. `code` is one of: record_auth (a record does not
 * authenticate where it stands: moved, dropped, appended, cut, spliced, altered, or the stream
 * is too short or too long), manifest (the manifest envelope or its plaintext is refused),
 * size (sizes that do not agree), sha256 (the plaintext is not the one the manifest names),
 * metadata (an Upload-Metadata header that is not well formed).
 */
export class FileError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'FileError';
    this.code = code;
  }
}

function checkRecordSize(recordSize) {
  if (!Number.isSafeInteger(recordSize) || recordSize < MIN_RECORD_SIZE || recordSize > MAX_RECORD_SIZE) {
    throw new FileError('size', `record_size must be an integer in ${MIN_RECORD_SIZE}..=${MAX_RECORD_SIZE}`);
  }
}

function checkSize(size) {
  if (!Number.isSafeInteger(size) || size < 0) throw new FileError('size', 'size must be a non-negative integer');
}

/** The number of records of a file of `size` bytes: max(1, ceil(size / recordSize)). */
export function recordCount(size, recordSize) {
  checkSize(size);
  checkRecordSize(recordSize);
  return Math.max(1, Math.ceil(size / recordSize));
}

/** The ciphertext size (tus Upload-Length): size + 16 * recordCount. */
export function cipherSize(size, recordSize) {
  return size + TAG_BYTES * recordCount(size, recordSize);
}

/** The plaintext length of record i of a file (the last holds the rest; an empty file is one empty record). */
export function recordPlainLength(size, recordSize, i) {
  const n = recordCount(size, recordSize);
  if (!Number.isSafeInteger(i) || i < 0 || i >= n) throw new FileError('size', `record ${i} is not in 0..${n}`);
  return i < n - 1 ? recordSize : size - (n - 1) * recordSize;
}

/** The plaintext size of a file whose ciphertext is `cipherBytes` long in records of `recordSize`; throws FileError('size') when no size fits. */
export function plainSize(cipherBytes, recordSize) {
  checkRecordSize(recordSize);
  if (!Number.isSafeInteger(cipherBytes) || cipherBytes < TAG_BYTES) throw new FileError('size', 'a ciphertext holds at least one tag');
  const n = Math.max(1, Math.ceil(cipherBytes / (recordSize + TAG_BYTES)));
  const size = cipherBytes - TAG_BYTES * n;
  if (size < 0 || cipherSize(size, recordSize) !== cipherBytes) throw new FileError('size', `no file has ${cipherBytes} ciphertext bytes`);
  return size;
}

function checkIndex(i) {
  if (!Number.isSafeInteger(i) || i < 0 || i > 0xffffffff) throw new RangeError('record index must be an integer in 0..2^32');
}

/** "securechat/v1/file|" || file_id || "|" || i || "|" || (1 if last else 0), as UTF-8 bytes. */
export function recordAad(fileId, i, isLast) {
  if (!isUuidV4(fileId)) throw new TypeError('file_id must be a lower-case UUID v4');
  checkIndex(i);
  return utf8(`${RECORD_AAD_PREFIX}${fileId}|${String(i)}|${isLast ? 1 : 0}`);
}

/** N with its last 4 bytes xor i (big-endian u32); a new Uint8Array(12). */
export function recordNonce(nonce, i) {
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_BYTES) throw new TypeError('the nonce must be 12 bytes');
  checkIndex(i);
  const out = new Uint8Array(nonce);
  out[8] ^= (i >>> 24) & 0xff;
  out[9] ^= (i >>> 16) & 0xff;
  out[10] ^= (i >>> 8) & 0xff;
  out[11] ^= i & 0xff;
  return out;
}

/** The AES-256-GCM key of a file from its 32 raw bytes (not extractable). */
export function importFileKey(raw) {
  const bytes = typeof raw === 'string' ? b64decode(raw) : raw;
  if (!(bytes instanceof Uint8Array) || bytes.length !== FILE_KEY_BYTES) throw new TypeError('a file key is 32 bytes');
  return subtle.importKey('raw', bytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

/** A fresh file key K and base nonce N: {raw: Uint8Array(32), key: CryptoKey, nonce: Uint8Array(12)}. */
export async function newFileKey() {
  const raw = randomBytes(FILE_KEY_BYTES);
  return { raw, key: await importFileKey(raw), nonce: randomBytes(NONCE_BYTES) };
}

async function cryptoKey(key) {
  return key instanceof CryptoKey ? key : importFileKey(key);
}

/** Seals record i: AES-256-GCM(K, recordNonce(N, i), plain, recordAad(fileId, i, isLast)); plain + 16 bytes. */
export async function sealRecord(key, nonce, fileId, i, isLast, plain) {
  const params = { name: 'AES-GCM', iv: recordNonce(nonce, i), additionalData: recordAad(fileId, i, isLast), tagLength: 128 };
  return new Uint8Array(await subtle.encrypt(params, await cryptoKey(key), plain));
}

/** Opens record i; throws FileError('record_auth') when it does not authenticate at that place. */
export async function openRecord(key, nonce, fileId, i, isLast, cipher) {
  const params = { name: 'AES-GCM', iv: recordNonce(nonce, i), additionalData: recordAad(fileId, i, isLast), tagLength: 128 };
  const k = await cryptoKey(key);
  if (!(cipher instanceof Uint8Array) || cipher.length < TAG_BYTES) throw new FileError('record_auth', `record ${i} is shorter than a tag`);
  try {
    return new Uint8Array(await subtle.decrypt(params, k, cipher));
  } catch {
    throw new FileError('record_auth', `record ${i} does not authenticate`);
  }
}

function checkStreamParams({ key, nonce, fileId, size, recordSize }) {
  if (!key) throw new TypeError('a file key is needed');
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_BYTES) throw new TypeError('the nonce must be 12 bytes');
  if (!isUuidV4(fileId)) throw new TypeError('file_id must be a lower-case UUID v4');
  return recordCount(size, recordSize);
}

/**
 * Seals a file's records in order. Give it each plaintext record (exactly recordSize bytes,
 * the last one the rest) and get its ciphertext; the last flag is set on record n-1.
 */
export class RecordSealer {
  constructor({ key, nonce, fileId, size, recordSize = DEFAULT_RECORD_SIZE }) {
    this.count = checkStreamParams({ key, nonce, fileId, size, recordSize });
    Object.assign(this, { key, nonce, fileId, size, recordSize });
    this.next = 0;
  }

  /** The index of the next record to seal (= the records sealed so far). */
  get index() {
    return this.next;
  }

  /** True when every record was sealed. */
  get done() {
    return this.next === this.count;
  }

  /** The plaintext length the next record must have. */
  get nextLength() {
    return this.done ? 0 : recordPlainLength(this.size, this.recordSize, this.next);
  }

  async sealNext(plainRecord) {
    if (this.done) throw new FileError('size', `all ${this.count} records are sealed`);
    const want = this.nextLength;
    if (!(plainRecord instanceof Uint8Array) || plainRecord.length !== want) {
      throw new FileError('size', `record ${this.next} must hold ${want} bytes`);
    }
    const i = this.next;
    const sealed = await sealRecord(this.key, this.nonce, this.fileId, i, i === this.count - 1, plainRecord);
    this.next = i + 1;
    return sealed;
  }
}

/**
 * Opens a file's ciphertext as it arrives, in chunks of any size: push(bytes) returns the
 * plaintext records that completed and verified (in order); a record that does not
 * authenticate, or bytes beyond the last record, throw FileError('record_auth') and the
 * opener stays failed. finish() throws FileError('record_auth') unless the last record
 * arrived (a cut stream). `size` is the plaintext size from the manifest. Pushed arrays are
 * kept (not copied) until their bytes are used: do not refill them (fetch's stream chunks are
 * fresh arrays). A cut download resumes with a Range request from receivedCipherBytes.
 */
export class RecordOpener {
  constructor({ key, nonce, fileId, size, recordSize = DEFAULT_RECORD_SIZE }) {
    this.count = checkStreamParams({ key, nonce, fileId, size, recordSize });
    Object.assign(this, { key, nonce, fileId, size, recordSize });
    this.next = 0;
    this.verifiedBytes = 0;
    this.pending = [];
    this.pendingBytes = 0;
    this.failed = null;
  }

  /** The index of the next record expected (= the records verified so far). */
  get index() {
    return this.next;
  }

  /** True when the last record verified. */
  get done() {
    return this.next === this.count;
  }

  /** Ciphertext bytes of the records verified so far (a download may resume from here). */
  get verifiedCipherBytes() {
    return this.verifiedBytes;
  }

  /** Ciphertext bytes pushed so far (verified records plus the start of the next one): where a Range request resumes. */
  get receivedCipherBytes() {
    return this.verifiedBytes + this.pendingBytes;
  }

  fail(error) {
    this.failed = error;
    this.pending = [];
    this.pendingBytes = 0;
    throw error;
  }

  take(n) {
    const parts = [];
    let need = n;
    while (need > 0) {
      const head = this.pending[0];
      if (head.length <= need) {
        parts.push(head);
        this.pending.shift();
        need -= head.length;
      } else {
        parts.push(head.subarray(0, need));
        this.pending[0] = head.subarray(need);
        need = 0;
      }
    }
    this.pendingBytes -= n;
    return parts.length === 1 ? parts[0] : concatBytes(...parts);
  }

  async push(cipherBytes) {
    if (this.failed) throw this.failed;
    if (!(cipherBytes instanceof Uint8Array)) throw new TypeError('push expects a Uint8Array');
    if (cipherBytes.length) {
      this.pending.push(cipherBytes);
      this.pendingBytes += cipherBytes.length;
    }
    const out = [];
    while (!this.done) {
      const want = recordPlainLength(this.size, this.recordSize, this.next) + TAG_BYTES;
      if (this.pendingBytes < want) break;
      const i = this.next;
      try {
        out.push(await openRecord(this.key, this.nonce, this.fileId, i, i === this.count - 1, this.take(want)));
      } catch (err) {
        this.fail(err);
      }
      this.next = i + 1;
      this.verifiedBytes += want;
    }
    if (this.done && this.pendingBytes > 0) {
      this.fail(new FileError('record_auth', `bytes after the last record (${this.pendingBytes})`));
    }
    return out;
  }

  finish() {
    if (this.failed) throw this.failed;
    if (!this.done) {
      throw new FileError('record_auth', `the stream ended after ${this.next} of ${this.count} records (${this.pendingBytes} bytes of a record)`);
    }
  }
}

// ---------------------------------------------------------------- manifests

function bad(message) {
  return new FileError('manifest', message);
}

function checkB64(value, length, field) {
  let bytes;
  try {
    bytes = b64decode(value);
  } catch {
    throw bad(`${field} is not base64url`);
  }
  if (bytes.length !== length) throw bad(`${field} must be ${length} bytes`);
}

/**
 * Checks a manifest plaintext: exactly the eight keys with the right types (file_id a UUID v4,
 * name and mime strings, size a non-negative integer, sha256 b64(32), record_size in
 * 1024..=1048576, nonce b64(12), file_key b64(32)). Throws FileError('manifest'). Returns it.
 */
export function checkManifest(manifest) {
  if (!manifest || typeof manifest !== 'object' || Array.isArray(manifest)) throw bad('the manifest is not an object');
  const keys = Object.keys(manifest);
  const extra = keys.filter((k) => !MANIFEST_KEYS.includes(k));
  if (extra.length) throw bad(`unknown manifest key ${extra[0]}`);
  const missing = MANIFEST_KEYS.filter((k) => !Object.hasOwn(manifest, k));
  if (missing.length) throw bad(`missing manifest key ${missing[0]}`);
  if (!isUuidV4(manifest.file_id)) throw bad('file_id is not a lower-case UUID v4');
  if (typeof manifest.name !== 'string') throw bad('name is not a string');
  if (typeof manifest.mime !== 'string') throw bad('mime is not a string');
  if (!Number.isSafeInteger(manifest.size) || manifest.size < 0) throw bad('size is not a non-negative integer');
  if (!Number.isSafeInteger(manifest.record_size) || manifest.record_size < MIN_RECORD_SIZE || manifest.record_size > MAX_RECORD_SIZE) {
    throw bad('record_size is out of range');
  }
  for (const f of ['sha256', 'nonce', 'file_key']) if (typeof manifest[f] !== 'string') throw bad(`${f} is not a string`);
  checkB64(manifest.sha256, SHA256_BYTES, 'sha256');
  checkB64(manifest.nonce, NONCE_BYTES, 'nonce');
  checkB64(manifest.file_key, FILE_KEY_BYTES, 'file_key');
  return manifest;
}

/** The manifest with its keys in the documented order (what is sealed). */
export function orderedManifest(manifest) {
  const out = {};
  for (const k of MANIFEST_KEYS) out[k] = manifest[k];
  return out;
}

/**
 * Builds a manifest plaintext: {file_id, name, mime, size, sha256: b64, record_size, nonce: b64,
 * file_key: b64} from bytes. `fileKey` is {raw, nonce} as newFileKey returns.
 */
export function makeManifest({ fileId, name, mime, size, sha256, recordSize = DEFAULT_RECORD_SIZE, fileKey }) {
  return checkManifest({
    file_id: fileId,
    name,
    mime,
    size,
    sha256: b64encode(sha256),
    record_size: recordSize,
    nonce: b64encode(fileKey.nonce),
    file_key: b64encode(fileKey.raw),
  });
}

/**
 * Seals a manifest exactly like a message (envelope.js seal: AAD "securechat/v1/msg|...",
 * signature, keys for from and to, padded plaintext). `readers` as seal wants:
 * {name: RSA-OAEP public key (CryptoKey or SPKI)}. `id`, `sentAt`, `key`, `iv` only for test
 * vectors (a fresh uuid v4 id otherwise, never the file_id). Returns the envelope.
 */
export async function sealManifest({ from, to, signKey, readers, manifest, ...fixed }) {
  const plaintext = orderedManifest(checkManifest(manifest));
  return sealEnvelope({ from, to, signKey, readers, plaintext, ...fixed });
}

/**
 * Opens a manifest envelope as `me` and checks it: the envelope verifies with the sender's
 * pinned signing key(s) and decrypts (envelope.js open); the plaintext has exactly the eight
 * keys with the right types; its file_id equals `fileId` (the listed file_id); its size and
 * record_size give exactly `cipherSizeBytes` (the listed ciphertext size). Returns the
 * manifest plaintext. Throws FileError: 'manifest' (the envelope error is the `cause`), or
 * 'size' when the sizes disagree.
 */
export async function openManifest(envelope, { me, encPrivateKey, senderSignKeys, fileId, cipherSizeBytes }) {
  let opened;
  try {
    opened = await openEnvelope(envelope, { me, encPrivateKey, senderSignKeys });
  } catch (err) {
    if (err instanceof EnvelopeError) throw new FileError('manifest', `the manifest envelope is refused (${err.code})`, { cause: err });
    throw err;
  }
  const manifest = checkManifest(opened.plaintext);
  if (manifest.file_id !== fileId) throw bad('the manifest is for another file_id');
  if (!Number.isSafeInteger(cipherSizeBytes) || cipherSize(manifest.size, manifest.record_size) !== cipherSizeBytes) {
    throw new FileError('size', 'the manifest size does not match the ciphertext size');
  }
  return manifest;
}

/** The stream parameters of an opened manifest: {key: CryptoKey, nonce, fileId, size, recordSize} (for RecordOpener). */
export async function manifestParams(manifest) {
  checkManifest(manifest);
  return {
    key: await importFileKey(b64decode(manifest.file_key)),
    nonce: b64decode(manifest.nonce),
    fileId: manifest.file_id,
    size: manifest.size,
    recordSize: manifest.record_size,
  };
}

/** Throws FileError('sha256') unless `digest` (32 bytes) is the manifest's sha256. */
export function checkSha256(manifest, digest) {
  if (!(digest instanceof Uint8Array) || b64encode(digest) !== manifest.sha256) {
    throw new FileError('sha256', 'the file is not the one the manifest names (SHA-256 differs)');
  }
}

// ---------------------------------------------------------------- tus headers

function stdBase64(bytes) {
  const url = b64encode(bytes).replace(/-/g, '+').replace(/_/g, '/');
  return url + '='.repeat((4 - (url.length % 4)) % 4);
}

const STD_B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function fromStdBase64(text) {
  if (!STD_B64_RE.test(text)) throw new FileError('metadata', 'a metadata value is not standard base64');
  const url = text.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  try {
    return b64decode(url);
  } catch {
    throw new FileError('metadata', 'a metadata value is not canonical base64');
  }
}

/**
 * The tus Upload-Metadata value: "recipient <b64>,file_id <b64>,record_size <b64>,manifest <b64>"
 * in that order, values standard base64 (with padding) of UTF-8; record_size in decimal; the
 * manifest as compact JSON, fields in envelope order.
 */
export function tusMetadata({ recipient, fileId, recordSize, manifest }) {
  if (!isUsername(recipient)) throw new FileError('metadata', 'recipient is not a user name');
  if (!isUuidV4(fileId)) throw new FileError('metadata', 'file_id is not a lower-case UUID v4');
  checkRecordSize(recordSize);
  if (!manifest || typeof manifest !== 'object') throw new FileError('metadata', 'the manifest envelope is missing');
  const values = { recipient, file_id: fileId, record_size: String(recordSize), manifest: JSON.stringify(ordered(manifest)) };
  return TUS_METADATA_KEYS.map((k) => `${k} ${stdBase64(utf8(values[k]))}`).join(',');
}

/**
 * Parses an Upload-Metadata value into {key: decoded UTF-8 string} (a key without a value gets
 * ''). Throws FileError('metadata') on an empty or repeated key, a key with spaces, a value that
 * is not standard base64 or not UTF-8.
 */
export function parseTusMetadata(header) {
  if (typeof header !== 'string') throw new FileError('metadata', 'Upload-Metadata is not a string');
  const out = {};
  if (header.trim() === '') return out;
  const decoder = new TextDecoder('utf-8', { fatal: true });
  for (const pair of header.split(',')) {
    const parts = pair.trim().split(' ');
    if (parts.length > 2 || !parts[0]) throw new FileError('metadata', 'a metadata pair is not "key value"');
    const [key, value = ''] = parts;
    if (Object.hasOwn(out, key)) throw new FileError('metadata', `metadata key ${key} is repeated`);
    try {
      out[key] = decoder.decode(fromStdBase64(value));
    } catch (err) {
      if (err instanceof FileError) throw err;
      throw new FileError('metadata', `metadata value of ${key} is not UTF-8`);
    }
  }
  return out;
}

/** The Upload-Checksum header of a PATCH body: "sha256 <standard base64 of SHA-256(body)>". */
export async function uploadChecksum(body) {
  return `sha256 ${stdBase64(new Uint8Array(await subtle.digest('SHA-256', body)))}`;
}

// The incremental SHA-256 lives in sha256.js (one implementation for uploads, downloads and
// files); re-exported here so a reader of the file format finds it beside checkSha256.
export { Sha256 } from './sha256.js';
