// Shared browser-test plumbing: one headless Chromium per test file, one context per scenario,
// a watcher for console errors / page errors / CSP violations, and UI flows.
import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches Chromium; a missing browser is a test failure, never a skip. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium chromium-driver, or set CHROMIUM`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 60000 });
}

/** The server and the browser of a test file; if either fails to start, the other is stopped. */
export async function startServerAndBrowser() {
  const [server, browser] = await Promise.allSettled([startServer(), launchBrowser()]);
  if (server.status === 'rejected' || browser.status === 'rejected') {
    if (server.status === 'fulfilled') await server.value.stop();
    if (browser.status === 'fulfilled') await browser.value.close();
    throw server.status === 'rejected' ? server.reason : browser.reason;
  }
  return { server: server.value, browser: browser.value };
}

/**
 * A fresh context (its own IndexedDB) and page, with `problems` collecting console errors,
 * uncaught page errors and CSP violations (reported by the securitypolicyviolation event);
 * `contextOptions` are passed to browser.newContext().
 */
export async function newPage(browser, contextOptions = {}) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, ...contextOptions });
  context.setDefaultTimeout(30000);
  const problems = [];
  await context.exposeBinding('__securechatCspViolation', (_source, v) => {
    problems.push({ kind: 'csp', text: `${v.directive} blocked ${v.blocked} (${v.source}:${v.line}) ${v.sample}` });
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__securechatCspViolation?.({
        directive: e.violatedDirective,
        blocked: e.blockedURI,
        source: e.sourceFile,
        line: e.lineNumber,
        sample: e.sample,
      });
    });
  });
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' || /Content Security Policy/i.test(msg.text())) {
      problems.push({ kind: 'console', text: msg.text(), url: msg.location()?.url });
    }
  });
  page.on('pageerror', (err) => problems.push({ kind: 'pageerror', text: String(err?.stack ?? err) }));
  return { context, page, problems };
}

/**
 * Asserts that nothing went wrong in the page. `allowStatuses` lists HTTP statuses that the
 * scenario provokes on purpose (Chromium logs every 4xx fetch as a console error).
 */
export function assertClean(problems, { allowStatuses = [] } = {}) {
  const allowed = (p) =>
    p.kind === 'console' &&
    allowStatuses.some((s) => p.text.includes(`Failed to load resource: the server responded with a status of ${s}`));
  const real = problems.filter((p) => !allowed(p));
  assert.deepEqual(real, [], `page problems:\n${real.map((p) => `${p.kind}: ${p.text} ${p.url ?? ''}`).join('\n')}`);
}

export async function fingerprintOn(page, selector = '#own-fingerprint') {
  const handle = await page.waitForFunction(
    (sel) => {
      const el = document.querySelector(sel);
      const digits = el?.dataset.digits ?? '';
      return /^\d+$/.test(digits) ? digits : null;
    },
    selector,
  );
  return handle.jsonValue();
}

/** Digits as the user sees them: the text of the element, separators removed. */
export async function visibleDigits(page, selector) {
  const text = await page.locator(selector).innerText();
  return text.replace(/\D/g, '');
}

export async function waitForChat(page) {
  await page.waitForURL(/\/chat\.html$/);
  await page.locator('#app').waitFor({ state: 'visible' });
  return fingerprintOn(page);
}

export async function registerViaUi(page, base, username, password, confirmation = password) {
  await page.goto(`${base}/register.html`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.fill('#password2', confirmation);
  await page.click('#submit');
}

export async function loginViaUi(page, base, username, password) {
  await page.goto(`${base}/login.html`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('#submit');
}

/** Everything in every IndexedDB database of the page's origin, with CryptoKeys and bytes described. */
export async function dumpStorage(page) {
  return page.evaluate(async () => {
    function describe(value) {
      if (value instanceof CryptoKey) {
        return {
          $cryptoKey: { type: value.type, extractable: value.extractable, algorithm: value.algorithm.name, usages: value.usages },
        };
      }
      if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return { $bytes: value.byteLength };
      if (typeof Blob !== 'undefined' && value instanceof Blob) return { $blob: value.size };
      if (Array.isArray(value)) return value.map(describe);
      if (value && typeof value === 'object') {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v)]));
      }
      return value;
    }
    const request = (r) =>
      new Promise((resolve, reject) => {
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
    const records = [];
    for (const { name } of await indexedDB.databases()) {
      const db = await request(indexedDB.open(name));
      for (const storeName of db.objectStoreNames) {
        const tx = db.transaction(storeName);
        const store = tx.objectStore(storeName);
        const [keys, values] = await Promise.all([request(store.getAllKeys()), request(store.getAll())]);
        keys.forEach((key, i) => records.push({ db: name, store: storeName, key, value: describe(values[i]) }));
      }
      db.close();
    }
    const dump = (s) => Object.fromEntries(Object.keys(s).map((k) => [k, s.getItem(k)]));
    return { records, localStorage: dump(localStorage), sessionStorage: dump(sessionStorage) };
  });
}

/** The stored session record (described), or null. */
export async function storedSession(page) {
  const { records } = await dumpStorage(page);
  return records.find((r) => r.db === 'securechat' && r.store === 'session' && r.key === 'current')?.value ?? null;
}

/** Changes fields of the stored session (to simulate an expired or revoked access token). */
export async function patchSession(page, patch) {
  await page.evaluate(async (fields) => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open('securechat');
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    await new Promise((resolve, reject) => {
      const tx = db.transaction('session', 'readwrite');
      const store = tx.objectStore('session');
      const get = store.get('current');
      get.onsuccess = () => store.put({ ...get.result, ...fields }, 'current');
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
    db.close();
  }, patch);
}

/** POST /api/auth/refresh from Node (outside the browser). */
export async function refreshFromNode(base, refreshToken) {
  const res = await fetch(`${base}/api/auth/refresh`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

// ---------------------------------------------------------------- chat flows

export async function openFromList(page, peer) {
  await page.locator(`#conversations button.conv[data-peer="${peer}"]`).click();
  await page.locator('#conversation').waitFor({ state: 'visible' });
  await page.locator('#conv-name', { hasText: peer }).waitFor();
}

export async function openFromDirectory(page, peer) {
  await page.fill('#search', peer);
  await page.locator(`#results[data-query="${peer}"]`).waitFor({ state: 'attached' });
  await page.locator(`#results button.user[data-username="${peer}"]`).click();
  await page.locator('#conversation').waitFor({ state: 'visible' });
}

/**
 * The signed-in user of `page` replaces their keys (POST /api/keys/rotate from the page, with
 * the app's own modules, as "Replace my keys" does); returns { username, key_version }.
 */
export function rotateKeysInPage(page, password) {
  return page.evaluate(async (pw) => {
    const { Api } = await import('/js/api.js');
    const { rotateKeys } = await import('/js/auth.js');
    const store = await import('/js/store.js');
    const session = await store.loadSession();
    const api = new Api({ tokens: session, saveTokens: store.saveTokens, loadTokens: store.loadTokens });
    return rotateKeys(api, { session, password: pw });
  }, password);
}

/** Opens the settings view (own fingerprint, sign-out, account actions) from the list header. */
export async function openSettings(page) {
  if (!(await page.locator('#settings').isVisible())) await page.click('#open-settings');
  await page.locator('#settings').waitFor({ state: 'visible' });
}

export async function send(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

/** The bubble of a message, found by its exact text. */
export function bubble(page, text, who = '') {
  return page.locator(`#messages li.msg${who ? `.${who}` : ''}`).filter({ has: page.locator('.msg-text', { hasText: text }) });
}

export async function waitState(page, text, state) {
  await bubble(page, text, 'mine').and(page.locator(`[data-state="${state}"]`)).waitFor();
}

/**
 * The server as the attacker: the next newest-page history answer for `peer` (no `before=`)
 * that `page` fetches is rewritten by `edit(messages) -> messages`; later answers pass.
 */
export async function injectIntoHistory(page, peer, edit) {
  let done = false;
  await page.route(new RegExp(`/api/conversations/${peer}/messages`), async (route) => {
    const url = new URL(route.request().url());
    if (done || url.searchParams.has('before') || url.searchParams.has('after')) return route.continue();
    done = true;
    const response = await route.fetch();
    const body = await response.json();
    await route.fulfill({ response, json: { ...body, messages: edit(body.messages) } });
  });
}
