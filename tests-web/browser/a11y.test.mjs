// axe-core (a pinned devDependency) on every page and state of the web app, in real headless
// Chromium against the real server: the home page, sign-in, registration, the chat with no
// conversation, with a conversation open (from both sides), with the safety-number dialog open,
// the settings view, a conversation whose peer's keys changed, and the admin console; each at 1280x800 and 390x844, in the light and the dark theme.
// No serious or critical violation is allowed. The same walk saves a screenshot of every view
// at both sizes in both themes under tests-web/screenshots/ (gitignored; README names it) so
// a person can look at them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import {
  assertClean,
  bubble,
  newPage,
  openFromDirectory,
  openSettings,
  registerViaUi,
  rotateKeysInPage,
  send,
  startServerAndBrowser,
  waitForChat,
  waitState,
} from './helpers.mjs';
import { serverCommand } from './server.mjs';

const SIZES = [
  { width: 1280, height: 800 },
  { width: 390, height: 844 },
];
const SCHEMES = ['light', 'dark'];
export const SCREENSHOTS = fileURLToPath(new URL('../screenshots/', import.meta.url));
const AXE_SOURCE = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PW = 'a11y password 123456';

/** Serious and critical axe violations on the page as it is now, as short lines. */
async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .flatMap((v) => v.nodes.slice(0, 3).map((n) => `${v.id} (${v.impact}) at ${n.target.join(' ')}: ${n.failureSummary?.split('\n')[1]?.trim() ?? ''}`));
  });
}

describe('every page and state passes axe at both sizes in both themes, and is photographed', () => {
  let server;
  let browser;
  let alice;
  let bob;
  const found = [];

  /** Runs axe on `name` at every size and scheme (after `prepare(size)` if given) and takes the screenshots. */
  async function check(page, name, prepare) {
    for (const size of SIZES) {
      await page.setViewportSize(size);
      if (prepare) await prepare(size);
      for (const scheme of SCHEMES) {
        await page.emulateMedia({ colorScheme: scheme });
        for (const line of await axeViolations(page)) found.push(`${name} ${size.width}x${size.height} ${scheme}: ${line}`);
        await page.screenshot({ path: `${SCREENSHOTS}${name}-${size.width}x${size.height}-${scheme}.png` });
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
  }

  before(async () => {
    await mkdir(SCREENSHOTS, { recursive: true });
    ({ server, browser } = await startServerAndBrowser());
    // axe is evaluated into the pages: these contexts do not enforce the CSP (the other test files do)
    alice = await newPage(browser, { bypassCSP: true });
    bob = await newPage(browser, { bypassCSP: true });
    await registerViaUi(alice.page, server.url, 'alice', PW);
    await registerViaUi(bob.page, server.url, 'bob', PW);
    await Promise.all([waitForChat(alice.page), waitForChat(bob.page)]);
    await serverCommand(server, ['admin', 'grant', 'alice']);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the pages before signing in: home, sign-in, registration (with an error shown), page not found', async () => {
    const { page, context } = await newPage(browser, { bypassCSP: true });
    await page.goto(`${server.url}/`);
    await check(page, 'index');
    const missing = await page.goto(`${server.url}/settings.html`);
    assert.equal(missing.status(), 404);
    assert.equal(await page.locator('h1').textContent(), 'Page not found');
    await check(page, 'not-found');
    await page.goto(`${server.url}/login.html`);
    await check(page, 'login');
    await page.goto(`${server.url}/register.html`);
    await page.fill('#username', 'Bad Name!');
    await page.click('#submit');
    await check(page, 'register-invalid');
    await context.close();
  });

  test('the chat: empty, a conversation open, the safety-number dialog, the settings', async () => {
    const a = alice.page;
    const b = bob.page;
    await a.reload(); // the admin grant shows on the next load
    await waitForChat(a);
    await check(a, 'chat-empty');

    await openFromDirectory(a, 'bob');
    await send(a, 'Hi bob! The notes are at https://example.org/notes, see you at 6?');
    await waitState(a, 'see you at 6', 'delivered');
    await b.locator('#conversations button.conv[data-peer="alice"]').click();
    await send(b, 'On my way.');
    await send(b, 'Bringing the keys.');
    await bubble(a, 'Bringing the keys.', 'theirs').waitFor();
    await waitState(a, 'see you at 6', 'read');
    await check(a, 'chat-conversation', async () => {
      if (!(await a.locator('#conversation').isVisible())) await a.click('#conversations button.conv[data-peer="bob"]');
    });
    await check(b, 'chat-conversation-bob', async () => {
      if (!(await b.locator('#conversation').isVisible())) await b.click('#conversations button.conv[data-peer="alice"]');
    });

    await a.click('#conv-safety');
    await a.locator('#safety-qr svg').waitFor();
    await check(a, 'chat-safety-dialog');
    await a.click('#safety-close');

    await check(a, 'chat-settings', () => openSettings(a));
    await a.click('#settings-back');
  });

  // issue #17 (chat/actions.js, chat/search.js): every action state of a conversation
  test('the chat with message actions: a reply quote, reactions, an edited and a deleted message, a timer line, the open menu, the reply bar, search results', async () => {
    const a = alice.page;
    const b = bob.page;
    await a.click('#conversations button.conv[data-peer="bob"]');
    const menu = async (page, text, action) => {
      await bubble(page, text).locator('.msg-menu-button').click();
      await page.locator(`.msg-menu [data-action="${action}"]`).click();
    };
    await menu(a, 'On my way.', 'reply');
    await send(a, 'Great, the door code is 4711');
    await menu(b, 'Great, the door code', 'react-👍');
    await send(a, 'Typo here');
    await menu(a, 'Typo here', 'edit');
    await a.fill('#composer-input', 'No typo here');
    await a.press('#composer-input', 'Enter');
    await send(a, 'Never mind this one');
    a.once('dialog', (d) => d.accept());
    await menu(a, 'Never mind this one', 'delete');
    await a.selectOption('#conv-timer', '3600');
    await a.locator('#messages li.msg.system').waitFor();
    await bubble(a, 'the door code').locator('.reaction').waitFor();
    await a.locator('#messages li[data-deleted="true"]').waitFor();
    await check(a, 'chat-actions');
    await check(a, 'chat-actions-menu', async () => {
      if (!(await a.locator('.msg-menu').isVisible())) await bubble(a, 'No typo here').locator('.msg-menu-button').click();
    });
    await a.keyboard.press('Escape');
    await menu(a, 'On my way.', 'reply');
    await check(a, 'chat-reply-bar');
    await a.click('#compose-context-cancel');
    await a.selectOption('#conv-timer', '0');
    await a.setViewportSize(SIZES[0]);
    await a.fill('#msg-search', 'door');
    await a.locator('#msg-search-results .msg-search-hit').waitFor();
    await check(a, 'chat-search', async () => {
      // on a phone the list pane (with the search) shows instead of the conversation
      if (!(await a.locator('#msg-search').isVisible())) await a.click('#back');
    });
    await a.fill('#msg-search', '');
  });

  test('the chat with a key change: the warning, both safety numbers and the blocked composer', async () => {
    const a = alice.page;
    assertClean(bob.problems);
    // bob replaces his keys (as "Replace my keys" does), then leaves
    await rotateKeysInPage(bob.page, PW);
    await bob.context.close();
    await a.reload();
    await waitForChat(a);
    await check(a, 'chat-key-changed', async () => {
      if (!(await a.locator('#conversation').isVisible())) await a.click('#conversations button.conv[data-peer="bob"]');
      await a.locator('#key-log li[data-version="2"]').waitFor();
    });
  });

  test('the admin console', async () => {
    const a = alice.page;
    await a.goto(`${server.url}/admin.html`);
    await a.locator('#console').waitFor({ state: 'visible' });
    await check(a, 'admin');
  });

  test('no serious or critical axe violation anywhere', () => {
    assert.deepEqual(found, [], `axe found:\n${found.join('\n')}`);
    assertClean(alice.problems);
  });
});
