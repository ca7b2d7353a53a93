// Encrypted files in headless Chromium against the real server (issue #14 item 7): alice
// attaches a 20 MiB random file, the progress bar moves, bob sees it with its decrypted name,
// downloads it and the saved bytes have the same SHA-256; an image shows an inline preview for
// both; the network cut mid-upload (PATCHes aborted with page.route) and the upload resumes
// from the server's offset and finishes intact; a manifest the server tampers with shows as
// refused and never with its name; a file over the server's max_file_bytes is refused before
// anything is uploaded.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { crc32, deflateSync } from 'node:zlib';
import { assertClean, launchBrowser, newPage, openFromDirectory, registerViaUi, waitForChat } from './helpers.mjs';
import { startServer } from './server.mjs';

const PW = { alice: 'alice password 1234', bob: 'bob password 123456' };
const MIB = 1024 * 1024;
const MAX_FILE_BYTES = 24 * MIB;

/** A 2x2 RGB PNG (red, green / blue, white). */
function png() {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(2, 0);
  ihdr.writeUInt32BE(2, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = Buffer.from([0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
const PNG = png();

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** Problems other than the network failures a test provokes on purpose. */
function assertCleanExcept(problems, pattern) {
  assertClean(problems.filter((p) => !pattern.test(p.text)));
}

/** Records, inside the page, every state and progress value of the upload rows. */
async function watchUploads(page) {
  await page.evaluate(() => {
    window.__uploads = { states: [], fractions: [] };
    const seen = () => {
      for (const li of document.querySelectorAll('#uploads li.upload')) {
        window.__uploads.states.push(li.dataset.state);
        const bar = li.querySelector('progress');
        if (bar) window.__uploads.fractions.push(Number(bar.value));
      }
    };
    new MutationObserver(seen).observe(document.getElementById('uploads'), { subtree: true, childList: true, attributes: true, characterData: true });
  });
}

async function watched(page) {
  return page.evaluate(() => window.__uploads);
}

function fileRow(page, name) {
  return page.locator('#files li.file[data-status="ok"]').filter({ has: page.locator('[data-role="file-name"]', { hasText: name }) });
}

async function attach(page, name, mimeType, buffer) {
  await page.locator('#attach').waitFor();
  await page.setInputFiles('#attach-input', { name, mimeType, buffer });
}

/** "Pick the file" on an interrupted upload's row, answered in the browser's file chooser. */
async function pickAgain(page, row, buffer) {
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), row.locator('button[data-action="pick"]').click()]);
  await chooser.setFiles({ name: 'reloaded.bin', mimeType: 'application/octet-stream', buffer });
}

/** Downloads a file from its row and returns the bytes the browser saved. */
async function downloadBytes(page, name) {
  const row = fileRow(page, name);
  await row.waitFor();
  // give finalize a moment to say otherwise, then name the server's verdict if it is not "ready"
  await page.waitForTimeout(500);
  const state = await row.getAttribute('data-state');
  assert.equal(state, 'ready', `the server lists ${name} as ${state} (its finalize_upload / scrub said so), so it cannot be downloaded`);
  await row.locator('button[data-action="download"]').click();
  const save = row.locator('button[data-action="save"]');
  await save.waitFor({ timeout: 120000 });
  const [download] = await Promise.all([page.waitForEvent('download'), save.click()]);
  assert.equal(download.suggestedFilename(), name);
  return readFile(await download.path());
}

describe('encrypted files in the browser', () => {
  let server;
  let browser;
  let alice;
  let bob;
  let imageId; // the server id of the image (the tamper test alters its manifest only)

  before(async () => {
    // this file's server has a small max_file_bytes (the too-large test)
    server = await startServer({ env: { SECURECHAT_FILES__MAX_FILE_BYTES: String(MAX_FILE_BYTES) } });
    browser = await launchBrowser();
    alice = await newPage(browser);
    bob = await newPage(browser);
    // no save dialog in a headless test: the page falls back to <a download>, which Playwright intercepts
    for (const p of [alice, bob]) await p.context.addInitScript(() => { window.showSaveFilePicker = undefined; });
    await registerViaUi(alice.page, server.url, 'alice', PW.alice);
    await registerViaUi(bob.page, server.url, 'bob', PW.bob);
    await Promise.all([waitForChat(alice.page), waitForChat(bob.page)]);
    await openFromDirectory(alice.page, 'bob');
    await openFromDirectory(bob.page, 'alice');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('alice sends a 20 MiB random file with a moving progress bar; bob downloads it and the saved bytes have its SHA-256', async () => {
    const a = alice.page;
    const b = bob.page;
    assert.equal(await a.locator('#attach').getAttribute('type'), 'button');
    assert.equal((await a.locator('#attach').innerText()).trim(), 'Attach file');
    const data = randomBytes(20 * MIB);
    await watchUploads(a);
    await attach(a, 'random.bin', 'application/octet-stream', data);
    await fileRow(a, 'random.bin').waitFor({ timeout: 180000 });
    const w = await watched(a);
    assert.ok(w.states.includes('sending'), `states seen: ${[...new Set(w.states)]}`);
    const moving = [...new Set(w.fractions.filter((f) => f > 0 && f < 1))];
    assert.ok(moving.length >= 2, `the progress bar moved through several values: ${moving}`);
    assert.equal(await a.locator('#uploads li.upload').count(), 0, 'the upload row is gone once the file is listed');

    // bob: live file_ready, decrypted name, size and type
    const row = fileRow(b, 'random.bin');
    await row.waitFor({ timeout: 60000 });
    const meta = await row.locator('.file-meta').first().innerText();
    assert.match(meta, /21\.0 MB · application\/octet-stream · alice sent/);
    const saved = await downloadBytes(b, 'random.bin');
    assert.equal(saved.length, data.length);
    assert.equal(sha(saved), sha(data));
    assertClean(alice.problems);
    assertClean(bob.problems);
  });

  test('an image shows an inline preview, decrypted in memory, on both sides', async () => {
    await attach(alice.page, 'dot.png', 'image/png', PNG);
    for (const page of [alice.page, bob.page]) {
      const img = fileRow(page, 'dot.png').locator('img.file-preview');
      await img.waitFor({ timeout: 60000 });
      assert.match(await img.getAttribute('src'), /^blob:/);
      await page.waitForFunction((el) => el.complete && el.naturalWidth === 2, await img.elementHandle());
      assert.equal(await img.getAttribute('alt'), 'Preview of dot.png');
    }
    imageId = await fileRow(bob.page, 'dot.png').getAttribute('data-id');
    assertClean(alice.problems);
    assertClean(bob.problems);
  });

  test('a file dropped on the conversation is sent like an attached one', async () => {
    const a = alice.page;
    await a.evaluate(() => {
      const zone = document.getElementById('conversation');
      const dt = new DataTransfer();
      dt.items.add(new File([new TextEncoder().encode('dropped text\n')], 'dropped.txt', { type: 'text/plain' }));
      zone.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt, bubbles: true, cancelable: true }));
      if (zone.dataset.dropping !== 'true') throw new Error('the conversation did not show the drop target');
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    assert.equal(await a.locator('#conversation').getAttribute('data-dropping'), 'false');
    const row = fileRow(bob.page, 'dropped.txt');
    await row.waitFor({ timeout: 60000 });
    assert.match(await row.locator('.file-meta').first().innerText(), /13 B · text\/plain · alice sent/);
    assertClean(alice.problems);
    assertClean(bob.problems);
  });

  test('the network is cut mid-upload (PATCHes aborted); the upload resumes from the server offset and arrives intact', async () => {
    const a = alice.page;
    const data = randomBytes(6 * MIB + 12345); // two PATCHes of ~4 MiB; the second is cut
    let patches = 0;
    let aborted = 0;
    await a.route(/\/api\/uploads\/[0-9a-f-]+$/, async (route) => {
      if (route.request().method() !== 'PATCH') return route.continue();
      patches++;
      // the second and third PATCH (one original and its first retry) never reach the server
      if (patches === 2 || patches === 3) {
        aborted++;
        return route.abort('connectionreset');
      }
      return route.continue();
    });
    await watchUploads(a);
    await attach(a, 'resumed.bin', 'application/octet-stream', data);
    await fileRow(a, 'resumed.bin').waitFor({ timeout: 180000 });
    await a.unroute(/\/api\/uploads\/[0-9a-f-]+$/);
    assert.equal(aborted, 2);
    const w = await watched(a);
    assert.ok(w.states.includes('retrying'), `the row showed the retry: ${[...new Set(w.states)]}`);
    const saved = await downloadBytes(bob.page, 'resumed.bin');
    assert.equal(sha(saved), sha(data));
    assertCleanExcept(alice.problems, /ERR_CONNECTION_RESET|ERR_FAILED/);
    alice.problems.length = 0; // the provoked network errors are checked; later tests start clean
    assertClean(bob.problems);
  });

  test('after a reload the interrupted upload waits for its file: another file is refused, the same one resumes and arrives intact', async () => {
    const a = alice.page;
    const data = randomBytes(6 * MIB + 777);
    let patches = 0;
    // the first PATCH lands, every later one fails until the page is reloaded
    await a.route(/\/api\/uploads\/[0-9a-f-]+$/, async (route) => {
      if (route.request().method() !== 'PATCH') return route.continue();
      patches++;
      return patches === 1 ? route.continue() : route.abort('connectionreset');
    });
    await watchUploads(a);
    await attach(a, 'reloaded.bin', 'application/octet-stream', data);
    await a.locator('#uploads li.upload[data-state="retrying"]').waitFor({ timeout: 60000 });
    await a.unroute(/\/api\/uploads\/[0-9a-f-]+$/);
    await a.reload();
    await a.locator('#app').waitFor({ state: 'visible' });
    assert.match(await a.locator('#app-status').innerText(), /Unfinished uploads to bob/);
    await openFromDirectory(a, 'bob');
    const row = a.locator('#uploads li.upload[data-state="needs_file"]');
    await row.waitFor();
    assert.match(await row.innerText(), /reloaded\.bin/);
    // another file of the same size is refused
    const other = Buffer.from(data);
    other[12345] ^= 0xff;
    await pickAgain(a, row, other);
    await row.locator('.upload-error', { hasText: 'not the same file' }).waitFor({ timeout: 60000 });
    assert.equal(await row.getAttribute('data-state'), 'needs_file');
    // the same file resumes from the server's offset
    await pickAgain(a, row, data);
    await fileRow(a, 'reloaded.bin').waitFor({ timeout: 120000 });
    const saved = await downloadBytes(bob.page, 'reloaded.bin');
    assert.equal(sha(saved), sha(data));
    alice.problems.length = 0; // the aborted PATCHes before the reload
    assertClean(bob.problems);
  });

  test('a manifest the server tampers with shows as refused, never with its name', async () => {
    const b = bob.page;
    await b.route(/\/api\/conversations\/alice\/files/, async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      const files = body.files.map((f) => {
        if (f.id !== imageId) return f; // only the image's manifest is altered
        const sig = f.manifest.sig;
        const flipped = (sig[5] === 'A' ? 'B' : 'A');
        return { ...f, manifest: { ...f.manifest, sig: sig.slice(0, 5) + flipped + sig.slice(6) } };
      });
      await route.fulfill({ response, json: { ...body, files } });
    });
    await b.reload();
    await b.locator('#app').waitFor({ state: 'visible' });
    await openFromDirectory(b, 'alice');
    const refused = b.locator('#files li.file[data-status="refused"]');
    await refused.waitFor({ timeout: 30000 });
    assert.equal(await refused.count(), 1);
    assert.match(await refused.innerText(), /did not verify/);
    const listed = await b.locator('#files').innerText();
    assert.ok(!listed.includes('dot.png'), 'the refused file is never named');
    assert.equal(await refused.locator('button[data-action="download"]').count(), 0);
    // the untouched files still open
    await fileRow(b, 'random.bin').waitFor();
    await b.unroute(/\/api\/conversations\/alice\/files/);
    assertClean(bob.problems);
  });

  test('a file over the server’s max_file_bytes is refused before anything is encrypted or uploaded', async () => {
    const a = alice.page;
    const posts = [];
    const onRequest = (r) => {
      if (r.url().includes('/api/uploads')) posts.push(r.method());
    };
    a.on('request', onRequest);
    await attach(a, 'too-big.bin', 'application/octet-stream', Buffer.alloc(MAX_FILE_BYTES + 1));
    const row = a.locator('#uploads li.upload[data-state="failed"]');
    await row.waitFor({ timeout: 30000 });
    assert.match(await row.locator('.upload-error').innerText(), /too large/);
    a.off('request', onRequest);
    assert.deepEqual(posts, [], 'no upload request was made');
    await row.locator('button[data-action="cancel"]').click();
    await row.waitFor({ state: 'detached' });
    assertClean(alice.problems);
  });
});
