// Abuse reports in real headless Chromium against the real server (issue #15): bob reports a
// message alice sent him through the confirm dialog, and an admin (granted with
// `securechat admin grant` on the server's data dir) finds it verified with its text; a
// report whose plaintext was altered on its way out of the page is kept as not_verifiable;
// a second report of the same message says "Already reported"; a report the server does not
// know as bob's message is an error in the dialog; no "Report" without admin_logs enabled.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  assertClean,
  bubble,
  newPage,
  openFromDirectory,
  openFromList,
  registerViaUi,
  send,
  startServerAndBrowser,
  storedSession,
  waitForChat,
} from './helpers.mjs';
import { SERVER_BIN } from './server.mjs';

const PW = { alice: 'alice password 1234', bob: 'bob password 123456', moderator: 'moderator password 12' };

/** `securechat admin grant NAME` against the running server's data dir. */
async function grantAdmin(server, username) {
  const { stdout } = await promisify(execFile)(SERVER_BIN, ['admin', 'grant', username], {
    env: { ...process.env, SECURECHAT_STORAGE__DATA_DIR: server.dataDir },
  });
  assert.match(stdout, new RegExp(`${username} is now an admin`));
}

/** GET /api/admin/reports with the admin's token, from the admin's page. */
async function adminReports(page) {
  const { access_token: token } = await storedSession(page);
  return page.evaluate(async (t) => {
    const res = await fetch('/api/admin/reports', { headers: { Authorization: `Bearer ${t}` } });
    return { status: res.status, body: await res.json() };
  }, token);
}

/** Rewrites the body of the next POST /api/reports the page sends with `edit(body) -> body`. */
async function alterNextReport(page, edit) {
  await page.route('**/api/reports', async (route) => {
    await page.unroute('**/api/reports');
    const body = JSON.parse(route.request().postData());
    await route.continue({ postData: JSON.stringify(edit(body)) });
  });
}

function reportButton(page, text) {
  return bubble(page, text, 'theirs').locator('button[data-role="report"]');
}

describe('reporting a received message', () => {
  let server;
  let browser;
  let alice;
  let bob;
  let moderator;

  before(async () => {
    ({ server, browser } = await startServerAndBrowser());
    alice = await newPage(browser);
    bob = await newPage(browser);
    moderator = await newPage(browser);
    await registerViaUi(alice.page, server.url, 'alice', PW.alice);
    await registerViaUi(bob.page, server.url, 'bob', PW.bob);
    await registerViaUi(moderator.page, server.url, 'moderator', PW.moderator);
    await Promise.all([waitForChat(alice.page), waitForChat(bob.page), waitForChat(moderator.page)]);
    await grantAdmin(server, 'moderator');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('bob reports alice’s message through the dialog and the admin sees it verified, with its text', async () => {
    const a = alice.page;
    const b = bob.page;
    const text = 'Send me your password or else';
    await openFromDirectory(a, 'bob');
    await send(a, text);
    await bubble(a, text, 'mine').waitFor();
    // one's own messages have no Report action
    assert.equal(await bubble(a, text, 'mine').locator('[data-role="report"]').count(), 0);

    await openFromList(b, 'alice');
    const button = reportButton(b, text);
    await button.waitFor();
    assert.equal(await button.getAttribute('aria-label'), 'Report this message from alice');

    // the dialog says what is disclosed, shows the message, and closes with Escape (focus back)
    await button.click();
    const dialog = b.locator('#report-dialog');
    await dialog.waitFor({ state: 'visible' });
    assert.equal(await b.locator('#report-text').innerText(), text);
    assert.match(await b.locator('#report-what').innerText(), /this one message’s text and its key/);
    assert.match(await b.locator('#report-what').innerText(), /Nothing else of your conversation with alice is disclosed/);
    assert.equal(await b.evaluate(() => document.activeElement?.id), 'report-cancel');
    await b.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await b.evaluate(() => document.activeElement?.dataset.role), 'report');

    // by keyboard: open, move to the reasons, pick "abuse", submit
    await button.focus();
    await b.keyboard.press('Enter');
    await dialog.waitFor({ state: 'visible' });
    await b.locator('#report-form input[value="spam"]').focus();
    await b.keyboard.press('ArrowDown');
    assert.equal(await b.locator('#report-form input[value="abuse"]').isChecked(), true);
    await b.locator('#report-submit').click();
    await dialog.waitFor({ state: 'hidden' });
    await b.locator('#conv-status', { hasText: 'Reported: the server confirmed that the text is what the sender sent.' }).waitFor();
    await bubble(b, text, 'theirs').locator('[data-role="reported"]', { hasText: 'Reported' }).waitFor();

    const { status, body } = await adminReports(moderator.page);
    assert.equal(status, 200);
    assert.equal(body.reports.length, 1);
    const [report] = body.reports;
    assert.equal(report.reporter, 'bob');
    assert.equal(report.sender, 'alice');
    assert.equal(report.recipient, 'bob');
    assert.equal(report.reason, 'abuse');
    assert.equal(report.verdict, 'verified');
    assert.equal(report.text, text);
    assertClean(alice.problems);
    assertClean(bob.problems);
  });

  test('a report whose plaintext was altered on its way out is kept as not_verifiable, without text', async () => {
    const a = alice.page;
    const b = bob.page;
    const text = 'a perfectly friendly message';
    await send(a, text);
    await reportButton(b, text).waitFor();
    await alterNextReport(b, (body) => {
      const forged = Buffer.from(JSON.stringify({ text: 'something alice never wrote' })).toString('base64url');
      assert.notEqual(forged, body.plaintext);
      return { ...body, plaintext: forged };
    });
    await reportButton(b, text).click();
    await b.locator('#report-submit').click();
    await b.locator('#conv-status', { hasText: 'Reported: the server could not confirm the text.' }).waitFor();

    const { body } = await adminReports(moderator.page);
    const report = body.reports.find((r) => r.verdict !== 'verified');
    assert.ok(report, JSON.stringify(body));
    assert.equal(report.verdict, 'not_verifiable');
    assert.equal(report.detail, 'plaintext_mismatch');
    assert.equal(report.text, null);
    assert.equal(body.reports.length, 2);
    assertClean(bob.problems);
  });

  test('reporting the same message again says "Already reported"; an unknown message is an error in the dialog', async () => {
    const b = bob.page;
    const text = 'Send me your password or else';
    // after a reload the page no longer remembers the report; the server does
    await b.reload();
    await waitForChat(b);
    await openFromList(b, 'alice');
    await reportButton(b, text).click();
    await b.locator('#report-submit').click();
    await b.locator('#conv-status', { hasText: 'Already reported.' }).waitFor();
    await bubble(b, text, 'theirs').locator('[data-role="reported"]').waitFor();

    const other = 'a perfectly friendly message';
    await reportButton(b, other).waitFor();
    await alterNextReport(b, (body) => ({ ...body, message_id: '00000000-0000-4000-8000-000000000000' }));
    await reportButton(b, other).click();
    await b.locator('#report-submit').click();
    await b.locator('#report-error', { hasText: 'could not be reported: the server does not know it as a message to you' }).waitFor();
    assert.equal(await b.locator('#report-dialog').isVisible(), true);
    await b.locator('#report-cancel').click();
    await b.locator('#report-dialog').waitFor({ state: 'hidden' });

    const { body } = await adminReports(moderator.page);
    assert.equal(body.reports.length, 2, 'neither attempt was stored');
    assertClean(bob.problems, { allowStatuses: [404, 409] });
  });

  test('without admin_logs enabled in /api/features, no message offers "Report"', async () => {
    const b = bob.page;
    await b.route('**/api/features', (route) => route.fulfill({ json: { plugins: [{ name: 'admin_logs', enabled: false }] } }));
    const asked = b.waitForRequest('**/api/features');
    await b.reload();
    await waitForChat(b);
    await openFromList(b, 'alice');
    await bubble(b, 'a perfectly friendly message', 'theirs').waitFor();
    // the answer has been read (and a render has had its turn) before looking
    await (await asked).response();
    await b.evaluate(() => new Promise((resolve) => setTimeout(resolve, 100)));
    assert.equal(await b.locator('#messages [data-role="report"]').count(), 0);
    await b.unroute('**/api/features');
  });
});
