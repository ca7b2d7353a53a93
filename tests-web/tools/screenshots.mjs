// Takes screenshots of the pages for a visual check: node tools/screenshots.mjs [outdir]
// (default /tmp/shots). Starts its own server like the browser tests do.
import { mkdir } from 'node:fs/promises';
import { startServer } from '../browser/server.mjs';
import { fingerprintOn, launchBrowser, loginViaUi, newPage, registerViaUi, rotateKeysInPage, waitForChat } from '../browser/helpers.mjs';

const out = process.argv[2] || '/tmp/shots';
await mkdir(out, { recursive: true });
const server = await startServer();
const browser = await launchBrowser();
try {
  const { page } = await newPage(browser);
  const shot = (name) => page.screenshot({ path: `${out}/${name}.png`, fullPage: true });

  await page.goto(`${server.url}/`);
  await shot('index');
  await page.goto(`${server.url}/register.html`);
  await shot('register');
  await page.fill('#username', 'Bad Name!');
  await page.fill('#password', 'short');
  await page.click('#submit');
  await shot('register-invalid');
  await page.fill('#username', 'alice');
  await page.fill('#password', 'correct horse battery');
  await page.fill('#password2', 'correct horse battery');
  await page.click('#submit');
  await page.screenshot({ path: `${out}/register-busy.png` });
  await waitForChat(page);

  const other = await newPage(browser);
  await registerViaUi(other.page, server.url, 'bob', 'bob password 12345');
  await waitForChat(other.page);
  await shot('chat-empty');

  // a conversation opened from the directory shows the safety number with it
  await page.fill('#search', 'bob');
  await page.locator('#results button.user[data-username="bob"]').click();
  await page.click('#conv-safety');
  await fingerprintOn(page, '#safety-number');
  await shot('chat-safety-number');
  await page.click('#safety-close');

  const say = async (p, text) => {
    await p.fill('#composer-input', text);
    await p.press('#composer-input', 'Enter');
  };
  await say(page, 'Hi bob! Did the keys check out?');
  await other.page.locator('#conversations button.conv[data-peer="alice"]').click();
  await say(other.page, 'They did — our safety numbers match.\nSee you at 6?');
  await page.locator('#messages li.msg.theirs').waitFor();
  await say(page, 'Yes. <b>markup</b> stays text, by the way.');
  await other.page.locator('#messages li.msg.theirs', { hasText: 'markup' }).waitFor();
  await other.page.locator('#composer-input').pressSequentially('On my way', { delay: 20 });
  await page.locator('#typing', { hasText: 'typing' }).waitFor();
  await page.locator('#messages li.msg.mine[data-state="read"]').last().waitFor();
  await shot('chat');
  await page.setViewportSize({ width: 390, height: 844 });
  await shot('chat-mobile');
  await page.click('#back');
  await shot('chat-mobile-list');
  await page.setViewportSize({ width: 1200, height: 900 });
  await page.locator('#conversations button.conv[data-peer="bob"]').click();
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('chat-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  // bob's keys change: alice's page blocks sending and shows both safety numbers
  await rotateKeysInPage(other.page, 'bob password 12345');
  await other.context.close();
  await page.reload();
  await waitForChat(page);
  await page.locator('#conversations button.conv[data-peer="bob"]').click();
  await page.locator('#key-log li[data-version="2"]').waitFor();
  await shot('chat-key-changed');
  await page.setViewportSize({ width: 390, height: 844 });
  await shot('chat-key-changed-mobile');
  await page.setViewportSize({ width: 1200, height: 900 });

  await page.click('#open-settings');
  await shot('chat-settings');
  await page.click('#sign-out');
  await page.waitForURL(/login\.html/);
  await shot('login-signed-out');
  await loginViaUi(page, server.url, 'alice', 'wrong password here');
  await page.locator('#form-error').filter({ hasText: /\S/ }).waitFor();
  await shot('login-wrong-password');
  await page.goto(`${server.url}/login.html`);
  await shot('login');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('login-dark');
  console.log(`screenshots in ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
