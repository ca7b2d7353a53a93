// Benchmark: opening a conversation of 1,000 messages in headless Chromium (issue #17).
//   node tools/open-bench.mjs [messages=1000] [runs=5]
// Starts its own server like the browser tests do, has bob write `messages` messages to alice
// through the page, then on alice's page measures, in the page's own clock
// (performance.now()): the click on the conversation -> the newest 50 messages shown opened
// (data-status="ok"), and the scroll to the top -> 50 older ones shown (infinite scroll). Each
// run reloads the page first (nothing cached in memory). Prints the numbers, the median last.
import { startServer } from '../browser/server.mjs';
import { launchBrowser, newPage, openFromDirectory, registerViaUi, send, waitForChat, waitState } from '../browser/helpers.mjs';

const COUNT = Number(process.argv[2] ?? 1000);
const RUNS = Number(process.argv[3] ?? 5);
const PW = 'bench password 123456';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const server = await startServer();
const browser = await launchBrowser();
try {
  const alice = await newPage(browser);
  const bob = await newPage(browser);
  await registerViaUi(alice.page, server.url, 'alice', PW);
  await registerViaUi(bob.page, server.url, 'bob', PW);
  await Promise.all([waitForChat(alice.page), waitForChat(bob.page)]);
  await alice.page.setViewportSize({ width: 1280, height: 800 });

  const seeded = Date.now();
  await openFromDirectory(bob.page, 'alice');
  for (let i = 1; i <= COUNT; i++) await send(bob.page, `message ${i} of ${COUNT}: the quick brown fox jumps over the lazy dog`);
  await waitState(bob.page, `message ${COUNT} of ${COUNT}: the quick brown fox jumps over the lazy dog`, 'delivered');
  console.log(`seeded ${COUNT} messages in ${((Date.now() - seeded) / 1000).toFixed(1)} s`);

  const open = [];
  const older = [];
  const a = alice.page;
  for (let run = 0; run < RUNS; run++) {
    await a.reload();
    await waitForChat(a);
    const row = a.locator('#conversations button.conv[data-peer="bob"]');
    await row.waitFor();
    // the clock starts in the page, at the click
    await a.evaluate(() => {
      window.__bench = {};
      document.querySelector('#conversations').addEventListener('click', () => { window.__bench.clicked = performance.now(); }, { capture: true, once: true });
    });
    await row.click();
    const openMs = await a.evaluate(
      () =>
        new Promise((resolve) => {
          const check = () => {
            const ok = document.querySelectorAll('#messages li.msg[data-status="ok"]').length;
            const last = document.querySelector('#messages li.msg:last-of-type');
            if (ok >= 50 && last?.dataset.status === 'ok') resolve(performance.now() - window.__bench.clicked);
            else requestAnimationFrame(check);
          };
          check();
        }),
    );
    open.push(openMs);
    const olderMs = await a.evaluate(
      () =>
        new Promise((resolve) => {
          const list = document.querySelector('#messages');
          const before = list.querySelectorAll('li.msg[data-status="ok"]').length;
          const started = performance.now();
          list.scrollTop = 0;
          const check = () => {
            if (list.querySelectorAll('li.msg[data-status="ok"]').length >= before + 50) resolve(performance.now() - started);
            else requestAnimationFrame(check);
          };
          check();
        }),
    );
    older.push(olderMs);
    console.log(`run ${run + 1}: newest 50 shown ${openMs.toFixed(0)} ms after the click; 50 older ${olderMs.toFixed(0)} ms after scrolling to the top`);
  }
  console.log(`median of ${RUNS}: open ${median(open).toFixed(0)} ms, scroll back ${median(older).toFixed(0)} ms`);
} finally {
  await browser.close();
  await server.stop();
}
