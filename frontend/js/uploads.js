// Sending a file: the browser side of tus 1.0.0 at /api/uploads (DESIGN §4, §8; the contract of
// issue #14). One Upload per file, DOM-free (an EventTarget the view renders from):
//   1. GET /api/files/limits: refuse what the server would refuse (not allowed, too big, over
//      quota, too many in flight) before reading a byte;
//   2. SHA-256 of the plaintext, read with File.slice (bounded memory, never the whole file);
//   3. a fresh file key and nonce (files.js), the manifest sealed for the peer with the pinned
//      keys (the `sealManifest` callback, Messenger.sealFileManifest);
//   4. POST (Upload-Length, Upload-Metadata), remembered in IndexedDB (`store`) so that a reload
//      can resume it: upload URL, the file key as a non-extractable CryptoKey, nonce, file_id,
//      record_size, size, sha256, name, mime, peer;
//   5. PATCHes of whole records (~4 MiB, never more than max_patch_bytes) sealed just before
//      they are sent, each with `Upload-Checksum: sha256`; after a failed PATCH: HEAD, continue
//      from the server's offset (always a record boundary), with backoff.
// Pause aborts the PATCH in flight; cancel aborts and DELETEs. After a reload, an Upload made
// from the stored record waits for the user to pick the file again; it must have the same
// size and SHA-256 before anything is sent.
//
// Events (CustomEvent, value in `detail`): 'change' (this) whenever state or progress moved.

import { Api, ApiError } from './api.js';
import { decode as b64decode, encode as b64encode } from './b64.js';
import { codeText } from './errors.js';
import { DEFAULT_RECORD_SIZE, TAG_BYTES, cipherSize, importFileKey, newFileKey, recordCount, sealRecord, tusMetadata } from './files.js';
import { Sha256 } from './sha256.js';
import { backoffDelay } from './ws.js';

export const TUS_VERSION = '1.0.0';
/** Ciphertext bytes aimed at per PATCH (whole records; max_patch_bytes caps it). */
export const PATCH_TARGET_BYTES = 4 * 1024 * 1024;
/** Plaintext bytes read per slice while hashing. */
export const HASH_SLICE_BYTES = 4 * 1024 * 1024;
/** The speed shown is averaged over this window. */
const SPEED_WINDOW_MS = 5000;

/** Why an upload was refused or stopped; `code` is a server code or one of the client's own. */
export class UploadError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'UploadError';
    this.code = code;
  }
}

const OWN_TEXTS = {
  file_changed: 'That is not the same file (its size or content differs). Pick the file you were sending.',
  bad_offset: 'The server reports an upload position this page cannot continue from.',
  patch_limit: 'The server’s upload part limit is smaller than one encrypted record.',
  manifest: 'Could not seal the file’s description for the recipient.',
};

function fail(code, message) {
  return new UploadError(code, message ?? OWN_TEXTS[code] ?? codeText(code));
}

// ---------------------------------------------------------------- arithmetic (unit-tested)

/** Records per PATCH: as many whole ciphertext records as fit in min(target, max_patch_bytes), at least 1. */
export function recordsPerPatch(recordSize, maxPatchBytes, target = PATCH_TARGET_BYTES) {
  const record = recordSize + TAG_BYTES;
  const cap = Number.isSafeInteger(maxPatchBytes) && maxPatchBytes > 0 ? Math.min(target, maxPatchBytes) : target;
  if (cap < record && Number.isSafeInteger(maxPatchBytes) && maxPatchBytes < record) throw fail('patch_limit');
  return Math.max(1, Math.floor(cap / record));
}

/**
 * Where to continue from a ciphertext offset the server reported: {index, plainOffset, done}.
 * Offsets are record boundaries k * (record_size + 16), or the whole length. Anything else
 * throws UploadError('bad_offset').
 */
export function resumePoint(offset, size, recordSize) {
  const length = cipherSize(size, recordSize);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > length) throw fail('bad_offset');
  const n = recordCount(size, recordSize);
  if (offset === length) return { index: n, plainOffset: size, done: true };
  const record = recordSize + TAG_BYTES;
  if (offset % record !== 0) throw fail('bad_offset');
  const index = offset / record;
  return { index, plainOffset: index * recordSize, done: false };
}

/** The plaintext ranges [start, end) of records first..first+count-1 (clamped to the file), with their indexes. */
export function batchRecords(first, count, size, recordSize) {
  const n = recordCount(size, recordSize);
  const out = [];
  for (let i = first; i < Math.min(n, first + count); i++) {
    out.push({ index: i, start: i * recordSize, end: Math.min(size, (i + 1) * recordSize), last: i === n - 1 });
  }
  return out;
}

/** The refusal a limits answer implies for a file of `size` bytes, or null. */
export function limitsRefusal(limits, size, recordSize = limits?.record_size ?? DEFAULT_RECORD_SIZE) {
  if (!limits || typeof limits !== 'object') return null;
  if (limits.may_send === false) return fail('files_not_allowed');
  const length = cipherSize(size, recordSize);
  if (Number.isSafeInteger(limits.max_file_bytes) && length > limits.max_file_bytes) {
    return fail('file_too_large', `That file is too large to send: this server accepts files up to ${formatBytes(limits.max_file_bytes)} (encrypted), it would be ${formatBytes(length)}.`);
  }
  if (Number.isSafeInteger(limits.quota_bytes) && limits.quota_bytes > 0 && Number.isSafeInteger(limits.used_bytes) && limits.used_bytes + length > limits.quota_bytes) {
    return fail('quota_exceeded', `Not enough storage left on the server: ${formatBytes(Math.max(0, limits.quota_bytes - limits.used_bytes))} free, the file needs ${formatBytes(length)}.`);
  }
  if (Number.isSafeInteger(limits.max_uploads_in_flight) && Number.isSafeInteger(limits.uploads_in_flight) && limits.uploads_in_flight >= limits.max_uploads_in_flight) {
    return fail('too_many_uploads');
  }
  return null;
}

/** 1234567 -> "1.2 MB" (decimal units, as people read sizes). */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = -1;
  do {
    v /= 1000;
    u++;
  } while (v >= 1000 && u < units.length - 1);
  return `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

/** Speed over a sliding window of {t, bytes} samples: {speed (bytes/s), eta (s) or null}. */
export function rate(samples, total, now) {
  const recent = samples.filter((s) => now - s.t <= SPEED_WINDOW_MS);
  if (recent.length < 2) return { speed: 0, eta: null };
  const first = recent[0];
  const last = recent[recent.length - 1];
  const dt = (last.t - first.t) / 1000;
  if (dt <= 0) return { speed: 0, eta: null };
  const speed = (last.bytes - first.bytes) / dt;
  return { speed, eta: speed > 0 ? (total - last.bytes) / speed : null };
}

/** SHA-256 of a Blob read slice by slice; `onProgress(bytesRead)`; `signal` stops it. */
export async function hashBlob(blob, { sliceBytes = HASH_SLICE_BYTES, onProgress, signal } = {}) {
  const h = new Sha256();
  for (let at = 0; at < blob.size; at += sliceBytes) {
    if (signal?.aborted) throw new DOMException('stopped', 'AbortError');
    const bytes = new Uint8Array(await blob.slice(at, Math.min(blob.size, at + sliceBytes)).arrayBuffer());
    h.update(bytes);
    onProgress?.(Math.min(blob.size, at + sliceBytes));
  }
  return h.digest();
}

function stdBase64(bytes) {
  const url = b64encode(bytes).replace(/-/g, '+').replace(/_/g, '/');
  return url + '='.repeat((4 - (url.length % 4)) % 4);
}

function concat(parts, total) {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function headerInt(response, name) {
  const v = response.headers.get(name);
  return v !== null && /^\d+$/.test(v) ? Number(v) : null;
}

/** Errors after which the same PATCH is tried again (after a HEAD): the connection, the server's trouble, a damaged part. */
function transient(err) {
  if (err instanceof ApiError) return err.code === 'network' || err.status >= 500 || err.status === 460 || err.code === 'offset_mismatch' || err.status === 429 || err.status === 408;
  return false;
}

// ---------------------------------------------------------------- one upload

let localIds = 0;

export class Upload extends EventTarget {
  /**
   * @param {object} o
   * @param {import('./api.js').Api} o.api
   * @param {string} o.me  @param {string} o.peer
   * @param {File|Blob} [o.file]  the file (absent for one restored after a reload until attach())
   * @param {Function} o.sealManifest  async (peer, manifestPlaintext) -> envelope
   * @param {object} [o.store]  { put(key, record), delete(key) } (IndexedDB, store.js uploadStore)
   * @param {object} [o.record]  a stored record (restore after a reload)
   * @param {object} [o.timers] [o.now] [o.random]
   */
  constructor(o) {
    super();
    this.api = o.api;
    this.me = o.me;
    this.peer = o.peer;
    this.file = o.file ?? null;
    this.sealManifestFor = o.sealManifest;
    this.store = o.store ?? null;
    this.timers = o.timers ?? { setTimeout: (...a) => globalThis.setTimeout(...a), clearTimeout: (t) => globalThis.clearTimeout(t) };
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    this.target = o.patchTargetBytes ?? PATCH_TARGET_BYTES;
    this.localId = `u${++localIds}`;
    // state: checking | hashing | sending | paused | retrying | needs_file | verifying | done | failed | cancelled
    this.state = 'checking';
    this.error = null;
    this.offset = 0; // ciphertext bytes the server acknowledged
    this.hashed = 0;
    this.samples = [];
    this.controller = null;
    this.attempt = 0;
    this.retryAt = 0;
    this.wake = null;
    this.rec = o.record ?? null;
    this.name = this.rec?.name ?? this.file?.name ?? 'file';
    this.size = this.rec?.size ?? this.file?.size ?? 0;
    this.mime = this.rec?.mime ?? (this.file?.type || 'application/octet-stream');
    if (this.rec) {
      this.state = this.file ? 'checking' : 'needs_file';
      this.headFirst = true; // the server knows where it stands
    }
  }

  #emit() {
    this.dispatchEvent(new CustomEvent('change', { detail: this }));
  }

  set(state, error = null) {
    this.state = state;
    if (error) this.error = error;
    this.#emit();
  }

  get length() {
    return this.rec ? this.rec.cipher_size : cipherSize(this.size, DEFAULT_RECORD_SIZE);
  }

  get storeKey() {
    return this.rec ? `${this.me}\n${this.rec.file_id}` : null;
  }

  /** {done, total, fraction, speed, eta} of the phase under way. */
  progress() {
    if (this.state === 'hashing') {
      return { phase: 'hashing', done: this.hashed, total: this.size, fraction: this.size ? this.hashed / this.size : 1, speed: 0, eta: null };
    }
    const total = this.length;
    const { speed, eta } = rate(this.samples, total, this.now());
    return { phase: 'sending', done: this.offset, total, fraction: total ? this.offset / total : 1, speed, eta };
  }

  sample() {
    const t = this.now();
    this.samples.push({ t, bytes: this.offset });
    while (this.samples.length > 2 && t - this.samples[0].t > SPEED_WINDOW_MS) this.samples.shift();
  }

  get active() {
    return ['checking', 'hashing', 'sending', 'retrying', 'verifying'].includes(this.state);
  }

  get finished() {
    return ['done', 'failed', 'cancelled'].includes(this.state);
  }

  // ---------------------------------------------------------------- requests

  tusHeaders(extra = {}) {
    return { 'Tus-Resumable': TUS_VERSION, ...extra };
  }

  async request(method, path, { headers, body } = {}) {
    this.controller = new AbortController();
    try {
      return await this.api.raw(method, path, { headers: this.tusHeaders(headers), body, signal: this.controller.signal });
    } finally {
      this.controller = null;
    }
  }

  async refuse(response) {
    throw await Api.errorOf(response);
  }

  // ---------------------------------------------------------------- the steps

  /** Starts a new upload of `file` to `peer`. Resolves when it is done, failed, paused or cancelled. */
  async start() {
    try {
      this.set('checking');
      const limits = await this.api.get('/api/files/limits', { auth: true });
      const recordSize = Number.isSafeInteger(limits?.record_size) ? limits.record_size : DEFAULT_RECORD_SIZE;
      const refusal = limitsRefusal(limits, this.size, recordSize);
      if (refusal) throw refusal;
      this.perPatch = recordsPerPatch(recordSize, limits?.max_patch_bytes, this.target);
      if (this.state === 'cancelled') return;
      this.set('hashing');
      const digest = await this.hash();
      if (this.state === 'cancelled') return;
      const fileKey = await newFileKey();
      const fileId = globalThis.crypto.randomUUID();
      const manifest = {
        file_id: fileId,
        name: this.name,
        mime: this.mime,
        size: this.size,
        sha256: b64encode(digest),
        record_size: recordSize,
        nonce: b64encode(fileKey.nonce),
        file_key: b64encode(fileKey.raw),
      };
      let envelope;
      try {
        envelope = await this.sealManifestFor(this.peer, manifest);
      } finally {
        fileKey.raw.fill(0);
        manifest.file_key = '';
      }
      const length = cipherSize(this.size, recordSize);
      const response = await this.request('POST', '/api/uploads', {
        headers: { 'Upload-Length': String(length), 'Upload-Metadata': tusMetadata({ recipient: this.peer, fileId, recordSize, manifest: envelope }) },
      });
      if (response.status !== 201) await this.refuse(response);
      const location = response.headers.get('Location');
      if (!location || !/^\/api\/uploads\/[0-9a-f-]{36}$/.test(new URL(location, 'http://x').pathname)) {
        throw new ApiError(response.status, 'invalid_response', codeText('invalid_response'));
      }
      this.rec = {
        me: this.me,
        peer: this.peer,
        upload_url: new URL(location, 'http://x').pathname,
        file_key: fileKey.key, // non-extractable CryptoKey (IndexedDB clones it; its bytes stay unreadable)
        nonce: manifest.nonce,
        file_id: fileId,
        record_size: recordSize,
        size: this.size,
        cipher_size: length,
        sha256: manifest.sha256,
        name: this.name,
        mime: this.mime,
        per_patch: this.perPatch,
        created_at: this.now(),
      };
      if (this.state === 'cancelled') {
        // cancelled while it was being created: remove it from the server as well
        await this.api.raw('DELETE', this.rec.upload_url, { headers: this.tusHeaders() }).catch(() => {});
        return;
      }
      if (this.store) await this.store.put(this.storeKey, this.rec).catch(() => {});
      this.offset = 0;
      return this.run();
    } catch (err) {
      return this.failed(err);
    }
  }

  async hash() {
    this.hashed = 0;
    let lastEmit = 0;
    return hashBlob(this.file, {
      onProgress: (n) => {
        this.hashed = n;
        if (this.now() - lastEmit > 200) {
          lastEmit = this.now();
          this.#emit();
        }
      },
    });
  }

  /**
   * After a reload: the user picked `file` again. Same size and SHA-256 as the stored record,
   * or UploadError('file_changed'); then HEAD and continue.
   */
  async attach(file) {
    if (!this.rec || this.state !== 'needs_file') return undefined;
    if (file.size !== this.rec.size) {
      this.error = fail('file_changed');
      this.#emit();
      return undefined;
    }
    this.file = file;
    this.set('hashing');
    const digest = await this.hash();
    if (b64encode(digest) !== this.rec.sha256) {
      this.file = null;
      this.set('needs_file', fail('file_changed'));
      return undefined;
    }
    this.error = null;
    this.perPatch = this.rec.per_patch ?? recordsPerPatch(this.rec.record_size, null, this.target);
    return this.resume();
  }

  /** Continues a paused (or restored) upload from the server's offset. */
  async resume() {
    if (!this.rec || !this.file || this.state === 'cancelled' || this.state === 'done') return undefined;
    if (this.state === 'sending' || this.state === 'retrying') return undefined;
    this.error = null;
    return this.run();
  }

  /** The PATCH loop (with HEAD first unless we just created it). */
  async run() {
    this.set('sending');
    this.samples = [];
    const key = this.rec.file_key instanceof CryptoKey ? this.rec.file_key : await importFileKey(this.rec.file_key);
    const nonce = b64decode(this.rec.nonce);
    let needHead = this.headFirst ?? false;
    this.headFirst = true; // any later run (resume, retry) asks the server first
    // The next PATCH, read and sealed while the previous one is on the wire (used only if
    // the server's new offset is where it starts; dropped otherwise, it has no effects).
    let next = null;
    while (this.state === 'sending' || this.state === 'retrying') {
      try {
        if (needHead) {
          this.offset = await this.head();
          needHead = false;
          next = null;
        }
        if (resumePoint(this.offset, this.rec.size, this.rec.record_size).done) return this.complete();
        this.sample();
        this.#emit();
        const patch = next?.offset === this.offset ? await next.ready : await this.prepare(key, nonce, this.offset);
        next = null;
        if (patch.error) throw patch.error;
        if (this.state !== 'sending' && this.state !== 'retrying') return undefined;
        const sending = this.request('PATCH', this.rec.upload_url, {
          headers: { 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(this.offset), 'Upload-Checksum': patch.checksum },
          body: patch.body,
        });
        const following = this.offset + patch.body.length;
        if (!resumePoint(following, this.rec.size, this.rec.record_size).done) {
          next = { offset: following, ready: this.prepare(key, nonce, following).catch((error) => ({ error })) };
        }
        const response = await sending;
        if (response.status === 204) {
          const offset = headerInt(response, 'Upload-Offset');
          this.offset = offset ?? following;
          this.attempt = 0;
          if (this.state === 'retrying') this.state = 'sending';
          this.sample();
          this.#emit();
          continue;
        }
        next = null;
        const err = await Api.errorOf(response);
        if (err.code === 'upload_finished') return this.complete();
        throw err;
      } catch (err) {
        if (err?.name === 'AbortError' || this.state === 'paused' || this.state === 'cancelled') return undefined;
        if (!transient(err)) return this.failed(err);
        needHead = true;
        await this.backoff(err);
      }
    }
    return undefined;
  }

  /**
   * Reads and seals the whole records of the PATCH that starts at ciphertext `offset`:
   * {body, checksum}. Pure work on the file and the key; nothing is sent.
   */
  async prepare(key, nonce, offset) {
    const point = resumePoint(offset, this.rec.size, this.rec.record_size);
    const batch = batchRecords(point.index, this.perPatch, this.rec.size, this.rec.record_size);
    const start = batch[0].start;
    const end = batch[batch.length - 1].end;
    const plain = new Uint8Array(await this.file.slice(start, end).arrayBuffer());
    const parts = [];
    let total = 0;
    for (const r of batch) {
      const sealed = await sealRecord(key, nonce, this.rec.file_id, r.index, r.last, plain.subarray(r.start - start, r.end - start));
      parts.push(sealed);
      total += sealed.length;
    }
    plain.fill(0);
    const body = concat(parts, total);
    const checksum = `sha256 ${stdBase64(new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', body)))}`;
    return { body, checksum };
  }

  async head() {
    const response = await this.request('HEAD', this.rec.upload_url);
    if (response.status !== 200) await this.refuse(response);
    const offset = headerInt(response, 'Upload-Offset');
    if (offset === null) throw new ApiError(response.status, 'invalid_response', codeText('invalid_response'));
    return offset;
  }

  backoff(err) {
    // A server that says when to come back (429 Retry-After) is not asked sooner.
    const asked = (err?.retryAfterSecs ?? 0) * 1000;
    const delay = Math.max(backoffDelay(this.attempt++, { baseMs: 500, maxMs: 30000, random: this.random }), asked);
    this.retryAt = this.now() + delay;
    this.error = err;
    this.set('retrying');
    return new Promise((resolve) => {
      this.wake = resolve;
      this.retryTimer = this.timers.setTimeout(() => {
        this.wake = null;
        resolve();
      }, delay);
    });
  }

  async complete() {
    this.offset = this.rec.cipher_size;
    if (this.store) await this.store.delete(this.storeKey).catch(() => {});
    this.error = null;
    this.set('done');
  }

  async failed(err) {
    if (this.state === 'cancelled') return;
    const known = err instanceof UploadError || err instanceof ApiError;
    if (!known) console.warn('upload failed:', err?.name, err?.code);
    const e = known ? err : fail('internal', 'The upload stopped because of a problem in this page. Please try again.');
    // gone for good on the server: nothing to resume
    if (this.rec && this.store && (e.code === 'upload_expired' || e.code === 'not_found')) await this.store.delete(this.storeKey).catch(() => {});
    this.set('failed', e);
  }

  /** Stops sending (the PATCH in flight is aborted); resume() continues from the server's offset. */
  pause() {
    if (!this.rec || !(this.state === 'sending' || this.state === 'retrying')) return;
    this.state = 'paused';
    this.controller?.abort();
    this.timers.clearTimeout(this.retryTimer);
    this.wake?.();
    this.#emit();
  }

  /** Stops for good: aborts, DELETEs the upload on the server and forgets it here. */
  async cancel() {
    const was = this.state;
    this.state = 'cancelled';
    this.controller?.abort();
    this.timers.clearTimeout(this.retryTimer);
    this.wake?.();
    this.#emit();
    if (!this.rec || was === 'done') return;
    try {
      const response = await this.api.raw('DELETE', this.rec.upload_url, { headers: this.tusHeaders() });
      if (response.status !== 204 && response.status !== 404 && response.status !== 410) console.warn('upload cancel answered', response.status);
    } catch {
      // offline: the server expires it
    }
    if (this.store) await this.store.delete(this.storeKey).catch(() => {});
  }
}

// ---------------------------------------------------------------- all uploads of the page

/** The page's uploads, by peer; restores the stored ones after a reload. Emits 'change' (Upload). */
export class Uploads extends EventTarget {
  constructor({ api, me, sealManifest, store, timers, now }) {
    super();
    Object.assign(this, { api, me, sealManifest, store, timers, now });
    this.all = [];
  }

  track(upload) {
    this.all.push(upload);
    upload.addEventListener('change', () => this.dispatchEvent(new CustomEvent('change', { detail: upload })));
    this.dispatchEvent(new CustomEvent('change', { detail: upload }));
    return upload;
  }

  /** Starts sending `file` to `peer` (returns the Upload at once; it runs in the background). */
  send(peer, file) {
    const upload = this.track(new Upload({ api: this.api, me: this.me, peer, file, sealManifest: this.sealManifest, store: this.store, timers: this.timers, now: this.now }));
    upload.start();
    return upload;
  }

  /** Uploads stored by an earlier page of this account: they wait for their file. */
  async restore() {
    if (!this.store?.list) return [];
    const records = await this.store.list().catch(() => []);
    const restored = [];
    for (const rec of records) {
      if (!rec || rec.me !== this.me || this.all.some((u) => u.rec?.file_id === rec.file_id)) continue;
      restored.push(this.track(new Upload({ api: this.api, me: this.me, peer: rec.peer, record: rec, sealManifest: this.sealManifest, store: this.store, timers: this.timers, now: this.now })));
    }
    return restored;
  }

  /** The network is back: uploads waiting for their next try go now. */
  retryNow() {
    for (const u of this.all) {
      if (u.state === 'retrying' && u.wake) {
        u.timers.clearTimeout(u.retryTimer);
        const wake = u.wake;
        u.wake = null;
        wake();
      }
    }
  }

  forPeer(peer) {
    return this.all.filter((u) => u.peer === peer && u.state !== 'cancelled' && !(u.state === 'done'));
  }

  remove(upload) {
    this.all = this.all.filter((u) => u !== upload);
    this.dispatchEvent(new CustomEvent('change', { detail: upload }));
  }
}
