// Message actions inside the encryption, the offline queue, local search and account settings
// (issue #17 items 3, 4, 6, 8) in real headless Chromium against the real server, two browser
// contexts: reply, edit, delete for everyone (the ciphertext gone from the SQLite file),
// reactions, a 5 s disappearing message (gone on both sides and from the database), a message
// queued while offline and sent once on reconnect, local search (and no plaintext in the raw
// IndexedDB), and a password change (old password refused, new one accepted, history still
// decrypts, another session signed out).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  assertClean,
  bubble,
  dumpStorage,
  launchBrowser,
  loginViaUi,
  newPage,
  openFromDirectory,
  openFromList,
  registerViaUi,
  send,
  waitForChat,
  waitState,
} from './helpers.mjs';
import { startServer } from './server.mjs';

const run = promisify(execFile);
const PW = { alice: 'alice password 1234', bob: 'bob password 123456' };
const NEW_PW = 'alice new password 5678';

/** Rows of the real database whose stored envelope is message `id` (sqlite3 on the server's file). */
async function storedCopies(server, id) {
  const db = path.join(server.dataDir, 'securechat.db');
  const { stdout } = await run('sqlite3', [db, `SELECT count(*) FROM messages WHERE envelope LIKE '%${id}%';`]);
  return Number(stdout.trim());
}

async function idOf(page, text, who) {
  return bubble(page, text, who).getAttribute('data-id');
}

/** Opens the bubble's action menu and picks an entry by its data-action. */
async function act(page, text, action, who = '') {
  const b = bubble(page, text, who);
  await b.locator('.msg-menu-button').click();
  await b.locator(`.msg-menu [data-action="${action}"]`).click();
}

/** Waits until `fn` is true (polling), or fails after `ms`. */
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('message actions, offline queue, local search and account settings', () => {
  let server;
  let browser;
  let alice;
  let bob;

  before(async () => {
    [server, browser] = await Promise.all([startServer({ env: { SECURECHAT_MESSAGES__EXPIRY_SWEEP_SECS: '1' } }), launchBrowser()]);
    alice = await newPage(browser);
    bob = await newPage(browser);
    await registerViaUi(alice.page, server.url, 'alice', PW.alice);
    await registerViaUi(bob.page, server.url, 'bob', PW.bob);
    await Promise.all([waitForChat(alice.page), waitForChat(bob.page)]);
    await openFromDirectory(alice.page, 'bob');
    await send(alice.page, 'hello bob, shall we start');
    await bubble(bob.page, 'hello bob, shall we start').waitFor({ state: 'attached' }).catch(() => {});
    await bob.page.locator('#conversations button.conv[data-peer="alice"]').waitFor();
    await openFromList(bob.page, 'alice');
    await bubble(bob.page, 'hello bob, shall we start', 'theirs').waitFor();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('a reply shows a quote of the original on both sides', async () => {
    const a = alice.page;
    const b = bob.page;
    await act(b, 'hello bob, shall we start', 'reply', 'theirs');
    await b.locator('#compose-context', { hasText: 'Replying to alice' }).waitFor();
    await send(b, 'yes, replying to that');
    await b.locator('#compose-context').waitFor({ state: 'hidden' });
    const got = bubble(a, 'yes, replying to that', 'theirs');
    await got.waitFor();
    assert.match(await got.locator('.msg-quote').innerText(), /You: hello bob, shall we start/);
    assert.match(await bubble(b, 'yes, replying to that', 'mine').locator('.msg-quote').innerText(), /alice: hello bob, shall we start/);
    // Cancel drops the reply
    await act(a, 'yes, replying to that', 'reply', 'theirs');
    await a.locator('#compose-context-cancel').click();
    await send(a, 'not a reply');
    await bubble(b, 'not a reply', 'theirs').waitFor();
    assert.equal(await bubble(b, 'not a reply', 'theirs').locator('.msg-quote').count(), 0);
  });

  test('an edit replaces the text on both sides, marked edited; reactions show on both sides and can be removed', async () => {
    const a = alice.page;
    const b = bob.page;
    await send(a, 'meet at 8 oclock');
    await bubble(b, 'meet at 8 oclock', 'theirs').waitFor();
    await act(a, 'meet at 8 oclock', 'edit', 'mine');
    assert.equal(await a.locator('#composer-input').inputValue(), 'meet at 8 oclock');
    await a.fill('#composer-input', 'meet at 9 oclock');
    await a.press('#composer-input', 'Enter');
    const edited = bubble(b, 'meet at 9 oclock', 'theirs');
    await edited.and(b.locator('[data-edited="true"]')).waitFor();
    assert.equal(await bubble(b, 'meet at 8 oclock').count(), 0, 'the old text is gone');
    assert.equal(await b.locator('#messages li.msg .msg-text', { hasText: 'meet at 9 oclock' }).count(), 1, 'the edit is no new bubble');
    await bubble(a, 'meet at 9 oclock', 'mine').and(a.locator('[data-edited="true"]')).waitFor();
    // bob has no Edit or Delete on alice's message
    await bubble(b, 'meet at 9 oclock', 'theirs').locator('.msg-menu-button').click();
    assert.equal(await b.locator('.msg-menu [data-action="edit"]').count(), 0);
    assert.equal(await b.locator('.msg-menu [data-action="delete"]').count(), 0);
    // keyboard: the menu has focus, Escape closes it and gives the focus back
    assert.equal(await b.evaluate(() => document.activeElement?.dataset.action), 'reply');
    await b.keyboard.press('Escape');
    assert.equal(await b.locator('.msg-menu').count(), 0);
    assert.equal(await b.evaluate(() => document.activeElement?.classList.contains('msg-menu-button')), true);

    await act(b, 'meet at 9 oclock', 'react-👍', 'theirs');
    await bubble(a, 'meet at 9 oclock', 'mine').locator('.reaction[data-from="bob"]', { hasText: '👍' }).waitFor();
    await bubble(b, 'meet at 9 oclock', 'theirs').locator('.reaction[data-from="bob"]', { hasText: '👍' }).waitFor();
    // choosing the same emoji again removes it
    await act(b, 'meet at 9 oclock', 'react-👍', 'theirs');
    await bubble(a, 'meet at 9 oclock', 'mine').locator('.reaction').waitFor({ state: 'detached' });
  });

  test('with a mouse, the ⋯ button stays out of sight until its bubble is hovered or holds the focus', async () => {
    const a = alice.page;
    await send(a, 'hover over me');
    const target = bubble(a, 'hover over me', 'mine');
    await target.waitFor();
    assert.equal(await a.evaluate(() => matchMedia('(hover: hover) and (pointer: fine)').matches), true, 'a desktop pointer');
    const button = target.locator('.msg-menu-button');
    const opacity = () => button.evaluate((el) => getComputedStyle(el).opacity);
    const becomes = (value, what) => until(async () => (await opacity()) === value, 3000, what);
    await a.locator('#composer-input').focus();
    await a.mouse.move(1, 1);
    await becomes('0', 'hidden while neither hovered nor focused');
    assert.equal(await button.evaluate((el) => getComputedStyle(el).position), 'absolute', 'it takes no room under the bubble');
    await target.hover();
    await becomes('1', 'shown on hover');
    await a.mouse.move(1, 1);
    await becomes('0', 'hidden again');
    await button.focus();
    await becomes('1', 'shown while it has the keyboard focus');
    await a.locator('#composer-input').focus();
    await becomes('0', 'hidden once the focus left');
  });

  test('delete for everyone hides the message on both sides and its ciphertext leaves the database', async () => {
    const a = alice.page;
    const b = bob.page;
    const text = 'this one I will regret';
    await send(a, text);
    await bubble(b, text, 'theirs').waitFor();
    await waitState(a, text, 'read');
    const id = await idOf(a, text, 'mine');
    assert.equal(await storedCopies(server, id), 1, 'stored before the delete');
    a.once('dialog', (d) => d.accept());
    await act(a, text, 'delete', 'mine');
    await b.locator(`#messages li[data-id="${id}"][data-deleted="true"]`, { hasText: 'This message was deleted' }).waitFor();
    await a.locator(`#messages li[data-id="${id}"][data-deleted="true"]`).waitFor();
    assert.equal(await b.locator('#messages', { hasText: text }).count(), 0);
    await until(async () => (await storedCopies(server, id)) === 0, 10000, 'the ciphertext to leave the database');
  });

  test('a 5 s disappearing message vanishes on both sides and from the database', async () => {
    const a = alice.page;
    const b = bob.page;
    await a.selectOption('#conv-timer', '30');
    await b.locator('#messages li.msg.system', { hasText: 'alice set disappearing messages to 30 seconds' }).waitFor();
    assert.equal(await b.locator('#conv-timer').inputValue(), '30');
    // 5 s is below the header's choices but within the protocol's range: the same control, one more option
    await a.evaluate(() => {
      const option = document.createElement('option');
      option.value = '5';
      option.textContent = '5 seconds';
      document.getElementById('conv-timer').append(option);
    });
    await a.selectOption('#conv-timer', '5');
    await b.locator('#messages li.msg.system', { hasText: 'alice set disappearing messages to 5 seconds' }).waitFor();
    const text = 'this disappears soon';
    await send(a, text);
    await bubble(b, text, 'theirs').waitFor();
    const id = await idOf(b, text, 'theirs');
    assert.equal(await storedCopies(server, id), 1);
    await Promise.all([
      bubble(a, text).waitFor({ state: 'detached', timeout: 15000 }),
      bubble(b, text).waitFor({ state: 'detached', timeout: 15000 }),
    ]);
    await until(async () => (await storedCopies(server, id)) === 0, 15000, 'the expired ciphertext to leave the database');
    await a.selectOption('#conv-timer', '0');
    await b.locator('#messages li.msg.system', { hasText: 'alice turned off disappearing messages' }).waitFor();
  });

  test('a message written offline is queued, then sent once on reconnect', async () => {
    const a = alice.page;
    const b = bob.page;
    await alice.context.setOffline(true);
    await a.locator('#conn-status:not([data-state="open"])').waitFor({ timeout: 30000 });
    await send(a, 'written while offline');
    await bubble(a, 'written while offline', 'mine').and(a.locator('[data-state="queued"]')).waitFor();
    // kept in IndexedDB as the sealed envelope only
    const { records } = await dumpStorage(a);
    const outbox = records.filter((r) => r.store === 'outbox');
    assert.equal(outbox.length, 1);
    assert.equal(outbox[0].value.peer, 'bob');
    assert.ok(!JSON.stringify(records).includes('written while offline'), 'no plaintext of the queued message at rest');
    await alice.context.setOffline(false);
    await waitState(a, 'written while offline', 'read');
    await bubble(b, 'written while offline', 'theirs').waitFor();
    assert.equal(await b.locator('#messages li.msg .msg-text', { hasText: 'written while offline' }).count(), 1, 'sent once');
    assert.equal((await dumpStorage(a)).records.filter((r) => r.store === 'outbox').length, 0, 'the outbox empties on the ack');
  });

  test('local search finds a message by a word and opens the conversation at it; the raw IndexedDB holds no plaintext', async () => {
    const a = alice.page;
    const b = bob.page;
    const word = 'xylophonic';
    await send(b, `the ${word} parade is tomorrow`);
    await bubble(a, `the ${word} parade`, 'theirs').waitFor();
    // nothing about the query leaves the browser: no request carries any part of it
    const requests = [];
    const record = (r) => requests.push(`${r.url()} ${r.postData() ?? ''}`);
    a.on('request', record);
    a.on('websocket', (ws) => ws.on('framesent', (f) => requests.push(String(f.payload))));
    await a.fill('#msg-search', word.slice(0, 6));
    const hit = a.locator('#msg-search-results .msg-search-hit', { hasText: `the ${word} parade` });
    await hit.waitFor();
    await hit.click();
    await a.locator('#messages li.search-hit', { hasText: word }).waitFor();
    a.off('request', record);
    assert.deepEqual(requests.filter((t) => t.includes(word.slice(0, 6))), [], 'the query is not sent anywhere');
    const raw = JSON.stringify(await dumpStorage(a));
    assert.ok(raw.includes('"store":"search"'), 'the index is in IndexedDB');
    for (const needle of [word, 'parade', 'regret', 'oclock']) assert.ok(!raw.includes(needle), `no "${needle}" in clear`);
    // a deleted message leaves the index
    assert.equal(await a.locator('#msg-search-results').isVisible(), true);
    await a.fill('#msg-search', 'regret');
    await a.locator('#msg-search-status', { hasText: 'No messages found' }).waitFor();
  });

  test('changing the password: the old one is refused, the new one signs in, history decrypts, another session is signed out', async () => {
    const a = alice.page;
    const second = await newPage(browser);
    await loginViaUi(second.page, server.url, 'alice', PW.alice);
    await waitForChat(second.page);
    await a.goto(`${server.url}/chat.html#settings`);
    const view = a.locator('#settings-security');
    if (!(await view.isVisible())) await a.locator('#open-settings, [data-open="settings"]').first().click();
    await a.fill('#pw-current', 'not my password at all');
    await a.fill('#pw-new', NEW_PW);
    await a.fill('#pw-again', NEW_PW);
    await a.click('#pw-submit');
    await a.locator('#pw-error', { hasText: 'Wrong password' }).waitFor();
    await a.fill('#pw-current', PW.alice);
    await a.fill('#pw-new', NEW_PW);
    await a.fill('#pw-again', NEW_PW);
    await a.click('#pw-submit');
    await a.locator('#pw-status', { hasText: 'Your password was changed' }).waitFor({ timeout: 30000 });
    // the other session is signed out
    await second.page.waitForURL(/login\.html/, { timeout: 30000 });
    await second.context.close();
    // sessions: only this browser
    await a.locator('#sessions li.session[data-current="true"]').waitFor();
    assert.equal(await a.locator('#sessions li.session').count(), 1);
    // a fresh browser: the old password is refused, the new one works and history decrypts
    const fresh = await newPage(browser);
    await loginViaUi(fresh.page, server.url, 'alice', PW.alice);
    await fresh.page.locator('#form-error, .error[role="alert"]', { hasText: /Wrong username or password/ }).first().waitFor();
    await loginViaUi(fresh.page, server.url, 'alice', NEW_PW);
    await waitForChat(fresh.page);
    await openFromList(fresh.page, 'bob');
    await bubble(fresh.page, 'hello bob, shall we start', 'mine').waitFor();
    await bubble(fresh.page, 'meet at 9 oclock', 'mine').waitFor();
    await fresh.context.close();
  });

  test('the sessions list marks this browser, and Revoke signs another session out', async () => {
    const a = alice.page;
    const other = await newPage(browser);
    await loginViaUi(other.page, server.url, 'alice', NEW_PW);
    await waitForChat(other.page);
    await a.click('#sessions-refresh');
    await a.locator('#sessions li.session').nth(1).waitFor();
    assert.equal(await a.locator('#sessions li.session[data-current="true"]').count(), 1);
    assert.match(await a.locator('#sessions li.session[data-current="true"]').innerText(), /This browser/);
    assert.equal(await a.locator('#sessions li.session[data-current="true"] [data-role="revoke"]').count(), 0, 'this browser has no Revoke');
    const before = await a.locator('#sessions li.session').count();
    // newest first: the session just signed in is the first other one
    await a.locator('#sessions li.session[data-current="false"] [data-role="revoke"]').first().click();
    await other.page.waitForURL(/login\.html/, { timeout: 30000 });
    await a.locator('#sessions-status', { hasText: 'The session was signed out' }).waitFor();
    assert.equal(await a.locator('#sessions li.session').count(), before - 1);
    await other.context.close();
  });

  test('deleting the account asks for the password and a confirmation, then forgets the device; the name cannot sign in', async () => {
    const carol = await newPage(browser);
    const c = carol.page;
    await registerViaUi(c, server.url, 'carol', 'carol password 12345');
    await waitForChat(c);
    await c.click('#open-settings');
    await c.fill('#delete-password', 'carol password 12345');
    await c.click('#delete-submit');
    await c.locator('#delete-error', { hasText: 'Tick the box' }).waitFor();
    await c.check('#delete-confirm');
    await c.fill('#delete-password', 'not carols password');
    await c.click('#delete-submit');
    await c.locator('#delete-error', { hasText: 'Wrong password' }).waitFor();
    await c.fill('#delete-password', 'carol password 12345');
    await c.click('#delete-submit');
    await c.waitForURL(/login\.html\?deleted=1/, { timeout: 30000 });
    await c.locator('[role="status"]', { hasText: 'Your account was deleted' }).first().waitFor();
    const { records } = await dumpStorage(c);
    assert.deepEqual(records.filter((r) => r.db === 'securechat' && String(r.key).includes('carol')), [], 'nothing of carol is left here');
    await loginViaUi(c, server.url, 'carol', 'carol password 12345');
    await c.locator('.error[role="alert"]', { hasText: /Wrong username or password/ }).first().waitFor();
    await carol.context.close();
    assertClean(alice.problems, { allowStatuses: [401, 404] });
    assertClean(bob.problems, { allowStatuses: [404] });
  });
});
