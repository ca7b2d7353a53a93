// Takes screenshots of the pages for a visual check: node tools/screenshots.mjs [outdir]
// (default /tmp/shots). Starts its own server like the browser tests do.
import { mkdir } from 'node:fs/promises';
import { startServer } from '../browser/server.mjs';
import { fingerprintOn, launchBrowser, loginViaUi, newPage, registerViaUi, waitForChat } from '../browser/helpers.mjs';

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
  await other.context.close();

  await page.fill('#search', 'b');
  await page.locator('#results button.user[data-username="bob"]').click();
  await fingerprintOn(page, '#safety-number');
  await shot('chat');
  await page.setViewportSize({ width: 390, height: 844 });
  await shot('chat-mobile');
  await page.setViewportSize({ width: 1200, height: 900 });

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
