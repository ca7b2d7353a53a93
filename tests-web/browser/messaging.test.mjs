// End-to-end encrypted messaging in real headless Chromium against the real server (issue #4):
// live messages both ways with sending -> sent -> delivered -> read, typing and presence,
// catch-up from history after signing in again, a resend with the same id after a dropped
// connection, two tabs of one user, no plaintext on the server's disk, and a changed key that
// blocks sending until the user verifies the new safety number.
//
// Not covered here: a message from the Rust client. Its CLI (client/src/bin/securechat-client.rs)
// only has `register` and `login`; the browser and Rust message crypto are cross-checked through
// testdata/crypto-vectors.json instead (tests-web/unit/envelope.test.mjs).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  assertClean,
  bubble,
  dumpStorage,
  injectIntoHistory,
  fingerprintOn,
  loginViaUi,
  newPage,
  openSettings,
  openFromDirectory,
  openFromList,
  registerViaUi,
  rotateKeysInPage,
  send,
  startServerAndBrowser,
  storedSession,
  waitForChat,
  waitState,
} from './helpers.mjs';

const PW = { alice: 'alice password 1234', bob: 'bob password 123456' };
const SECRETS = []; // every text sent; none may reach the server's disk

function secret(text) {
  SECRETS.push(text);
  return text;
}

async function texts(page) {
  return page.locator('#messages li.msg .msg-text').allInnerTexts();
}

async function filesUnder(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(path.join(entry.parentPath ?? entry.path, entry.name));
  }
  return out;
}

describe('encrypted messaging in the browser', () => {
  let server;
  let browser;
  let alice;
  let bob;
  const fp = {};

  before(async () => {
    ({ server, browser } = await startServerAndBrowser());
    alice = await newPage(browser);
    bob = await newPage(browser);
    await registerViaUi(alice.page, server.url, 'alice', PW.alice);
    await registerViaUi(bob.page, server.url, 'bob', PW.bob);
    [fp.alice, fp.bob] = await Promise.all([waitForChat(alice.page), waitForChat(bob.page)]);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('alice and bob write in real time both ways; states go sending -> sent -> delivered -> read', async () => {
    const a = alice.page;
    const b = bob.page;
    // nothing to show yet, and no composer before a conversation is open
    assert.equal(await a.locator('#composer').isVisible(), false);
    assert.equal(await a.locator('#conversations li').count(), 0);

    await openFromDirectory(a, 'bob');
    // the safety number is shown with the conversation opened from the directory
    assert.equal(await fingerprintOn(a, '#safety-number'), fp.alice + fp.bob);
    const first = secret('Hello bob, this is secret number one');
    await send(a, first);
    assert.equal(await a.locator('#composer-input').inputValue(), '');
    await bubble(a, first, 'mine').waitFor();

    // bob has not opened the conversation: it is listed with one unread, and he got it (delivered)
    const conv = b.locator('#conversations button.conv[data-peer="alice"]');
    await conv.and(b.locator('[data-unread="1"]')).waitFor();
    assert.equal(await conv.locator('.badge').innerText(), '1');
    await waitState(a, first, 'delivered');
    assert.match(await b.locator('#live').innerText(), /New message from alice: Hello bob, this is secret number one/);

    // bob opens it: read, and the unread count is gone
    await openFromList(b, 'alice');
    await bubble(b, first, 'theirs').waitFor();
    await waitState(a, first, 'read');
    await conv.and(b.locator('[data-unread="0"]')).waitFor();

    // typing reaches alice; bob answers with two lines (Shift+Enter) and markup that must stay text
    await b.locator('#composer-input').pressSequentially('Hi alice', { delay: 10 });
    await a.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
    await b.keyboard.press('Shift+Enter');
    const markup = secret('<img src=x onerror=alert(1)> & more');
    await b.keyboard.type(markup);
    await b.keyboard.press('Enter');
    const reply = `Hi alice\n${markup}`;
    const got = bubble(a, 'Hi alice', 'theirs');
    await got.waitFor();
    assert.equal(await got.locator('.msg-text').innerText(), reply);
    assert.equal(await a.locator('#messages img').count(), 0, 'message text is never parsed as HTML');
    // alice has the conversation open and visible: it is read at once
    await waitState(b, 'Hi alice', 'read');
    await a.locator('#typing:empty').waitFor();

    // presence: both see the other online
    assert.equal(await a.locator('#conv-presence').innerText(), 'online');
    assert.equal(await b.locator('#conv-presence').innerText(), 'online');

    // Enter on an empty composer sends nothing; a long text is refused before sealing
    await a.press('#composer-input', 'Enter');
    await a.fill('#composer-input', 'x'.repeat(16 * 1024 + 1));
    await a.press('#composer-input', 'Enter');
    await a.locator('#composer-error', { hasText: /limited to 16 KiB/ }).waitFor();
    await a.fill('#composer-input', '');
    assert.deepEqual(await texts(a), [first, reply]);
    assert.deepEqual(await texts(b), [first, reply]);
  });

  test('a dropped connection: the unacknowledged send goes out again with the same id and is stored once', async () => {
    const a = alice.page;
    const sentIds = [];
    const acks = [];
    let connections = 0;
    // the first routed connection forwards everything but the ack, then drops; later ones pass through
    await a.routeWebSocket(/\/api\/ws\?ticket=/, (ws) => {
      const n = ++connections;
      const upstream = ws.connectToServer();
      ws.onMessage((message) => {
        const frame = JSON.parse(message);
        if (frame.type === 'send') sentIds.push(frame.envelope.id);
        upstream.send(message);
      });
      upstream.onMessage((message) => {
        const frame = JSON.parse(message);
        if (frame.type === 'ack') acks.push(frame);
        if (n === 1 && frame.type === 'ack') {
          ws.close({ code: 4000, reason: 'test drops the connection' });
          upstream.close();
          return;
        }
        ws.send(message);
      });
    });
    // a routed socket only applies to new connections: reload alice's page
    await a.reload();
    await waitForChat(a);
    await openFromList(a, 'bob');
    await a.locator('#conn-status[data-state="open"]').waitFor();
    const text = secret('sent while the connection breaks');
    await send(a, text);
    // acknowledged (it has a seq) after the reconnect; bob has it open, so it may be read already
    const mine = bubble(a, text, 'mine').and(a.locator('[data-seq]'));
    await mine.waitFor();
    assert.match(await mine.getAttribute('data-state'), /^(sent|delivered|read)$/);
    assert.ok(connections >= 2, `reconnected (${connections} connections)`);
    assert.equal(sentIds.length, 2, `sent twice: ${JSON.stringify(sentIds)}`);
    assert.equal(sentIds[0], sentIds[1], 'the resend has the same id');
    // the server acknowledged the resend with the original seq and server_ts
    assert.equal(acks.length, 2);
    assert.deepEqual(acks[1], acks[0]);
    assert.equal(await mine.getAttribute('data-seq'), String(acks[0].seq));
    // stored once: bob sees it once, and the history holds it once
    await bubble(bob.page, text, 'theirs').waitFor();
    const tokens = await storedSession(a);
    const res = await fetch(`${server.url}/api/conversations/bob/messages?limit=200`, {
      headers: { Authorization: `Bearer ${tokens.access_token}` },
    });
    const history = await res.json();
    assert.equal(history.messages.filter((m) => m.envelope.id === sentIds[0]).length, 1);
    await a.unrouteAll({ behavior: 'wait' });
    assert.equal(await bubble(bob.page, text, 'theirs').count(), 1);
  });

  test('bob offline: alice’s messages reach him after he signs in again, in order; alice sees last seen', async () => {
    const a = alice.page;
    await a.reload();
    await waitForChat(a);
    await openFromList(a, 'bob');
    await bob.context.close();
    await a.locator('#conv-presence', { hasText: /^last seen / }).waitFor();

    const offline = [secret('offline one'), secret('offline two'), secret('offline three')];
    for (const text of offline) {
      await send(a, text);
      await waitState(a, text, 'sent');
    }
    bob = await newPage(browser);
    await loginViaUi(bob.page, server.url, 'bob', PW.bob);
    await waitForChat(bob.page);
    const b = bob.page;
    // fetched at start-up (so delivered), still unread
    await b.locator('#conversations button.conv[data-peer="alice"][data-unread="3"]').waitFor();
    for (const text of offline) await waitState(a, text, 'delivered');
    await a.locator('#conv-presence', { hasText: 'online' }).waitFor();
    await openFromList(b, 'alice');
    await bubble(b, 'offline three', 'theirs').waitFor();
    const shown = await texts(b);
    assert.deepEqual(shown.slice(-3), offline);
    assert.equal(shown.length, 6);
    const seqs = await b.locator('#messages li.msg').evaluateAll((els) => els.map((el) => Number(el.dataset.seq)));
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
    for (const text of offline) await waitState(a, text, 'read');
  });

  test('two tabs of alice both show the conversation, live in both directions', async () => {
    const tab1 = alice.page;
    const tab2 = await alice.context.newPage();
    const problems2 = [];
    tab2.on('console', (msg) => msg.type() === 'error' && problems2.push({ kind: 'console', text: msg.text() }));
    tab2.on('pageerror', (err) => problems2.push({ kind: 'pageerror', text: String(err) }));
    await tab2.goto(`${server.url}/chat.html`);
    await waitForChat(tab2);
    await openFromList(tab2, 'bob');
    await bubble(tab2, 'offline three', 'mine').waitFor();
    assert.deepEqual(await texts(tab2), await texts(tab1));

    const fromBob = secret('bob writes to both tabs');
    await send(bob.page, fromBob);
    await bubble(tab1, fromBob, 'theirs').waitFor();
    await bubble(tab2, fromBob, 'theirs').waitFor();
    await waitState(bob.page, fromBob, 'read');

    const fromTab1 = secret('tab one writes, tab two sees it');
    await send(tab1, fromTab1);
    await bubble(tab2, fromTab1, 'mine').waitFor();
    await waitState(tab1, fromTab1, 'read');
    await waitState(tab2, fromTab1, 'read');
    assert.deepEqual(await texts(tab2), await texts(tab1));
    assertClean(problems2);
    await tab2.close();
  });

  test('the server’s data dir holds no plaintext (database and WAL)', async () => {
    const files = await filesUnder(server.dataDir);
    const db = files.filter((f) => /\.db(-wal|-shm)?$/.test(f) || /sqlite/.test(f));
    assert.ok(db.some((f) => f.endsWith('.db')), `no database in ${files.join(', ')}`);
    const ids = await alice.page.locator('#messages li.msg').evaluateAll((els) => els.map((el) => el.dataset.id));
    let stored = false;
    for (const file of files) {
      const content = await readFile(file);
      for (const text of SECRETS) {
        for (const piece of text.split('\n')) {
          assert.equal(content.includes(Buffer.from(piece, 'utf8')), false, `"${piece}" found in ${file}`);
        }
      }
      if (ids.some((id) => content.includes(Buffer.from(id)))) stored = true;
    }
    assert.ok(stored, 'the envelopes are on disk (so the search above looked at the right files)');
    // nor does the browser keep plaintext (or raw key bytes) in its storage
    for (const page of [alice.page, bob.page]) {
      const dump = JSON.stringify(await dumpStorage(page));
      for (const text of SECRETS) assert.equal(dump.includes(JSON.stringify(text).slice(1, -1)), false, `"${text}" in browser storage`);
      assert.equal(dump.includes('"$bytes"'), false);
      assert.match(dump, /"store":"pins"/, 'the peer is pinned');
    }
  });

  test('a changed key blocks sending until alice accepts it; the old key then opens only what came before', async () => {
    const a = alice.page;
    const b = bob.page;
    const before = await fingerprintOn(a, '#own-fingerprint');
    assert.equal(before, fp.alice);
    // bob's old key signs a message that is never sent: later the server (or a thief of that
    // key) slips it in after the change
    const heldBack = secret('held back, signed with bob’s old key');
    const held = await b.evaluate(async (text) => {
      const store = await import('/js/store.js');
      const { seal } = await import('/js/envelope.js');
      const { Api } = await import('/js/api.js');
      const session = await store.loadSession();
      const api = new Api({ tokens: session, saveTokens: store.saveTokens, loadTokens: store.loadTokens });
      const dir = await api.get('/api/users/alice/keys', { auth: true });
      const readers = { bob: session.encPublicKey, alice: dir.enc_public_key };
      return seal({ from: 'bob', to: 'alice', plaintext: { text }, signKey: session.signPrivateKey, readers });
    }, heldBack);
    // bob rotates his keys (POST /api/keys/rotate from his page with the app's own modules) ...
    const rotated = await rotateKeysInPage(b, PW.bob);
    assert.deepEqual(rotated, { username: 'bob', key_version: 2 });
    // ... and signs in again to use them
    await openSettings(b);
    await b.click('#sign-out');
    await b.waitForURL(/login\.html/);
    await loginViaUi(b, server.url, 'bob', PW.bob);
    const newBobFp = await waitForChat(b);
    assert.notEqual(newBobFp, fp.bob);
    assert.equal(await b.locator('#me-key-version').innerText(), '2');

    // alice opens the conversation again: the directory no longer shows the pinned key
    await a.reload();
    await waitForChat(a);
    await openFromList(a, 'bob');
    const warning = a.locator('#key-warning');
    await warning.waitFor({ state: 'visible' });
    assert.match(await a.locator('#key-warning-title').innerText(), /bob’s safety number has changed/);
    assert.equal(await fingerprintOn(a, '#old-safety'), fp.alice + fp.bob);
    assert.equal(await fingerprintOn(a, '#new-safety'), fp.alice + newBobFp);
    await a.locator('#key-log li[data-version="2"]').waitFor();
    assert.equal(await a.locator('#key-log li').count(), 2);
    // one verdict, checked from the pinned version forward with the pinned key
    assert.equal(await a.locator('#key-chain').getAttribute('data-verdict'), 'chained');
    assert.match(await a.locator('#key-chain').innerText(), /signed by the keys you pinned/);
    assert.match(await a.locator('#key-log li[data-version="1"]').innerText(), /the key you pinned/);
    assert.equal(await a.locator('#conv-trust').isVisible(), false, 'no verified badge while the key is changed');
    assert.equal(await a.locator('#send').isDisabled(), true);
    assert.match(await a.locator('#composer-error').innerText(), /blocked until you accept their new keys/);
    // the key check and the history load run side by side: count only once the history is shown
    await bubble(a, 'bob writes to both tabs', 'theirs').waitFor();
    const count = await a.locator('#messages li.msg').count();
    assert.ok(count > 0);
    await a.fill('#composer-input', 'must not be sent');
    await a.press('#composer-input', 'Enter');
    await a.locator('#composer-error', { hasText: /safety number has changed|blocked/ }).waitFor();
    assert.equal(await a.locator('#messages li.msg').count(), count, 'nothing was sent');

    // bob (new keys) writes: alice cannot verify it against the pinned key and never shows its text
    const unverified = secret('signed with bob’s new key');
    await openFromList(b, 'alice');
    await send(b, unverified);
    await waitState(b, unverified, 'delivered');
    const suspect = a.locator('#messages li.msg.theirs[data-status="unverified"]');
    await suspect.waitFor();
    assert.match(await suspect.innerText(), /Could not verify this message/);
    assert.equal((await a.locator('#main').innerText()).includes(unverified), false);

    // alice compared the number with bob: she re-pins, sending works, and the message opens
    await a.click('#accept-key');
    await warning.waitFor({ state: 'hidden' });
    assert.equal(await a.locator('#send').isDisabled(), false);
    await bubble(a, unverified, 'theirs').and(a.locator('[data-status="ok"]')).waitFor();
    const afterVerify = secret('verified, writing again');
    await a.fill('#composer-input', afterVerify);
    await a.click('#send');
    await bubble(b, afterVerify, 'theirs').waitFor();
    await waitState(a, afterVerify, 'read');
    // accepting is not verifying: the badge says so
    assert.equal(await a.locator('#conv-trust').getAttribute('data-verified'), 'false');
    // the new pin holds across a reload: no warning. The server slips the held-back message
    // (old key, fresh id) into the history under a seq after the change.
    await injectIntoHistory(a, 'bob', (messages) => [
      ...messages,
      { seq: Math.max(...messages.map((m) => m.seq)) + 50, server_ts: Date.now(), state: 'sent', envelope: held },
    ]);
    await a.reload();
    await waitForChat(a);
    await openFromList(a, 'bob');
    await bubble(a, afterVerify, 'mine').waitFor();
    assert.equal(await warning.isVisible(), false);
    // bob's messages from before the change still verify with the key alice had pinned then,
    // and say so; the old key's message after the change does not open
    const early = bubble(a, 'bob writes to both tabs', 'theirs').and(a.locator('[data-status="ok"]'));
    await early.waitFor();
    assert.match(await early.locator('[data-role="previous-key"]').innerText(), /previous key \(version 1\)/);
    const slipped = a.locator(`#messages li.msg.theirs[data-id="${held.id}"]`);
    await slipped.waitFor();
    assert.equal(await slipped.getAttribute('data-status'), 'unverified');
    assert.equal((await a.locator('#main').innerText()).includes(heldBack), false);
    await a.unroute(/\/api\/conversations\/bob\/messages/);
  });

  test('no console errors and no CSP violations on either side', () => {
    assertClean(alice.problems);
    assertClean(bob.problems);
  });
});
