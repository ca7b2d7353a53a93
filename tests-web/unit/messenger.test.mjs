// js/messenger.js and js/pins.js: the messaging model with real Web Crypto, a fake REST server
// (directory, key changes, history) and a fake relay: pinning on first use, blocked sending on a
// changed key, "could not verify" instead of text, re-verification, replays, receipts, paging.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from './paths.mjs';

const { Messenger, BlockedError } = await frontendModule('messenger.js');
const pins = await frontendModule('pins.js');
const e = await frontendModule('envelope.js');
const c = await frontendModule('crypto.js');
const b64 = await frontendModule('b64.js');
const { ApiError } = await frontendModule('api.js');

async function identity(name, version = 1) {
  const id = await c.generateIdentity();
  const keys = await c.importPrivateKeys(id.encPkcs8, id.signPkcs8);
  const selfSig = await c.selfSig(id.signPrivateKey, name, version, id.encSpki, id.signSpki);
  return {
    name,
    version,
    ...keys,
    encSpki: id.encSpki,
    signSpki: id.signSpki,
    encPublicKey: await c.importEncPublicKey(id.encSpki),
    signPublicKey: await c.importSignPublicKey(id.signSpki),
    fingerprint: await c.fingerprint(name, id.encSpki, id.signSpki),
    directory: {
      username: name,
      key_version: version,
      enc_public_key: b64.encode(id.encSpki),
      sign_public_key: b64.encode(id.signSpki),
      self_sig: b64.encode(selfSig),
    },
  };
}

const alice = await identity('alice');
const bob = await identity('bob');
const bob2 = await identity('bob', 2); // bob after a key change
const sessionOf = (who) => ({
  username: who.name,
  key_version: who.version,
  encPrivateKey: who.encPrivateKey,
  signPrivateKey: who.signPrivateKey,
  encPublicKey: who.encPublicKey,
  signPublicKey: who.signPublicKey,
  fingerprint: who.fingerprint,
});

function fakeServer() {
  const server = {
    directory: { alice: alice.directory, bob: { ...bob.directory, fingerprint: bob.fingerprint } },
    history: new Map(), // peer -> [{seq, server_ts, state, envelope}]
    conversations: [],
    calls: [],
    async get(path) {
      server.calls.push(path);
      const url = new URL(path, 'http://x');
      let m = /^\/api\/users\/([^/]+)\/keys$/.exec(url.pathname);
      if (m) {
        const d = server.directory[decodeURIComponent(m[1])];
        if (!d) throw new ApiError(404, 'not_found', 'no such user');
        return structuredClone(d);
      }
      if (url.pathname === '/api/conversations') return { conversations: structuredClone(server.conversations) };
      m = /^\/api\/conversations\/([^/]+)\/messages$/.exec(url.pathname);
      if (m) {
        const all = server.history.get(decodeURIComponent(m[1]));
        if (!all) throw new ApiError(404, 'not_found', 'no conversation');
        const after = url.searchParams.get('after');
        const before = url.searchParams.get('before');
        const limit = Number(url.searchParams.get('limit') ?? 50);
        let rows = all.filter((r) => (after === null || r.seq > Number(after)) && (before === null || r.seq < Number(before)));
        rows = after !== null ? rows.slice(0, limit) : rows.slice(-limit);
        return { messages: structuredClone(rows) };
      }
      throw new Error(`unexpected GET ${path}`);
    },
  };
  return server;
}

/**
 * A relay that is a real EventTarget, as js/ws.js's Relay is. `emit` dispatches a CustomEvent
 * and waits for what the messenger's listeners returned (their handling is asynchronous:
 * Web Crypto), so a test can look at the result right after it.
 */
class FakeRelay extends EventTarget {
  handling = [];
  addEventListener(type, listener, options) {
    super.addEventListener(type, (event) => this.handling.push(listener(event)), options);
  }
  async emit(type, detail = null) {
    this.handling = [];
    this.dispatchEvent(new CustomEvent(type, { detail }));
    await Promise.all(this.handling);
  }
}

function fakeRelay() {
  const relay = Object.assign(new FakeRelay(), {
    sent: [],
    receipts: [],
    typings: [],
    acks: new Map(),
    isOpen: true,
    start() {},
    stop() {},
    send(envelope) {
      relay.sent.push(envelope);
      return new Promise((resolve, reject) => relay.acks.set(envelope.id, { resolve, reject }));
    },
    receipt(type, id) {
      relay.receipts.push(`${type}:${id}`);
    },
    typing(to) {
      relay.typings.push(to);
      return true;
    },
    reconnectNow() {},
  });
  return relay;
}

async function setup({ visible = true, start = true } = {}) {
  const server = fakeServer();
  const relay = fakeRelay();
  const backing = pins.memoryBacking();
  const m = new Messenger({ api: server, session: sessionOf(alice), relay, pins: backing, isVisible: () => visible });
  if (start) await m.start();
  return { m, server, relay, backing };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** An envelope from bob (signed with `signer`, default his first key) to alice. */
function fromBob(text, { signer = bob, id, sentAt } = {}) {
  return e.seal({
    from: 'bob',
    to: 'alice',
    plaintext: { text },
    signKey: signer.signPrivateKey,
    readers: { bob: signer.encSpki, alice: alice.encSpki },
    ...(id ? { id } : {}),
    ...(sentAt ? { sentAt } : {}),
  });
}

test('pins: first use pins, the same keys are ok, other keys are a change, a bad self-signature is invalid', async () => {
  const server = fakeServer();
  const backing = pins.memoryBacking();
  const first = await pins.checkPeerKeys(server, backing, 'bob');
  assert.equal(first.status, 'pinned');
  assert.equal(first.pin.fingerprint, bob.fingerprint);
  assert.equal(first.pin.verified_at, null);
  assert.deepEqual(pins.acceptedSignKeys(first.pin), [bob.directory.sign_public_key]);
  assert.equal((await pins.checkPeerKeys(server, backing, 'bob')).status, 'ok');

  server.directory.bob = { ...bob2.directory, fingerprint: bob2.fingerprint };
  const changed = await pins.checkPeerKeys(server, backing, 'bob');
  assert.equal(changed.status, 'changed');
  assert.equal(changed.pin.fingerprint, bob.fingerprint, 'the pin is not moved by the directory');
  const numbers = pins.changedSafetyNumbers({ username: 'alice', fingerprint: alice.fingerprint }, 'bob', changed.pin, changed.current);
  assert.equal(numbers.old, alice.fingerprint + bob.fingerprint);
  assert.equal(numbers.new, alice.fingerprint + bob2.fingerprint);

  const accepted = await pins.acceptKeys(backing, 'bob', changed.current);
  assert.equal(accepted.fingerprint, bob2.fingerprint);
  assert.ok(accepted.verified_at > 0);
  assert.deepEqual(pins.acceptedSignKeys(accepted), [bob2.directory.sign_public_key, bob.directory.sign_public_key]);
  assert.equal((await pins.checkPeerKeys(server, backing, 'bob')).status, 'ok');

  // keys whose self-signature does not verify are never pinned
  server.directory.carol = { ...bob.directory, username: 'carol', fingerprint: bob.fingerprint };
  const invalid = await pins.checkPeerKeys(server, backing, 'carol');
  assert.equal(invalid.status, 'invalid');
  assert.equal(await backing.get('carol'), undefined);
  await assert.rejects(pins.acceptKeys(backing, 'carol', invalid.current));
  // nor keys whose server fingerprint disagrees with ours
  server.directory.bob = { ...bob2.directory, fingerprint: '0'.repeat(30) };
  assert.equal((await pins.checkPeerKeys(server, backing, 'bob')).status, 'invalid');
});

test('sending: sealed for both readers with the pinned key, sending -> sent on the ack, receipts advance it', async () => {
  const { m, relay, backing } = await setup();
  await m.openConversation('bob'); // no conversation yet (the list says so): the key is pinned
  assert.equal((await backing.get('bob')).fingerprint, bob.fingerprint);
  const msg = await m.sendText('bob', 'hi bob');
  assert.equal(msg.state, 'sending');
  const env = relay.sent[0];
  assert.deepEqual(Object.keys(env.keys), ['alice', 'bob']);
  const opened = await e.open(env, { me: 'bob', encPrivateKey: bob.encPrivateKey, senderSignKeys: alice.signSpki });
  assert.equal(opened.text, 'hi bob');
  relay.acks.get(env.id).resolve({ seq: 11, server_ts: 5000 });
  await settle();
  assert.equal(msg.state, 'sent');
  assert.equal(msg.seq, 11);
  await relay.emit('read', { type: 'read', id: env.id, by: 'bob', at: 1 });
  assert.equal(msg.state, 'read');
  await relay.emit('delivered', { type: 'delivered', id: env.id, by: 'bob', at: 1 });
  assert.equal(msg.state, 'read', 'states never go back');
  assert.deepEqual(m.list().map((x) => x.peer), ['bob']);
  await assert.rejects(m.sendText('bob', '   '), BlockedError);
  await assert.rejects(m.sendText('bob', 'é'.repeat(8193)), (err) => err.code === 'too_long');
});

test('receiving: text only after verification; delivered when not looking, read when looking', async () => {
  const { m, relay } = await setup();
  const env = await fromBob('first contact');
  await relay.emit('message', { type: 'message', seq: 3, server_ts: 10, envelope: env });
  const conv = m.conversations.get('bob');
  const msg = [...conv.messages.values()][0];
  assert.equal(msg.status, 'ok');
  assert.equal(msg.text, 'first contact');
  assert.equal(conv.unread, 1);
  assert.deepEqual(relay.receipts, [`delivered:${env.id}`]);
  assert.equal(m.presence.get('bob').online, true, 'a live frame means they are connected');
  await m.openConversation('bob');
  assert.deepEqual(relay.receipts, [`delivered:${env.id}`, `read:${env.id}`]);
  assert.equal(conv.unread, 0);
  // the same frame again (live and from history): one message, no new receipt
  await relay.emit('message', { type: 'message', seq: 3, server_ts: 10, envelope: env });
  assert.equal(conv.messages.size, 1);
  assert.equal(relay.receipts.length, 2);
});

test('a replayed envelope under a new seq is dropped; a tampered one is never shown as text', async () => {
  const { m, relay } = await setup();
  const notices = [];
  m.addEventListener('notice', (e) => notices.push(e.detail));
  const env = await fromBob('once only');
  await relay.emit('message', { type: 'message', seq: 3, server_ts: 10, envelope: env });
  await relay.emit('message', { type: 'message', seq: 9, server_ts: 20, envelope: env });
  const conv = m.conversations.get('bob');
  assert.equal(conv.messages.size, 1);
  assert.equal([...conv.messages.values()][0].seq, 3);
  assert.equal(notices.length, 1);

  const forged = await fromBob('forged');
  forged.ct = b64.encode(b64.decode(forged.ct).map((x, i) => (i === 0 ? x ^ 1 : x)));
  await relay.emit('message', { type: 'message', seq: 12, server_ts: 30, envelope: forged });
  const shown = conv.messages.get(`bob\n${forged.id}`);
  assert.equal(shown.status, 'unverified');
  assert.equal(shown.text, null);
});

test('a changed key: sending blocked, new-key messages unverified, accepting re-pins and opens them', async () => {
  const { m, server, relay, backing } = await setup();
  await m.openConversation('bob');
  const before = await fromBob('from the old key');
  await relay.emit('message', { type: 'message', seq: 1, server_ts: 1, envelope: before });

  server.directory.bob = { ...bob2.directory, fingerprint: bob2.fingerprint };
  const after = await fromBob('from the new key', { signer: bob2 });
  await relay.emit('message', { type: 'message', seq: 2, server_ts: 2, envelope: after });
  const conv = m.conversations.get('bob');
  const suspect = conv.messages.get(`bob\n${after.id}`);
  assert.equal(suspect.status, 'unverified');
  assert.equal(suspect.text, null);
  // a read receipt only for what was shown: the suspect one is delivered, not read
  assert.ok(relay.receipts.includes(`delivered:${after.id}`));
  assert.ok(!relay.receipts.includes(`read:${after.id}`));
  await settle();
  await m.checkKeys('bob', { force: true });
  assert.equal(m.blocked('bob'), 'key_changed');
  await assert.rejects(m.sendText('bob', 'blocked?'), (err) => err instanceof BlockedError && err.code === 'key_changed');
  assert.equal(relay.sent.length, 0);

  await m.acceptKeyChange('bob');
  assert.equal(m.blocked('bob'), null);
  assert.equal((await backing.get('bob')).fingerprint, bob2.fingerprint);
  assert.equal(suspect.status, 'ok');
  assert.equal(suspect.text, 'from the new key');
  assert.ok(relay.receipts.includes(`read:${after.id}`));
  // the old key's message still verifies (it was accepted before)
  assert.equal(conv.messages.get(`bob\n${before.id}`).text, 'from the old key');
  await m.sendText('bob', 'to the new key');
  const env = relay.sent[0];
  const opened = await e.open(env, { me: 'bob', encPrivateKey: bob2.encPrivateKey, senderSignKeys: alice.signSpki });
  assert.equal(opened.text, 'to the new key');
});

test('history: newest page, older pages with before=, catch-up with after=, state from the server', async () => {
  const { m, server, relay } = await setup({ visible: false, start: false });
  const rows = [];
  for (let i = 1; i <= 60; i++) {
    const env = i % 2
      ? await fromBob(`bob ${i}`, { sentAt: 1000 + i })
      : await e.seal({ from: 'alice', to: 'bob', plaintext: { text: `alice ${i}` }, signKey: alice.signPrivateKey, readers: { alice: alice.encSpki, bob: bob.encSpki }, sentAt: 1000 + i });
    rows.push({ seq: i * 2, server_ts: 2000 + i, state: i < 55 ? 'read' : 'sent', envelope: env });
  }
  server.history.set('bob', rows.slice(0, 58));
  server.conversations = [{ peer: 'bob', last_seq: 116, last_server_ts: 2058, unread: 2 }];
  await m.start();
  // bob's conversation has unread messages: its newest page is fetched at start, so they count as delivered
  await relay.emit('open');
  const conv = m.conversations.get('bob');
  assert.equal(conv.messages.size, 50);
  assert.equal(conv.hasOlder, true);
  assert.deepEqual(relay.receipts.sort(), [rows[54], rows[56]].map((r) => `delivered:${r.envelope.id}`).sort());
  assert.equal(await m.loadOlder('bob'), 8);
  assert.equal(conv.hasOlder, false);
  const texts = m.ordered('bob').map((x) => x.text);
  assert.deepEqual(texts, rows.slice(0, 58).map((r, i) => (i % 2 ? `alice ${i + 1}` : `bob ${i + 1}`)));
  // a reconnect: only what is new is fetched
  server.history.set('bob', rows);
  server.conversations[0].last_seq = 120;
  server.calls.length = 0;
  await relay.emit('open');
  assert.ok(server.calls.some((p) => p === '/api/conversations/bob/messages?after=116&limit=200'), server.calls.join('\n'));
  assert.equal(conv.messages.size, 60);
  assert.deepEqual(m.ordered('bob').map((x) => x.seq), rows.map((r) => r.seq));
});

test('a note to oneself: one reader, my own keys, no pin', async () => {
  const { m, relay, backing } = await setup();
  await m.openConversation('alice');
  const note = await m.sendText('alice', 'remember the milk');
  const env = relay.sent[0];
  assert.deepEqual(Object.keys(env.keys), ['alice']);
  assert.equal(env.to, 'alice');
  assert.equal(note.text, 'remember the milk');
  assert.equal(await backing.get('alice'), undefined);
  // the copy another tab of mine receives opens with my own keys
  relay.acks.get(env.id).resolve({ seq: 1, server_ts: 1 });
  const other = await setup();
  await other.relay.emit('message', { type: 'message', seq: 1, server_ts: 1, envelope: env });
  const copy = [...other.m.conversations.get('alice').messages.values()][0];
  assert.equal(copy.mine, true);
  assert.equal(copy.text, 'remember the milk');
  assert.deepEqual(other.relay.receipts, [], 'no receipts for my own messages');
});

test('the page listens with addEventListener: CustomEvents with the value in detail, and an AbortSignal ends it', async () => {
  const { m, relay } = await setup();
  const heard = [];
  const stop = new AbortController();
  m.addEventListener('conversation', (e) => heard.push(`conversation:${e.detail}`), { signal: stop.signal });
  m.addEventListener('conversations', (e) => heard.push(`conversations:${e.detail}`), { signal: stop.signal });
  m.addEventListener('connection', (e) => heard.push(`connection:${e.detail}`), { signal: stop.signal });
  await relay.emit('presence', { type: 'presence', user: 'bob', online: true, last_seen: null });
  await relay.emit('state', 'open');
  assert.deepEqual(heard, ['conversations:null', 'conversation:bob', 'connection:open']);
  stop.abort();
  await relay.emit('presence', { type: 'presence', user: 'bob', online: false, last_seen: 5 });
  await relay.emit('state', 'waiting');
  assert.equal(heard.length, 3, 'nothing after the abort');
  assert.deepEqual(m.presence.get('bob'), { online: false, last_seen: 5, inferred: false }, 'the model still updated');
});
