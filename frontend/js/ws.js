// The WebSocket connection manager (docs/PROTOCOL.md §7, docs/API-CONTRACT.md):
//   POST /api/ws-ticket (Bearer) -> new WebSocket(ws(s)://host/api/ws?ticket=...)
// with reconnects (exponential backoff with jitter), sends kept until acknowledged and sent
// again with the SAME envelope (same id) after a reconnect (the server acknowledges a resend
// with the original seq and stores it once), receipts queued while offline, and every server
// frame handed to listeners: ack, message, delivered, read, typing, presence, file_ready,
// file_damaged, keys_changed, error.
// The relay is an EventTarget: listeners get CustomEvents whose `detail` is the value.
// A socket is replaced when a send stays unacknowledged for 5 s, when it stays silent for
// 25 s and then leaves a `ping` frame unanswered for 5 s (a cut network while idle: the
// browser keeps such a socket "open" for minutes), and dropped at once when the browser
// reports the network gone (wentOffline(), from the window's `offline` event), so the page
// shows "offline — reconnecting" within seconds of a cut instead of trusting a dead socket.
// Close code 4401 (the server ended this session: logout, logout-all, revocation) is final:
// no reconnect, the relay stops and emits 'ended'. Error frames get the client's own sentence
// for their code (errors.js), never the server's text.
//
// DOM-free: the WebSocket class, timers and randomness are injectable for the unit tests.

import { ApiError } from './api.js';
import { envelopeJson } from './envelope.js';
import { codeText } from './errors.js';

export const FRAME_TYPES = ['ack', 'message', 'delivered', 'read', 'typing', 'presence', 'file_ready', 'file_damaged', 'keys_changed', 'error', 'pong'];

/** The close code with which the server ends a session's sockets (docs/PROTOCOL.md §10.4). */
export const SESSION_ENDED = 4401;

/** A send the server refused for good (the `error` frame's code), or that could not be sent. */
export class SendError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'SendError';
    this.code = code;
  }
}

/** ws:// or wss:// URL of the relay for a ticket, on the page's own origin. */
export function relayUrl(ticket, loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/api/ws?ticket=${encodeURIComponent(ticket)}`;
}

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, "equal jitter". */
export function backoffDelay(attempt, { baseMs = 500, maxMs = 30000, random = Math.random } = {}) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

const OPEN = 1;

export class Relay extends EventTarget {
  /**
   * @param {object} o
   * @param {import('./api.js').Api} o.api
   * @param {Function} [o.WebSocket]   the WebSocket class
   * @param {Function} [o.url]         ticket -> URL (default: relayUrl on the page's origin)
   * @param {object}   [o.timers]      { setTimeout, clearTimeout }
   * @param {Function} [o.random]
   * @param {Function} [o.now]
   * @param {number}   [o.baseMs] [o.maxMs]  backoff bounds
   * @param {number}   [o.ackTimeoutMs]  an open socket that leaves a send unacknowledged this long is replaced
   * @param {number}   [o.stableMs]  a connection open this long resets the backoff
   * @param {number}   [o.retryMs]  delay before resending after an `internal` error frame
   * @param {number}   [o.pingIdleMs]  an open socket silent this long is sent a `ping`
   * @param {number}   [o.pongTimeoutMs]  a ping unanswered (no frame at all) this long replaces the socket
   */
  constructor(o) {
    super();
    this.api = o.api;
    this.WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this.url = o.url ?? ((ticket) => relayUrl(ticket));
    this.timers = o.timers ?? { setTimeout: (...a) => globalThis.setTimeout(...a), clearTimeout: (t) => globalThis.clearTimeout(t) };
    this.random = o.random ?? Math.random;
    this.now = o.now ?? Date.now;
    this.baseMs = o.baseMs ?? 500;
    this.maxMs = o.maxMs ?? 30000;
    this.ackTimeoutMs = o.ackTimeoutMs ?? 5000; // acks take milliseconds: 5 s of silence while sending is a dead connection
    this.stableMs = o.stableMs ?? 10000;
    this.retryMs = o.retryMs ?? 1500;
    this.pingIdleMs = o.pingIdleMs ?? 25000;
    this.pongTimeoutMs = o.pongTimeoutMs ?? 5000;

    this.state = 'idle'; // idle | connecting | open | waiting | stopped
    this.ws = null;
    this.attempt = 0;
    this.openedAt = 0;
    this.retryTimer = null;
    this.ackTimer = null;
    this.heartbeatTimer = null;
    this.pongTimer = null;
    this.lastHeard = 0;
    this.pings = 0;
    this.generation = 0;
    /** id -> { envelope, text, resolve, reject, sentAt (ms of the last write), tries } in send order */
    this.pending = new Map();
    /** receipts waiting for a connection: "kind\nid" */
    this.receipts = new Set();
  }

  // ---------------------------------------------------------------- events

  // Events (CustomEvent, the value in `detail`): 'state' (the new state), 'open' (none),
  // 'close' ({code, reason}), 'ended' ({code, reason}: closed with SESSION_ENDED, the relay
  // has stopped), one per frame type in FRAME_TYPES (the frame) and 'frame' (any frame).
  // A listener that throws does not stop the others (a browser reports the error on `window`).
  #emit(type, detail = null) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.#emit('state', state);
  }

  get isOpen() {
    return this.state === 'open';
  }

  // ---------------------------------------------------------------- connection

  start() {
    if (this.state !== 'idle' && this.state !== 'stopped') return;
    this.state = 'idle';
    this.connect();
  }

  stop() {
    this.generation++;
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearTimeout(this.ackTimer);
    this.retryTimer = null;
    this.ackTimer = null;
    this.stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onclose = ws.onmessage = ws.onerror = null;
      try {
        ws.close(1000, 'bye');
      } catch {
        // already closed
      }
    }
    this.setState('stopped');
  }

  /**
   * The browser says the network is gone (the window's `offline` event): a socket cannot be
   * trusted now (a cut connection stays "open" until TCP gives up), so it is dropped and the
   * relay waits; `reconnectNow()` on the `online` event brings it back. Pending sends stay
   * queued and go out, with the same ids, on the next connection.
   */
  wentOffline() {
    if (this.state === 'stopped' || this.state === 'idle') return;
    if (this.ws) {
      this.recycle('offline');
      return;
    }
    this.generation++; // a ticket request or socket on its way is abandoned
    this.scheduleReconnect();
  }

  /**
   * Reconnects now if the socket is down (the browser came back online, the tab became
   * visible...); an open socket is asked for a pong instead, so a socket that died while the
   * laptop slept is replaced within `pongTimeoutMs`.
   */
  reconnectNow() {
    if (this.state === 'open') {
      this.ping();
      return;
    }
    if (this.state !== 'waiting') return;
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt = 0;
    this.connect();
  }

  async connect() {
    if (this.state === 'stopped') return;
    const generation = ++this.generation;
    this.setState('connecting');
    let ticket;
    try {
      const answer = await this.api.post('/api/ws-ticket', undefined, { auth: true });
      ticket = answer?.ticket;
      if (typeof ticket !== 'string' || !ticket) throw new ApiError(0, 'invalid_response', 'no ticket in the answer');
    } catch (err) {
      if (generation !== this.generation) return;
      if (err instanceof ApiError && err.status === 401) {
        // the session is over (Api already told its owner); nothing to reconnect to
        this.stop();
        return;
      }
      this.scheduleReconnect();
      return;
    }
    if (generation !== this.generation) return;
    let ws;
    try {
      ws = new this.WebSocket(this.url(ticket));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (generation !== this.generation) return;
      this.openedAt = this.now();
      this.lastHeard = this.openedAt;
      this.setState('open');
      this.armHeartbeat();
      this.#emit('open');
      this.flush();
    };
    ws.onmessage = (event) => {
      if (generation !== this.generation) return;
      this.receive(event.data);
    };
    ws.onerror = () => {
      // a close event always follows
    };
    ws.onclose = (event) => {
      if (generation !== this.generation) return;
      this.closed(event?.code ?? 1006, event?.reason ?? '');
    };
  }

  closed(code, reason) {
    this.ws = null;
    this.timers.clearTimeout(this.ackTimer);
    this.ackTimer = null;
    this.stopHeartbeat();
    const wasOpen = this.state === 'open';
    if (wasOpen && this.now() - this.openedAt >= this.stableMs) this.attempt = 0;
    this.#emit('close', { code, reason });
    if (code === SESSION_ENDED) {
      // the session is over on the server: reconnecting would only be refused
      for (const id of [...this.pending.keys()]) this.fail(id, new SendError('session_ended', 'You were signed out'));
      this.stop();
      this.#emit('ended', { code, reason });
      return;
    }
    if (code === 1009) {
      // frame too large: the largest waiting send caused it; sending it again would loop
      let largest = null;
      for (const p of this.pending.values()) if (!largest || p.text.length > largest.text.length) largest = p;
      if (largest) this.fail(largest.envelope.id, new SendError('envelope_too_large', 'The message is too large to send'));
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.state === 'stopped') return;
    this.setState('waiting');
    const delay = backoffDelay(this.attempt++, { baseMs: this.baseMs, maxMs: this.maxMs, random: this.random });
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  /** Replaces a socket that looks dead (no ack in time, or the browser went offline): close it and reconnect. */
  recycle(reason = 'no acknowledgement') {
    const ws = this.ws;
    if (!ws) return;
    this.generation++;
    ws.onopen = ws.onclose = ws.onmessage = ws.onerror = null;
    try {
      ws.close(4000, reason);
    } catch {
      // already closed
    }
    this.closed(1006, reason);
  }

  write(text) {
    if (!this.ws || this.ws.readyState !== OPEN || this.state !== 'open') return false;
    try {
      this.ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  /** Writes every waiting send (in send order) and receipt. */
  flush() {
    for (const p of this.pending.values()) {
      if (!this.write(p.text)) return;
      p.sentAt = this.now();
      p.tries++;
    }
    for (const key of [...this.receipts]) {
      const [type, id] = key.split('\n');
      if (!this.write(JSON.stringify({ type, id }))) return;
      this.receipts.delete(key);
    }
    this.armAckTimer();
  }

  armAckTimer() {
    this.timers.clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (!this.pending.size || !this.isOpen) return;
    let oldest = Infinity;
    for (const p of this.pending.values()) if (p.sentAt) oldest = Math.min(oldest, p.sentAt);
    if (oldest === Infinity) return;
    const wait = Math.max(0, oldest + this.ackTimeoutMs - this.now());
    this.ackTimer = this.timers.setTimeout(() => {
      this.ackTimer = null;
      if (this.isOpen && this.pending.size) this.recycle();
    }, wait);
  }

  // ---------------------------------------------------------------- heartbeat

  /** Wakes when the socket has been silent for `pingIdleMs` (counted from the last frame heard). */
  armHeartbeat() {
    this.timers.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (!this.isOpen || this.pongTimer) return;
    const wait = Math.max(0, this.lastHeard + this.pingIdleMs - this.now());
    this.heartbeatTimer = this.timers.setTimeout(() => {
      this.heartbeatTimer = null;
      if (!this.isOpen) return;
      if (this.now() - this.lastHeard >= this.pingIdleMs) this.ping();
      else this.armHeartbeat();
    }, wait);
  }

  /** Sends a `ping`; with no frame back within `pongTimeoutMs` the socket is replaced. */
  ping() {
    if (this.pongTimer || !this.isOpen) return;
    this.timers.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (!this.write(`{"type":"ping","id":"p${++this.pings}"}`)) return;
    this.pongTimer = this.timers.setTimeout(() => {
      this.pongTimer = null;
      if (this.isOpen) this.recycle('no pong');
    }, this.pongTimeoutMs);
  }

  stopHeartbeat() {
    this.timers.clearTimeout(this.heartbeatTimer);
    this.timers.clearTimeout(this.pongTimer);
    this.heartbeatTimer = null;
    this.pongTimer = null;
  }

  /** Any frame proves the socket alive: a ping waiting for its pong is answered. */
  heard() {
    this.lastHeard = this.now();
    if (this.pongTimer) {
      this.timers.clearTimeout(this.pongTimer);
      this.pongTimer = null;
      this.armHeartbeat();
    }
  }

  // ---------------------------------------------------------------- frames in

  receive(data) {
    if (typeof data !== 'string') return;
    this.heard();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== 'string') return;
    if (frame.type === 'ack') {
      const p = this.pending.get(frame.id);
      if (p) {
        this.pending.delete(frame.id);
        p.resolve({ seq: frame.seq, server_ts: frame.server_ts });
        this.armAckTimer();
      }
    } else if (frame.type === 'error' && typeof frame.id === 'string' && this.pending.has(frame.id)) {
      const p = this.pending.get(frame.id);
      if (frame.code === 'internal') {
        // not stored: send the same envelope again a little later
        p.sentAt = 0;
        this.timers.setTimeout(() => {
          if (this.pending.get(frame.id) === p && this.write(p.text)) {
            p.sentAt = this.now();
            p.tries++;
            this.armAckTimer();
          }
        }, this.retryMs);
      } else {
        this.fail(frame.id, new SendError(frame.code, codeText(frame.code)));
      }
    }
    this.#emit('frame', frame);
    if (FRAME_TYPES.includes(frame.type)) this.#emit(frame.type, frame);
  }

  fail(id, err) {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.reject(err);
    this.armAckTimer();
  }

  // ---------------------------------------------------------------- frames out

  /**
   * Sends an envelope; resolves with { seq, server_ts } when the server acknowledged it
   * (after a reconnect, the very same envelope is sent again). Rejects with SendError when the
   * server refuses it for good, or when the relay is stopped.
   */
  send(envelope) {
    if (this.pending.has(envelope.id)) return this.pending.get(envelope.id).promise;
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const text = `{"type":"send","envelope":${envelopeJson(envelope)}}`;
    const p = { envelope, text, resolve, reject, promise, sentAt: 0, tries: 0 };
    this.pending.set(envelope.id, p);
    if (this.write(text)) {
      p.sentAt = this.now();
      p.tries++;
      if (!this.ackTimer) this.armAckTimer();
    }
    return promise;
  }

  /** The envelopes still waiting for their ack, in send order. */
  waiting() {
    return [...this.pending.values()].map((p) => p.envelope);
  }

  /** A delivered / read receipt; queued until a connection is open. */
  receipt(type, id) {
    if (type !== 'delivered' && type !== 'read') throw new TypeError('a receipt is delivered or read');
    if (!this.write(JSON.stringify({ type, id }))) this.receipts.add(`${type}\n${id}`);
  }

  /** A typing notice (dropped when offline: it is only worth anything now). */
  typing(to) {
    return this.write(JSON.stringify({ type: 'typing', to }));
  }
}
