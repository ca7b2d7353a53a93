// The local search index of decrypted messages (issue #17 item 8, docs/PROTOCOL.md §8.10): one
// record per message, AES-256-GCM under the index key (HKDF of the kek, crypto.js
// deriveIndexKey), in IndexedDB through a { put, delete, entries } backing (store.js ownStore),
// so nothing of a message is in clear at rest. Searching decrypts the records into memory
// once and matches words there: no query ever leaves the browser. DOM-free; runs under Node.

import { decode as b64decode, encode as b64encode } from './b64.js';
import { randomBytes, utf8 } from './crypto.js';

const subtle = globalThis.crypto.subtle;
export const SEARCH_AAD_PREFIX = 'securechat/v1/search|';
/** The most hits one search returns. */
export const MAX_HITS = 50;

/** Lower-case words without accents: "Crème brûlée!" -> ["creme", "brulee"]. */
export function words(text) {
  return String(text ?? '')
    .normalize('NFD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean);
}

/** Whether every word of the query starts one of the text's words. */
export function matches(textWords, queryWords) {
  return queryWords.length > 0 && queryWords.every((q) => textWords.some((w) => w.startsWith(q)));
}

const recordKey = (from, id) => `${from}\n${id}`;
const aadOf = (me, from, id) => utf8(`${SEARCH_AAD_PREFIX}${me}|${from}|${id}`);

export class SearchIndex {
  /**
   * @param {object} o
   * @param {string} o.me
   * @param {CryptoKey} o.key  the index key (AES-GCM, non-extractable)
   * @param {object} o.backing { put(key, {iv, ct}), delete(key), entries() -> [[key, value]] }
   */
  constructor({ me, key, backing }) {
    this.me = me;
    this.key = key;
    this.backing = backing;
    /** "from\nid" -> { peer, from, id, sent_at, text, words }, once loaded */
    this.cache = null;
    this.loading = null;
    this.writes = Promise.resolve();
  }

  async seal(entry) {
    const iv = randomBytes(12);
    const body = utf8(JSON.stringify({ peer: entry.peer, from: entry.from, id: entry.id, sent_at: entry.sent_at, expires_at: entry.expires_at ?? null, text: entry.text }));
    const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aadOf(this.me, entry.from, entry.id) }, this.key, body));
    body.fill(0);
    return { iv: b64encode(iv), ct: b64encode(ct) };
  }

  async unseal(key, record) {
    const [from, id] = key.split('\n');
    const body = new Uint8Array(
      await subtle.decrypt({ name: 'AES-GCM', iv: b64decode(record.iv), additionalData: aadOf(this.me, from, id) }, this.key, b64decode(record.ct)),
    );
    const entry = JSON.parse(new TextDecoder().decode(body));
    if (entry.from !== from || entry.id !== id) throw new Error('a record under another name');
    return entry;
  }

  /** Writes in order (an add and a remove of the same message must not cross). */
  queue(fn) {
    const run = this.writes.then(fn);
    this.writes = run.catch(() => {});
    return run;
  }

  /** Indexes (or re-indexes, after an edit) a decrypted text message of the conversation with `peer`. */
  add(peer, message) {
    if (typeof message?.text !== 'string' || !message.id || !message.from) return Promise.resolve();
    const entry = { peer, from: message.from, id: message.id, sent_at: message.sentAt ?? 0, expires_at: message.expiresAt ?? null, text: message.text };
    const key = recordKey(entry.from, entry.id);
    if (this.cache) this.cache.set(key, { ...entry, words: words(entry.text) });
    return this.queue(async () => this.backing.put(key, await this.seal(entry)));
  }

  /** Drops a message (deleted for everyone, expired). */
  remove(from, id) {
    const key = recordKey(from, id);
    this.cache?.delete(key);
    return this.queue(() => this.backing.delete(key));
  }

  async load() {
    if (this.cache) return this.cache;
    if (!this.loading) {
      this.loading = (async () => {
        await this.writes;
        const cache = new Map();
        for (const [key, record] of await this.backing.entries()) {
          try {
            const entry = await this.unseal(key, record);
            cache.set(key, { ...entry, words: words(entry.text) });
          } catch {
            // a record this key does not open (another password's, tampered): not ours to show
          }
        }
        this.cache = cache;
        return cache;
      })().finally(() => {
        this.loading = null;
      });
    }
    return this.loading;
  }

  /**
   * Messages whose words start with every word of `query`, newest first: [{ peer, from, id,
   * sent_at, text }]. Entries past their expiry (a disappearing message that expired while no
   * page was open) are removed on the way.
   */
  async search(query, { limit = MAX_HITS, now = Date.now() } = {}) {
    const q = words(query);
    if (!q.length) return [];
    const cache = await this.load();
    const hits = [];
    for (const e of [...cache.values()]) {
      if (e.expires_at != null && e.expires_at <= now) {
        this.remove(e.from, e.id).catch(() => {});
        continue;
      }
      if (matches(e.words, q)) hits.push({ peer: e.peer, from: e.from, id: e.id, sent_at: e.sent_at, text: e.text });
    }
    hits.sort((a, b) => b.sent_at - a.sent_at);
    return hits.slice(0, limit);
  }

  /** Re-encrypts every record under `newKey` (after a password change gave a new kek). */
  async rekey(newKey) {
    const cache = await this.load();
    this.key = newKey;
    await this.queue(async () => {
      for (const [key, e] of cache) await this.backing.put(key, await this.seal(e));
    });
  }
}
