// Browser encrypt+upload rate against the server's own upload rate (issue #14, BENCHMARKS.md
// "Browser encrypt+upload"): node tools/upload-bench.mjs [runs=3] [MiB=100]
// A tool, not a test. One server (SECURECHAT_BIN, e.g. target/release/securechat) and one
// headless Chromium (CHROMIUM, default /usr/bin/chromium) for the whole run; per run, interleaved:
//   browser: alice (signed in through the UI, conversation with bob open) attaches a random file
//     through the Attach input; timed in the page from the input's change event to the upload
//     row leaving (state "done": the last PATCH answered), with the hashing phase (data-state
//     "hashing" -> "sending") and every PATCH (resource timing) recorded;
//   node: the same number of ciphertext bytes sent with plain tus requests (POST with a manifest
//     sealed by files.js sealManifest, then PATCHes of the browser's size with Upload-Checksum
//     sha256 as the browser sends it); bodies and checksums made before the clock starts.
// MB = 10^6 bytes. Prints per run and the medians; the last line is RESULT key=value ...
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer } from '../browser/server.mjs';
import { chromium } from 'playwright-core';
import { ARGS, CHROMIUM, launchBrowser, newPage, openFromDirectory, registerViaUi, waitForChat } from '../browser/helpers.mjs';
import { Api } from '../../frontend/js/api.js';
import { register } from '../../frontend/js/auth.js';
import { encode as b64encode } from '../../frontend/js/b64.js';
import { DEFAULT_RECORD_SIZE, cipherSize, newFileKey, sealManifest, tusMetadata } from '../../frontend/js/files.js';
import { recordsPerPatch } from '../../frontend/js/uploads.js';

const RUNS = Number(process.argv[2] || 3);
const MIB = Number(process.argv[3] || 100);
const SIZE = MIB * 1024 * 1024;
const RECORD = DEFAULT_RECORD_SIZE;
const LENGTH = cipherSize(SIZE, RECORD);
const PASSWORD = 'bench password 12345';

const mb = (bytes, ms) => bytes / 1e6 / (ms / 1000);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f1 = (x) => x.toFixed(1);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Chromium driven over --remote-debugging-pipe with Target, Page, Runtime and DOM only. Playwright
 * enables the DevTools Network domain on every page, and with it attached Chromium spends ~0.4 s
 * per 4 MiB fetch() body (measured: ~45 ms without), so the timed runs must not go through it.
 */
class PipePage {
  static async open(userDataDir) {
    const child = spawn(CHROMIUM, [...ARGS, '--remote-debugging-pipe', `--user-data-dir=${userDataDir}`, 'about:blank'], {
      stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'],
    });
    const page = new PipePage(child);
    const { targetInfos } = await page.send('Target.getTargets');
    let target = targetInfos.find((t) => t.type === 'page');
    if (!target) target = await page.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await page.send('Target.attachToTarget', { targetId: target.targetId, flatten: true });
    page.sessionId = sessionId;
    return page;
  }

  constructor(child) {
    this.child = child;
    this.id = 0;
    this.waiting = new Map();
    let buffer = Buffer.alloc(0);
    child.stdio[4].on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      let end;
      while ((end = buffer.indexOf(0)) >= 0) {
        const msg = JSON.parse(buffer.subarray(0, end).toString('utf8'));
        buffer = buffer.subarray(end + 1);
        const w = this.waiting.get(msg.id);
        if (w) {
          this.waiting.delete(msg.id);
          if (msg.error) w.reject(new Error(`${w.method}: ${msg.error.message}`));
          else w.resolve(msg.result);
        }
      }
    });
  }

  send(method, params = {}, sessionId = undefined) {
    const id = ++this.id;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, method });
      this.child.stdio[3].write(JSON.stringify({ id, method, params, sessionId }) + '\0');
    });
  }

  async evaluate(fn, arg) {
    const { result, exceptionDetails } = await this.send(
      'Runtime.evaluate',
      { expression: `(${fn})(${arg === undefined ? '' : JSON.stringify(arg)})`, awaitPromise: true, returnByValue: true },
      this.sessionId,
    );
    if (exceptionDetails) throw new Error(`in page: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`);
    return result.value;
  }

  async waitForFunction(fn, arg, { timeout = 30000, polling = 100 } = {}) {
    const until = Date.now() + timeout;
    for (;;) {
      const v = await this.evaluate(fn, arg).catch(() => null);
      if (v) return v;
      if (Date.now() > until) throw new Error(`timed out waiting for ${fn}`);
      await sleep(polling);
    }
  }

  async goto(url) {
    await this.send('Page.navigate', { url }, this.sessionId);
  }

  async setInputFiles(selector, file) {
    const { root } = await this.send('DOM.getDocument', { depth: 0 }, this.sessionId);
    const { nodeId } = await this.send('DOM.querySelector', { nodeId: root.nodeId, selector }, this.sessionId);
    await this.send('DOM.setFileInputFiles', { nodeId, files: [file] }, this.sessionId);
  }

  async close() {
    await this.send('Browser.close').catch(() => {});
    this.child.kill();
  }
}

const server = await startServer({
  env: {
    SECURECHAT_FILES__MAX_FILE_BYTES: String(Math.max(LENGTH, 1073741824)),
    SECURECHAT_FILES__QUOTA_BYTES: String(1024 * 1024 * 1024 * 1024),
    SECURECHAT_FILES__MAX_UPLOADS_IN_FLIGHT: '16',
    SECURECHAT_AUTH__ACCESS_TTL_SECS: '86400',
  },
});
const DRIVER = process.env.BENCH_DRIVER || 'pipe'; // pipe (timed without DevTools Network) | playwright
const dir = await mkdtemp(path.join(tmpdir(), 'upload-bench-'));
let browser = null;
let pipe = null;
try {
  // ---------------------------------------------------------------- setup
  const api = () => new Api({ baseUrl: server.url });
  const nodeAlice = await register(api(), { username: 'nodealice', password: PASSWORD, iterations: 1000 });
  const nodeBob = await register(api(), { username: 'nodebob', password: PASSWORD, iterations: 1000 });
  // the PATCH size the browser will use (uploads.js does the same with the same answer)
  const limitsRes = await fetch(`${server.url}/api/files/limits`, { headers: { Authorization: `Bearer ${nodeAlice.access_token}` } });
  if (limitsRes.status !== 200) throw new Error(`GET /api/files/limits answered ${limitsRes.status}`);
  const limits = await limitsRes.json();
  if (limits.record_size !== RECORD) throw new Error(`the server's record_size is ${limits.record_size}, this tool assumes ${RECORD}`);
  const perPatch = recordsPerPatch(RECORD, limits.max_patch_bytes);
  const patchBytes = perPatch * (RECORD + 16);

  // bob from Node; alice through the UI (register page), in a profile kept on disk
  await register(api(), { username: 'bob', password: PASSWORD, iterations: 1000 });
  let page;
  let version;
  if (DRIVER === 'playwright') {
    browser = await launchBrowser();
    version = browser.version();
    const alice = await newPage(browser);
    await registerViaUi(alice.page, server.url, 'alice', PASSWORD);
    await waitForChat(alice.page);
    await openFromDirectory(alice.page, 'bob');
    await alice.page.locator('#attach').waitFor();
    page = alice.page;
  } else {
    const profile = path.join(dir, 'profile');
    const setup = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 60000 });
    version = setup.browser()?.version() ?? 'chromium';
    const alicePage = setup.pages()[0] ?? (await setup.newPage());
    await registerViaUi(alicePage, server.url, 'alice', PASSWORD);
    await waitForChat(alicePage);
    await setup.close();
    // the timed browser: the same profile (alice's session in IndexedDB), no Playwright attached
    pipe = await PipePage.open(profile);
    page = pipe;
    await page.goto(`${server.url}/chat.html`);
    await page.waitForFunction(() => {
      const app = document.getElementById('app');
      return app && !app.hidden && getComputedStyle(app).display !== 'none' && document.readyState === 'complete';
    });
    await page.evaluate(() => {
      const search = document.getElementById('search');
      search.value = 'bob';
      search.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await page.waitForFunction(() => document.querySelector('#results button.user[data-username="bob"]'));
    await page.evaluate(() => document.querySelector('#results button.user[data-username="bob"]').click());
    await page.waitForFunction(() => {
      const c = document.getElementById('conversation');
      return c && !c.hidden && getComputedStyle(c).display !== 'none' && document.getElementById('attach');
    });
  }

  const filePath = path.join(dir, 'random.bin');
  await writeFile(filePath, randomBytes(SIZE));

  // ciphertext-sized bodies for Node (pseudo-random, as the server cannot tell them from records)
  const cipher = randomBytes(LENGTH);
  const patches = [];
  for (let at = 0; at < LENGTH; at += patchBytes) {
    const body = cipher.subarray(at, Math.min(LENGTH, at + patchBytes));
    patches.push({ at, body, checksum: `sha256 ${createHash('sha256').update(body).digest('base64')}` });
  }

  console.log(`server ${server.url} (${process.env.SECURECHAT_BIN || 'target/debug/securechat'}), ${version}, driver ${DRIVER}`);
  console.log(`file ${SIZE} bytes plaintext, ${LENGTH} ciphertext, PATCHes of ${perPatch} records = ${patchBytes} bytes (${patches.length}), ${RUNS} runs`);

  // ---------------------------------------------------------------- browser side
  async function browserRun(n) {
    await page.evaluate(() => {
      // where the time goes: every Web Crypto encrypt/digest and every Blob read, with its span
      if (!window.__calls) {
        const wrap = (proto, name, kind) => {
          const orig = proto[name];
          proto[name] = function (...args) {
            const start = performance.now();
            const p = orig.apply(this, args);
            p.then(() => window.__calls.push({ kind, start, end: performance.now() }), () => {});
            return p;
          };
        };
        wrap(SubtleCrypto.prototype, 'encrypt', 'encrypt');
        wrap(SubtleCrypto.prototype, 'digest', 'digest');
        wrap(Blob.prototype, 'arrayBuffer', 'read');
      }
      window.__calls = [];
      performance.clearResourceTimings();
      performance.setResourceTimingBufferSize(100000);
      const t = (window.__bench = { pick: null, states: [], gone: null, listed: null, seen: new Set() });
      document.getElementById('attach-input').addEventListener('change', () => (t.pick ??= performance.now()), { capture: true, once: true });
      t.before = new Set([...document.querySelectorAll('#files li.file')]);
      const obs = new MutationObserver(() => {
        const now = performance.now();
        for (const li of document.querySelectorAll('#uploads li.upload')) {
          t.seen.add(li);
          const last = t.states.at(-1)?.state;
          if (li.dataset.state !== last) t.states.push({ state: li.dataset.state, t: now });
        }
        if (t.gone === null && t.seen.size && ![...t.seen].some((li) => li.isConnected)) t.gone = now;
        if (t.listed === null && [...document.querySelectorAll('#files li.file[data-status="ok"]')].some((li) => !t.before.has(li))) t.listed = now;
        if (t.gone !== null && t.listed !== null) obs.disconnect();
      });
      obs.observe(document.getElementById('app'), { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state', 'data-status'] });
    });
    let cdp = null;
    if (process.env.BENCH_CPU_PROFILE && page.context) {
      cdp = await page.context().newCDPSession(page);
      await cdp.send('Profiler.enable');
      await cdp.send('Profiler.setSamplingInterval', { interval: 1000 });
      await cdp.send('Profiler.start');
    }
    await page.setInputFiles('#attach-input', filePath);
    await page.waitForFunction(() => window.__bench.gone !== null && window.__bench.listed !== null, null, { timeout: 600000, polling: 200 });
    if (cdp) {
      const { profile } = await cdp.send('Profiler.stop');
      await writeFile(process.env.BENCH_CPU_PROFILE, JSON.stringify(profile));
      const self = new Map();
      const byId = new Map(profile.nodes.map((n) => [n.id, n]));
      const dt = profile.timeDeltas;
      profile.samples.forEach((id, i) => {
        const n = byId.get(id);
        const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber + 1}`;
        self.set(k, (self.get(k) ?? 0) + (dt[i] ?? 0) / 1000);
      });
      const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 15);
      console.log('  main-thread self time (ms):\n' + top.map(([k, v]) => `    ${v.toFixed(0).padStart(7)} ${k}`).join('\n'));
    }
    const t = await page.evaluate(() => {
      const b = window.__bench;
      const res = performance
        .getEntriesByType('resource')
        .filter((e) => /\/api\/uploads(\/|$)/.test(new URL(e.name).pathname))
        .map((e) => ({ path: new URL(e.name).pathname, start: e.startTime, end: e.responseEnd }));
      return { pick: b.pick, states: b.states, gone: b.gone, listed: b.listed, res, calls: window.__calls };
    });
    const failed = t.states.find((s) => s.state === 'failed');
    if (failed) throw new Error(`browser run ${n}: the upload failed`);
    const at = (state) => t.states.find((s) => s.state === state)?.t ?? null;
    const hashStart = at('hashing');
    const sendStart = at('sending');
    const patchesSeen = t.res.filter((r) => r.path !== '/api/uploads');
    const post = t.res.find((r) => r.path === '/api/uploads');
    const patchMs = patchesSeen.reduce((s, r) => s + (r.end - r.start), 0);
    // between PATCHes: reading the slice, sealing its records, the body's SHA-256 (Upload-Checksum)
    let gapsMs = sendStart !== null && patchesSeen.length ? patchesSeen[0].start - sendStart : 0;
    for (let i = 1; i < patchesSeen.length; i++) gapsMs += patchesSeen[i].start - patchesSeen[i - 1].end;
    const spent = (kind, from, to) =>
      t.calls.filter((c) => c.kind === kind && c.start >= from && c.end <= to).reduce((s, c) => s + (c.end - c.start), 0);
    const lastPatchEnd = patchesSeen.at(-1)?.end ?? t.gone;
    return {
      lastPatchMs: lastPatchEnd - t.pick,
      hashReadMs: spent('read', hashStart, sendStart),
      sendReadMs: spent('read', sendStart, t.gone),
      encryptMs: spent('encrypt', sendStart, t.gone),
      encrypts: t.calls.filter((c) => c.kind === 'encrypt' && c.start >= sendStart).length,
      digestMs: spent('digest', sendStart, t.gone),
      totalMs: t.gone - t.pick,
      listedMs: t.listed - t.pick,
      checkMs: hashStart - t.pick,
      hashMs: sendStart - hashStart, // includes the manifest sealing and the POST (after hashing)
      postMs: post ? post.end - post.start : null,
      sendMs: t.gone - sendStart,
      patchMs,
      gapsMs,
      patches: patchesSeen.length,
    };
  }

  // ---------------------------------------------------------------- node side (plain tus)
  async function nodeRun() {
    const fileKey = await newFileKey();
    const fileId = crypto.randomUUID();
    const envelope = await sealManifest({
      from: nodeAlice.username,
      to: nodeBob.username,
      signKey: nodeAlice.signPrivateKey,
      readers: { [nodeAlice.username]: nodeAlice.encPublicKey, [nodeBob.username]: nodeBob.encPublicKey },
      manifest: {
        file_id: fileId,
        name: 'random.bin',
        mime: 'application/octet-stream',
        size: SIZE,
        sha256: b64encode(randomBytes(32)), // not the bodies' digest: only the recipient could tell
        record_size: RECORD,
        nonce: b64encode(fileKey.nonce),
        file_key: b64encode(fileKey.raw),
      },
    });
    const metadata = tusMetadata({ recipient: nodeBob.username, fileId, recordSize: RECORD, manifest: envelope });
    const auth = { Authorization: `Bearer ${nodeAlice.access_token}`, 'Tus-Resumable': '1.0.0' };
    const t0 = performance.now();
    const created = await fetch(`${server.url}/api/uploads`, { method: 'POST', headers: { ...auth, 'Upload-Length': String(LENGTH), 'Upload-Metadata': metadata } });
    if (created.status !== 201) throw new Error(`POST answered ${created.status}: ${await created.text()}`);
    const url = new URL(created.headers.get('Location'), server.url).href;
    for (const p of patches) {
      const res = await fetch(url, {
        method: 'PATCH',
        headers: { ...auth, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(p.at), 'Upload-Checksum': p.checksum },
        body: p.body,
      });
      if (res.status !== 204) throw new Error(`PATCH at ${p.at} answered ${res.status}: ${await res.text()}`);
    }
    return { totalMs: performance.now() - t0 };
  }

  // ---------------------------------------------------------------- runs, interleaved
  const rows = [];
  for (let n = 1; n <= RUNS; n++) {
    const order = n % 2 ? ['browser', 'node'] : ['node', 'browser'];
    const r = {};
    for (const side of order) r[side] = side === 'browser' ? await browserRun(n) : await nodeRun();
    const b = r.browser;
    const row = {
      n,
      browserPlain: mb(SIZE, b.totalMs),
      browserCipher: mb(LENGTH, b.totalMs),
      hash: mb(SIZE, b.hashMs),
      server: mb(LENGTH, r.node.totalMs),
      ...b,
    };
    row.ratio = row.browserCipher / row.server;
    rows.push(row);
    console.log(
      `run ${n} (${order.join(' then ')}): browser ${f1(b.totalMs / 1000)} s = ${f1(row.browserPlain)} MB/s plaintext, ${f1(row.browserCipher)} MB/s ciphertext ` +
        `(file listed after ${f1(b.listedMs / 1000)} s); server (node tus) ${f1(r.node.totalMs / 1000)} s = ${f1(row.server)} MB/s; ratio ${row.ratio.toFixed(2)}`,
    );
    console.log(
      `  browser phases: limits ${f1(b.checkMs)} ms; hashing+seal manifest+POST ${f1(b.hashMs / 1000)} s (${f1(row.hash)} MB/s of plaintext, POST ${f1(b.postMs ?? NaN)} ms); ` +
        `sending ${f1(b.sendMs / 1000)} s = ${b.patches} PATCHes in flight ${f1(b.patchMs / 1000)} s + read/seal/checksum between them ${f1(b.gapsMs / 1000)} s; ` +
        `last PATCH answered at ${f1(b.lastPatchMs / 1000)} s, row gone at ${f1(b.totalMs / 1000)} s`,
    );
    console.log(
      `  inside: hashing = File reads ${f1(b.hashReadMs / 1000)} s + JS SHA-256 ${f1((b.hashMs - b.hashReadMs - (b.postMs ?? 0)) / 1000)} s (incl. manifest); ` +
        `sending = File reads ${f1(b.sendReadMs / 1000)} s, AES-GCM ${b.encrypts} × encrypt ${f1(b.encryptMs / 1000)} s (${f1(mb(SIZE, b.encryptMs))} MB/s), ` +
        `Upload-Checksum digests ${f1(b.digestMs / 1000)} s`,
    );
  }
  const med = (k) => median(rows.map((r) => r[k]));
  console.log(
    `median of ${RUNS}: browser ${f1(med('browserPlain'))} MB/s plaintext, ${f1(med('browserCipher'))} MB/s ciphertext; hashing ${f1(med('hash'))} MB/s; ` +
      `server ${f1(med('server'))} MB/s; ratio ${med('ratio').toFixed(2)} (target >= 0.50); ` +
      `browser sending phase: PATCHes ${f1(med('patchMs') / 1000)} s, between them ${f1(med('gapsMs') / 1000)} s`,
  );
  console.log(
    `RESULT runs=${RUNS} mib=${MIB} browser_plain_mbps=${f1(med('browserPlain'))} browser_cipher_mbps=${f1(med('browserCipher'))} hash_mbps=${f1(med('hash'))} ` +
      `server_mbps=${f1(med('server'))} ratio=${med('ratio').toFixed(3)} ratios=${rows.map((r) => r.ratio.toFixed(3)).join(',')}`,
  );
} finally {
  await pipe?.close();
  await browser?.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}
