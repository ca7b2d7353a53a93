// The server as the attacker (issue #13), in real headless Chromium against the real server:
// the test rewrites the server's answers on their way to the page (playwright's page.route)
// and the page must not trust them. The safety number on the contact card is computed from
// the keys the browser pinned, so two different directory answers (one for the card, one for
// the pin) end in a warning, never in matching numbers for keys the messages are not sealed
// for; the verified mark is the user's and a key change clears it; a stored message replayed
// without its seq, or under another seq, is not shown; a signed send time far from the
// server's time is marked. (The old signing key after a key change is in messaging.test.mjs.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from '../unit/paths.mjs';
import {
  assertClean,
  bubble,
  dumpStorage,
  fingerprintOn,
  injectIntoHistory,
  newPage,
  openFromDirectory,
  openFromList,
  registerViaUi,
  send,
  startServerAndBrowser,
  waitForChat,
  waitState,
} from './helpers.mjs';

const c = await frontendModule('crypto.js');
const b64 = await frontendModule('b64.js');

/** A directory answer for `username` with keys the attacker made (validly self-signed). */
async function forgedDirectoryEntry(username, keyVersion = 1) {
  const id = await c.generateIdentity();
  const selfSig = await c.selfSig(id.signPrivateKey, username, keyVersion, id.encSpki, id.signSpki);
  const fingerprint = await c.fingerprint(username, id.encSpki, id.signSpki);
  return {
    fingerprint,
    answer: {
      username,
      key_version: keyVersion,
      enc_public_key: b64.encode(id.encSpki),
      sign_public_key: b64.encode(id.signSpki),
      self_sig: b64.encode(selfSig),
      fingerprint,
    },
  };
}

/**
 * From the `switchAt`-th request on, the page's requests for `username`'s keys get `forged`
 * (the real answer's other members kept); the ones before pass. Returns the request count.
 */
async function directoryAnswers(page, username, forged, switchAt) {
  const seen = { count: 0 };
  await page.route(new RegExp(`/api/users/${username}/keys$`), async (route) => {
    seen.count += 1;
    if (seen.count < switchAt) return route.continue();
    const response = await route.fetch();
    const real = await response.json();
    return route.fulfill({ response, json: { ...real, ...forged } });
  });
  return seen;
}

/** The pin this page's browser holds for `peer` (as `me`). */
async function pinOf(page, me, peer) {
  const { records } = await dumpStorage(page);
  return records.find((r) => r.store === 'pins' && r.key === `${me}\n${peer}`)?.value ?? null;
}

async function accessTokenOf(page) {
  return page.evaluate(async () => (await (await import('/js/store.js')).loadSession()).access_token);
}

/** Closes the safety-number dialog if it is open. */
async function closeCard(page) {
  if (await page.locator('#safety-dialog').isVisible()) await page.click('#safety-close');
  await page.locator('#safety-dialog').waitFor({ state: 'hidden' });
}

async function reopenCard(page) {
  await closeCard(page);
  await page.click('#conv-safety'); // opens the dialog: checks the directory again
}

describe('the browser trusts what it pinned, not what the server says now', () => {
  let server;
  let browser;
  const pages = {};
  const fp = {};
  const PW = 'a long enough password 1';

  before(async () => {
    ({ server, browser } = await startServerAndBrowser());
    for (const name of ['alice', 'bob', 'carol']) {
      pages[name] = await newPage(browser);
      await registerViaUi(pages[name].page, server.url, name, PW);
      fp[name] = await waitForChat(pages[name].page);
    }
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the card shows the number of the pinned keys; a later different directory answer is a warning', async () => {
    const a = pages.alice.page;
    // the first keys request of the page gets the real keys, every later one the attacker's
    // (before the fix, the card's own request came first and the pin took the forged keys)
    const mallory = await forgedDirectoryEntry('bob');
    await directoryAnswers(a, 'bob', mallory.answer, 2);
    await openFromDirectory(a, 'bob');
    const shown = await fingerprintOn(a, '#safety-number');
    const pin = await pinOf(a, 'alice', 'bob');
    assert.ok(pin, 'bob is pinned');
    assert.equal(shown, fp.alice + pin.fingerprint, 'the card shows the number of the keys messages are sealed for');
    assert.equal(pin.fingerprint, fp.bob);
    // first use: pinned, not verified — the header and the card say so
    assert.equal(await a.locator('#conv-trust').getAttribute('data-verified'), 'false');
    assert.equal(await a.locator('#contact-verified').getAttribute('data-verified'), 'false');

    // the next check meets the attacker's answer: a warning, the pinned number stays
    await reopenCard(a);
    await a.locator('#contact-warning').waitFor({ state: 'visible' });
    assert.match(await a.locator('#contact-warning').innerText(), /other keys for bob than the ones pinned/);
    await a.locator('#key-warning').waitFor({ state: 'visible' });
    assert.equal(await fingerprintOn(a, '#safety-number'), fp.alice + fp.bob);
    assert.equal(await fingerprintOn(a, '#new-safety'), fp.alice + mallory.fingerprint);
    // the attacker's key does not descend from the pinned one
    assert.equal(await a.locator('#key-chain').getAttribute('data-verdict'), 'broken');
    assert.equal(await a.locator('#send').isDisabled(), true);
    assert.equal((await pinOf(a, 'alice', 'bob')).fingerprint, fp.bob, 'the pin did not move');
    await a.unroute(/\/api\/users\/bob\/keys$/);
  });

  test('two answers the other way round: the numbers on the two sides differ, then a warning', async () => {
    const cPage = pages.carol.page;
    const bPage = pages.bob.page;
    // carol's first request gets the attacker's keys for bob, the later ones the real keys
    const mallory = await forgedDirectoryEntry('bob');
    const seen = { count: 0 };
    await cPage.route(/\/api\/users\/bob\/keys$/, async (route) => {
      seen.count += 1;
      if (seen.count > 1) return route.continue();
      const response = await route.fetch();
      return route.fulfill({ response, json: { ...(await response.json()), ...mallory.answer } });
    });
    await openFromDirectory(cPage, 'bob');
    const carolSees = await fingerprintOn(cPage, '#safety-number');
    assert.equal(carolSees, mallory.fingerprint + fp.carol, 'bob sorts before carol');
    await openFromDirectory(bPage, 'carol');
    const bobSees = await fingerprintOn(bPage, '#safety-number');
    // the safety number is symmetric: equal numbers would mean the same keys on both sides
    assert.equal(bobSees.length, carolSees.length);
    assert.notEqual(bobSees, carolSees, 'comparing the numbers reveals the attack');
    await reopenCard(cPage);
    await cPage.locator('#key-warning').waitFor({ state: 'visible' });
    await closeCard(cPage);
    await cPage.unroute(/\/api\/users\/bob\/keys$/);
  });

  test('"mark as verified" is kept across a reload and cleared by a key change', async () => {
    const cPage = pages.carol.page;
    await openFromDirectory(cPage, 'alice');
    await fingerprintOn(cPage, '#safety-number');
    await cPage.click('#conv-safety');
    await cPage.click('#contact-verify');
    await cPage.locator('#contact-verified[data-verified="true"]').waitFor();
    await cPage.locator('#conv-trust[data-verified="true"]').waitFor();
    await cPage.reload();
    await waitForChat(cPage);
    await openFromDirectory(cPage, 'alice');
    await cPage.locator('#conv-trust[data-verified="true"]').waitFor();
    assert.ok((await pinOf(cPage, 'carol', 'alice')).verified_at > 0);
    // the server shows other keys for alice: the mark goes with the old key
    const forged = await forgedDirectoryEntry('alice', 2);
    await directoryAnswers(cPage, 'alice', forged.answer, 1);
    await reopenCard(cPage);
    await cPage.locator('#key-warning').waitFor({ state: 'visible' });
    assert.equal(await cPage.locator('#conv-trust').isVisible(), false);
    await closeCard(cPage);
    await cPage.click('#accept-key');
    await cPage.locator('#key-warning').waitFor({ state: 'hidden' });
    await cPage.locator('#conv-trust[data-verified="false"]').waitFor();
    assert.equal((await pinOf(cPage, 'carol', 'alice')).verified_at, null);
    await cPage.unroute(/\/api\/users\/alice\/keys$/);
  });

  test('a stored message replayed without its seq, or under another seq, is not shown; a far-off send time is marked', async () => {
    const a = pages.alice.page;
    const bPage = pages.bob.page;
    // alice's pin of bob is the real key (the first test); a real message from bob
    await a.reload();
    await waitForChat(a);
    await openFromDirectory(bPage, 'alice');
    await send(bPage, 'bob says this once');
    await waitState(bPage, 'bob says this once', 'delivered');
    await openFromList(a, 'bob');
    await bubble(a, 'bob says this once', 'theirs').and(a.locator('[data-status="ok"]')).waitFor();

    // after a reload, the server leaves the message out of its page and pushes a copy of it
    // without seq (newest), then one under a new seq
    let original;
    await injectIntoHistory(a, 'bob', (messages) => {
      original = messages.find((m) => m.envelope.from === 'bob');
      const others = messages.filter((m) => m !== original);
      const { seq: _seq, ...withoutSeq } = original;
      return [...others, { ...withoutSeq, server_ts: Date.now() }];
    });
    await a.reload();
    await waitForChat(a);
    await openFromList(a, 'bob');
    await a.locator('#conv-status', { hasText: /^$/ }).waitFor({ state: 'attached' });
    await a.waitForFunction(() => document.querySelector('#messages')?.dataset.empty !== undefined);
    assert.equal(await bubble(a, 'bob says this once').count(), 0, 'a copy without seq is not shown');

    await a.unroute(/\/api\/conversations\/bob\/messages/);
    await injectIntoHistory(a, 'bob', (messages) => [
      ...messages.filter((m) => m.envelope.id !== original.envelope.id),
      { ...original, seq: original.seq + 1000 },
    ]);
    await a.reload();
    await waitForChat(a);
    await openFromList(a, 'bob');
    await a.waitForFunction(() => document.querySelector('#messages')?.dataset.empty !== undefined);
    assert.equal(await bubble(a, 'bob says this once').count(), 0, 'a copy under another seq is not shown');

    // the real message, stored 3 hours after bob signed it: shown at bob's time, marked
    await a.unroute(/\/api\/conversations\/bob\/messages/);
    await injectIntoHistory(a, 'bob', (messages) =>
      messages.map((m) => (m.envelope.id === original.envelope.id ? { ...m, server_ts: m.envelope.sent_at + 3 * 3600 * 1000 } : m)),
    );
    await a.reload();
    await waitForChat(a);
    await openFromList(a, 'bob');
    const kept = bubble(a, 'bob says this once', 'theirs').and(a.locator('[data-status="ok"]'));
    await kept.waitFor();
    assert.equal(await kept.count(), 1);
    const time = await kept.locator('time').getAttribute('datetime');
    assert.equal(Date.parse(time), original.envelope.sent_at, 'the time shown is the signed send time');
    assert.equal(await kept.locator('[data-role="clock-skew"]').count(), 1);
    await a.unroute(/\/api\/conversations\/bob\/messages/);
  });

  test('an injected script with the session and the keys cannot rotate them without the password', async () => {
    const cPage = pages.carol.page;
    // everything a script running in the page has: the tokens and the non-extractable keys
    const answer = await cPage.evaluate(async () => {
      const store = await import('/js/store.js');
      const c = await import('/js/crypto.js');
      const { encode } = await import('/js/b64.js');
      const session = await store.loadSession();
      const version = session.key_version + 1;
      const id = await c.generateIdentity();
      const body = {
        key_version: version,
        enc_public_key: encode(id.encSpki),
        sign_public_key: encode(id.signSpki),
        key_bundle: { iv: encode(c.randomBytes(12)), ct: encode(c.randomBytes(2000)) },
        self_sig: encode(await c.selfSig(id.signPrivateKey, session.username, version, id.encSpki, id.signSpki)),
        prev_sig: encode(await c.prevSig(session.signPrivateKey, session.username, version, id.encSpki, id.signSpki)),
      };
      const res = await fetch('/api/keys/rotate', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${session.access_token}` },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json().catch(() => null) };
    });
    assert.equal(answer.status, 401);
    assert.equal(answer.body?.error?.code, 'reauthentication_required');
    const dir = await (await fetch(`${server.url}/api/users/carol/keys`, { headers: { Authorization: `Bearer ${await accessTokenOf(cPage)}` } })).json();
    assert.equal(dir.key_version, 1, 'nothing was rotated');
  });

  test('no console errors and no CSP violations', () => {
    for (const name of Object.keys(pages)) assertClean(pages[name].problems, { allowStatuses: [401, 404] });
  });
});
