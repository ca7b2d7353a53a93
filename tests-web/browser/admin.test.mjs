// The admin console (admin.html, issue #15 item 4) in headless Chromium against the real
// server: an admin (made with the real `securechat admin grant`) reaches it from the chat,
// filters the message log by sender and sees only that sender's rows, as metadata and
// fingerprints (never an envelope's ciphertext, signature or text; the CSV export neither);
// a non-admin sees a refusal, the page asks nothing beyond /api/features and /api/me, and
// every admin route answers their token 403 (401 without one); an admin disables a user from
// the Users view and that user's sign-in is refused; the audit view shows the entries of
// what the admin just did and that the chain checks out; health shows the server's counts;
// a report's disclosed text is shown as text, never as markup (a rewritten answer, and a real
// report made from the chat), and "Disable sender" disables the sender.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import {
  assertClean,
  bubble,
  loginViaUi,
  newPage,
  openSettings,
  openFromDirectory,
  registerViaUi,
  send,
  startServerAndBrowser,
  waitForChat,
} from './helpers.mjs';
import { serverCommand } from './server.mjs';

const PASSWORD = 'admin console password 1';
const TEXTS = {
  bobToCarol1: 'bob to carol: the first secret',
  bobToCarol2: 'bob to carol: the second secret',
  bobToAlice: 'bob to alice: a third secret',
  carolToBob: 'carol to bob: not in the filtered log',
};

/** Every route of the admin contract (docs/API-CONTRACT.md), as [method, path]. */
const ADMIN_ROUTES = [
  ['GET', '/api/admin/messages'],
  ['GET', '/api/admin/messages.csv'],
  ['GET', '/api/admin/files'],
  ['GET', '/api/admin/files.csv'],
  ['GET', '/api/admin/users'],
  ['POST', '/api/admin/users/bob/disable'],
  ['POST', '/api/admin/users/bob/enable'],
  ['POST', '/api/admin/users/bob/revoke-sessions'],
  ['GET', '/api/admin/jobs'],
  ['POST', '/api/admin/jobs/1/retry'],
  ['POST', '/api/admin/jobs/1/cancel'],
  ['GET', '/api/admin/health'],
  ['GET', '/api/admin/audit'],
  ['GET', '/api/admin/audit/verify'],
  ['GET', '/api/admin/reports'],
];

/**
 * Calls `requests` from inside the page with the signed-in user's access token (read from the
 * session in IndexedDB), or with none when `auth` is false; each answer's status and body.
 */
async function fetchInPage(page, requests, { auth = true } = {}) {
  return page.evaluate(
    async ({ list, withToken }) => {
      const db = await new Promise((resolve, reject) => {
        const r = indexedDB.open('securechat');
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
      const session = await new Promise((resolve, reject) => {
        const get = db.transaction('session').objectStore('session').get('current');
        get.onsuccess = () => resolve(get.result);
        get.onerror = () => reject(get.error);
      });
      db.close();
      const out = [];
      for (const [method, path] of list) {
        const headers = withToken ? { Authorization: `Bearer ${session.access_token}` } : {};
        const res = await fetch(path, { method, headers });
        const text = await res.text();
        let body = null;
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
        out.push({ method, path, status: res.status, body });
      }
      return out;
    },
    { list: requests, withToken: auth },
  );
}

/** Waits until the server has stored `text` sent from `page` (its bubble is sent, delivered or read). */
async function stored(page, text) {
  await bubble(page, text, 'mine').and(page.locator('[data-state="sent"], [data-state="delivered"], [data-state="read"]')).waitFor();
}

/** The cells' text of every row of a table body. */
function rowsOf(page, tableId) {
  return page.$$eval(`#${tableId} tbody tr`, (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
}

/** The envelopes of one conversation as its participant's page gets them from the history. */
async function envelopes(page, peer) {
  const [answer] = await fetchInPage(page, [['GET', `/api/conversations/${peer}/messages`]]);
  assert.equal(answer.status, 200);
  return answer.body.messages.map((m) => (typeof m.envelope === 'string' ? JSON.parse(m.envelope) : m.envelope));
}

/** A new browser context with `user` registered there (and so signed in, on chat.html). */
async function register(browser, server, user) {
  const session = await newPage(browser);
  await registerViaUi(session.page, server.url, user, PASSWORD);
  await waitForChat(session.page);
  return session;
}

describe('the admin console', () => {
  let server;
  let browser;
  let admin;
  let bob;
  let carol;
  const sent = {}; // envelopes by sender

  before(async () => {
    ({ server, browser } = await startServerAndBrowser());
    [admin, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((user) => register(browser, server, user)));
    await (await register(browser, server, 'dave')).context.close();
    await serverCommand(server, ['admin', 'grant', 'alice']);

    await openFromDirectory(bob.page, 'carol');
    for (const text of [TEXTS.bobToCarol1, TEXTS.bobToCarol2]) {
      await send(bob.page, text);
      await stored(bob.page, text);
    }
    await openFromDirectory(carol.page, 'bob');
    await send(carol.page, TEXTS.carolToBob);
    await stored(carol.page, TEXTS.carolToBob);
    await openFromDirectory(bob.page, 'alice');
    await send(bob.page, TEXTS.bobToAlice);
    await stored(bob.page, TEXTS.bobToAlice);

    const all = [...(await envelopes(bob.page, 'carol')), ...(await envelopes(bob.page, 'alice'))];
    for (const envelope of all) (sent[envelope.from] ??= []).push(envelope);
    assert.equal(sent.bob.length, 3);
    assert.equal(sent.carol.length, 1);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('an admin opens the console from the chat and filters the message log by sender: only that sender’s rows, as metadata and fingerprints', async () => {
    const { page, problems } = admin;
    await page.reload(); // alice was made an admin after her page loaded
    await waitForChat(page);
    await openSettings(page);
    await page.locator('#admin-link').click();
    await page.waitForURL(/\/admin\.html$/);
    await page.locator('#console').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#refusal').isVisible(), false);
    assert.equal(await page.locator('#admin-username').innerText(), 'alice');
    // the unfiltered log first: all four messages
    await page.locator('#messages-status', { hasText: /^4 messages/ }).waitFor();

    await page.fill('#messages-sender', 'bob');
    const answered = page.waitForResponse((r) => /\/api\/admin\/messages\?/.test(r.url()) && r.url().includes('sender=bob'));
    await page.locator('#messages-filters button[type="submit"]').click();
    const body = await (await answered).text();
    await page.locator('#messages-status', { hasText: /^3 messages/ }).waitFor();

    const rows = await rowsOf(page, 'messages-table');
    assert.equal(rows.length, 3);
    assert.deepEqual(rows.map((r) => r[0]).sort(), sent.bob.map((e) => e.id).sort(), 'the rows are bob’s messages');
    for (const [, sender, recipient, time, size, fingerprint, state] of rows) {
      assert.equal(sender, 'bob');
      assert.ok(['carol', 'alice'].includes(recipient), recipient);
      assert.ok(time.length > 0 && time !== '—', time);
      assert.match(size, /^\d+(\.\d)? (B|KiB)$/);
      assert.match(fingerprint, /^[0-9a-f]{16}$/);
      assert.ok(['sent', 'delivered', 'read'].includes(state), state);
    }

    // nothing of any envelope reached the console: not in the answer, not on the page
    const shown = await page.locator('main').innerText();
    for (const envelope of [...sent.bob, ...sent.carol]) {
      for (const secret of [envelope.ct, envelope.sig, envelope.iv, ...Object.values(envelope.keys)]) {
        assert.ok(!body.includes(secret), 'the admin answer holds envelope material');
        assert.ok(!shown.includes(secret.slice(0, 24)), 'the page shows envelope material');
      }
    }
    assert.doesNotMatch(body, /"(envelope|ct|iv|sig|keys)"/);
    for (const text of Object.values(TEXTS)) assert.ok(!shown.includes(text) && !body.includes(text), text);

    // the CSV export: the same filter, the same rows, nothing more
    const download = page.waitForEvent('download');
    await page.locator('#messages-export').click();
    const csv = await readFile(await (await download).path(), 'utf8');
    const lines = csv.trim().split(/\r?\n/).map((line) => line.split(',').map((cell) => cell.replace(/^"'?|"$/g, '')));
    assert.deepEqual(lines[0], ['id', 'sender', 'recipient', 'server_ts', 'size', 'fingerprint', 'state']);
    assert.deepEqual(lines.slice(1).map((l) => l[0]).sort(), sent.bob.map((e) => e.id).sort());
    assert.ok(lines.slice(1).every((l) => l[1] === 'bob'));
    for (const envelope of [...sent.bob, ...sent.carol]) assert.ok(!csv.includes(envelope.ct));
    assertClean(problems);
  });

  test('a non-admin who opens admin.html sees a refusal, the page asks nothing more, and every admin route answers 403 (401 without a token)', async () => {
    const { page, problems } = carol;
    await openSettings(page);
    assert.equal(await page.locator('#admin-link').isVisible(), false, 'no console link for a non-admin');
    const asked = [];
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.pathname.startsWith('/api/')) asked.push(url.pathname);
    });
    await page.goto(`${server.url}/admin.html#users`);
    await page.locator('#refusal').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#refusal-title').innerText(), 'This console is for administrators');
    assert.match(await page.locator('#refusal-text').innerText(), /carol, who is not an administrator/);
    assert.equal(await page.locator('#console').isVisible(), false);
    await page.waitForLoadState('networkidle');
    assert.deepEqual([...new Set(asked)].sort(), ['/api/features', '/api/me']);

    const withToken = await fetchInPage(page, ADMIN_ROUTES);
    for (const r of withToken) {
      assert.equal(r.status, 403, `${r.method} ${r.path}`);
      assert.equal(r.body?.error?.code, 'admin_required', `${r.method} ${r.path}`);
    }
    const without = await fetchInPage(page, ADMIN_ROUTES, { auth: false });
    for (const r of without) {
      assert.equal(r.status, 401, `${r.method} ${r.path}`);
      assert.equal(r.body?.error?.code, 'unauthorized', `${r.method} ${r.path}`);
    }
    assertClean(problems, { allowStatuses: [401, 403] });
  });

  test('an admin disables a user from the Users view (after confirming), and that user’s sign-in is then refused', async () => {
    const { page, problems } = admin;
    // by keyboard: the nav link, then the search form
    await page.locator('.admin-nav a[data-view="users"]').focus();
    await page.keyboard.press('Enter');
    await page.locator('#view-users').waitFor({ state: 'visible' });
    await page.fill('#users-query', 'dave');
    await page.press('#users-query', 'Enter');
    await page.locator('#users-status', { hasText: /^1 user\.$/ }).waitFor();
    const row = page.locator('#users-table tbody tr').filter({ has: page.locator('th', { hasText: /^dave$/ }) });
    await row.locator('td.account-state', { hasText: 'Active' }).waitFor();
    assert.equal(await page.locator('#users-table tbody tr').count(), 1);

    // cancelling asks nothing of the server
    await page.getByRole('button', { name: 'Disable dave' }).click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.locator('#confirm-no').click();
    await page.locator('#confirm').waitFor({ state: 'hidden' });
    assert.equal(await row.locator('td.account-state').innerText(), 'Active');

    await page.getByRole('button', { name: 'Disable dave' }).click();
    await page.locator('#confirm-yes').click();
    await page.locator('#users-status', { hasText: 'dave is disabled' }).waitFor();
    await row.locator('td.account-state', { hasText: 'Disabled' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Enable dave' }).count(), 1);

    const dave = await newPage(browser);
    await loginViaUi(dave.page, server.url, 'dave', PASSWORD);
    await dave.page.locator('#form-error', { hasText: 'This account has been disabled by an administrator.' }).waitFor();
    assert.match(dave.page.url(), /\/login\.html$/);
    await dave.context.close();
    assertClean(problems);
  });

  test('the audit view shows the entries of what the admin just did, under a chain that checks out', async () => {
    const { page, problems } = admin;
    await page.locator('.admin-nav a[data-view="audit"]').click();
    await page.locator('#audit-verdict[data-ok="true"]', { hasText: 'Audit log intact' }).waitFor();
    await page.locator('#audit-table[data-loaded="true"]').waitFor();
    const rows = await rowsOf(page, 'audit-table');
    const entries = rows.map(([seq, , actor, action, target, detail]) => ({ seq: Number(seq), actor, action, target, detail }));
    assert.ok(entries.every((e) => e.actor === 'alice'));
    const seqs = entries.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'newest first');
    const disable = entries.find((e) => e.action === 'user.disable');
    assert.equal(disable?.target, 'dave');
    assert.ok(entries.some((e) => e.action === 'messages.list' && e.detail.includes('bob')), 'the filtered read is audited');
    assert.ok(entries.some((e) => e.action === 'messages.export'), 'the export is audited');
    assert.ok(seqs.indexOf(disable.seq) < seqs.indexOf(entries.find((e) => e.action === 'messages.export').seq));
    assertClean(problems);
  });

  test('the health, jobs and files views show the server’s figures', async () => {
    const { page, problems } = admin;
    await page.locator('.admin-nav a[data-view="health"]').click();
    const figure = (label) => page.locator('#health-list dt', { hasText: new RegExp(`^${label}$`) }).locator('xpath=following-sibling::dd[1]');
    await figure('Users').waitFor();
    assert.equal(await figure('Users').innerText(), '4');
    assert.equal(await figure('Messages').innerText(), '4');
    assert.equal(await figure('Status').innerText(), 'ok');
    await page.locator('.admin-nav a[data-view="jobs"]').click();
    await page.locator('#jobs-status', { hasText: /failed jobs/i }).waitFor();
    // no file was sent: the files log answers, empty
    await page.locator('.admin-nav a[data-view="files"]').click();
    await page.locator('#files-status', { hasText: /^0 files\.$/ }).waitFor();
    assert.equal(await page.locator('#files-table tbody tr').count(), 0);
    assertClean(problems);
  });

  test('a report’s disclosed text is shown as text, never as markup, with its verdict', async () => {
    const { page, problems } = admin;
    const markup = '<img src=x id=injected onerror="window.__pwned=1">& <b>bold</b>';
    const report = (id, verdict, detail, text) => ({
      id,
      message_id: `m${id}`,
      reporter: 'carol',
      sender: 'bob',
      recipient: 'carol',
      server_ts: Date.now() - 60000,
      reported_at: Date.now(),
      reason: 'abuse',
      verdict,
      detail,
      text,
    });
    // the server's answer, replaced: this checks the page's rendering alone
    await page.route(/\/api\/admin\/reports/, (route) =>
      route.fulfill({
        json: { reports: [report(2, 'verified', null, markup), report(1, 'not_verifiable', 'plaintext_mismatch', null)], next_cursor: null },
      }),
    );
    await page.locator('.admin-nav a[data-view="reports"]').click();
    await page.locator('#reports-status', { hasText: /^2 reports/ }).waitFor();
    const rows = await rowsOf(page, 'reports-table');
    assert.equal(rows[0][0], 'Verified');
    assert.equal(rows[0][6], markup);
    assert.equal(rows[1][0], 'Not verifiable (the text differs from the stored message)');
    assert.equal(await page.locator('#injected').count(), 0);
    assert.equal(await page.locator('#reports-table b').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned ?? null), null);
    assert.equal(await page.getByRole('button', { name: /^Disable bob/ }).count(), 2);
    await page.unroute(/\/api\/admin\/reports/);
    assertClean(problems);
  });
  test('a report made from the chat shows in the Reports view as verified, with its text as text, and "Disable sender" disables the sender', async () => {
    const markup = '<b>bold</b> <img src=x id=injected2> report me';
    await openFromDirectory(bob.page, 'carol');
    await send(bob.page, markup);
    await stored(bob.page, markup);
    const c = carol.page; // on admin.html since the refusal test
    await c.goto(`${server.url}/chat.html`);
    await waitForChat(c);
    await openFromDirectory(c, 'bob');
    const report = bubble(c, markup, 'theirs').locator('button[data-role="report"]');
    await report.waitFor();
    await report.click();
    await c.locator('#report-dialog').waitFor({ state: 'visible' });
    await c.locator('#report-form input[value="abuse"]').check();
    await c.locator('#report-submit').click();
    await c.locator('#report-dialog').waitFor({ state: 'hidden' });
    await bubble(c, markup, 'theirs').locator('[data-role="reported"]').waitFor();

    const { page, problems } = admin;
    await page.locator('.admin-nav a[data-view="health"]').click(); // away and back: the view reloads
    await page.locator('.admin-nav a[data-view="reports"]').click();
    await page.locator('#reports-status', { hasText: /^1 report\.$/ }).waitFor();
    const [row] = await rowsOf(page, 'reports-table');
    assert.deepEqual(row.slice(0, 4), ['Verified', 'abuse', 'carol', 'bob']);
    assert.equal(row[6], markup);
    assert.equal(await page.locator('#injected2').count(), 0);
    assert.equal(await page.locator('#reports-table b').count(), 0);

    await page.getByRole('button', { name: /^Disable bob, the sender of report/ }).click();
    await page.locator('#confirm-yes').click();
    await page.locator('#reports-status', { hasText: 'bob is disabled' }).waitFor();
    const [users] = await fetchInPage(page, [['GET', '/api/admin/users?query=bob']]);
    assert.equal(users.body.users.find((u) => u.username === 'bob')?.disabled, true);
    assertClean(problems);
    assertClean(carol.problems, { allowStatuses: [401, 403] });
  });
});
