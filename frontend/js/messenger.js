// The messaging model behind chat.html, DOM-free: conversations, history (newest page first,
// older pages with before=, catch-up with after= on every (re)connect), live frames from the
// relay, own messages through sending -> sent -> delivered -> read, receipts, typing,
// presence, and key pinning (sending is blocked while a peer's key changed and the change
// was not accepted; messages that do not verify against an accepted key are never shown as
// text; a message without a seq, or an id seen before under another seq, is dropped).
// A received message that opened can be reported (report(): its K and exact bytes only).
//
// The Messenger is an EventTarget. The page renders from `conversations` and `presence` and
// listens to these CustomEvents (the value in `detail`):
//   'conversations' (none)  the list changed (order, unread, presence);
//   'conversation' (peer)  the messages, typing or key state of one conversation changed;
//   'incoming' ({peer, message})  a new live message from someone else (for the live region);
//   'connection' (state)  the relay state;
//   'notice' (text)  something the user should know (a dropped replay...).

import { ApiError } from './api.js';
import { EnvelopeError, MAX_TEXT_BYTES, ReplayGuard, checkShape, disclose, open, seal } from './envelope.js';
import { acceptKeys, acceptedSignKeys, checkPeerKeys, setVerified } from './pins.js';
import { utf8 } from './crypto.js';
import { describeError } from './errors.js';
import { openManifest, sealManifest } from './files.js';

export const PAGE_SIZE = 50;
const CATCH_UP_LIMIT = 200;
const KEY_RECHECK_MS = 60000;
const TYPING_SHOWN_MS = 6000;
const TYPING_SEND_EVERY_MS = 3000;
const STATE_RANK = { failed: -1, sending: 0, sent: 1, delivered: 2, read: 3 };

/** The reason a send was refused before anything went to the server. */
export class BlockedError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'BlockedError';
    this.code = code;
  }
}

export function textBytes(text) {
  return utf8(text).length;
}

const keyOf = (from, id) => `${from}\n${id}`;

export class Messenger extends EventTarget {
  /**
   * @param {object} o
   * @param {import('./api.js').Api} o.api
   * @param {object} o.session  the stored session (username, keys, fingerprint)
   * @param {import('./ws.js').Relay} o.relay
   * @param {object} o.pins   { get(peer), put(peer, pin) }
   * @param {object} [o.seen] { get(key), put(key, seq) } persistence of the replay guard
   * @param {Function} [o.isVisible]  whether the page is visible (read receipts)
   * @param {Function} [o.now]
   * @param {object} [o.timers]
   */
  constructor(o) {
    super();
    this.api = o.api;
    this.session = o.session;
    this.me = o.session.username;
    this.relay = o.relay;
    this.pins = o.pins;
    this.guard = new ReplayGuard({ backing: o.seen ?? null });
    this.isVisible = o.isVisible ?? (() => true);
    this.now = o.now ?? Date.now;
    this.timers = o.timers ?? { setTimeout: (...a) => globalThis.setTimeout(...a), clearTimeout: (t) => globalThis.clearTimeout(t) };
    /** peer -> conversation */
    this.conversations = new Map();
    /** user -> { online, last_seen, inferred } */
    this.presence = new Map();
    this.active = null;
    this.lastTypingSent = new Map();
    this.keyChecks = new Map();
    this.listLoaded = false;
    this.connectedOnce = false;
  }

  // ---------------------------------------------------------------- events

  /** Tells the page: a CustomEvent `type` with `detail` (see the top of this file). */
  #emit(type, detail = null) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ---------------------------------------------------------------- model

  conversation(peer) {
    let c = this.conversations.get(peer);
    if (!c) {
      c = {
        peer,
        exists: false, // the server has at least one message of it
        lastSeq: 0,
        lastTs: 0,
        unread: 0,
        loaded: false, // the newest page was fetched
        loading: null,
        hasOlder: false,
        messages: new Map(), // key(from, id) -> message
        keys: null, // { status, pin, current, checkedAt }
        typingUntil: 0,
        typingTimer: null,
        error: null,
        queue: Promise.resolve(), // envelopes are filed one at a time, in arrival order
      };
      this.conversations.set(peer, c);
    }
    return c;
  }

  /** Messages of a conversation in order: by seq, then the ones still sending in send order. */
  ordered(peer) {
    const c = this.conversations.get(peer);
    if (!c) return [];
    return [...c.messages.values()].sort((a, b) => {
      if (a.seq != null && b.seq != null) return a.seq - b.seq;
      if (a.seq != null) return -1;
      if (b.seq != null) return 1;
      return a.localOrder - b.localOrder;
    });
  }

  /** Conversations for the list, most recent first. */
  list() {
    return [...this.conversations.values()]
      .filter((c) => c.exists || c.messages.size > 0)
      .sort((a, b) => b.lastSeq - a.lastSeq || (b.lastTs - a.lastTs) || a.peer.localeCompare(b.peer));
  }

  peerOf(envelope) {
    if (envelope.from === this.me) return envelope.to;
    if (envelope.to === this.me) return envelope.from;
    return null;
  }

  // ---------------------------------------------------------------- start

  async start() {
    const on = (type, fn) => this.relay.addEventListener(type, (event) => fn(event.detail));
    on('open', () => this.onOpen());
    on('state', (state) => this.#emit('connection', state));
    on('message', (f) => this.onMessageFrame(f));
    on('delivered', (f) => this.onReceipt(f, 'delivered'));
    on('read', (f) => this.onReceipt(f, 'read'));
    on('typing', (f) => this.onTyping(f));
    on('presence', (f) => this.onPresence(f));
    on('error', (f) => this.onErrorFrame(f));
    await this.refreshList().catch((err) => this.#emit('notice', `Could not load your conversations: ${describeError(err)}`));
    this.relay.start();
  }

  async refreshList() {
    const answer = await this.api.get('/api/conversations', { auth: true });
    for (const row of answer?.conversations ?? []) {
      if (typeof row?.peer !== 'string') continue;
      const c = this.conversation(row.peer);
      c.exists = true;
      c.lastSeq = Math.max(c.lastSeq, row.last_seq ?? 0);
      c.lastTs = Math.max(c.lastTs, row.last_server_ts ?? 0);
      c.unread = this.active === row.peer && this.isVisible() ? 0 : (row.unread ?? 0);
    }
    this.listLoaded = true;
    this.#emit('conversations');
    return answer;
  }

  /** On every (re)connect: catch up every conversation we hold messages of, then the list. */
  async onOpen() {
    const first = !this.connectedOnce;
    this.connectedOnce = true;
    // the list first (conversations started while we were away), then every conversation held
    if (!first || !this.listLoaded) await this.refreshList().catch(() => {});
    const catchUps = [];
    for (const c of this.conversations.values()) {
      if (c.loaded) catchUps.push(this.catchUp(c.peer));
    }
    await Promise.allSettled(catchUps);
    // conversations with unread messages we never fetched: fetch them, so that they count as delivered
    const unfetched = [...this.conversations.values()].filter((c) => !c.loaded && c.unread > 0).slice(0, 20);
    await Promise.allSettled(unfetched.map((c) => this.loadNewest(c.peer)));
    if (this.active && this.active !== this.me) this.checkKeys(this.active, { force: !first }).catch(() => {});
  }

  // ---------------------------------------------------------------- history

  historyPath(peer, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
    return `/api/conversations/${encodeURIComponent(peer)}/messages?${q}`;
  }

  async fetchHistory(peer, params) {
    try {
      const answer = await this.api.get(this.historyPath(peer, params), { auth: true });
      return Array.isArray(answer?.messages) ? answer.messages : [];
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null; // no conversation yet
      throw err;
    }
  }

  /** The newest page of a conversation. */
  async loadNewest(peer) {
    const c = this.conversation(peer);
    if (c.loading) return c.loading;
    c.loading = (async () => {
      // the list says there is no conversation yet: nothing to fetch (the server would answer 404)
      const items = this.listLoaded && !c.exists ? null : await this.fetchHistory(peer, { limit: PAGE_SIZE });
      if (items === null) {
        c.loaded = true;
        c.hasOlder = false;
        return;
      }
      c.exists = c.exists || items.length > 0;
      const hadOlder = [...c.messages.values()].some((m) => m.seq != null && items.length && m.seq < items[0].seq);
      c.hasOlder = items.length === PAGE_SIZE || hadOlder;
      await this.ingest(peer, items, { source: 'history' });
      // anything newer than the page that arrived meanwhile is already here; anything missing in between:
      c.loaded = true;
    })().finally(() => {
      c.loading = null;
    });
    return c.loading;
  }

  /** One older page (before the oldest seq held). Returns the number of messages added. */
  async loadOlder(peer) {
    const c = this.conversation(peer);
    const seqs = [...c.messages.values()].filter((m) => m.seq != null).map((m) => m.seq);
    if (!seqs.length) return 0;
    const oldest = Math.min(...seqs);
    const items = await this.fetchHistory(peer, { before: oldest, limit: PAGE_SIZE });
    if (!items) return 0;
    c.hasOlder = items.length === PAGE_SIZE;
    await this.ingest(peer, items, { source: 'history' });
    return items.length;
  }

  /** Everything after the newest seq held (after a reconnect). */
  async catchUp(peer) {
    const c = this.conversation(peer);
    if (this.listLoaded && !c.exists) return;
    for (let round = 0; round < 50; round++) {
      const seqs = [...c.messages.values()].filter((m) => m.seq != null).map((m) => m.seq);
      const after = seqs.length ? Math.max(...seqs) : 0;
      const items = await this.fetchHistory(peer, { after, limit: CATCH_UP_LIMIT });
      if (!items || !items.length) return;
      c.exists = true;
      await this.ingest(peer, items, { source: 'history' });
      if (items.length < CATCH_UP_LIMIT) return;
    }
  }

  // ---------------------------------------------------------------- opening envelopes

  /** Runs `fn` after everything queued for the conversation (live frames and pages interleave safely). */
  serial(c, fn) {
    const run = c.queue.then(fn);
    c.queue = run.catch(() => {});
    return run;
  }

  /** Opens and files stored or live messages: [{seq, server_ts, state?, envelope}]. */
  ingest(peer, items, { source }) {
    const c = this.conversation(peer);
    return this.serial(c, () => this.ingestNow(c, peer, items, source));
  }

  async ingestNow(c, peer, items, source) {
    const receipts = [];
    let changed = false;
    for (const item of items) {
      const env = item?.envelope;
      if (!env || typeof env !== 'object' || this.peerOf(env) !== peer) continue;
      const message = await this.file(c, item, source);
      if (!message) continue;
      changed = true;
      if (message.from !== this.me) receipts.push(message);
    }
    if (changed) {
      this.#emit('conversation', peer);
      this.#emit('conversations');
    }
    this.sendReceipts(peer, receipts);
  }

  /** Files one item in its conversation; returns the message (new or updated) or null. */
  async file(c, item, source) {
    const env = item.envelope;
    const key = keyOf(env.from, env.id);
    const existing = c.messages.get(key);
    const seq = Number.isSafeInteger(item.seq) ? item.seq : null;
    if (seq === null) {
      // every stored message has its place: one without it could only be a replay sorted as newest
      this.#emit('notice', `A message from ${env.from} arrived without its number and was dropped.`);
      return null;
    }
    if (existing) {
      if (existing.seq != null && seq != null && existing.seq !== seq) {
        this.#emit('notice', `A copy of an earlier message from ${env.from} was replayed and has been dropped.`);
        return null;
      }
      if (existing.seq == null && seq != null) existing.seq = seq;
      if (item.server_ts) existing.serverTs = item.server_ts;
      if (item.state) this.advance(existing, item.state);
      return existing;
    }
    const verdict = await this.guard.check(env.from, env.id, seq);
    if (verdict === 'replayed') {
      this.#emit('notice', `A message from ${env.from} arrived again under a new number and was dropped (possible replay).`);
      return null;
    }
    const message = {
      key,
      id: env.id,
      from: env.from,
      to: env.to,
      mine: env.from === this.me,
      seq,
      serverTs: item.server_ts ?? null,
      sentAt: env.sent_at,
      state: item.state ?? 'sent',
      status: 'pending', // ok | unverified | undecryptable | invalid
      text: null,
      envelope: env,
      localOrder: 0,
      live: source === 'live',
      // opened here before (an earlier page load): never news, even when pushed live again
      seenBefore: verdict === 'duplicate',
      signKeyVersion: null, // the key version of the sender whose signature verified
      reported: false, // reported by me (this page load)
      receipted: new Set(),
    };
    await this.openMessage(c, message);
    c.messages.set(key, message);
    if (seq != null) {
      c.lastSeq = Math.max(c.lastSeq, seq);
      c.exists = true;
    }
    if (message.serverTs) c.lastTs = Math.max(c.lastTs, message.serverTs);
    return message;
  }

  /** Checks and decrypts; sets status and text (never text unless everything verified). */
  async openMessage(c, message) {
    const env = message.envelope;
    try {
      checkShape(env);
    } catch {
      message.status = 'invalid';
      return;
    }
    const accepted = await this.acceptedFor(message);
    try {
      const senderSignKeys = accepted.map((k) => k.sign_public_key);
      const opened = await open(env, { me: this.me, encPrivateKey: this.session.encPrivateKey, senderSignKeys });
      if (opened.text === null) throw new EnvelopeError('invalid_plaintext', 'no text');
      message.text = opened.text;
      message.status = 'ok';
      message.signKeyVersion = accepted[opened.signKeyIndex]?.key_version ?? null;
      try {
        await this.guard.record(env.from, env.id, message.seq);
      } catch {
        message.text = null;
        message.status = 'invalid';
      }
    } catch (err) {
      message.text = null;
      message.status = err?.code === 'bad_signature' ? 'unverified' : err?.code === 'invalid_envelope' ? 'invalid' : 'undecryptable';
      // my own copy that my current key does not verify was made with an earlier key of mine:
      // it was encrypted for that key too, so it cannot be read here
      if (message.status === 'unverified' && env.from === this.me) message.status = 'undecryptable';
      if (message.status === 'unverified' && env.from !== this.me) {
        // perhaps their key changed: look again (the warning shows if so)
        this.checkKeys(env.from, { force: true }).catch(() => {});
      }
    }
  }

  /** The signing keys `message` may verify under: mine for my own, else the sender's accepted ones. */
  async acceptedFor(message) {
    if (message.envelope.from === this.me) {
      return [{ sign_public_key: this.session.signPublicKey, key_version: this.session.key_version, previous: false }];
    }
    const keys = await this.ensureKeys(message.envelope.from);
    return acceptedSignKeys(keys?.pin, message.seq);
  }

  /** Re-opens the messages of `peer` that did not verify (after a key was accepted). */
  async reopen(peer) {
    const c = this.conversations.get(peer);
    if (!c) return;
    await this.serial(c, async () => {
      for (const m of c.messages.values()) {
        if (m.status === 'unverified') await this.openMessage(c, m);
      }
    });
    this.#emit('conversation', peer);
    if (this.active === peer) this.markRead(peer);
  }

  advance(message, state) {
    if ((STATE_RANK[state] ?? -2) > (STATE_RANK[message.state] ?? -2)) message.state = state;
  }

  // ---------------------------------------------------------------- receipts

  /** delivered for everything received that the server still has as sent; read when it is on screen. */
  sendReceipts(peer, messages) {
    const reading = this.active === peer && this.isVisible();
    for (const m of messages) {
      if (m.mine) continue;
      // read only for what was shown: a message that did not verify was not read
      if (reading && m.status === 'ok' && m.state !== 'read' && !m.receipted.has('read')) {
        m.receipted.add('read');
        m.receipted.add('delivered');
        this.relay.receipt('read', m.id);
        m.state = 'read';
        if (m.countedUnread) {
          m.countedUnread = false;
          this.conversation(peer).unread = Math.max(0, this.conversation(peer).unread - 1);
        }
      } else if (m.state === 'sent' && !m.receipted.has('delivered')) {
        m.receipted.add('delivered');
        this.relay.receipt('delivered', m.id);
        m.state = 'delivered';
      }
    }
    if (reading) {
      const c = this.conversation(peer);
      if (c.unread) {
        c.unread = 0;
        this.#emit('conversations');
      }
    }
  }

  /** The page became visible, or a conversation was opened: read everything shown. */
  markRead(peer = this.active) {
    if (!peer || !this.isVisible()) return;
    const c = this.conversations.get(peer);
    if (!c) return;
    this.sendReceipts(peer, [...c.messages.values()].filter((m) => !m.mine && m.state !== 'read'));
    if (c.unread) {
      c.unread = 0;
      this.#emit('conversations');
    }
  }

  onReceipt(frame, state) {
    if (typeof frame?.id !== 'string' || typeof frame.by !== 'string') return;
    this.markOnline(frame.by);
    if (frame.by === this.me) {
      // my other tab or device read or received a message: mirror it
      let found = false;
      for (const c of this.conversations.values()) {
        for (const m of c.messages.values()) {
          if (!m.mine && m.id === frame.id) {
            found = true;
            this.advance(m, state);
            m.receipted.add(state);
            if (state === 'read') {
              m.receipted.add('delivered');
              if (m.countedUnread) {
                m.countedUnread = false;
                c.unread = Math.max(0, c.unread - 1);
              }
            }
            this.#emit('conversation', c.peer);
          }
        }
      }
      if (found) this.#emit('conversations');
      else if (state === 'read') this.refreshList().catch(() => {});
      return;
    }
    // In line with the conversation's messages: a receipt may arrive while the copy of
    // that message (from another tab of mine) is still being opened.
    const c = this.conversations.get(frame.by);
    if (!c) return undefined;
    return this.serial(c, () => {
      const m = c.messages.get(keyOf(this.me, frame.id));
      if (!m) return;
      this.advance(m, state);
      this.#emit('conversation', frame.by);
    });
  }

  // ---------------------------------------------------------------- live frames

  onMessageFrame(frame) {
    const env = frame?.envelope;
    if (!env || typeof env !== 'object') return undefined;
    const peer = this.peerOf(env);
    if (!peer) return undefined;
    const c = this.conversation(peer);
    return this.serial(c, () => this.liveMessage(c, peer, frame, env));
  }

  async liveMessage(c, peer, frame, env) {
    let isNew = !c.messages.has(keyOf(env.from, env.id));
    if (env.from !== this.me) this.markOnline(env.from);
    const message = await this.file(c, { seq: frame.seq, server_ts: frame.server_ts, envelope: env }, 'live');
    if (!message) return;
    if (message.seenBefore) isNew = false;
    c.exists = true;
    if (isNew && !message.mine) {
      const reading = this.active === peer && this.isVisible() && message.status === 'ok';
      if (!reading && message.state !== 'read') {
        message.countedUnread = true;
        c.unread += 1;
      }
      c.typingUntil = 0;
      this.#emit('incoming', { peer, message });
    }
    this.#emit('conversation', peer);
    this.#emit('conversations');
    if (!message.mine) this.sendReceipts(peer, [message]);
  }

  onTyping(frame) {
    if (typeof frame?.from !== 'string') return;
    this.markOnline(frame.from);
    const c = this.conversation(frame.from);
    c.typingUntil = this.now() + TYPING_SHOWN_MS;
    this.timers.clearTimeout(c.typingTimer);
    c.typingTimer = this.timers.setTimeout(() => {
      c.typingUntil = 0;
      this.#emit('conversation', frame.from);
    }, TYPING_SHOWN_MS);
    this.#emit('conversation', frame.from);
  }

  isTyping(peer) {
    const c = this.conversations.get(peer);
    return Boolean(c && c.typingUntil > this.now());
  }

  onPresence(frame) {
    if (typeof frame?.user !== 'string') return;
    this.presence.set(frame.user, {
      online: frame.online === true,
      last_seen: Number.isSafeInteger(frame.last_seen) ? frame.last_seen : null,
      inferred: false,
    });
    this.#emit('conversations');
    this.#emit('conversation', frame.user);
  }

  /** A live frame from someone means they are connected right now. */
  markOnline(user) {
    if (user === this.me) return;
    const p = this.presence.get(user);
    if (p?.online) return;
    this.presence.set(user, { online: true, last_seen: p?.last_seen ?? null, inferred: true });
    this.#emit('conversations');
    this.#emit('conversation', user);
  }

  onErrorFrame(frame) {
    if (frame?.id && [...this.conversations.values()].some((c) => c.messages.has(keyOf(this.me, frame.id)))) return; // handled by send()
    if (frame?.code === 'not_found') return; // a receipt for something that is gone
    console.warn('relay error frame:', frame?.code, frame?.message);
  }

  // ---------------------------------------------------------------- keys

  /** The pin state of a peer, checking the directory at most every minute unless forced. */
  async checkKeys(peer, { force = false } = {}) {
    if (peer === this.me) return { status: 'self' };
    const c = this.conversation(peer);
    if (!force && c.keys && this.now() - c.keys.checkedAt < KEY_RECHECK_MS) return c.keys;
    if (this.keyChecks.has(peer)) return this.keyChecks.get(peer);
    const before = c.keys?.status;
    const check = checkPeerKeys(this.api, this.pins, peer)
      .then((result) => {
        c.keys = { ...result, checkedAt: this.now() };
        if (before !== result.status || result.status !== 'ok') this.#emit('conversation', peer);
        return c.keys;
      })
      .finally(() => this.keyChecks.delete(peer));
    this.keyChecks.set(peer, check);
    return check;
  }

  /** The pin of someone we are about to read a message from (pinning on first contact). */
  async ensureKeys(peer) {
    const c = this.conversation(peer);
    if (c.keys?.pin) return c.keys;
    const stored = await this.pins.get(peer);
    if (stored) {
      if (!c.keys) {
        c.keys = { status: 'unchecked', pin: stored, current: null, checkedAt: 0 };
        this.checkKeys(peer, { force: true }).catch(() => {});
      }
      return c.keys;
    }
    try {
      return await this.checkKeys(peer, { force: true });
    } catch {
      return null;
    }
  }

  /**
   * Accepts a peer's key change: re-pins (not verified) and unblocks sending. Their earlier
   * keys stay good for the messages held now (up to the newest seq), not for later ones.
   */
  async acceptKeyChange(peer) {
    const c = this.conversation(peer);
    if (c.keys?.status !== 'changed' || !c.keys.current) throw new Error('there is no key change to accept');
    let untilSeq = 0;
    for (const m of c.messages.values()) if (m.seq != null && m.seq > untilSeq) untilSeq = m.seq;
    const pin = await acceptKeys(this.pins, peer, c.keys.current, { untilSeq, now: this.now() });
    c.keys = { status: 'ok', pin, current: c.keys.current, chain: null, checkedAt: this.now() };
    this.#emit('conversation', peer);
    await this.reopen(peer);
    return pin;
  }

  /**
   * "I compared the safety number": marks the pinned key as verified (or, with verified
   * false, clears it). Only while the directory shows the pinned key.
   */
  async markVerified(peer, verified = true) {
    const c = this.conversation(peer);
    const keys = c.keys;
    if (!keys?.pin || (keys.status !== 'ok' && keys.status !== 'pinned')) throw new Error('check their keys first');
    const pin = await setVerified(this.pins, peer, keys.pin.fingerprint, verified, { now: this.now() });
    c.keys = { ...keys, pin };
    this.#emit('conversation', peer);
    return pin;
  }

  /**
   * The key version of an earlier key of the sender that verified `message`, or null when it
   * was signed with the key pinned now (the page labels such messages).
   */
  previousKeyOf(message) {
    if (message.mine || message.status !== 'ok' || message.signKeyVersion == null) return null;
    const pinned = this.conversations.get(message.from)?.keys?.pin?.key_version;
    return pinned != null && message.signKeyVersion !== pinned ? message.signKeyVersion : null;
  }

  /** Why sending to `peer` is not possible right now, or null. */
  blocked(peer) {
    if (peer === this.me) return null;
    const status = this.conversations.get(peer)?.keys?.status;
    if (status === 'changed') return 'key_changed';
    if (status === 'invalid') return 'key_invalid';
    if (status === 'ok' || status === 'pinned') return null;
    return 'keys_unchecked';
  }

  // ---------------------------------------------------------------- conversations

  /** Shows a conversation: keys checked (pinned on first use), newest page, receipts. */
  async openConversation(peer) {
    this.active = peer;
    const c = this.conversation(peer);
    const keys = peer === this.me ? null : this.checkKeys(peer, { force: true }).catch((err) => {
      c.error = `Could not check ${peer}’s keys: ${describeError(err)}`;
      this.#emit('conversation', peer);
    });
    const history = c.loaded ? this.catchUp(peer) : this.loadNewest(peer);
    await Promise.all([keys, history]);
    this.markRead(peer);
    this.#emit('conversation', peer);
    return c;
  }

  closeConversation() {
    this.active = null;
  }

  // ---------------------------------------------------------------- sending

  /**
   * The readers an envelope to `peer` is sealed for: my key and the peer's PINNED encryption
   * key (never the directory's current one). Throws BlockedError while their key changed and
   * the change was not accepted, or their published keys are invalid.
   */
  async readersFor(peer) {
    if (peer === this.me) {
      return { [this.me]: this.session.encPublicKey };
    } else {
      let keys;
      try {
        keys = await this.checkKeys(peer);
      } catch (err) {
        // offline: the pin is what seals, the check only looks for changes; an earlier good check will do
        const known = this.conversations.get(peer)?.keys;
        if (!(err instanceof ApiError && err.code === 'network' && known?.pin && (known.status === 'ok' || known.status === 'pinned'))) throw err;
        keys = known;
      }
      if (keys.status === 'changed') throw new BlockedError('key_changed', `${peer}’s safety number has changed. Compare it and accept the new keys before sending.`);
      if (keys.status !== 'ok' && keys.status !== 'pinned') throw new BlockedError('key_invalid', `${peer}’s published keys are not valid; not sending.`);
      return { [this.me]: this.session.encPublicKey, [peer]: keys.pin.enc_public_key };
    }
  }

  /** Seals and sends a text; the message shows at once as "sending". Returns the message. */
  async sendText(peer, text) {
    if (typeof text !== 'string' || !text.trim()) throw new BlockedError('empty', 'Write a message first');
    if (textBytes(text) > MAX_TEXT_BYTES) throw new BlockedError('too_long', `Messages are limited to ${MAX_TEXT_BYTES / 1024} KiB`);
    const readers = await this.readersFor(peer);
    const envelope = await seal({ from: this.me, to: peer, plaintext: { text }, signKey: this.session.signPrivateKey, readers });
    const c = this.conversation(peer);
    const message = {
      key: keyOf(this.me, envelope.id),
      id: envelope.id,
      from: this.me,
      to: peer,
      mine: true,
      seq: null,
      serverTs: null,
      sentAt: envelope.sent_at,
      state: 'sending',
      status: 'ok',
      text,
      envelope,
      localOrder: this.now() + Math.random(),
      live: true,
      receipted: new Set(),
    };
    c.messages.set(message.key, message);
    c.lastTs = Math.max(c.lastTs, envelope.sent_at);
    // the peer hides "typing" when the message arrives: the next keystroke may say so again at once
    this.lastTypingSent.delete(peer);
    this.#emit('conversation', peer);
    this.#emit('conversations');
    this.relay.send(envelope).then(
      async ({ seq, server_ts }) => {
        message.seq = seq;
        message.serverTs = server_ts;
        this.advance(message, 'sent');
        c.exists = true;
        c.lastSeq = Math.max(c.lastSeq, seq);
        c.lastTs = Math.max(c.lastTs, server_ts ?? 0);
        await this.guard.record(this.me, envelope.id, seq).catch(() => {});
        this.#emit('conversation', peer);
        this.#emit('conversations');
      },
      (err) => {
        message.state = 'failed';
        message.error = describeError(err);
        this.#emit('conversation', peer);
      },
    );
    return message;
  }

  /** A typing notice, at most every few seconds per peer. */
  typing(peer) {
    if (!peer || peer === this.me) return;
    const c = this.conversations.get(peer);
    if (!c?.exists) return; // the server drops typing outside a conversation
    const last = this.lastTypingSent.get(peer) ?? 0;
    if (this.now() - last < TYPING_SEND_EVERY_MS) return;
    if (this.relay.typing(peer)) this.lastTypingSent.set(peer, this.now());
  }

  /** A message still in the outbox after it failed for good is removed on request. */
  discard(peer, key) {
    const c = this.conversations.get(peer);
    const m = c?.messages.get(key);
    if (m && m.state === 'failed') {
      c.messages.delete(key);
      this.#emit('conversation', peer);
    }
  }

  // ---------------------------------------------------------------- reports

  /**
   * Reports a message I received and could read (docs/API-CONTRACT.md, POST /api/reports):
   * the envelope is opened again under the keys that verified it, and its K and exact
   * plaintext bytes go to the server with `reason` — nothing else. Returns the answer
   * { id, verdict, detail } and marks the message `reported`; throws ApiError (404, 409
   * already_reported, which marks it too), BlockedError('not_reportable') or EnvelopeError.
   */
  async report(peer, key, reason) {
    const message = this.conversations.get(peer)?.messages.get(key);
    if (!message || message.mine || message.status !== 'ok') {
      throw new BlockedError('not_reportable', 'Only a message you received and could read can be reported.');
    }
    const senderSignKeys = (await this.acceptedFor(message)).map((k) => k.sign_public_key);
    const body = { ...(await disclose(message.envelope, { me: this.me, encPrivateKey: this.session.encPrivateKey, senderSignKeys })), reason };
    try {
      const answer = await this.api.post('/api/reports', body, { auth: true });
      message.reported = true;
      return answer;
    } catch (err) {
      if (err instanceof ApiError && err.code === 'already_reported') message.reported = true;
      throw err;
    } finally {
      body.key = '';
      body.plaintext = '';
      this.#emit('conversation', peer);
    }
  }

  // ---------------------------------------------------------------- file manifests

  /** Seals a file manifest (files.js) for `peer` with the pinned keys, as a message is sealed. */
  async sealFileManifest(peer, manifest) {
    const readers = await this.readersFor(peer);
    return sealManifest({ from: this.me, to: peer, signKey: this.session.signPrivateKey, readers, manifest });
  }

  /**
   * Opens the manifest of a listed file (FILE of the files list or a file_ready frame) and
   * checks it against the PINNED signing key of its sender (my own key for mine): only the key
   * pinned now, since a file has no seq to place it before a key change. The envelope must
   * name the listed sender and recipient. Returns the manifest; throws (FileError, or an
   * Error when the file is not between me and someone) when it does not verify.
   */
  async openFileManifest(file) {
    const env = file?.manifest;
    if (!env || typeof env !== 'object' || env.from !== file.from || env.to !== file.to) throw new Error('the manifest names other parties');
    if (file.from !== this.me && file.to !== this.me) throw new Error('the file is not mine');
    let senderSignKeys;
    if (file.from === this.me) {
      senderSignKeys = [this.session.signPublicKey];
    } else {
      const keys = await this.ensureKeys(file.from);
      senderSignKeys = acceptedSignKeys(keys?.pin, null).map((k) => k.sign_public_key);
    }
    return openManifest(env, {
      me: this.me,
      encPrivateKey: this.session.encPrivateKey,
      senderSignKeys,
      fileId: file.file_id,
      cipherSizeBytes: file.size,
    });
  }

  stop() {
    this.relay.stop();
    for (const c of this.conversations.values()) this.timers.clearTimeout(c.typingTimer);
  }
}
