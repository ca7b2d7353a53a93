// Registration, sign-in, sign-out, token refresh and session storage, in real headless Chromium
// against the real server binary.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertClean,
  dumpStorage,
  fingerprintOn,
  loginViaUi,
  newPage,
  openSettings,
  startServerAndBrowser,
  patchSession,
  refreshFromNode,
  registerViaUi,
  storedSession,
  waitForChat,
} from './helpers.mjs';

const PASSWORD = 'correct horse battery staple';
// The CSP's directives, in any order. form-action 'none': no form may submit natively (the pages
// handle every form in script); require-trusted-types-for: the pages have no HTML sinks.
const CSP = {
  'default-src': "'self'",
  'script-src': "'self'",
  'style-src': "'self'",
  'img-src': "'self' data: blob:",
  'connect-src': "'self'",
  'object-src': "'none'",
  'base-uri': "'none'",
  'frame-ancestors': "'none'",
  'form-action': "'none'",
  'require-trusted-types-for': "'script'",
};

function directives(header) {
  return Object.fromEntries(
    String(header ?? '')
      .split(';')
      .map((d) => d.trim())
      .filter(Boolean)
      .map((d) => {
        const [name, ...values] = d.split(/\s+/);
        return [name, values.join(' ')];
      }),
  );
}

describe('accounts in the browser', () => {
  let server;
  let browser;
  const fingerprints = {};

  before(async () => {
    ({ server, browser } = await startServerAndBrowser());
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('register shows a progress state, then lands on chat.html with the name and a 30-digit fingerprint', async () => {
    const { context, page, problems } = await newPage(browser);
    const seen = [];
    await page.exposeBinding('__recordProgress', (_s, state) => seen.push(state));
    await page.goto(`${server.url}/register.html`);
    await page.fill('#username', 'Alice'); // lower-cased by the page
    await page.fill('#password', PASSWORD);
    await page.fill('#password2', PASSWORD);
    await page.evaluate(() => {
      const button = document.querySelector('#submit');
      const status = document.querySelector('#form-status');
      const record = () =>
        window.__recordProgress({ button: button.textContent, disabled: button.disabled, status: status.textContent });
      new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    await page.click('#submit');
    const fp = await waitForChat(page);

    assert.ok(
      seen.some((s) => s.disabled && s.button === 'Generating your keys…'),
      `no busy state seen: ${JSON.stringify(seen.slice(0, 5))}`,
    );
    assert.ok(seen.some((s) => /Generating your/.test(s.status)));
    assert.match(fp, /^\d{30}$/);
    assert.equal(await page.locator('#me-username').innerText(), 'alice');
    assert.match(await page.locator('.account').innerText(), /Signed in as alice/);
    const shown = await page.locator('#own-fingerprint .group').allInnerTexts();
    assert.equal(shown.length, 6);
    assert.equal(shown.join(''), fp);
    for (const group of shown) assert.match(group, /^\d{5}$/);
    // no conversation is open yet: no composer on screen (messaging.test.mjs covers messaging)
    assert.equal(await page.locator('[data-role="composer"]').isVisible(), false);
    assert.equal(await page.locator('#conversations li').count(), 0);
    fingerprints.alice = fp;
    assertClean(problems);
    await context.close();
  });

  test('IndexedDB holds non-extractable private keys and no raw key bytes; web storage is empty', async () => {
    const { context, page, problems } = await newPage(browser);
    await loginViaUi(page, server.url, 'alice', PASSWORD);
    await waitForChat(page);
    const dump = await dumpStorage(page);
    assert.deepEqual(dump.localStorage, {});
    assert.deepEqual(dump.sessionStorage, {});
    // the session and the remembered KDF parameters (public) are the only records (the messaging
    // stores, pins and seen ids, are still empty)
    assert.deepEqual(dump.records.map((r) => `${r.store}:${r.key}`).sort(), ['kdf:alice', 'session:current'], JSON.stringify(dump.records));
    const kdf = dump.records.find((r) => r.store === 'kdf').value;
    assert.deepEqual(Object.keys(kdf).sort(), ['alg', 'iterations', 'salt']);
    const session = dump.records.find((r) => r.store === 'session').value;
    assert.equal(session.username, 'alice');
    assert.equal(session.key_version, 1);
    assert.equal(typeof session.access_token, 'string');
    assert.equal(typeof session.refresh_token, 'string');
    for (const name of ['encPrivateKey', 'signPrivateKey']) {
      assert.equal(session[name].$cryptoKey?.type, 'private', name);
      assert.equal(session[name].$cryptoKey.extractable, false, name);
    }
    assert.equal(session.encPrivateKey.$cryptoKey.algorithm, 'RSA-OAEP');
    assert.equal(session.signPrivateKey.$cryptoKey.algorithm, 'ECDSA');
    const text = JSON.stringify(dump);
    assert.ok(!text.includes('"$bytes"'), 'raw bytes stored');
    assert.ok(!text.includes(PASSWORD), 'password stored');
    // every CryptoKey that is extractable at all is a public key
    const keys = [...text.matchAll(/"\$cryptoKey":\{"type":"(\w+)","extractable":(true|false)/g)];
    assert.ok(keys.length >= 2);
    for (const [, type, extractable] of keys) if (extractable === 'true') assert.equal(type, 'public');
    // the stored keys cannot be exported by page script either
    const exported = await page.evaluate(async () => {
      const db = await new Promise((res, rej) => {
        const r = indexedDB.open('securechat');
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      const s = await new Promise((res) => {
        const r = db.transaction('session').objectStore('session').get('current');
        r.onsuccess = () => res(r.result);
      });
      db.close();
      const results = [];
      for (const k of [s.encPrivateKey, s.signPrivateKey]) {
        results.push(await crypto.subtle.exportKey('pkcs8', k).then(() => 'exported', (e) => e.name));
      }
      return results;
    });
    assert.deepEqual(exported, ['InvalidAccessError', 'InvalidAccessError']);
    assertClean(problems);
    await context.close();
  });

  test('a taken name is refused by the server and the page says so', async () => {
    const { context, page, problems } = await newPage(browser);
    await registerViaUi(page, server.url, 'alice', 'another long password');
    const error = page.locator('#form-error');
    await error.filter({ hasText: /\S/ }).waitFor();
    assert.equal(await error.innerText(), 'That username is taken');
    assert.match(page.url(), /register\.html$/);
    assert.equal(await page.locator('#username').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.locator('#submit').isDisabled(), false);
    assert.equal(await storedSession(page), null);
    assertClean(problems, { allowStatuses: [409] });
    await context.close();
  });

  test('client-side validation: bad name, short password, mismatch — nothing is sent', async () => {
    const { context, page, problems } = await newPage(browser);
    const requests = [];
    page.on('request', (r) => r.url().includes('/api/') && requests.push(r.url()));
    const cases = [
      ['a!', PASSWORD, PASSWORD, /3 to 32 characters/],
      ['validname', 'short', 'short', /at least 12 characters/],
      ['validname', PASSWORD, `${PASSWORD}x`, /do not match/],
    ];
    for (const [name, pw, pw2, message] of cases) {
      await registerViaUi(page, server.url, name, pw, pw2);
      assert.match(await page.locator('#form-error').innerText(), message);
    }
    assert.deepEqual(requests, []);
    assertClean(problems);
    await context.close();
  });

  test('sign out, then sign in again with the same fingerprint; the old refresh token is dead', async () => {
    const { context, page, problems } = await newPage(browser);
    await loginViaUi(page, server.url, 'alice', PASSWORD);
    assert.equal(await waitForChat(page), fingerprints.alice);
    const before = await storedSession(page);

    await openSettings(page);
    await page.click('#sign-out');
    await page.waitForURL(/\/login\.html/);
    assert.equal(await storedSession(page), null);
    assert.match(await page.locator('#form-status').innerText(), /signed out/i);

    await page.fill('#username', 'alice');
    await page.fill('#password', PASSWORD);
    await page.click('#submit');
    assert.equal(await waitForChat(page), fingerprints.alice);
    assert.match(await page.locator('.account').innerText(), /Signed in as alice/);

    const dead = await refreshFromNode(server.url, before.refresh_token);
    assert.equal(dead.status, 401, JSON.stringify(dead.body));
    assertClean(problems);
    await context.close();
  });

  test('wrong password: "Wrong username or password", no session stored', async () => {
    const { context, page, problems } = await newPage(browser);
    await loginViaUi(page, server.url, 'alice', 'not the right password');
    const error = page.locator('#form-error');
    await error.filter({ hasText: /\S/ }).waitFor();
    assert.equal(await error.innerText(), 'Wrong username or password');
    assert.match(page.url(), /login\.html$/);
    assert.equal(await page.locator('#password').inputValue(), '');
    assert.equal(await storedSession(page), null);

    // an unknown user reads exactly the same
    await page.fill('#username', 'nobody-here');
    await page.fill('#password', 'not the right password');
    await page.click('#submit');
    await page.waitForFunction(() => !document.querySelector('#submit').disabled);
    assert.equal(await error.innerText(), 'Wrong username or password');
    assert.equal(await storedSession(page), null);
    assertClean(problems, { allowStatuses: [401] });
    await context.close();
  });

  test('an expired access token is refreshed and the rotated refresh token is stored', async () => {
    const { context, page, problems } = await newPage(browser);
    await loginViaUi(page, server.url, 'alice', PASSWORD);
    await waitForChat(page);
    const first = await storedSession(page);

    // known to be expired: refreshed before the call
    await patchSession(page, { access_expires_at: 1 });
    await page.reload();
    await waitForChat(page);
    const second = await storedSession(page);
    assert.notEqual(second.refresh_token, first.refresh_token);
    assert.notEqual(second.access_token, first.access_token);
    assert.ok(second.access_expires_at > Date.now());

    // rejected by the server (401): refreshed once, call retried
    await patchSession(page, { access_token: `${second.access_token}x`, access_expires_at: Date.now() + 600000 });
    await page.reload();
    await waitForChat(page);
    const third = await storedSession(page);
    assert.notEqual(third.refresh_token, second.refresh_token);
    assert.equal(await page.locator('#me-username').innerText(), 'alice');
    // the directory works with the new tokens
    await page.fill('#search', 'ali');
    await page.locator('#results button.user').first().waitFor();

    assert.equal((await refreshFromNode(server.url, first.refresh_token)).status, 401);
    assertClean(problems, { allowStatuses: [401] });
    await context.close();
  });

  test('signing out after the access token expired refreshes first, then revokes the new pair', async () => {
    const { context, page, problems } = await newPage(browser);
    await context.clock.install(); // time flows normally until we jump
    await loginViaUi(page, server.url, 'alice', PASSWORD);
    await waitForChat(page);
    const before = await storedSession(page);
    await page.clock.fastForward('02:00:00'); // far past expires_in

    const logoutBodies = [];
    page.on('request', (r) => r.url().endsWith('/api/auth/logout') && logoutBodies.push(JSON.parse(r.postData() ?? 'null')));
    const refreshes = [];
    page.on('request', (r) => r.url().endsWith('/api/auth/refresh') && refreshes.push(r.url()));
    await openSettings(page);
    await page.click('#sign-out');
    await page.waitForURL(/\/login\.html/);
    assert.equal(refreshes.length, 1);
    assert.equal(logoutBodies.length, 1);
    assert.notEqual(logoutBodies[0].refresh_token, before.refresh_token);
    assert.equal(await storedSession(page), null);
    for (const dead of [before.refresh_token, logoutBodies[0].refresh_token]) {
      assert.equal((await refreshFromNode(server.url, dead)).status, 401);
    }
    assertClean(problems);
    await context.close();
  });

  test('sign out everywhere ends the other sessions too', async () => {
    const one = await newPage(browser);
    const two = await newPage(browser);
    await loginViaUi(one.page, server.url, 'alice', PASSWORD);
    await loginViaUi(two.page, server.url, 'alice', PASSWORD);
    await Promise.all([waitForChat(one.page), waitForChat(two.page)]);

    await openSettings(one.page);
    await one.page.click('#sign-out-all');
    await one.page.waitForURL(/\/login\.html/);
    assert.equal(await storedSession(one.page), null);

    // the other page's socket is closed with 4401: it leaves without a reload and says why
    await two.page.waitForURL(/\/login\.html\?(ended|expired)=1$/);
    assert.equal(await storedSession(two.page), null);
    assert.match(await two.page.locator('#form-status').innerText(), /signed out|session has ended/);
    assertClean(one.problems);
    assertClean(two.problems, { allowStatuses: [401] });
    await one.context.close();
    await two.context.close();
  });

  test('without a session chat.html goes to login.html; index.html offers the app when signed in', async () => {
    const { context, page, problems } = await newPage(browser);
    await page.goto(`${server.url}/chat.html`);
    await page.waitForURL(/\/login\.html$/);
    await page.goto(`${server.url}/`);
    assert.equal(await page.locator('#session-box').isVisible(), false);
    assert.equal(await page.locator('a[href="register.html"]').first().isVisible(), true);

    await loginViaUi(page, server.url, 'alice', PASSWORD);
    await waitForChat(page);
    await page.goto(`${server.url}/`);
    await page.locator('#session-box').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#session-user').innerText(), 'alice');
    await page.click('#session-box a[href="chat.html"]');
    await waitForChat(page);
    assertClean(problems);
    await context.close();
  });

  test('every page is served with the CSP and loads with no console errors and no CSP violations', async () => {
    const { context, page, problems } = await newPage(browser);
    for (const path of ['/', '/index.html', '/register.html', '/login.html', '/chat.html', '/admin.html', '/styles.css', '/js/crypto.js', '/js/admin.js']) {
      const res = await page.request.get(`${server.url}${path}`);
      assert.equal(res.status(), 200, path);
      assert.deepEqual(directives(res.headers()['content-security-policy']), CSP, path);
      assert.equal(res.headers()['x-content-type-options'], 'nosniff', path);
    }
    for (const path of ['/', '/register.html', '/login.html', '/admin.html']) {
      await page.goto(`${server.url}${path}`);
      await page.waitForLoadState('networkidle');
    }
    await loginViaUi(page, server.url, 'alice', PASSWORD);
    await waitForChat(page);
    await page.fill('#search', 'ali');
    await page.locator('#results[data-query="ali"]').waitFor({ state: 'attached' });
    await page.locator('#results button.user[data-username="alice"]').click();
    await fingerprintOn(page, '#contact-fingerprint');
    await page.waitForLoadState('networkidle');
    assertClean(problems);
    await context.close();
  });
});
