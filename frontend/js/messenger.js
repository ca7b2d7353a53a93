// The messaging model behind chat.html, DOM-free: conversations, history (newest page first,
// older pages with before=, catch-up with after= on every (re)connect), live frames from the
// relay, own messages through sending -> sent -> delivered -> read, receipts, typing,
// presence, and key pinning (sending is blocked while a peer's key changed and the change
// was not accepted; messages that do not verify against an accepted key are never shown as
// text; a message without a seq, or an id seen before under another seq, is dropped).
// A received message that opened can be reported (report(): its K and exact bytes only).
//
// Message kinds inside the encryption (PROTOCOL.md §8.9; envelope.js builds and reads them):
// text (optionally a reply), edit, delete for everyone, reaction and the disappearing timer.
// Every opened message is kept with its `content`; view() folds the actions into what the page
// shows (bubbles and system lines), so an action that arrives before its target still applies.
// Messages carrying `expire` are dropped from memory (and, through `onForget`, from IndexedDB)
// at their expiry. Sends made while the relay is down are "queued": kept in the outbox (sealed
// envelopes only, never plaintext: `outbox`) and sent in order, same id, on reconnect.
//
// The Messenger is an EventTarget. The page renders from `conversations` and `presence` and
// listens to these CustomEvents (the value in `detail`):
//   'conversations' (none)  the list changed (order, unread, presence);
//   'conversation' (peer)  the messages, typing or key state of one conversation changed;
//   'incoming' ({peer, message})  a new live message from someone else (for the live region);
//   'connection' (state)  the relay state;
//   'notice' (text)  something the user should know (a dropped replay...).

import { ApiError } from './api.js';
import { EnvelopeError, MAX_TEXT_BYTES, ReplayGuard, checkShape, disclose, isTimerSecs, kindPlaintext, open, readPlaintext, seal } from './envelope.js';
import { acceptKeys, acceptedSignKeys, checkPeerKeys, setVerified } from './pins.js';
import { utf8 } from './crypto.js';
import { describeError } from './errors.js';
import { openManifest, sealManifest } from './files.js';

export const PAGE_SIZE = 50;
const CATCH_UP_LIMIT = 200;
const KEY_RECHECK_MS = 60000;
const TYPING_SHOWN_MS = 6000;
const TYPING_SEND_EVERY_MS = 3000;
const STATE_RANK = { failed: -1, queued: 0, sending: 0, sent: 1, delivered: 2, read: 3 };
/** The longest wait of the expiry timer (setTimeout's limit is ~24.8 days). */
const EXPIRY_CHECK_MAX_MS = 60 * 60 * 1000;

/** "1 hour", "30 seconds", "1 week"… for a timer value in seconds; "off" for 0. */
export function timerText(secs) {
  if (!secs) return 'off';
  const units = [
    [7 * 86400, 'week'],
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  for (const [size, name] of units) {
    if (secs % size === 0) {
      const n = secs / size;
      return `${n} ${name}${n === 1 ? '' : 's'}`;
    }
  }
  return `${secs} seconds`;
}

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

/**
 * When a message carrying `expire` leaves both clients (PROTOCOL.md §8.9.6): expire seconds
 * after the later of its signed sent_at and the server's server_ts (the sender's clock may be
 * behind; a receiver's own copy is never kept longer than the server keeps the ciphertext
 * plus the sender's skew). null when it does not expire.
 */
export function expiryOf(message) {
  const secs = message.content?.expire;
  if (!secs) return null;
  return Math.max(message.sentAt ?? 0, message.serverTs ?? 0) + secs * 1000;
}

/** Whether a message shows as a bubble: text (and replies), and whatever did not open. */
export function isBubble(message) {
  return message.status !== 'ok' || message.content?.kind === 'text';
}

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
   * @param {object} [o.outbox]  { put(id, record), delete(id), list() } persistence of queued
   *        sends: records { peer, envelope, order } hold the sealed envelope only (store.js)
   * @param {Function} [o.onForget]  (peer, message) after a message left memory for good
   *        (expired, or deleted for everyone): the page drops it from its search index
   * @param {Function} [o.onOpened]  (peer, message) after a text message opened (the search index)
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
    this.outbox = o.outbox ?? null;
    this.onForget = o.onForget ?? (() => {});
    this.onOpened = o.onOpened ?? (() => {});
    this.expiryTimer = null;
    this.expiryAt = Infinity;
    this.outboxOrder = 0;
    this.sendCounter = 0;
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
        timer: { secs: 0, at: 0, by: null }, // the disappearing timer (newest of messages and the server)
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

  /** The message of `peer`'s conversation with this id (any sender), or undefined. */
  byId(peer, id) {
    const c = this.conversations.get(peer);
    if (!c) return undefined;
    return c.messages.get(keyOf(peer, id)) ?? c.messages.get(keyOf(this.me, id));
  }

  /**
   * What the page shows of a conversation, in order (PROTOCOL.md §8.9's receiver rules):
   *   { type: 'message', message, text, edited, deleted, reactions: [{emoji, from}], quote }
   *     for each bubble; `text` is the newest accepted edit's (null once deleted); `quote` is
   *     null (not a reply), { id, missing: true } or { id, from, text, deleted };
   *   { type: 'system', message, text } for a timer change ("alice set disappearing messages to 1 hour").
   * Edits and deletes count only from the target's own sender; a reaction is one per person
   * (the newest by sent_at; "" removes it). Actions that failed to send do not apply.
   */
  view(peer) {
    const all = this.ordered(peer);
    const edits = new Map(); // target key -> newest edit message
    const deletes = new Set(); // target keys
    const reacts = new Map(); // target id -> Map(from -> react message)
    const newer = (a, b) => !b || a.sentAt > b.sentAt || (a.sentAt === b.sentAt && (a.seq ?? Infinity) > (b.seq ?? Infinity));
    for (const m of all) {
      if (m.status !== 'ok' || !m.content || m.state === 'failed') continue;
      const k = m.content;
      if (k.kind === 'edit') {
        const key = keyOf(m.from, k.target); // only the sender's own message is a target
        if (newer(m, edits.get(key))) edits.set(key, m);
      } else if (k.kind === 'delete') {
        deletes.add(keyOf(m.from, k.target));
      } else if (k.kind === 'react') {
        let per = reacts.get(k.target);
        if (!per) reacts.set(k.target, (per = new Map()));
        if (newer(m, per.get(m.from))) per.set(m.from, m);
      }
    }
    const shown = (m) => {
      const deleted = deletes.has(m.key);
      const edit = edits.get(m.key);
      return { deleted, edited: Boolean(edit) && !deleted, text: deleted ? null : edit ? edit.content.text : m.text };
    };
    const items = [];
    for (const m of all) {
      if (m.status === 'ok' && m.content?.kind === 'timer') {
        const who = m.mine ? 'You' : m.from;
        const secs = m.content.secs;
        items.push({ type: 'system', message: m, text: secs ? `${who} set disappearing messages to ${timerText(secs)}` : `${who} turned off disappearing messages` });
        continue;
      }
      if (!isBubble(m)) continue;
      const { deleted, edited, text } = shown(m);
      const reactions = [];
      if (!deleted) {
        for (const [from, r] of reacts.get(m.id) ?? []) if (r.content.emoji) reactions.push({ emoji: r.content.emoji, from });
      }
      let quote = null;
      const replyTo = m.status === 'ok' ? m.content?.replyTo : null;
      if (replyTo && !deleted) {
        const target = this.byId(peer, replyTo);
        if (!target || !isBubble(target) || target.status !== 'ok') quote = { id: replyTo, missing: true };
        else quote = { id: replyTo, from: target.from, ...shown(target) };
      }
      items.push({ type: 'message', message: m, text, edited, deleted, reactions, quote });
    }
    return items;
  }

  /** The newest bubble of a conversation as the list previews it ({ message, text, deleted }), or null. */
  preview(peer) {
    const items = this.view(peer).filter((i) => i.type === 'message');
    return items.length ? items[items.length - 1] : null;
  }

  /** The conversation's disappearing timer in seconds (0 = off). */
  timerOf(peer) {
    return this.conversations.get(peer)?.timer.secs ?? 0;
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
    on('state', (state) => this.onRelayState(state));
    on('message', (f) => this.onMessageFrame(f));
    on('delivered', (f) => this.onReceipt(f, 'delivered'));
    on('read', (f) => this.onReceipt(f, 'read'));
    on('typing', (f) => this.onTyping(f));
    on('presence', (f) => this.onPresence(f));
    on('error', (f) => this.onErrorFrame(f));
    await this.refreshList().catch((err) => this.#emit('notice', `Could not load your conversations: ${describeError(err)}`));
    await this.restoreOutbox().catch(() => {});
    this.relay.start();
  }

  /** Sends wait as "queued" while the relay is down and show "sending" again once it is up. */
  onRelayState(state) {
    const to = state === 'open' ? 'sending' : 'queued';
    const from = state === 'open' ? 'queued' : 'sending';
    for (const c of this.conversations.values()) {
      let changed = false;
      for (const m of c.messages.values()) {
        if (m.mine && m.state === from) {
          m.state = to;
          changed = true;
        }
      }
      if (changed) this.#emit('conversation', c.peer);
    }
    this.#emit('connection', state);
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
      // the server counts every envelope; with everything up to its newest seq held here, count only bubbles
      if (c.unread > 0 && c.loaded && this.newestSeq(c) >= (row.last_seq ?? Infinity)) c.unread = this.localUnread(c);
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
      // the server's unread count includes edits, reactions, deletes and timers: when the page
      // holds every unread message, count the bubbles among them instead
      if (c.unread > 0 && c.unread <= items.length) {
        c.unread = this.localUnread(c);
        this.#emit('conversations');
      }
    })().finally(() => {
      c.loading = null;
    });
    return c.loading;
  }

  /** The newest seq held in a conversation (0 when none). */
  newestSeq(c) {
    let max = 0;
    for (const m of c.messages.values()) if (m.seq != null && m.seq > max) max = m.seq;
    return max;
  }

  /** Received bubbles not yet read (what the list's unread count shows; actions never count). */
  localUnread(c) {
    let n = 0;
    for (const m of c.messages.values()) if (!m.mine && isBubble(m) && m.state !== 'read') n++;
    return n;
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
    const wanted = items.filter((item) => {
      const env = item?.envelope;
      return env && typeof env === 'object' && this.peerOf(env) === peer;
    });
    const ahead = await this.openAhead(c, peer, wanted, source);
    for (const item of wanted) {
      const message = ahead.has(item) ? this.place(c, item, ahead.get(item)) : await this.file(c, item, source);
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

  /**
   * Opens a page's new messages side by side (item -> opened message, or null when refused):
   * their replay-guard reads and writes, signature checks and decryptions overlap instead of
   * queueing one message behind the other (Web Crypto and IndexedDB do their work off the
   * page's thread). ingestNow then files them one by one, in order. Only the first item of
   * each id is opened ahead; a later copy goes through file() and meets the first one there.
   * Sequential when the peer's keys are not pinned yet (the first look pins them).
   */
  async openAhead(c, peer, items, source) {
    const ahead = new Map();
    if (items.length < 2) return ahead;
    if (peer !== this.me && !(await this.ensureKeys(peer))?.pin) return ahead;
    const firstOfKey = new Set();
    const fresh = items.filter((item) => {
      const key = keyOf(item.envelope.from, item.envelope.id);
      if (firstOfKey.has(key) || c.messages.has(key)) return false;
      firstOfKey.add(key);
      return true;
    });
    await Promise.all(fresh.map(async (item) => ahead.set(item, await this.prepare(c, item, source))));
    return ahead;
  }

  /** Files one item in its conversation; returns the message (new or updated) or null. */
  async file(c, item, source) {
    const existing = c.messages.get(keyOf(item.envelope.from, item.envelope.id));
    if (existing || !Number.isSafeInteger(item.seq)) return this.place(c, item, null);
    return this.place(c, item, await this.prepare(c, item, source));
  }

  /**
   * Checks a new item against the replay guard and opens it: the message, not yet filed, or
   * null when the guard refuses it.
   */
  async prepare(c, item, source) {
    const env = item.envelope;
    const seq = item.seq;
    const verdict = await this.guard.check(env.from, env.id, seq);
    if (verdict === 'replayed') {
      this.#emit('notice', `A message from ${env.from} arrived again under a new number and was dropped (possible replay).`);
      return null;
    }
    const message = {
      key: keyOf(env.from, env.id),
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
    return message;
  }

  /**
   * Files `item` in its conversation: into the copy already held (a resend, a later state),
   * or as `opened` (from prepare()). Returns the message (new or updated) or null.
   */
  place(c, item, opened) {
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
    const message = opened;
    if (!message) return null;
    if (message.expiresAt != null && message.expiresAt <= this.now()) return null; // expired: never shown
    c.messages.set(key, message);
    this.noteContent(c, message);
    c.lastSeq = Math.max(c.lastSeq, seq);
    c.exists = true;
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
      if (opened.content.kind === 'unknown') throw new EnvelopeError('invalid_plaintext', 'no text');
      message.content = opened.content;
      message.text = opened.content.text ?? null;
      message.expiresAt = expiryOf(message);
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
      message.content = null;
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

  /**
   * After a message entered memory: the timer it sets, the index hook for text, a delete's
   * effect on the index, and its expiry.
   */
  noteContent(c, message) {
    const k = message.status === 'ok' ? message.content : null;
    if (!k) return;
    if (k.kind === 'timer' && message.sentAt > c.timer.at) {
      c.timer = { secs: k.secs, at: message.sentAt, by: message.from };
    } else if (k.kind === 'delete') {
      const target = c.messages.get(keyOf(message.from, k.target));
      c.deleted = c.deleted ?? new Set();
      c.deleted.add(keyOf(message.from, k.target));
      this.onForget(c.peer, target ?? { from: message.from, id: k.target });
    } else if (k.kind === 'text' && !c.deleted?.has(message.key)) {
      this.onOpened(c.peer, message);
    } else if (k.kind === 'edit' && !c.deleted?.has(keyOf(message.from, k.target))) {
      const target = c.messages.get(keyOf(message.from, k.target));
      if (target?.content?.kind === 'text') this.onOpened(c.peer, { ...target, text: k.text, editedBy: message });
    }
    if (message.expiresAt != null) this.scheduleExpiry(message.expiresAt);
  }

  /** Arms the expiry timer for `at` when that is sooner than the one armed. */
  scheduleExpiry(at) {
    if (at >= this.expiryAt) return;
    this.timers.clearTimeout(this.expiryTimer);
    this.expiryAt = at;
    const wait = Math.min(Math.max(0, at - this.now()), EXPIRY_CHECK_MAX_MS);
    this.expiryTimer = this.timers.setTimeout(() => {
      this.expiryTimer = null;
      this.expiryAt = Infinity;
      this.sweepExpired();
    }, wait);
  }

  /** Drops every expired message from memory (and, through onForget, the index); re-arms the timer. */
  sweepExpired() {
    const now = this.now();
    let next = Infinity;
    for (const c of this.conversations.values()) {
      let changed = false;
      for (const m of [...c.messages.values()]) {
        if (m.expiresAt == null) continue;
        if (m.expiresAt <= now) {
          c.messages.delete(m.key);
          m.text = null;
          this.onForget(c.peer, m);
          changed = true;
        } else {
          next = Math.min(next, m.expiresAt);
        }
      }
      if (changed) {
        this.#emit('conversation', c.peer);
        this.#emit('conversations');
      }
    }
    if (next !== Infinity) this.scheduleExpiry(next);
  }

  /** GET the conversation's timer from the server (it wins when it was set after the newest timer message). */
  async fetchTimer(peer) {
    const c = this.conversation(peer);
    if (this.listLoaded && !c.exists) return c.timer;
    const answer = await this.api.get(`/api/conversations/${encodeURIComponent(peer)}/timer`, { auth: true });
    if (isTimerSecs(answer?.secs) && Number.isSafeInteger(answer.set_at) && answer.set_at >= c.timer.at) {
      const changed = answer.secs !== c.timer.secs;
      c.timer = { secs: answer.secs, at: answer.set_at, by: c.timer.by };
      if (changed) this.#emit('conversation', peer);
    }
    return c.timer;
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

  /**
   * delivered for everything received that the server still has as sent; read when it is on
   * screen. An action (edit, delete, reaction, timer: never a bubble) is read as soon as it is
   * applied: there is nothing left to read later, and the server's unread count, which cannot
   * tell actions from bubbles, then counts only bubbles (docs/PROTOCOL.md §8.9).
   */
  sendReceipts(peer, messages) {
    const reading = this.active === peer && this.isVisible();
    for (const m of messages) {
      if (m.mine) continue;
      // read only for what was shown: a message that did not verify was not read
      if ((reading || !isBubble(m)) && m.status === 'ok' && m.state !== 'read' && !m.receipted.has('read')) {
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
    if (isNew && !message.mine && isBubble(message)) {
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
    const timer = peer === this.me ? null : this.fetchTimer(peer).catch(() => {});
    await Promise.all([keys, history, timer]);
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

  /** `expire` for what is sent now to `peer`: the conversation's timer, or undefined when off. */
  expireFor(peer) {
    const secs = this.timerOf(peer);
    return secs > 0 ? secs : undefined;
  }

  /**
   * Seals and sends a text (a reply when `replyTo` is a message id); the message shows at once
   * as "sending", or "queued" while the relay is down. Returns the message.
   */
  async sendText(peer, text, { replyTo = null } = {}) {
    if (typeof text !== 'string' || !text.trim()) throw new BlockedError('empty', 'Write a message first');
    if (textBytes(text) > MAX_TEXT_BYTES) throw new BlockedError('too_long', `Messages are limited to ${MAX_TEXT_BYTES / 1024} KiB`);
    return this.sendContent(peer, kindPlaintext('text', { text, replyTo, expire: this.expireFor(peer) }));
  }

  /** My own text message `key` that is still shown (the target of an edit or a delete), or throws. */
  ownTarget(peer, key) {
    const m = this.conversations.get(peer)?.messages.get(key);
    if (!m || !m.mine || m.status !== 'ok' || m.content?.kind !== 'text') throw new BlockedError('not_yours', 'Only your own messages can be changed.');
    if (this.conversations.get(peer).deleted?.has(key)) throw new BlockedError('deleted', 'That message was deleted.');
    return m;
  }

  /** Replaces the text of my message `key` on both sides (an edit, PROTOCOL.md §8.9.3). */
  async editMessage(peer, key, text) {
    const target = this.ownTarget(peer, key);
    if (typeof text !== 'string' || !text.trim()) throw new BlockedError('empty', 'Write a message first');
    if (textBytes(text) > MAX_TEXT_BYTES) throw new BlockedError('too_long', `Messages are limited to ${MAX_TEXT_BYTES / 1024} KiB`);
    return this.sendContent(peer, kindPlaintext('edit', { id: target.id, text, expire: this.expireFor(peer) }));
  }

  /**
   * Deletes my message `key` for everyone (PROTOCOL.md §8.9.4): the delete goes to both
   * sides, then, once the target is stored, DELETE /api/messages/{id} removes its ciphertext.
   * Resolves when the delete message is acknowledged and the server copy deleted.
   */
  async deleteForEveryone(peer, key) {
    const target = this.ownTarget(peer, key);
    const message = await this.sendContent(peer, kindPlaintext('delete', { id: target.id, expire: this.expireFor(peer) }));
    await message.acked;
    await target.acked;
    await this.api.del(`/api/messages/${encodeURIComponent(target.id)}`, { auth: true });
    return message;
  }

  /** My reaction to message `key` ("" removes it; one per person, PROTOCOL.md §8.9.5). */
  async react(peer, key, emoji) {
    const target = this.conversations.get(peer)?.messages.get(key);
    if (!target || target.status !== 'ok' || !isBubble(target)) throw new BlockedError('not_found', 'That message is not here.');
    return this.sendContent(peer, kindPlaintext('react', { id: target.id, emoji, expire: this.expireFor(peer) }));
  }

  /** My current reaction to message `key`, or ''. */
  myReaction(peer, key) {
    const m = this.conversations.get(peer)?.messages.get(key);
    const item = m && this.view(peer).find((i) => i.message === m);
    return item?.reactions.find((r) => r.from === this.me)?.emoji ?? '';
  }

  /**
   * Sets the conversation's disappearing timer: PUT on the server (which sweeps the ciphertext)
   * and a timer message both sides show (PROTOCOL.md §8.9.6).
   */
  async setTimer(peer, secs) {
    if (!isTimerSecs(secs)) throw new BlockedError('invalid_timer', 'That is not a timer value.');
    if (peer === this.me) throw new BlockedError('invalid_timer', 'Notes to yourself have no timer.');
    await this.readersFor(peer); // refuse before the server changes anything when sending is blocked
    const answer = await this.api.put(`/api/conversations/${encodeURIComponent(peer)}/timer`, { secs }, { auth: true });
    const c = this.conversation(peer);
    const message = await this.sendContent(peer, kindPlaintext('timer', { secs }));
    c.timer = { secs, at: Math.max(message.sentAt, answer?.set_at ?? 0), by: this.me };
    this.#emit('conversation', peer);
    return message;
  }

  /** Seals `plaintext` (a kindPlaintext object) for `peer` and sends it. Returns the message. */
  async sendContent(peer, plaintext) {
    const readers = await this.readersFor(peer);
    const envelope = await seal({ from: this.me, to: peer, plaintext, signKey: this.session.signPrivateKey, readers });
    const c = this.conversation(peer);
    const content = readPlaintext(plaintext);
    const message = this.ownMessage(peer, envelope, content);
    c.messages.set(message.key, message);
    c.lastTs = Math.max(c.lastTs, envelope.sent_at);
    this.noteContent(c, message);
    // the peer hides "typing" when the message arrives: the next keystroke may say so again at once
    this.lastTypingSent.delete(peer);
    this.#emit('conversation', peer);
    this.#emit('conversations');
    // the outbox record is written before the relay can acknowledge (and so delete) it
    await this.outbox?.put(envelope.id, { peer, envelope, order: this.now() * 1000 + (this.outboxOrder++ % 1000) }).catch(() => {});
    this.track(c, message);
    return message;
  }

  /** A message object for an envelope I sealed (sending now, or restored from the outbox). */
  ownMessage(peer, envelope, content) {
    const message = {
      key: keyOf(this.me, envelope.id),
      id: envelope.id,
      from: this.me,
      to: peer,
      mine: true,
      seq: null,
      serverTs: null,
      sentAt: envelope.sent_at,
      state: this.relay.isOpen === false ? 'queued' : 'sending',
      status: 'ok',
      content,
      text: content.text ?? null,
      envelope,
      // Unacknowledged sends show in the order they were made (restored ones first): a
      // counter, since two sends can share a millisecond.
      localOrder: ++this.sendCounter,
      live: true,
      receipted: new Set(),
    };
    message.expiresAt = expiryOf(message);
    return message;
  }

  /** Hands the envelope to the relay (kept and resent until acknowledged) and files the ack. */
  track(c, message) {
    const peer = c.peer;
    const envelope = message.envelope;
    message.acked = this.relay.send(envelope).then(
      async ({ seq, server_ts }) => {
        message.seq = seq;
        message.serverTs = server_ts;
        if (message.expiresAt != null) {
          // PROTOCOL.md §8.9.6: max(sent_at, server_ts) once the server's time is known
          message.expiresAt = expiryOf(message);
          this.scheduleExpiry(message.expiresAt);
        }
        this.advance(message, 'sent');
        c.exists = true;
        c.lastSeq = Math.max(c.lastSeq, seq);
        c.lastTs = Math.max(c.lastTs, server_ts ?? 0);
        await this.guard.record(this.me, envelope.id, seq).catch(() => {});
        await this.outbox?.delete(envelope.id).catch(() => {});
        this.#emit('conversation', peer);
        this.#emit('conversations');
        return message;
      },
      async (err) => {
        message.state = 'failed';
        message.error = describeError(err);
        await this.outbox?.delete(envelope.id).catch(() => {});
        this.#emit('conversation', peer);
        throw err;
      },
    );
    message.acked.catch(() => {}); // the failure shows on the message
  }

  /**
   * On start: the sends a previous page load queued (sealed envelopes in the outbox) are
   * opened again with my own key, shown as "queued" and handed to the relay in their order,
   * with their original ids (the server stores an id once, so nothing is sent twice).
   */
  async restoreOutbox() {
    if (!this.outbox) return;
    const records = (await this.outbox.list()).filter((r) => r?.envelope?.from === this.me && typeof r.peer === 'string');
    records.sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
    for (const r of records) {
      const c = this.conversation(r.peer);
      if (c.messages.has(keyOf(this.me, r.envelope.id))) continue;
      let opened;
      try {
        opened = await open(r.envelope, { me: this.me, encPrivateKey: this.session.encPrivateKey, senderSignKeys: [this.session.signPublicKey] });
      } catch {
        await this.outbox.delete(r.envelope.id).catch(() => {});
        continue;
      }
      const message = this.ownMessage(r.peer, r.envelope, opened.content);
      c.messages.set(message.key, message);
      this.noteContent(c, message);
      this.track(c, message);
      this.#emit('conversation', r.peer);
    }
    if (records.length) this.#emit('conversations');
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
    this.timers.clearTimeout(this.expiryTimer);
    for (const c of this.conversations.values()) this.timers.clearTimeout(c.typingTimer);
  }
}
