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
const bob3 = await identity('bob', 3);
const bobAgain = await identity('bob', 1); // other keys under the pinned version
const mallory = await identity('mallory');
const change = async (who, signer) => ({
  key_version: who.version,
  enc_public_key: who.directory.enc_public_key,
  sign_public_key: who.directory.sign_public_key,
  self_sig: who.directory.self_sig,
  prev_sig: signer ? b64.encode(await c.prevSig(signer.signPrivateKey, who.name, who.version, who.encSpki, who.signSpki)) : null,
  changed_at: 1000 * who.version,
});
const bobChanges = [await change(bob), await change(bob2, bob)];
const bob3Change = await change(bob3, bob2);
const malloryPrevSig = b64.encode(await c.prevSig(mallory.signPrivateKey, 'bob', 2, bob2.encSpki, bob2.signSpki));
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
    keyChanges: { bob: structuredClone(bobChanges) },
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
      m = /^\/api\/users\/([^/]+)\/key-changes$/.exec(url.pathname);
      if (m) return { changes: structuredClone(server.keyChanges[decodeURIComponent(m[1])] ?? []) };
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

async function setup({ visible = true, start = true, server = fakeServer(), backing = pins.memoryBacking(), seen } = {}) {
  const relay = fakeRelay();
  const m = new Messenger({ api: server, session: sessionOf(alice), relay, pins: backing, seen, isVisible: () => visible });
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

// PROTOCOL.md §5.3
test('pins: first use pins unverified, the same keys are ok, other keys are a change, a bad self-signature is invalid', async () => {
  const server = fakeServer();
  const backing = pins.memoryBacking();
  const first = await pins.checkPeerKeys(server, backing, 'bob');
  assert.equal(first.status, 'pinned');
  assert.equal(first.pin.fingerprint, bob.fingerprint);
  assert.equal(first.pin.verified_at, null);
  assert.deepEqual(pins.acceptedSignKeys(first.pin, 1).map((k) => k.sign_public_key), [bob.directory.sign_public_key]);
  assert.equal((await pins.checkPeerKeys(server, backing, 'bob')).status, 'ok');
  const verified = await pins.setVerified(backing, 'bob', bob.fingerprint, true, { now: 77 });
  assert.equal(verified.verified_at, 77);
  await assert.rejects(pins.setVerified(backing, 'bob', bob2.fingerprint, true), /changed meanwhile/);

  server.directory.bob = { ...bob2.directory, fingerprint: bob2.fingerprint };
  const changed = await pins.checkPeerKeys(server, backing, 'bob');
  assert.equal(changed.status, 'changed');
  assert.equal(changed.pin.fingerprint, bob.fingerprint, 'the pin is not moved by the directory');
  assert.equal(changed.chain.verdict, 'chained');
  const numbers = pins.changedSafetyNumbers({ username: 'alice', fingerprint: alice.fingerprint }, 'bob', changed.pin, changed.current);
  assert.equal(numbers.old, alice.fingerprint + bob.fingerprint);
  assert.equal(numbers.new, alice.fingerprint + bob2.fingerprint);

  const accepted = await pins.acceptKeys(backing, 'bob', changed.current, { untilSeq: 5 });
  assert.equal(accepted.fingerprint, bob2.fingerprint);
  assert.equal(accepted.verified_at, null, 'a key change clears the verified state');
  // the old key is good up to seq 5 only, and said to be a previous key
  const keysAt = (seq) => pins.acceptedSignKeys(accepted, seq).map((k) => [k.sign_public_key, k.previous]);
  assert.deepEqual(keysAt(5), [[bob2.directory.sign_public_key, false], [bob.directory.sign_public_key, true]]);
  assert.deepEqual(keysAt(6), [[bob2.directory.sign_public_key, false]]);
  assert.deepEqual(keysAt(undefined), [[bob2.directory.sign_public_key, false]]);
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

// issue #13: the chain is verified from the PINNED version forward, with the pinned key
test('pins: a key change is chained only when every version from the pinned one is signed by the one before', async () => {
  const pinnedBob = async () => {
    const server = fakeServer();
    const backing = pins.memoryBacking();
    await pins.checkPeerKeys(server, backing, 'bob');
    server.directory.bob = { ...bob2.directory, fingerprint: bob2.fingerprint };
    return { server, backing };
  };
  const verdict = async (server, backing) => (await pins.checkPeerKeys(server, backing, 'bob')).chain;

  let { server, backing } = await pinnedBob();
  assert.equal((await verdict(server, backing)).verdict, 'chained');

  // the log's version 1 is not the key that was pinned (the server rewrote history)
  ({ server, backing } = await pinnedBob());
  server.keyChanges.bob[0] = { ...server.keyChanges.bob[0], sign_public_key: mallory.directory.sign_public_key };
  assert.match((await verdict(server, backing)).reason, /does not hold the key you pinned/);

  // version 2 signed (prev_sig) by someone else's key, though the log's entry 1 agrees with it
  ({ server, backing } = await pinnedBob());
  server.keyChanges.bob[1] = { ...server.keyChanges.bob[1], prev_sig: malloryPrevSig };
  assert.match((await verdict(server, backing)).reason, /not signed by version 1/);

  // a gap: the log jumps from 1 to 3
  ({ server, backing } = await pinnedBob());
  server.directory.bob = { ...bob3.directory, fingerprint: bob3.fingerprint };
  server.keyChanges.bob = [server.keyChanges.bob[0], bob3Change];
  assert.match((await verdict(server, backing)).reason, /version 2 is missing/);

  // a rollback: the same or an older version with other keys
  ({ server, backing } = await pinnedBob());
  server.directory.bob = { ...mallory.directory, username: 'bob', fingerprint: mallory.fingerprint };
  assert.equal((await pins.checkPeerKeys(server, backing, 'bob')).status, 'invalid', 'mallory signed for "mallory", not "bob"');
  server.directory.bob = { ...bobAgain.directory, fingerprint: bobAgain.fingerprint };
  assert.match((await verdict(server, backing)).reason, /version 1 with other keys/);

  // no log at all
  ({ server, backing } = await pinnedBob());
  server.keyChanges.bob = [];
  assert.equal((await verdict(server, backing)).verdict, 'broken');
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

// issue #13: replays without a seq, and replays after a reload
test('a message without an integer seq is dropped; after a reload an old message pushed again is neither news nor newest', async () => {
  const seenStore = new Map();
  const seen = { get: async (k) => seenStore.get(k), put: async (k, v) => void seenStore.set(k, v) };
  const first = await setup({ seen });
  const old = await fromBob('an old message', { sentAt: 1000 });
  await first.relay.emit('message', { type: 'message', seq: 4, server_ts: 1000, envelope: old });
  assert.equal(first.m.conversations.get('bob').messages.get(`bob\n${old.id}`).text, 'an old message');
  for (const seq of [undefined, null, '4', 4.5]) {
    const fresh = await fromBob(`no seq ${seq}`);
    await first.relay.emit('message', { type: 'message', seq, server_ts: 5, envelope: fresh });
    assert.equal(first.m.conversations.get('bob').messages.has(`bob\n${fresh.id}`), false, `seq ${seq}`);
  }

  // a reload: a new Messenger, the same persisted stores
  const notices = [];
  const again = await setup({ seen, server: first.server, backing: first.backing });
  again.m.addEventListener('notice', (e) => notices.push(e.detail));
  const incoming = [];
  again.m.addEventListener('incoming', (e) => incoming.push(e.detail));
  // without seq: dropped (it used to open as verified and sort as newest)
  await again.relay.emit('message', { type: 'message', server_ts: 9999, envelope: old });
  assert.equal(again.m.conversations.get('bob').messages.size, 0);
  // under a new seq: a replay, dropped
  await again.relay.emit('message', { type: 'message', seq: 40, server_ts: 9999, envelope: old });
  assert.equal(again.m.conversations.get('bob').messages.size, 0);
  assert.equal(notices.length, 2);
  // under its own seq: the same stored message, filed in its place, not announced as new
  await again.relay.emit('message', { type: 'message', seq: 4, server_ts: 1000, envelope: old });
  const kept = again.m.conversations.get('bob').messages.get(`bob\n${old.id}`);
  assert.equal(kept.text, 'an old message');
  assert.equal(kept.seenBefore, true);
  assert.equal(incoming.length, 0);
  assert.equal(again.m.conversations.get('bob').unread, 0);
});

// issue #13: an old signing key is good only for messages up to where the change was accepted
test('after a key change, the old key verifies only messages up to the accepted seq, labelled as a previous key', async () => {
  const { m, server, relay } = await setup();
  await m.openConversation('bob');
  const early = await fromBob('before the change');
  await relay.emit('message', { type: 'message', seq: 1, server_ts: 1, envelope: early });
  server.directory.bob = { ...bob2.directory, fingerprint: bob2.fingerprint };
  await m.checkKeys('bob', { force: true });
  await m.acceptKeyChange('bob');
  const conv = m.conversations.get('bob');
  const kept = conv.messages.get(`bob\n${early.id}`);
  assert.equal(kept.text, 'before the change');
  assert.equal(m.previousKeyOf(kept), 1, 'signed by the key before the change');
  // the old key signs a message the server files after the change: not shown
  const late = await fromBob('signed with the old key after the change');
  await relay.emit('message', { type: 'message', seq: 2, server_ts: 2, envelope: late });
  assert.equal(conv.messages.get(`bob\n${late.id}`).status, 'unverified');
  assert.equal(conv.messages.get(`bob\n${late.id}`).text, null);
  // and a gap-filler under an old seq is shown, but as signed by the previous key
  const filler = await fromBob('slipped in under seq 1?');
  await relay.emit('message', { type: 'message', seq: 1, server_ts: 1, envelope: filler });
  assert.equal(conv.messages.get(`bob\n${filler.id}`).text, 'slipped in under seq 1?');
  assert.equal(m.previousKeyOf(conv.messages.get(`bob\n${filler.id}`)), 1);
  const now = await fromBob('with the new key', { signer: bob2 });
  await relay.emit('message', { type: 'message', seq: 3, server_ts: 3, envelope: now });
  assert.equal(conv.messages.get(`bob\n${now.id}`).text, 'with the new key');
  assert.equal(m.previousKeyOf(conv.messages.get(`bob\n${now.id}`)), null);
});

test('the verified mark is the user\'s, for the pinned key only, and a key change clears it', async () => {
  const { m, server, backing } = await setup();
  await m.openConversation('bob');
  assert.equal(m.conversations.get('bob').keys.pin.verified_at, null, 'first use is not verified');
  await m.markVerified('bob');
  assert.ok((await backing.get('bob')).verified_at > 0);
  await m.markVerified('bob', false);
  assert.equal((await backing.get('bob')).verified_at, null);
  await m.markVerified('bob');
  server.directory.bob = { ...bob2.directory, fingerprint: bob2.fingerprint };
  await m.checkKeys('bob', { force: true });
  await assert.rejects(m.markVerified('bob'), /check their keys first/);
  await m.acceptKeyChange('bob');
  assert.equal((await backing.get('bob')).verified_at, null);
  assert.equal(m.conversations.get('bob').keys.pin.verified_at, null);
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

// API-CONTRACT.md "Report body"
test('reporting a received message posts only its id, K, exact plaintext bytes and the reason', async () => {
  const { m, relay, server } = await setup();
  const posted = [];
  let answer = { id: 1, verdict: 'verified', detail: null };
  server.post = async (path, body, options) => {
    posted.push({ path, body: structuredClone(body), options });
    if (answer instanceof Error) throw answer;
    return answer;
  };
  const env = await fromBob('buy now');
  await relay.emit('message', { type: 'message', seq: 4, server_ts: 10, envelope: env });
  await relay.emit('message', { type: 'message', seq: 5, server_ts: 11, envelope: await fromBob('another one') });
  const msg = [...m.conversations.get('bob').messages.values()].find((x) => x.id === env.id);
  assert.equal(await m.report('bob', msg.key, 'spam'), answer);
  assert.equal(posted.length, 1);
  const { path, body, options } = posted[0];
  assert.equal(path, '/api/reports');
  assert.deepEqual(options, { auth: true });
  assert.deepEqual(Object.keys(body).sort(), ['key', 'message_id', 'plaintext', 'reason']);
  assert.equal(body.message_id, env.id);
  assert.equal(body.reason, 'spam');
  const plain = b64.decode(body.plaintext);
  assert.equal(new TextDecoder().decode(plain).trimEnd(), '{"text":"buy now"}');
  assert.equal(plain.length, 256, 'the padding is part of what was decrypted');
  const aes = await crypto.subtle.importKey('raw', b64.decode(body.key), 'AES-GCM', false, ['decrypt']);
  const aad = e.messageAad(env.id, env.from, env.to, env.sent_at);
  const opened = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: b64.decode(env.iv), additionalData: aad }, aes, b64.decode(env.ct)));
  assert.deepEqual(opened, plain);
  assert.equal(msg.reported, true);

  // 409 already_reported marks it too; my own messages cannot be reported
  answer = new ApiError(409, 'already_reported', 'reported before');
  await assert.rejects(m.report('bob', msg.key, 'abuse'), { code: 'already_reported' });
  await m.sendText('bob', 'mine');
  const mine = [...m.conversations.get('bob').messages.values()].find((x) => x.mine);
  await assert.rejects(m.report('bob', mine.key, 'spam'), BlockedError);
  assert.equal(posted.length, 2);
});

// ------------------------------------------------------------ issue #17: kinds inside the encryption

/** An envelope from bob to alice with any plaintext object (PROTOCOL.md §8.9). */
const bobSends = (plaintext, { sentAt = Date.now(), signer = bob } = {}) =>
  e.seal({ from: 'bob', to: 'alice', plaintext, signKey: signer.signPrivateKey, readers: { bob: signer.encSpki, alice: alice.encSpki }, sentAt });

/** alice's messenger with an open conversation with bob and a live-frame helper. */
async function chatting(opts = {}) {
  const ctx = await setup(opts);
  ctx.server.history.set('bob', []);
  ctx.server.conversations = [{ peer: 'bob', last_seq: 0, last_server_ts: 0, unread: 0 }];
  ctx.server.puts = [];
  ctx.server.deletes = [];
  ctx.server.timer = { secs: 0, from_seq: 0, set_at: 0 };
  const get = ctx.server.get;
  ctx.server.get = async (path) => (path.endsWith('/timer') ? structuredClone(ctx.server.timer) : get(path));
  ctx.server.put = async (path, body) => {
    ctx.server.puts.push([path, body]);
    ctx.server.timer = { secs: body.secs, from_seq: 0, set_at: Date.now() };
    return structuredClone(ctx.server.timer);
  };
  ctx.server.del = async (path) => {
    ctx.server.deletes.push(path);
    return null;
  };
  await ctx.m.refreshList();
  await ctx.m.openConversation('bob');
  let seq = 0;
  ctx.live = async (envelope) => {
    await ctx.relay.emit('message', { type: 'message', seq: ++seq, server_ts: Date.now(), envelope });
    return envelope;
  };
  ctx.ack = async (envelope) => {
    ctx.relay.acks.get(envelope.id).resolve({ seq: ++seq, server_ts: Date.now() });
    await settle();
  };
  ctx.bubbles = () => ctx.m.view('bob').filter((i) => i.type === 'message');
  return ctx;
}

test('plaintext kinds: built in the documented member order and read back; malformed actions are unknown, never applied', () => {
  const id = '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b';
  assert.equal(JSON.stringify(e.kindPlaintext('text', { text: 'hi', replyTo: id, expire: 30 })), `{"text":"hi","reply_to":{"id":"${id}"},"expire":30}`);
  assert.equal(JSON.stringify(e.kindPlaintext('edit', { id, text: 'new' })), `{"edit":{"id":"${id}"},"text":"new"}`);
  assert.equal(JSON.stringify(e.kindPlaintext('delete', { id })), `{"delete":{"id":"${id}"}}`);
  assert.equal(JSON.stringify(e.kindPlaintext('react', { id, emoji: '👍' })), `{"react":{"id":"${id}","emoji":"👍"}}`);
  assert.equal(JSON.stringify(e.kindPlaintext('timer', { secs: 3600 })), '{"timer":{"secs":3600}}');
  assert.throws(() => e.kindPlaintext('timer', { secs: 4 }));
  assert.throws(() => e.kindPlaintext('react', { id, emoji: 'x'.repeat(33) }));
  assert.throws(() => e.kindPlaintext('edit', { id: 'not-a-uuid', text: 'x' }));
  assert.deepEqual(e.readPlaintext({ text: 'hi', reply_to: { id } }), { kind: 'text', text: 'hi', replyTo: id, expire: null });
  assert.deepEqual(e.readPlaintext({ text: 'hi', reply_to: 'junk', expire: 3 }), { kind: 'text', text: 'hi', replyTo: null, expire: null });
  assert.deepEqual(e.readPlaintext({ edit: { id }, text: 'x', expire: 60 }), { kind: 'edit', target: id, text: 'x', expire: 60 });
  assert.equal(e.readPlaintext({ edit: { id } }).kind, 'unknown', 'an edit without text');
  assert.equal(e.readPlaintext({ delete: { id: 'nope' }, text: 'fallback' }).kind, 'unknown', 'an action decides the kind even with a text');
  assert.equal(e.readPlaintext({ react: { id, emoji: 5 } }).kind, 'unknown');
  assert.equal(e.readPlaintext({ timer: { secs: 1 } }).kind, 'unknown');
  assert.equal(e.readPlaintext({ something: 'else' }).kind, 'unknown');
});

test('a reply quotes the receiver\'s own copy of its target, or says the original is not found', async () => {
  const { m, relay, live, bubbles } = await chatting();
  const original = await live(await bobSends({ text: 'the original' }));
  const reply = await m.sendText('bob', 'my answer', { replyTo: original.id });
  const opened = await e.open(relay.sent[0], { me: 'bob', encPrivateKey: bob.encPrivateKey, senderSignKeys: alice.signSpki });
  assert.deepEqual(opened.plaintext, { text: 'my answer', reply_to: { id: original.id } });
  const item = bubbles().find((i) => i.message === reply);
  assert.deepEqual({ from: item.quote.from, text: item.quote.text }, { from: 'bob', text: 'the original' });
  await live(await bobSends({ text: 'answering nothing', reply_to: { id: '3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b' } }));
  assert.equal(bubbles().find((i) => i.text === 'answering nothing').quote.missing, true);
});

test('an edit replaces the text only from the original\'s sender, the newest by sent_at wins, and it is no bubble', async () => {
  const { m, live, bubbles } = await chatting();
  const unread = [];
  m.addEventListener('incoming', (ev) => unread.push(ev.detail));
  const original = await live(await bobSends({ text: 'typo hre' }, { sentAt: 1000 }));
  await live(await bobSends({ edit: { id: original.id }, text: 'second edit' }, { sentAt: 3000 }));
  await live(await bobSends({ edit: { id: original.id }, text: 'first edit, arriving late' }, { sentAt: 2000 }));
  assert.equal(bubbles().length, 1);
  assert.deepEqual([bubbles()[0].text, bubbles()[0].edited], ['second edit', true]);
  assert.equal(unread.length, 1, 'edits are not news');
  // alice cannot edit bob's message: her "edit" of it is ignored by view() and refused by editMessage()
  await assert.rejects(m.editMessage('bob', `bob\n${original.id}`, 'hijack'), (err) => err.code === 'not_yours');
  const mine = await m.sendText('bob', 'mine');
  const edit = await m.editMessage('bob', mine.key, 'mine, edited');
  assert.equal(edit.content.kind, 'edit');
  assert.equal(bubbles().find((i) => i.message === mine).text, 'mine, edited');
  // bob's forged edit of alice's message does not apply
  await live(await bobSends({ edit: { id: mine.id }, text: 'bob rewrites alice' }, { sentAt: Date.now() + 10000 }));
  assert.equal(bubbles().find((i) => i.message === mine).text, 'mine, edited');
  assert.equal(m.preview('bob').text, 'mine, edited', 'the list previews the newest bubble, not an action');
});

test('delete for everyone: only the sender\'s delete hides a message; the sender then deletes the stored ciphertext', async () => {
  const { m, server, relay, live, ack, bubbles } = await chatting();
  const forgotten = [];
  m.onForget = (peer, msg) => forgotten.push(msg.id);
  const theirs = await live(await bobSends({ text: 'bob regrets this' }));
  await live(await bobSends({ delete: { id: theirs.id } }));
  assert.deepEqual([bubbles()[0].deleted, bubbles()[0].text], [true, null]);
  assert.deepEqual(forgotten, [theirs.id], 'the search index forgets it');
  const mine = await m.sendText('bob', 'alice says');
  await ack(relay.sent[0]);
  // bob cannot delete alice's message
  await live(await bobSends({ delete: { id: mine.id } }));
  assert.equal(bubbles().find((i) => i.message === mine).deleted, false);
  const done = m.deleteForEveryone('bob', mine.key);
  while (relay.sent.length < 2) await settle();
  assert.equal(bubbles().find((i) => i.message === mine).deleted, true, 'hidden at once');
  assert.deepEqual(server.deletes, [], 'the ciphertext is deleted only after the delete message is stored');
  await ack(relay.sent[1]);
  await done;
  assert.deepEqual(server.deletes, [`/api/messages/${mine.id}`]);
  await assert.rejects(m.editMessage('bob', mine.key, 'too late'), (err) => err.code === 'deleted');
});

test('reactions: one per person, the newest wins, an empty emoji removes it', async () => {
  const { m, relay, live, bubbles } = await chatting();
  const target = await live(await bobSends({ text: 'react to me' }));
  await live(await bobSends({ react: { id: target.id, emoji: '👍' } }, { sentAt: 1000 }));
  await live(await bobSends({ react: { id: target.id, emoji: '❤️' } }, { sentAt: 2000 }));
  await m.react('bob', `bob\n${target.id}`, '😂');
  assert.deepEqual(bubbles()[0].reactions, [{ emoji: '❤️', from: 'bob' }, { emoji: '😂', from: 'alice' }]);
  assert.equal(m.myReaction('bob', `bob\n${target.id}`), '😂');
  await m.react('bob', `bob\n${target.id}`, '');
  assert.deepEqual(bubbles()[0].reactions, [{ emoji: '❤️', from: 'bob' }]);
  const opened = await e.open(relay.sent[1], { me: 'bob', encPrivateKey: bob.encPrivateKey, senderSignKeys: alice.signSpki });
  assert.deepEqual(opened.plaintext, { react: { id: target.id, emoji: '' } });
  assert.equal(bubbles().length, 1, 'reactions are no bubbles');
});

test('the disappearing timer: a system line, PUT to the server, expire on every later message, gone from view at expiry', async () => {
  let now = Date.now();
  const fired = [];
  const timers = { setTimeout: (fn, ms) => fired.push({ fn, at: now + ms }) && fired.length, clearTimeout: () => {} };
  const ctx = await chatting();
  const { m, server, relay, live } = ctx;
  m.now = () => now;
  m.timers = timers;
  const forgotten = [];
  m.onForget = (peer, msg) => forgotten.push(msg.id);
  await m.setTimer('bob', 5);
  assert.deepEqual(server.puts, [['/api/conversations/bob/timer', { secs: 5 }]]);
  assert.equal(m.timerOf('bob'), 5);
  const system = m.view('bob').filter((i) => i.type === 'system');
  assert.deepEqual(system.map((i) => i.text), ['You set disappearing messages to 5 seconds']);
  const mine = await m.sendText('bob', 'vanishing');
  const opened = await e.open(relay.sent[1], { me: 'bob', encPrivateKey: bob.encPrivateKey, senderSignKeys: alice.signSpki });
  assert.deepEqual(opened.plaintext, { text: 'vanishing', expire: 5 });
  assert.equal(mine.expiresAt, mine.sentAt + 5000);
  // bob's message with expire, received now
  const theirs = await live(await bobSends({ text: 'me too', expire: 5 }, { sentAt: now }));
  assert.equal(ctx.bubbles().length, 2);
  now += 6000;
  for (const t of fired.splice(0)) if (t.at <= now) t.fn();
  assert.equal(ctx.bubbles().length, 0, 'both messages left the view');
  assert.ok(forgotten.includes(mine.id) && forgotten.includes(theirs.id));
  // an already expired message that comes again from history is never shown
  await live(await bobSends({ text: 'old and expired', expire: 5 }, { sentAt: now - 60000 }));
  assert.equal(ctx.bubbles().length, 0);
  // bob turns it off: a system line with his name
  await live(await bobSends({ timer: { secs: 0 } }, { sentAt: now + 1 }));
  assert.equal(m.timerOf('bob'), 0);
  assert.ok(m.view('bob').some((i) => i.type === 'system' && i.text === 'bob turned off disappearing messages'));
  await m.sendText('bob', 'stays');
  const last = await e.open(relay.sent.at(-1), { me: 'bob', encPrivateKey: bob.encPrivateKey, senderSignKeys: alice.signSpki });
  assert.deepEqual(last.plaintext, { text: 'stays' });
});

test('offline queue: a send while the relay is down is "queued", kept as a sealed envelope, and sent once, in order, after a reload', async () => {
  const records = new Map();
  const outbox = {
    put: async (id, r) => void records.set(id, structuredClone(r)),
    delete: async (id) => void records.delete(id),
    list: async () => [...records.values()],
  };
  const server = fakeServer();
  server.history.set('bob', []);
  server.conversations = [{ peer: 'bob', last_seq: 0, last_server_ts: 0, unread: 0 }];
  const relay = fakeRelay();
  relay.isOpen = false;
  const m = new Messenger({ api: server, session: sessionOf(alice), relay, pins: pins.memoryBacking(), outbox });
  await m.start();
  await m.openConversation('bob');
  const first = await m.sendText('bob', 'written offline, first');
  const second = await m.sendText('bob', 'written offline, second');
  assert.deepEqual([first.state, second.state], ['queued', 'queued']);
  assert.equal(records.size, 2);
  assert.ok(!JSON.stringify([...records.values()]).includes('written offline'), 'the outbox holds no plaintext');
  // the page is reloaded before the relay came back
  const relay2 = fakeRelay();
  relay2.isOpen = false;
  const m2 = new Messenger({ api: server, session: sessionOf(alice), relay: relay2, pins: pins.memoryBacking(), outbox });
  await m2.start();
  const restored = m2.ordered('bob');
  assert.deepEqual(restored.map((x) => [x.text, x.state]), [['written offline, first', 'queued'], ['written offline, second', 'queued']]);
  assert.deepEqual(relay2.sent.map((x) => x.id), [first.id, second.id], 'the same ids, in order');
  await relay2.emit('state', 'open');
  assert.deepEqual(m2.ordered('bob').map((x) => x.state), ['sending', 'sending']);
  relay2.acks.get(first.id).resolve({ seq: 1, server_ts: 1 });
  relay2.acks.get(second.id).resolve({ seq: 2, server_ts: 2 });
  await settle();
  assert.deepEqual(m2.ordered('bob').map((x) => x.state), ['sent', 'sent']);
  assert.equal(records.size, 0, 'acknowledged sends leave the outbox');
  await relay2.emit('state', 'waiting');
  const third = await m2.sendText('bob', 'third');
  assert.equal(third.state, 'queued');
});

test('the list\'s unread count leaves out edits, reactions and timers once the unread page is held', async () => {
  const server = fakeServer();
  const t = Date.now();
  const text = await bobSends({ text: 'one real message' }, { sentAt: t });
  const rows = [
    text,
    await bobSends({ react: { id: text.id, emoji: '👍' } }, { sentAt: t + 1 }),
    await bobSends({ edit: { id: text.id }, text: 'one real message, edited' }, { sentAt: t + 2 }),
    await bobSends({ timer: { secs: 3600 } }, { sentAt: t + 3 }),
  ].map((envelope, i) => ({ seq: i + 1, server_ts: t + i, state: 'delivered', envelope }));
  server.history.set('bob', rows);
  server.conversations = [{ peer: 'bob', last_seq: 4, last_server_ts: t + 3, unread: 4 }];
  const { m, relay } = await setup({ server, visible: false });
  await m.onOpen();
  assert.equal(m.conversations.get('bob').unread, 1, 'one bubble, not four envelopes');
  // the actions are read once applied, so the server's own count is one as well; the text
  // waits, unread, until it is on screen
  const reads = relay.receipts.filter((r) => r.startsWith('read:')).map((r) => r.slice(5));
  assert.deepEqual(reads.sort(), rows.slice(1).map((r) => r.envelope.id).sort());
  assert.ok(!relay.receipts.includes(`read:${text.id}`));
  assert.equal(m.preview('bob').text, 'one real message, edited');
  // a later list refresh with nothing new keeps the local count
  await m.refreshList();
  assert.equal(m.conversations.get('bob').unread, 1);
});
