// The chat page as a full-height two-pane app (issue #17), in real headless Chromium against the
// real server, at 1280x800 and 390x844: the page itself never scrolls (only the list, the
// messages and the settings do), the composer is pinned at the bottom, the newest message stays
// in view across a resize, a phone shows one pane at a time, the settings view holds the
// account actions, the safety number is a dialog that is always within the viewport (with its
// QR code), a cut network shows as offline within 5 s (and a silent cut, with no offline event,
// within 35 s), an online contact never looks offline
// before the first message, and the directory is never listed (nothing under 3 characters).
// Each of these failed on the page before the rebuild.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertClean,
  bubble,
  newPage,
  openFromDirectory,
  openFromList,
  openSettings,
  registerViaUi,
  send,
  startServerAndBrowser,
  waitForChat,
  waitState,
} from './helpers.mjs';

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const PW = 'layout password 12345';

/** Whether every element matching `selector` is inside the viewport (and has a size). */
function allInViewport(page, selector) {
  return page.evaluate((sel) => {
    const els = [...document.querySelectorAll(sel)];
    return (
      els.length > 0 &&
      els.every((e) => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
      })
    );
  }, selector);
}

/** The page's own scroll size against the viewport's. */
function pageScroll(page) {
  return page.evaluate(() => ({
    scrollHeight: document.scrollingElement.scrollHeight,
    scrollWidth: document.scrollingElement.scrollWidth,
    innerHeight,
    innerWidth,
    scrollY,
  }));
}

/** Whether the newest message of the open conversation is fully within the message list's box. */
function newestInView(page) {
  return page.evaluate(() => {
    const list = document.querySelector('#messages');
    const last = list.querySelector('li.msg:last-of-type');
    if (!last) return false;
    const box = list.getBoundingClientRect();
    const r = last.getBoundingClientRect();
    return r.top >= box.top - 1 && r.bottom <= box.bottom + 1 && r.bottom <= innerHeight;
  });
}

/** Opens `peer` from the list, going back to the list first on a phone if a conversation is open. */
async function openAt(page, peer) {
  if (await page.locator('#back').isVisible()) await page.click('#back');
  await openFromList(page, peer);
}

describe('the chat page is a full-height two-pane app', () => {
  let server;
  let browser;
  const users = {};

  before(async () => {
    ({ server, browser } = await startServerAndBrowser());
    for (const name of ['alice', 'bob', 'carol']) {
      users[name] = await newPage(browser);
      await registerViaUi(users[name].page, server.url, name, PW);
    }
    await Promise.all(Object.values(users).map((u) => waitForChat(u.page)));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('with 60 messages the page never scrolls: the messages scroll alone, the composer stays at the bottom, and the newest message stays in view after a resize to phone width', async () => {
    const a = users.alice.page;
    const b = users.bob.page;
    await a.setViewportSize(DESKTOP);
    await openFromDirectory(b, 'alice');
    for (let i = 1; i <= 60; i++) await send(b, `line ${i} of a long conversation`);
    await waitState(b, 'line 60 of a long conversation', 'delivered');
    await openFromList(a, 'bob');
    await bubble(a, 'line 60 of a long conversation', 'theirs').waitFor();

    let scroll = await pageScroll(a);
    assert.equal(scroll.scrollHeight, scroll.innerHeight, 'the page is exactly the viewport high');
    assert.ok(scroll.scrollWidth <= scroll.innerWidth, 'nothing sticks out sideways');
    const list = await a.evaluate(() => {
      const m = document.querySelector('#messages');
      return { scrollHeight: m.scrollHeight, clientHeight: m.clientHeight };
    });
    assert.ok(list.scrollHeight > list.clientHeight * 2, 'the message list scrolls inside itself');

    // the wheel over the messages scrolls them, never the page
    await a.hover('#messages');
    await a.mouse.wheel(0, -3000);
    await a.waitForFunction(() => document.querySelector('#messages').scrollTop < document.querySelector('#messages').scrollHeight - 2000);
    await a.mouse.wheel(0, 6000);
    scroll = await pageScroll(a);
    // and the keyboard scrolls the list (it is focusable): End goes to the newest
    await a.focus('#messages');
    await a.keyboard.press('End');
    assert.equal(scroll.scrollY, 0);
    assert.equal(scroll.scrollHeight, scroll.innerHeight);

    // the composer is pinned at the bottom, the header at the top
    const composer = await a.locator('#composer').boundingBox();
    assert.ok(Math.abs(composer.y + composer.height - DESKTOP.height) <= 1, `composer ends at ${composer.y + composer.height}`);
    assert.ok(await allInViewport(a, '#conv-name, #conv-safety, #send'));
    await a.waitForFunction(() => {
      const m = document.querySelector('#messages');
      return m.scrollHeight - m.scrollTop - m.clientHeight < 2;
    });
    assert.ok(await newestInView(a), 'at the bottom, the newest message is shown');

    // narrower: the list keeps the newest message in view
    await a.setViewportSize(PHONE);
    await a.waitForFunction(() => {
      const m = document.querySelector('#messages');
      return m.clientWidth < 400 && m.scrollHeight - m.scrollTop - m.clientHeight < 2;
    });
    assert.ok(await newestInView(a), 'after the resize the newest message is still in view');
    scroll = await pageScroll(a);
    assert.equal(scroll.scrollHeight, PHONE.height);
    const phoneComposer = await a.locator('#composer').boundingBox();
    assert.ok(Math.abs(phoneComposer.y + phoneComposer.height - PHONE.height) <= 1);
    assertClean(users.alice.problems);
  });

  test('history loads back as the list is scrolled to the top, keeping what was on screen in place', async () => {
    const a = users.alice.page;
    await a.setViewportSize(DESKTOP);
    await a.reload();
    await waitForChat(a);
    await openFromList(a, 'bob');
    await bubble(a, 'line 60 of a long conversation', 'theirs').waitFor();
    assert.equal(await a.locator('#messages li.msg').count(), 50, 'the newest page');
    const anchor = bubble(a, 'line 11 of a long conversation', 'theirs');
    await a.evaluate(() => {
      document.querySelector('#messages').scrollTop = 0;
    });
    await bubble(a, 'line 1 of a long conversation', 'theirs').waitFor();
    assert.equal(await a.locator('#messages li.msg').count(), 60);
    // the message that was at the top is still near the top, not pushed out of view
    const box = await a.locator('#messages').boundingBox();
    const at = await anchor.boundingBox();
    assert.ok(at.y >= box.y - 5 && at.y < box.y + box.height, `the earlier top message moved to ${at.y}`);
  });

  test('a conversation has day separators, groups a sender’s consecutive messages, shows ticks with a spoken label, and makes only http(s) links clickable', async () => {
    const a = users.alice.page;
    const b = users.bob.page;
    await a.setViewportSize(DESKTOP);
    await openFromList(a, 'bob');
    assert.equal(await a.locator('#messages li.day-sep').first().innerText(), 'Today');
    // bob's 60 lines: one group, the first one starts it
    assert.equal(await bubble(a, 'line 2 of a long conversation', 'theirs').getAttribute('class'), 'msg theirs grouped');
    const text = 'see https://example.org/a?b=1. or javascript:alert(1) or http://example.com/x';
    await send(a, text);
    await waitState(a, text, 'read');
    const mine = bubble(a, text, 'mine');
    const state = mine.locator('.msg-state');
    assert.equal(await state.getAttribute('data-state'), 'read');
    assert.equal(await state.locator('.ticks').innerText(), '✓✓');
    assert.equal(await state.locator('.ticks').getAttribute('aria-hidden'), 'true');
    assert.equal((await state.locator('.visually-hidden').textContent()).trim(), 'Read');
    assert.ok(await newestInView(a), 'your own new message is in view');
    const theirs = bubble(b, text, 'theirs');
    await theirs.waitFor();
    // a message that arrives while the list is at the bottom stays in view too
    await send(b, 'and one more line from bob');
    await bubble(a, 'and one more line from bob', 'theirs').waitFor();
    await a.waitForFunction(() => {
      const m = document.querySelector('#messages');
      return m.scrollHeight - m.scrollTop - m.clientHeight < 2;
    });
    assert.ok(await newestInView(a), 'an arriving message is in view');
    const links = await theirs.locator('a').evaluateAll((els) => els.map((e) => ({ href: e.getAttribute('href'), text: e.textContent, rel: e.rel, target: e.target })));
    assert.deepEqual(links, [
      { href: 'https://example.org/a?b=1', text: 'https://example.org/a?b=1', rel: 'noopener noreferrer', target: '_blank' },
      { href: 'http://example.com/x', text: 'http://example.com/x', rel: 'noopener noreferrer', target: '_blank' },
    ]);
    assert.equal(await theirs.locator('.msg-text').innerText(), text, 'the text itself is unchanged');
  });

  test('on a phone one pane shows at a time, with a back button; on a desktop both', async () => {
    const a = users.alice.page;
    await a.setViewportSize(PHONE);
    await openAt(a, 'bob');
    assert.equal(await a.locator('#conversations').isVisible(), false, 'the list is hidden while a conversation is open');
    assert.equal(await a.locator('#back').isVisible(), true);
    await a.click('#back');
    await a.locator('#conversations').waitFor({ state: 'visible' });
    assert.equal(await a.locator('#conversation').isVisible(), false);
    assert.equal(await a.locator('#panel-empty').isVisible(), false, 'no empty right pane beside the list on a phone');
    // the focus goes back to the row of the conversation that was open
    assert.equal(await a.evaluate(() => document.activeElement?.dataset.peer), 'bob');

    await a.setViewportSize(DESKTOP);
    await openFromList(a, 'bob');
    assert.equal(await a.locator('#conversations').isVisible(), true);
    assert.equal(await a.locator('#back').isVisible(), false);
    assert.ok(await allInViewport(a, '.sidebar, #conversation'));
  });

  test('the settings view holds the fingerprint and account actions, with a section for password, sessions and account after the account section', async () => {
    const a = users.alice.page;
    await a.setViewportSize(DESKTOP);
    await openSettings(a);
    assert.equal(await a.locator('#conversation').isVisible(), false, 'settings take the right pane');
    assert.equal(await a.locator('#conversations').isVisible(), true, 'the list stays beside them');
    for (const id of ['#own-fingerprint', '#sign-out', '#sign-out-all', '#replace-keys', '#forget-device']) {
      assert.equal(await a.locator(id).isVisible(), true, `${id} is in the settings view`);
    }
    assert.equal(await a.locator('#settings-security h3').innerText(), 'Password, sessions and account');
    const order = await a.evaluate(
      () => document.querySelector('#settings-account').compareDocumentPosition(document.querySelector('#settings-security')) & Node.DOCUMENT_POSITION_FOLLOWING,
    );
    assert.ok(order, 'the security section follows the account section');
    let scroll = await pageScroll(a);
    assert.equal(scroll.scrollHeight, scroll.innerHeight);
    await a.click('#settings-back');
    await a.locator('#settings').waitFor({ state: 'hidden' });
    assert.equal(await a.evaluate(() => document.activeElement?.id), 'open-settings');

    await a.setViewportSize(PHONE);
    await openSettings(a);
    assert.equal(await a.locator('#conversations').isVisible(), false, 'on a phone the settings take the screen');
    scroll = await pageScroll(a);
    assert.equal(scroll.scrollHeight, scroll.innerHeight);
    await a.keyboard.press('Escape');
    await a.locator('#conversations').waitFor({ state: 'visible' });
    await a.setViewportSize(DESKTOP);
  });

  for (const size of [DESKTOP, PHONE]) {
    test(`at ${size.width}x${size.height} the safety number opens in a dialog with every digit and the QR code in view, reachable by keyboard`, async () => {
      const a = users.alice.page;
      await a.setViewportSize(size);
      await openAt(a, 'bob');
      await a.click('#conv-safety');
      const dialog = a.locator('#safety-dialog');
      await dialog.waitFor({ state: 'visible' });
      assert.equal(await a.evaluate(() => document.querySelector('#safety-dialog').matches(':modal')), true);
      await a.locator('#safety-number[data-digits]').waitFor();
      const digits = await a.locator('#safety-number').getAttribute('data-digits');
      assert.match(digits, /^\d{60}$/);
      assert.ok(await allInViewport(a, '#safety-dialog'), 'the dialog box is inside the viewport');
      assert.ok(await allInViewport(a, '#safety-number .group'), 'all twelve groups are visible without scrolling');
      assert.equal(await a.locator('#safety-number .group').count(), 12);
      // the QR code encodes the same 60 digits, drawn as an SVG
      const qr = a.locator('#safety-qr svg');
      assert.equal(await qr.getAttribute('data-text'), digits);
      assert.match(await qr.getAttribute('aria-label'), /QR code of the safety number with bob/);
      // the keyboard reaches "Mark as verified" without leaving the dialog, and sees it
      let reached = false;
      for (let i = 0; i < 8 && !reached; i++) {
        await a.keyboard.press('Tab');
        const where = await a.evaluate(() => ({
          id: document.activeElement?.id,
          inside: Boolean(document.activeElement?.closest('#safety-dialog')),
        }));
        assert.ok(where.inside, `focus left the dialog (${where.id})`);
        reached = where.id === 'contact-verify';
      }
      assert.ok(reached, 'Tab reaches Mark as verified');
      assert.ok(await allInViewport(a, '#contact-verify'));
      const scroll = await pageScroll(a);
      assert.equal(scroll.scrollHeight, scroll.innerHeight);
      await a.keyboard.press('Escape');
      await dialog.waitFor({ state: 'hidden' });
      assert.equal(await a.evaluate(() => document.activeElement?.id), 'conv-safety', 'focus returns to the button');
      await a.setViewportSize(DESKTOP);
    });
  }

  test('"Mark as verified" shows in the header and on the list row, and clearing it removes both', async () => {
    const a = users.alice.page;
    await a.setViewportSize(DESKTOP);
    await openAt(a, 'bob');
    const row = a.locator('#conversations button.conv[data-peer="bob"]');
    assert.equal(await row.getAttribute('data-verified'), 'false');
    await a.click('#conv-safety');
    await a.locator('#safety-number[data-digits]').waitFor();
    await a.click('#contact-verify');
    await a.locator('#conv-trust[data-verified="true"]').waitFor();
    await row.and(a.locator('[data-verified="true"]')).waitFor();
    assert.equal(await row.locator('.conv-verified').isVisible(), true);
    assert.match(await row.innerText(), /verified/);
    // after a reload the list knows it from the stored pin, before the conversation is opened
    await a.reload();
    await waitForChat(a);
    await row.and(a.locator('[data-verified="true"]')).waitFor();
    await openFromList(a, 'bob');
    await a.click('#conv-safety');
    await a.locator('#contact-verify[data-verified="true"]').waitFor();
    await a.click('#contact-verify');
    await a.locator('#conv-trust[data-verified="false"]').waitFor();
    await row.and(a.locator('[data-verified="false"]')).waitFor();
    assert.equal(await row.locator('.conv-verified').isVisible(), false);
    await a.keyboard.press('Escape');
  });

  test('a cut network shows as offline within 5 s, and a message written meanwhile goes out after it returns', async () => {
    const { page: a, context } = users.alice;
    await a.setViewportSize(DESKTOP);
    await openFromList(a, 'bob');
    await a.locator('#conn-status[data-state="open"]').waitFor();
    await context.setOffline(true);
    const cut = Date.now();
    await a.locator('#conn-status:not([data-state="open"])').waitFor({ timeout: 5000 });
    assert.ok(Date.now() - cut < 5000);
    assert.doesNotMatch(await a.locator('#conn-status').innerText(), /^Connected$/);
    await a.locator('#conn-banner').waitFor({ state: 'visible', timeout: 5000 });
    assert.match(await a.locator('#conn-banner').innerText(), /Offline|reconnecting/i);

    await send(a, 'written while offline');
    await waitState(a, 'written while offline', 'queued'); // messenger.js: a send made while the relay is down is "queued"
    await context.setOffline(false);
    await a.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 });
    await a.locator('#conn-banner').waitFor({ state: 'hidden' });
    await bubble(users.bob.page, 'written while offline', 'theirs').waitFor({ timeout: 15000 });
  });

  test('before the first message an online contact does not look offline; after it, the dot is filled with text for screen readers', async () => {
    const a = users.alice.page;
    const c = users.carol.page;
    await c.locator('#conn-status[data-state="open"]').waitFor();
    await openFromDirectory(a, 'carol');
    // in the list as soon as it is open, before any message
    await a.locator('#conversations button.conv[data-peer="carol"][aria-current="true"]').waitFor();
    const dot = a.locator('#conv-dot');
    assert.notEqual(await dot.getAttribute('data-online'), 'false', 'no offline-looking dot for someone who is online');
    assert.notEqual(await a.locator('#conv-presence').innerText(), '', 'the header says what it knows');
    await send(a, 'hello carol');
    await dot.and(a.locator('[data-online="true"]')).waitFor();
    assert.equal(await a.locator('#conv-presence').innerText(), 'online');
    const row = a.locator('#conversations button.conv[data-peer="carol"]');
    await row.locator('.presence-dot[data-online="true"]').waitFor();
    assert.match(await row.innerText(), /online/);
  });

  test('the directory is never listed: an empty box shows nobody, and fewer than 3 characters ask the server nothing', async () => {
    const { page: a } = users.alice;
    const asked = [];
    const onRequest = (r) => {
      if (new URL(r.url()).pathname === '/api/users') asked.push(r.url());
    };
    a.on('request', onRequest);
    await a.reload();
    await waitForChat(a);
    await a.locator('#conn-status[data-state="open"]').waitFor();
    assert.equal(await a.locator('#results li').count(), 0);
    await a.fill('#search', 'bo');
    await a.locator('#results[data-query="bo"]').waitFor({ state: 'attached' });
    await a.locator('#search-status', { hasText: /at least 3 characters/ }).waitFor();
    await a.press('#search', 'Enter');
    await a.waitForTimeout(400); // longer than the typing debounce
    assert.deepEqual(asked, [], 'no directory request for an empty or short query');
    assert.equal(await a.locator('#results li').count(), 0);
    await a.fill('#search', 'bob');
    await a.locator('#results button.user[data-username="bob"]').waitFor();
    assert.equal(asked.length, 1);
    await a.fill('#search', '');
    await a.locator('#results[data-query=""]').waitFor({ state: 'attached' });
    assert.equal(await a.locator('#results li').count(), 0);
    a.off('request', onRequest);
  });

  test('notifications are opt-in from the settings, say only "New message" unless previews are chosen, and the tab title counts unread messages', async () => {
    const { page: a, context } = users.alice;
    const c = users.carol.page;
    await a.setViewportSize(DESKTOP);
    await context.grantPermissions(['notifications'], { origin: server.url });
    // every notification the page makes is recorded (headless Chromium shows none)
    await context.addInitScript(() => {
      const Real = window.Notification;
      window.__notes = [];
      window.Notification = class {
        constructor(title, options) {
          window.__notes.push({ title, body: options?.body });
        }
        addEventListener() {}
        close() {}
        static get permission() {
          return Real.permission;
        }
        static requestPermission() {
          return Real.requestPermission();
        }
      };
    });
    await a.reload();
    await waitForChat(a);
    await a.locator('#conn-status[data-state="open"]').waitFor();
    const notes = () => a.evaluate(() => window.__notes);
    await openFromList(c, 'alice');

    // not chosen: nothing
    await send(c, 'first ping');
    await a.locator('#conversations button.conv[data-peer="carol"][data-unread="1"]').waitFor();
    assert.equal(await a.title(), '(1) securechat');
    assert.deepEqual(await notes(), []);

    await openSettings(a);
    assert.equal(await a.locator('#notify-previews').isDisabled(), true, 'previews only with notifications on');
    await a.check('#notify-enabled');
    await a.locator('#notify-previews:not([disabled])').waitFor();
    await send(c, 'second ping');
    await a.waitForFunction(() => window.__notes.length === 1);
    assert.deepEqual(await notes(), [{ title: 'securechat', body: 'New message' }]);
    assert.equal(await a.title(), '(2) securechat');

    await a.check('#notify-previews');
    await send(c, 'third ping');
    await a.waitForFunction(() => window.__notes.length === 2);
    assert.deepEqual((await notes())[1], { title: 'carol', body: 'third ping' });

    // kept across a reload; reading the conversation clears the title's count
    await a.reload();
    await waitForChat(a);
    await openSettings(a);
    assert.equal(await a.locator('#notify-enabled').isChecked(), true);
    assert.equal(await a.locator('#notify-previews').isChecked(), true);
    await openFromList(a, 'carol');
    await a.waitForFunction(() => document.title === 'securechat');
  });

  test('a connection that goes silent while idle (no offline event, nothing answers) shows reconnecting within 35 s and recovers', async () => {
    const { page: a } = users.alice;
    await a.locator('#conn-status[data-state="open"]').waitFor();
    server.pause();
    const cut = Date.now();
    try {
      // ws.js: a ping after 25 s without a frame, the socket replaced 5 s after it goes unanswered
      await a.locator('#conn-status:not([data-state="open"])').waitFor({ timeout: 35000 });
      await a.locator('#conn-banner').waitFor({ state: 'visible', timeout: 2000 });
    } finally {
      server.resume();
    }
    const noticed = Date.now() - cut;
    assert.ok(noticed <= 35000, `noticed after ${noticed} ms`);
    await a.locator('#conn-status[data-state="open"]').waitFor({ timeout: 20000 });
    await a.locator('#conn-banner').waitFor({ state: 'hidden' });
    await openFromList(a, 'bob');
    await send(a, 'after the silent cut');
    // bob's page got it over its own new socket
    await bubble(a, 'after the silent cut', 'mine').and(a.locator('[data-state="delivered"], [data-state="read"]')).waitFor();
  });

  test('no console errors and no CSP violations', () => {
    for (const name of Object.keys(users)) assertClean(users[name].problems);
  });
});
