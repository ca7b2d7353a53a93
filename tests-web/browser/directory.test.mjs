// The user directory on chat.html: search, a user's fingerprint, and the safety number, which
// both sides must compute identically (docs/PROTOCOL.md §5).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertClean, fingerprintOn, startServerAndBrowser, newPage, registerViaUi, visibleDigits, waitForChat } from './helpers.mjs';

describe('directory and safety numbers', () => {
  let server;
  let browser;

  before(async () => {
    ({ server, browser } = await startServerAndBrowser());
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('search finds a second user; both sides show the same 60-digit safety number', async () => {
    const mallory = await newPage(browser);
    const zed = await newPage(browser);
    await registerViaUi(mallory.page, server.url, 'mallory', 'mallory password 1');
    await registerViaUi(zed.page, server.url, 'zed.west', 'zed password 12345');
    const [fpMallory, fpZed] = await Promise.all([waitForChat(mallory.page), waitForChat(zed.page)]);
    assert.notEqual(fpMallory, fpZed);

    // mallory searches for zed
    const page = mallory.page;
    await page.fill('#search', 'ZED'); // upper case is normalized
    await page.locator('#results[data-query="zed"]').waitFor({ state: 'attached' });
    const result = page.locator('#results button.user[data-username="zed.west"]');
    await result.waitFor();
    assert.equal(await page.locator('#results button.user[data-username="mallory"]').count(), 0, 'prefix search');
    await result.click();
    // the safety number is in the dialog the conversation header opens
    await page.click('#conv-safety');
    await page.locator('#safety-dialog').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#contact-name').innerText(), 'zed.west');
    const theirs = await fingerprintOn(page, '#contact-fingerprint');
    assert.equal(theirs, fpZed);
    assert.equal(await visibleDigits(page, '#contact-fingerprint'), fpZed);
    const safety = await fingerprintOn(page, '#safety-number');
    assert.match(safety, /^\d{60}$/);
    assert.equal(safety, fpMallory + fpZed); // "mallory" < "zed.west"
    assert.equal(await visibleDigits(page, '#safety-number'), safety);
    assert.equal(await page.locator('#safety-number .group').count(), 12);
    assert.equal(await page.locator('#contact-warning').isVisible(), false);

    // zed looks up mallory and sees the very same number
    await zed.page.fill('#search', 'mal');
    await zed.page.locator('#results[data-query="mal"]').waitFor({ state: 'attached' });
    await zed.page.locator('#results button.user[data-username="mallory"]').click();
    assert.equal(await fingerprintOn(zed.page, '#contact-fingerprint'), fpMallory);
    assert.equal(await fingerprintOn(zed.page, '#safety-number'), safety);

    await page.click('#safety-close');
    await page.locator('#safety-dialog').waitFor({ state: 'hidden' });

    // an empty result says so
    await page.fill('#search', 'nobody');
    await page.locator('#results[data-query="nobody"]').waitFor({ state: 'attached' });
    await page.locator('#search-status', { hasText: 'No users found.' }).waitFor();
    assert.equal(await page.locator('#results li').count(), 0);

    assertClean(mallory.problems);
    assertClean(zed.problems);
    await mallory.context.close();
    await zed.context.close();
  });
});
