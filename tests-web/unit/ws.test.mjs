// js/ws.js: the relay connection manager with a fake WebSocket, fake timers and a fake ticket
// endpoint: tickets, reconnects with backoff, sends kept until acknowledged and resent with the
// same envelope, error frames, receipts while offline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from './paths.mjs';

const { Relay, SendError, backoffDelay, relayUrl } = await frontendModule('ws.js');
const { ApiError } = await frontendModule('api.js');

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }
  send(text) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(text);
  }
  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }
  // server side
  accept() {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(frame) {
    this.onmessage?.({ data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  frames() {
    return this.sent.map((t) => JSON.parse(t));
  }
}

function fakeTimers() {
  let now = 1000;
  let next = 1;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout: (fn, ms) => {
      const id = next++;
      timers.set(id, { fn, at: now + ms });
      return id;
    },
    clearTimeout: (id) => timers.delete(id),
    /** Runs every timer due within `ms`, in time order. */
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
        await settle();
      }
      now = end;
    },
    pending: () => [...timers.values()].map((t) => t.at - now),
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

function fakeApi({ fail = [] } = {}) {
  let n = 0;
  const api = {
    calls: 0,
    async post(path, body, options) {
      assert.equal(path, '/api/ws-ticket');
      assert.equal(body, undefined);
      assert.equal(options.auth, true);
      api.calls++;
      const failure = fail.shift();
      if (failure) throw failure;
      return { ticket: `ticket+${++n}/=`, expires_in: 30 };
    },
  };
  return api;
}

function envelope(id, text = 'x') {
  // only the shape matters to the relay; fields given out of order on purpose
  return { sig: 's', keys: { bob: 'k2', alice: 'k1' }, ct: text, iv: 'i', sent_at: 5, to: 'bob', from: 'alice', id, v: 1 };
}

function relay(options = {}) {
  FakeSocket.all = [];
  const timers = options.timers ?? fakeTimers();
  const api = options.api ?? fakeApi();
  const r = new Relay({
    api,
    WebSocket: FakeSocket,
    url: (ticket) => relayUrl(ticket, { protocol: 'http:', host: 'chat.example:8080' }),
    timers,
    now: timers.now,
    random: () => 0.5,
    ...options.relay,
  });
  return { r, timers, api };
}

test('relayUrl and backoffDelay', () => {
  assert.equal(relayUrl('a+b/=', { protocol: 'https:', host: 'x.example' }), 'wss://x.example/api/ws?ticket=a%2Bb%2F%3D');
  assert.equal(relayUrl('t', { protocol: 'http:', host: '127.0.0.1:1' }), 'ws://127.0.0.1:1/api/ws?ticket=t');
  const delays = [0, 1, 2, 3, 10, 50].map((n) => backoffDelay(n, { baseMs: 500, maxMs: 30000, random: () => 1 }));
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 30000, 30000]);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(3, { baseMs: 500, maxMs: 30000 });
    assert.ok(d >= 2000 && d <= 4000, String(d)); // jitter within [ceiling/2, ceiling]
  }
});

test('connects with a fresh ticket; a send is written at once and resolved by its ack', async () => {
  const { r } = relay();
  const states = [];
  r.addEventListener('state', (e) => states.push(e.detail));
  r.start();
  await settle();
  const ws = FakeSocket.all[0];
  assert.equal(ws.url, 'ws://chat.example:8080/api/ws?ticket=ticket%2B1%2F%3D');
  ws.accept();
  assert.deepEqual(states, ['connecting', 'open']);
  const acked = r.send(envelope('id-1'));
  assert.equal(
    ws.sent[0],
    '{"type":"send","envelope":{"v":1,"id":"id-1","from":"alice","to":"bob","sent_at":5,"iv":"i","ct":"x","keys":{"alice":"k1","bob":"k2"},"sig":"s"}}',
  );
  ws.push({ type: 'ack', id: 'id-1', seq: 7, server_ts: 99 });
  assert.deepEqual(await acked, { seq: 7, server_ts: 99 });
  assert.equal(r.waiting().length, 0);
});

test('sends made while offline wait, in order, and go out when the socket opens', async () => {
  const { r } = relay();
  r.start();
  const one = r.send(envelope('id-1'));
  const two = r.send(envelope('id-2'));
  r.receipt('read', 'm-9');
  await settle();
  const ws = FakeSocket.all[0];
  ws.accept();
  assert.deepEqual(ws.frames().map((f) => f.envelope?.id ?? `${f.type}:${f.id}`), ['id-1', 'id-2', 'read:m-9']);
  ws.push({ type: 'ack', id: 'id-2', seq: 2, server_ts: 1 });
  ws.push({ type: 'ack', id: 'id-1', seq: 1, server_ts: 1 });
  assert.equal((await one).seq, 1);
  assert.equal((await two).seq, 2);
});

test('a connection lost before the ack: reconnect with backoff, same envelope again, one resolution', async () => {
  const { r, timers, api } = relay();
  const opens = [];
  r.addEventListener('open', () => opens.push(FakeSocket.all.length));
  r.start();
  await settle();
  FakeSocket.all[0].accept();
  let resolved = 0;
  const acked = r.send(envelope('id-1', 'hello')).then((v) => {
    resolved++;
    return v;
  });
  const first = FakeSocket.all[0].sent[0];
  FakeSocket.all[0].drop(1006);
  assert.equal(r.state, 'waiting');
  assert.deepEqual(timers.pending(), [375]); // attempt 0: ceiling 500, half plus half of random 0.5
  await timers.advance(375);
  assert.equal(api.calls, 2, 'a new ticket for every connection');
  const ws = FakeSocket.all[1];
  ws.accept();
  assert.deepEqual(opens, [1, 2]);
  assert.equal(ws.sent[0], first, 'byte for byte the same frame, same id');
  ws.push({ type: 'ack', id: 'id-1', seq: 4, server_ts: 10 });
  ws.push({ type: 'ack', id: 'id-1', seq: 4, server_ts: 10 }); // a stray second ack changes nothing
  assert.deepEqual(await acked, { seq: 4, server_ts: 10 });
  assert.equal(resolved, 1);
});

test('backoff grows while connecting fails, and resets after a stable connection', async () => {
  const fail = [new ApiError(0, 'network', 'down'), new ApiError(500, 'internal', 'oops'), new ApiError(0, 'network', 'down')];
  const { r, timers } = relay({ api: fakeApi({ fail }) });
  r.start();
  await settle();
  assert.deepEqual(timers.pending(), [375]);
  await timers.advance(375);
  assert.deepEqual(timers.pending(), [750]);
  await timers.advance(750);
  assert.deepEqual(timers.pending(), [1500]);
  await timers.advance(1500);
  const ws = FakeSocket.all[0];
  ws.accept();
  // a socket that dies at once keeps the backoff growing
  ws.drop(1011);
  assert.deepEqual(timers.pending(), [3000]);
  await timers.advance(3000);
  FakeSocket.all[1].accept();
  await timers.advance(20000); // stable for longer than stableMs
  FakeSocket.all[1].drop(1001);
  assert.deepEqual(timers.pending(), [375]);
});

test('reconnectNow skips the wait; stop ends everything; a 401 for the ticket stops the relay', async () => {
  const { r, timers } = relay({ api: fakeApi({ fail: [new ApiError(0, 'network', 'down')] }) });
  r.start();
  await settle();
  assert.equal(r.state, 'waiting');
  r.reconnectNow();
  await settle();
  FakeSocket.all[0].accept();
  assert.equal(r.state, 'open');
  r.stop();
  assert.equal(r.state, 'stopped');
  assert.deepEqual(FakeSocket.all[0].closedWith, { code: 1000, reason: 'bye' });
  assert.deepEqual(timers.pending(), []);

  const dead = relay({ api: fakeApi({ fail: [new ApiError(401, 'unauthorized', 'no')] }) });
  dead.r.start();
  await settle();
  assert.equal(dead.r.state, 'stopped');
  assert.deepEqual(dead.timers.pending(), []);
});

test('error frames: internal means send the same envelope again; other codes reject the send', async () => {
  const { r, timers } = relay();
  r.start();
  await settle();
  const ws = FakeSocket.all[0];
  ws.accept();
  const retried = r.send(envelope('id-1'));
  const refused = r.send(envelope('id-2'));
  const errors = [];
  r.addEventListener('error', (e) => errors.push(e.detail.code));
  ws.push({ type: 'error', code: 'internal', message: 'try again', id: 'id-1' });
  ws.push({ type: 'error', code: 'unknown_recipient', message: 'no such recipient', id: 'id-2' });
  await assert.rejects(refused, (err) => err instanceof SendError && err.code === 'unknown_recipient');
  assert.equal(ws.sent.length, 2);
  await timers.advance(1500);
  assert.equal(ws.sent.length, 3);
  assert.equal(ws.sent[2], ws.sent[0]);
  ws.push({ type: 'ack', id: 'id-1', seq: 1, server_ts: 1 });
  assert.equal((await retried).seq, 1);
  assert.deepEqual(errors, ['internal', 'unknown_recipient']);
});

test('close code 4401 (session ended on the server) is final: no reconnect, waiting sends fail, "ended" is emitted', async () => {
  const { r, timers, api } = relay();
  const ended = [];
  r.addEventListener('ended', (e) => ended.push(e.detail));
  r.start();
  await settle();
  const ws = FakeSocket.all[0];
  ws.accept();
  const waiting = r.send(envelope('id-1'));
  ws.drop(4401, 'session ended');
  await assert.rejects(waiting, (err) => err instanceof SendError && err.code === 'session_ended');
  assert.deepEqual(ended, [{ code: 4401, reason: 'session ended' }]);
  assert.equal(r.state, 'stopped');
  assert.deepEqual(timers.pending(), []);
  await timers.advance(120000);
  assert.equal(api.calls, 1, 'no new ticket asked for');
  assert.equal(FakeSocket.all.length, 1);
  // any other close still reconnects
  const other = relay();
  other.r.start();
  await settle();
  FakeSocket.all[0].accept();
  FakeSocket.all[0].drop(4000, 'x');
  await other.timers.advance(60000);
  assert.equal(FakeSocket.all.length, 2);
});

test('a keys_changed frame is handed to its listeners; error frames carry the client’s sentence, not the server’s', async () => {
  const { r } = relay();
  const seen = [];
  r.addEventListener('keys_changed', (e) => seen.push(e.detail));
  r.start();
  await settle();
  const ws = FakeSocket.all[0];
  ws.accept();
  ws.push({ type: 'keys_changed', key_version: 3 });
  assert.deepEqual(seen, [{ type: 'keys_changed', key_version: 3 }]);
  const refused = r.send(envelope('id-9'));
  ws.push({ type: 'error', code: 'unknown_recipient', message: 'Your account is locked, visit https://evil.example', id: 'id-9' });
  const err = await refused.catch((e) => e);
  assert.equal(err.code, 'unknown_recipient');
  assert.ok(!err.message.includes('evil.example'), err.message);
});

test('no ack in time on an open socket: the socket is replaced and the send repeated', async () => {
  const { r, timers } = relay({ relay: { ackTimeoutMs: 5000 } });
  r.start();
  await settle();
  FakeSocket.all[0].accept();
  const acked = r.send(envelope('id-1'));
  await timers.advance(5000);
  assert.deepEqual(FakeSocket.all[0].closedWith, { code: 4000, reason: 'no acknowledgement' });
  assert.equal(r.state, 'waiting');
  await timers.advance(375);
  FakeSocket.all[1].accept();
  assert.equal(FakeSocket.all[1].sent[0], FakeSocket.all[0].sent[0]);
  FakeSocket.all[1].push({ type: 'ack', id: 'id-1', seq: 3, server_ts: 3 });
  assert.equal((await acked).seq, 3);
});

test('closed with 1009 (too large): the largest waiting send is refused, not sent forever', async () => {
  const { r, timers } = relay();
  r.start();
  await settle();
  FakeSocket.all[0].accept();
  const small = r.send(envelope('id-1', 'small'));
  const big = r.send(envelope('id-2', 'b'.repeat(1000)));
  FakeSocket.all[0].drop(1009, 'frame too large');
  await assert.rejects(big, { code: 'envelope_too_large' });
  await timers.advance(375);
  FakeSocket.all[1].accept();
  assert.deepEqual(FakeSocket.all[1].frames().map((f) => f.envelope.id), ['id-1']);
  FakeSocket.all[1].push({ type: 'ack', id: 'id-1', seq: 1, server_ts: 1 });
  assert.equal((await small).seq, 1);
});

test('frames are dispatched by type; garbage is ignored; typing is dropped when offline', async () => {
  const { r } = relay();
  const seen = [];
  for (const type of ['message', 'delivered', 'read', 'typing', 'presence']) r.addEventListener(type, (e) => seen.push(e.detail.type));
  r.addEventListener('frame', (e) => seen.push(`frame:${e.detail.type}`));
  assert.equal(r.typing('bob'), false);
  r.start();
  await settle();
  const ws = FakeSocket.all[0];
  ws.accept();
  ws.push('not json');
  ws.push({ no: 'type' });
  for (const type of ['message', 'delivered', 'read', 'typing', 'presence']) ws.push({ type });
  assert.deepEqual(seen, [
    'frame:message', 'message', 'frame:delivered', 'delivered', 'frame:read', 'read',
    'frame:typing', 'typing', 'frame:presence', 'presence',
  ]);
  assert.equal(r.typing('bob'), true);
  r.receipt('delivered', 'm-1');
  assert.deepEqual(ws.frames().slice(-2), [{ type: 'typing', to: 'bob' }, { type: 'delivered', id: 'm-1' }]);
  assert.throws(() => r.receipt('seen', 'm-1'), TypeError);
});

test('listeners come off with removeEventListener or an AbortSignal, the others stay', async () => {
  const { r } = relay();
  const seen = [];
  const byFunction = (e) => seen.push(`removed:${e.detail}`);
  const aborted = new AbortController();
  r.addEventListener('state', byFunction);
  r.addEventListener('state', (e) => seen.push(`signal:${e.detail}`), { signal: aborted.signal });
  r.addEventListener('state', (e) => seen.push(`kept:${e.detail}`));
  r.start();
  await settle();
  assert.deepEqual(seen, ['removed:connecting', 'signal:connecting', 'kept:connecting']);
  r.removeEventListener('state', byFunction);
  aborted.abort();
  FakeSocket.all[0].accept();
  r.stop();
  assert.deepEqual(seen.slice(3), ['kept:open', 'kept:stopped']);
});

test('an idle socket is pinged after 25 s of silence; a pong keeps it, no answer in 5 s replaces it', async () => {
  const { r, timers, api } = relay();
  r.start();
  await settle();
  const ws = FakeSocket.all[0];
  ws.accept();
  // frames heard reset the silence: no ping while the server talks
  await timers.advance(20000);
  ws.push({ type: 'typing', from: 'bob' });
  await timers.advance(20000);
  assert.deepEqual(ws.frames(), [], 'silent for 20 s only');
  await timers.advance(5000);
  assert.deepEqual(ws.frames(), [{ type: 'ping', id: 'p1' }]);
  ws.push({ type: 'pong', id: 'p1' });
  await timers.advance(24999);
  assert.equal(ws.frames().length, 1, 'the pong counts as heard');
  await timers.advance(1);
  assert.deepEqual(ws.frames().at(-1), { type: 'ping', id: 'p2' });
  // the network is cut: nothing comes back
  await timers.advance(4999);
  assert.equal(r.state, 'open');
  await timers.advance(1);
  assert.deepEqual(ws.closedWith, { code: 4000, reason: 'no pong' });
  assert.equal(r.state, 'waiting');
  await timers.advance(375);
  assert.equal(api.calls, 2, 'reconnecting with a new ticket');
  const next = FakeSocket.all[1];
  next.accept();
  assert.equal(r.state, 'open');
  // a tab coming back (reconnectNow on an open socket) asks at once; a second ask waits for the first
  r.reconnectNow();
  r.reconnectNow();
  assert.deepEqual(next.frames(), [{ type: 'ping', id: 'p3' }]);
  next.push({ type: 'pong', id: 'p3' });
  await timers.advance(5000);
  assert.equal(r.state, 'open');
  r.stop();
  assert.deepEqual(timers.pending(), [], 'stop clears the heartbeat');
});
