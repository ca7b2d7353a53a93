// Interoperability with the Rust test client (crate securechat-client): an account made in the
// browser logs in with the CLI, and an account made by the CLI logs in in the browser; both
// sides must show the same fingerprint. This is docs/PROTOCOL.md §11.3 step 8 against a real
// server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runClient } from './server.mjs';
import { assertClean, fingerprintOn, startServerAndBrowser, loginViaUi, newPage, registerViaUi, waitForChat } from './helpers.mjs';

describe('browser <-> Rust client', () => {
  let server;
  let browser;
  const fps = {};

  before(async () => {
    ({ server, browser } = await startServerAndBrowser());
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  // PROTOCOL.md §2 (NFC password, KDF), §3 (bundle), §4.1, §5.1, §6.1–§6.2
  test('registered in the browser, logs in with the Rust CLI: same fingerprint', async () => {
    const { context, page, problems } = await newPage(browser);
    const password = 'Café pässwörd 🔑 browser'; // NFC matters on both sides
    await registerViaUi(page, server.url, 'webuser', password);
    const fp = await waitForChat(page);
    fps.webuser = fp;
    const out = await runClient(['login', '--server', server.url, '--username', 'webuser', '--password', password]);
    assert.deepEqual(out, { username: 'webuser', key_version: 1, fingerprint: fp });
    assertClean(problems);
    await context.close();
  });

  // PROTOCOL.md §2, §3, §4.1, §5.1, §6.1–§6.2 (the other direction)
  test('registered by the Rust CLI (600000 iterations), logs in in the browser: same fingerprint', async () => {
    const password = 'cli password with ümlaut';
    const out = await runClient([
      'register', '--server', server.url, '--username', 'cliuser', '--password', password, '--iterations', '600000',
    ]);
    assert.equal(out.username, 'cliuser');
    assert.equal(out.key_version, 1);
    assert.match(out.fingerprint, /^\d{30}$/);
    fps.cliuser = out.fingerprint;

    const { context, page, problems } = await newPage(browser);
    await loginViaUi(page, server.url, 'cliuser', password.normalize('NFD')); // typed decomposed: same keys
    assert.equal(await waitForChat(page), out.fingerprint);
    assert.equal(await page.locator('#me-username').innerText(), 'cliuser');

    // and the browser's directory view agrees with both sides
    await page.fill('#search', 'web');
    await page.locator('#results[data-query="web"]').waitFor({ state: 'attached' });
    await page.locator('#results button.user[data-username="webuser"]').click();
    assert.equal(await fingerprintOn(page, '#contact-fingerprint'), fps.webuser);
    assert.equal(await fingerprintOn(page, '#safety-number'), fps.cliuser + fps.webuser);
    assertClean(problems);
    await context.close();
  });
});
