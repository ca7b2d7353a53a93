// The files of each conversation, DOM-free: GET /api/conversations/{peer}/files (newest first,
// cursor paging), live `file_ready` and `file_damaged` frames, every manifest opened and checked
// against the pinned keys (Messenger.openFileManifest; one that does not verify is kept as
// 'refused' and its name is never read), and downloads: GET /api/files/{id} streamed, opened
// and verified record by record (files.js RecordOpener), the plaintext SHA-256 checked against
// the manifest, and only then handed out as a Blob. Images are previewed the same way, in memory.
//
// Events (CustomEvent, value in `detail`): 'files' (peer) whenever the list of a conversation,
// a file's state or a download's progress changed.

import { Api, ApiError } from './api.js';
import { decode as b64decode, encode as b64encode } from './b64.js';
import { FileError, RecordOpener, importFileKey } from './files.js';
import { Sha256 } from './sha256.js';

export const PREVIEW_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
/** Images up to this size get an inline preview without asking. */
export const PREVIEW_MAX_BYTES = 16 * 1024 * 1024;
const LIST_LIMIT = 50;
/** Plaintext parts are merged into one Blob every this many bytes (the browser may page Blobs out). */
const BLOB_BATCH_BYTES = 8 * 1024 * 1024;

export class DownloadError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'DownloadError';
    this.code = code;
  }
}

const DOWNLOAD_TEXTS = {
  record_auth: 'The file did not verify: a part of it was altered or is out of place. Nothing was saved.',
  sha256: 'The file did not verify: its content is not what the sender sealed. Nothing was saved.',
  size: 'The file did not verify: it is shorter or longer than the sender said. Nothing was saved.',
  file_damaged: 'The server found this file damaged; it cannot be downloaded.',
  network: 'The download was interrupted. Try again.',
};

function downloadError(code) {
  return new DownloadError(code, DOWNLOAD_TEXTS[code] ?? 'The download failed. Try again.');
}

export function isPreviewable(manifest) {
  return Boolean(manifest && PREVIEW_TYPES.includes(manifest.mime) && manifest.size <= PREVIEW_MAX_BYTES);
}

const FILE_FIELDS = { id: 'string', file_id: 'string', from: 'string', to: 'string', size: 'number', state: 'string', server_ts: 'number' };

function wellFormed(file) {
  if (!file || typeof file !== 'object') return false;
  for (const [k, t] of Object.entries(FILE_FIELDS)) if (typeof file[k] !== t) return false;
  return Number.isSafeInteger(file.size) && file.size >= 0 && file.manifest && typeof file.manifest === 'object';
}

export class FileBox extends EventTarget {
  /**
   * @param {object} o
   * @param {Api} o.api
   * @param {import('./messenger.js').Messenger} o.messenger  opens manifests with the pinned keys
   * @param {EventTarget} [o.relay]  file_ready / file_damaged frames
   * @param {Function} [o.createObjectURL] [o.revokeObjectURL]
   */
  constructor(o) {
    super();
    this.api = o.api;
    this.m = o.messenger;
    this.me = o.messenger.me;
    this.createObjectURL = o.createObjectURL ?? ((b) => URL.createObjectURL(b));
    this.revokeObjectURL = o.revokeObjectURL ?? ((u) => URL.revokeObjectURL(u));
    /** peer -> { files: Map(id -> entry), loaded, nextCursor, loading } */
    this.peers = new Map();
    if (o.relay) {
      o.relay.addEventListener('file_ready', (e) => this.onFileReady(e.detail).catch(() => {}));
      o.relay.addEventListener('file_damaged', (e) => this.onFileDamaged(e.detail));
    }
  }

  #emit(peer) {
    this.dispatchEvent(new CustomEvent('files', { detail: peer }));
  }

  box(peer) {
    let b = this.peers.get(peer);
    if (!b) {
      b = { files: new Map(), loaded: false, nextCursor: null, loading: null };
      this.peers.set(peer, b);
    }
    return b;
  }

  peerOf(file) {
    if (file.from === this.me) return file.to;
    if (file.to === this.me) return file.from;
    return null;
  }

  /** The files of a conversation, newest first. */
  list(peer) {
    const b = this.peers.get(peer);
    if (!b) return [];
    return [...b.files.values()].sort((a, c) => c.file.server_ts - a.file.server_ts || (a.file.id < c.file.id ? -1 : 1));
  }

  /** Fetches the newest page (again) of a conversation's files. */
  async load(peer, { older = false } = {}) {
    const b = this.box(peer);
    if (b.loading) return b.loading;
    b.loading = (async () => {
      const q = new URLSearchParams({ limit: String(LIST_LIMIT) });
      if (older && b.nextCursor) q.set('before', b.nextCursor);
      let answer;
      try {
        answer = await this.api.get(`/api/conversations/${encodeURIComponent(peer)}/files?${q}`, { auth: true });
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          b.loaded = true;
          return;
        }
        throw err;
      }
      const files = Array.isArray(answer?.files) ? answer.files : [];
      // the newest page sets where "earlier" starts only the first time (a reload of it after a
      // reconnect must not forget pages already fetched)
      const next = typeof answer?.next_cursor === 'string' ? answer.next_cursor : null;
      if (older || !b.loaded) b.nextCursor = next;
      await Promise.all(files.map((f) => this.add(peer, f)));
      b.loaded = true;
      this.#emit(peer);
    })().finally(() => {
      b.loading = null;
    });
    return b.loading;
  }

  /** Files one FILE (from the list or a frame); opens its manifest once. */
  async add(peer, file) {
    if (!wellFormed(file) || this.peerOf(file) !== peer) return null;
    const b = this.box(peer);
    const existing = b.files.get(file.id);
    if (existing) {
      // the state may move (ready -> damaged); the manifest never changes under us
      if (file.state === 'damaged') existing.file.state = 'damaged';
      return existing;
    }
    const entry = { file, status: 'opening', manifest: null, reason: null, download: null, preview: null };
    b.files.set(file.id, entry);
    try {
      entry.manifest = await this.m.openFileManifest(file);
      entry.status = 'ok';
    } catch (err) {
      entry.status = 'refused';
      entry.reason = err instanceof FileError ? err.code : 'manifest';
    }
    this.#emit(peer);
    if (entry.status === 'ok' && file.state === 'ready' && isPreviewable(entry.manifest)) this.preview(peer, file.id).catch(() => {});
    return entry;
  }

  async onFileReady(frame) {
    const file = frame?.file;
    if (!wellFormed(file)) return;
    const peer = this.peerOf(file);
    if (!peer) return;
    await this.add(peer, file);
    this.#emit(peer);
  }

  onFileDamaged(frame) {
    if (typeof frame?.id !== 'string') return;
    for (const [peer, b] of this.peers) {
      const entry = b.files.get(frame.id);
      if (entry) {
        entry.file.state = 'damaged';
        this.#emit(peer);
      }
    }
  }

  entry(peer, id) {
    return this.peers.get(peer)?.files.get(id) ?? null;
  }

  /**
   * Downloads, decrypts and verifies a file; resolves with a Blob of the plaintext only after
   * the last record authenticated and the SHA-256 matched. `entry.download` carries the
   * progress ({state: 'running'|'verified'|'failed', received, total, error}).
   */
  async download(peer, id, { purpose = 'save' } = {}) {
    const entry = this.entry(peer, id);
    if (!entry || entry.status !== 'ok') throw downloadError('manifest');
    if (entry.file.state === 'damaged') throw downloadError('file_damaged');
    const slot = purpose === 'preview' ? 'preview' : 'download';
    if (entry[slot]?.promise) return entry[slot].promise;
    const state = { state: 'running', received: 0, total: entry.file.size, error: null, blob: null, url: null, promise: null };
    entry[slot] = state;
    this.#emit(peer);
    state.promise = this.fetchVerified(entry, (n) => {
      state.received = n;
      this.#emit(peer);
    }).then(
      (blob) => {
        state.state = 'verified';
        state.blob = blob;
        state.received = state.total;
        state.promise = null;
        this.#emit(peer);
        return blob;
      },
      (err) => {
        state.state = 'failed';
        state.error = err instanceof DownloadError ? err : downloadError(err?.code === 'network' ? 'network' : err instanceof ApiError && err.code === 'file_damaged' ? 'file_damaged' : 'failed');
        if (err instanceof ApiError && err.code === 'file_damaged') entry.file.state = 'damaged';
        state.promise = null;
        this.#emit(peer);
        throw state.error;
      },
    );
    return state.promise;
  }

  async fetchVerified(entry, onProgress) {
    const manifest = entry.manifest;
    const keyBytes = b64decode(manifest.file_key);
    const opener = new RecordOpener({
      key: await importFileKey(keyBytes),
      nonce: b64decode(manifest.nonce),
      fileId: manifest.file_id,
      size: manifest.size,
      recordSize: manifest.record_size,
    });
    keyBytes.fill(0);
    const response = await this.api.raw('GET', `/api/files/${encodeURIComponent(entry.file.id)}`, { headers: { Accept: 'application/octet-stream' } });
    if (!response.ok) throw await Api.errorOf(response);
    const hash = new Sha256();
    let blob = new Blob([]);
    let parts = [];
    let partBytes = 0;
    let plainBytes = 0;
    let received = 0;
    const reader = response.body.getReader();
    const take = (records) => {
      for (const r of records) {
        hash.update(r);
        plainBytes += r.length;
        parts.push(r);
        partBytes += r.length;
      }
      if (partBytes >= BLOB_BATCH_BYTES) {
        blob = new Blob([blob, ...parts], { type: 'application/octet-stream' });
        parts = [];
        partBytes = 0;
      }
    };
    try {
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (cause) {
          const err = new ApiError(0, 'network', 'interrupted');
          err.cause = cause;
          throw err;
        }
        if (chunk.done) break;
        received += chunk.value.length;
        if (received > entry.file.size) throw downloadError('size');
        take(await opener.push(chunk.value));
        onProgress(received);
      }
      try {
        opener.finish();
      } catch {
        throw downloadError('size');
      }
    } catch (err) {
      reader.cancel().catch(() => {});
      if (err instanceof FileError) throw downloadError(err.code === 'record_auth' ? 'record_auth' : 'size');
      throw err;
    }
    if (plainBytes !== manifest.size) throw downloadError('size');
    if (b64encode(hash.digest()) !== manifest.sha256) throw downloadError('sha256');
    const type = PREVIEW_TYPES.includes(manifest.mime) ? manifest.mime : 'application/octet-stream';
    return new Blob([blob, ...parts], { type });
  }

  /** Decrypts an image in memory for its inline preview (a blob: URL in entry.preview.url). */
  async preview(peer, id) {
    const entry = this.entry(peer, id);
    if (!entry || !isPreviewable(entry.manifest)) return null;
    if (entry.preview?.url) return entry.preview.url;
    const blob = await this.download(peer, id, { purpose: 'preview' });
    entry.preview.url = this.createObjectURL(blob);
    this.#emit(peer);
    return entry.preview.url;
  }
}
