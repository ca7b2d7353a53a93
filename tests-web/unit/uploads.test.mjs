// frontend/js/uploads.js against an in-memory tus server (a fake fetch): limits refused before
// any byte is read or sent, PATCHes of whole records under the target with a correct
// Upload-Checksum, resume from the server's offset after a dropped PATCH, pause / resume,
// cancel (DELETE), and a restored upload that insists on the same file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { frontendModule } from './paths.mjs';

const { Api } = await frontendModule('api.js');
const up = await frontendModule('uploads.js');
const files = await frontendModule('files.js');

const RS = 1024; // small records keep the tests fast
const C = RS + 16;

function tusServer({ maxFile = 1 << 30, maxPatch = 1 << 30, maySend = true, failPatches = new Set(), partialOnFail = 0, answers = {} } = {}) {
  const uploads = new Map();
  const calls = [];
  let patchNo = 0;
  const fetch = async (url, init = {}) => {
    const method = init.method ?? 'GET';
    const h = Object.fromEntries(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    calls.push({ method, url, headers: h, bodyLength: init.body?.length ?? 0 });
    if (url === '/api/files/limits') {
      return Response.json({ may_send: maySend, max_file_bytes: maxFile, max_patch_bytes: maxPatch, quota_bytes: 1 << 30, used_bytes: 0, max_uploads_in_flight: 5, uploads_in_flight: 0, upload_expiry_secs: 86400, retention_secs: 0, record_size: RS });
    }
    assert.equal(h['tus-resumable'], '1.0.0');
    assert.equal(h.authorization, 'Bearer t');
    if (method === 'POST') {
      const id = crypto.randomUUID();
      uploads.set(id, { length: Number(h['upload-length']), data: new Uint8Array(0), metadata: files.parseTusMetadata(h['upload-metadata']) });
      return new Response(null, { status: 201, headers: { Location: `/api/uploads/${id}` } });
    }
    const id = url.split('/').at(-1);
    const u = uploads.get(id);
    if (!u) return Response.json({ error: { code: 'not_found', message: 'x' } }, { status: 404 });
    if (method === 'HEAD') return new Response(null, { status: 200, headers: { 'Upload-Offset': String(u.data.length), 'Upload-Length': String(u.length) } });
    if (method === 'DELETE') {
      uploads.delete(id);
      return new Response(null, { status: 204 });
    }
    if (method === 'PATCH') {
      patchNo++;
      assert.equal(h['content-type'], 'application/offset+octet-stream');
      if (Number(h['upload-offset']) !== u.data.length) return Response.json({ error: { code: 'offset_mismatch', message: 'x' } }, { status: 409 });
      const body = init.body;
      const want = `sha256 ${createHash('sha256').update(body).digest('base64')}`;
      assert.equal(h['upload-checksum'], want);
      if (answers[patchNo]) {
        const [status, code, headers = {}] = answers[patchNo];
        return Response.json({ error: { code, message: 'x' } }, { status, headers });
      }
      if (failPatches.has(patchNo)) {
        // the connection drops; a server without a checksum would keep whole records only
        if (partialOnFail) u.data = Buffer.concat([u.data, body.subarray(0, partialOnFail)]);
        throw new TypeError('Failed to fetch');
      }
      u.data = Buffer.concat([u.data, body]);
      return new Response(null, { status: 204, headers: { 'Upload-Offset': String(u.data.length) } });
    }
    throw new Error(`unexpected ${method} ${url}`);
  };
  return { fetch, calls, uploads };
}

function api(fetch) {
  return new Api({ fetch, tokens: { access_token: 't', refresh_token: 'r', access_expires_at: 0 } });
}

const timers = { setTimeout: (fn) => setTimeout(fn, 0), clearTimeout: (t) => clearTimeout(t) };
const fakeEnvelope = { v: 1, id: crypto.randomUUID(), from: 'alice', to: 'bob', sent_at: 1, iv: 'AAAAAAAAAAAAAAAA', ct: 'AA', keys: {}, sig: 'AA' };

function memoryStore() {
  const map = new Map();
  return { map, put: async (k, v) => void map.set(k, v), delete: async (k) => void map.delete(k), list: async () => [...map.values()] };
}

function newUpload(server, data, extra = {}) {
  const sealed = [];
  const upload = new up.Upload({
    api: api(server.fetch),
    me: 'alice',
    peer: 'bob',
    file: new Blob([data], { type: 'application/x-test' }),
    sealManifest: async (peer, manifest) => {
      sealed.push({ peer, manifest: { ...manifest } });
      return fakeEnvelope;
    },
    timers,
    random: () => 0,
    patchTargetBytes: 5 * C + 100,
    ...extra,
  });
  return { upload, sealed };
}

/** Opens the stored ciphertext with the manifest the upload sealed: the original bytes back. */
async function openStored(stored, manifest) {
  const opener = new files.RecordOpener({
    key: await files.importFileKey(Buffer.from(manifest.file_key, 'base64url')),
    nonce: new Uint8Array(Buffer.from(manifest.nonce, 'base64url')),
    fileId: manifest.file_id,
    size: manifest.size,
    recordSize: manifest.record_size,
  });
  const out = await opener.push(new Uint8Array(stored));
  opener.finish();
  return Buffer.concat(out);
}

test('batching: whole records up to the target, capped by max_patch_bytes, at least one', () => {
  assert.equal(up.recordsPerPatch(65536, 1 << 30), Math.floor(up.PATCH_TARGET_BYTES / 65552));
  assert.equal(up.recordsPerPatch(65536, 3 * 65552 + 5), 3);
  assert.equal(up.recordsPerPatch(1024, null, 100), 1);
  assert.throws(() => up.recordsPerPatch(65536, 60000), (e) => e.code === 'patch_limit');
  const b = up.batchRecords(2, 5, 5000, 1024);
  assert.deepEqual(b.map((r) => [r.index, r.start, r.end, r.last]), [[2, 2048, 3072, false], [3, 3072, 4096, false], [4, 4096, 5000, true]]);
  assert.deepEqual(up.batchRecords(0, 3, 0, 1024).map((r) => [r.index, r.start, r.end, r.last]), [[0, 0, 0, true]]);
});

test('resume offsets: record boundaries map to a record index, the length means done, anything else is refused', () => {
  assert.deepEqual(up.resumePoint(0, 5000, 1024), { index: 0, plainOffset: 0, done: false });
  assert.deepEqual(up.resumePoint(3 * 1040, 5000, 1024), { index: 3, plainOffset: 3072, done: false });
  assert.deepEqual(up.resumePoint(5000 + 5 * 16, 5000, 1024), { index: 5, plainOffset: 5000, done: true });
  assert.deepEqual(up.resumePoint(16, 0, 1024), { index: 1, plainOffset: 0, done: true });
  for (const bad of [1, 1039, 1041, 5081, -1, 1.5]) assert.throws(() => up.resumePoint(bad, 5000, 1024), (e) => e.code === 'bad_offset', `offset ${bad}`);
});

test('limits: not allowed, too large, over quota and too many in flight are refused with their code', () => {
  const base = { may_send: true, max_file_bytes: 10000, quota_bytes: 100000, used_bytes: 0, max_uploads_in_flight: 2, uploads_in_flight: 0 };
  assert.equal(up.limitsRefusal(base, 5000, 1024), null);
  assert.equal(up.limitsRefusal({ ...base, may_send: false }, 5, 1024).code, 'files_not_allowed');
  assert.equal(up.limitsRefusal(base, 9990, 1024).code, 'file_too_large'); // 9990 + 16*10 > 10000
  assert.equal(up.limitsRefusal({ ...base, used_bytes: 96000 }, 5000, 1024).code, 'quota_exceeded');
  assert.equal(up.limitsRefusal({ ...base, uploads_in_flight: 2 }, 5, 1024).code, 'too_many_uploads');
  assert.match(up.limitsRefusal(base, 20000, 1024).message, /too large/);
});

test('an upload sends whole records in PATCHes under the target, each with its checksum, and the ciphertext opens to the file', async () => {
  const data = randomBytes(23 * RS + 77);
  const server = tusServer();
  const { upload, sealed } = newUpload(server, data);
  const store = memoryStore();
  upload.store = store;
  let storedDuring = 0;
  upload.addEventListener('change', () => (storedDuring = Math.max(storedDuring, store.map.size)));
  await upload.start();
  assert.equal(upload.state, 'done', upload.error?.message);
  const patches = server.calls.filter((c) => c.method === 'PATCH');
  assert.equal(patches.length, Math.ceil(24 / 5));
  for (const p of patches.slice(0, -1)) assert.equal(p.bodyLength, 5 * C);
  assert.equal(sealed.length, 1);
  const m = sealed[0].manifest;
  assert.equal(m.size, data.length);
  assert.equal(m.sha256, createHash('sha256').update(data).digest('base64url'));
  const [u] = server.uploads.values();
  assert.equal(u.length, files.cipherSize(data.length, RS));
  assert.equal(u.metadata.recipient, 'bob');
  assert.equal(u.metadata.file_id, upload.rec.file_id);
  assert.equal(u.metadata.record_size, String(RS));
  assert.equal(storedDuring, 1, 'the upload was remembered while it ran');
  assert.equal(store.map.size, 0, 'and forgotten when done');
  assert.equal(upload.progress().fraction, 1);
});

test('the manifest handed to sealing carries the file key; the ciphertext opens with it to the same bytes', async () => {
  const data = randomBytes(7 * RS + 3);
  const server = tusServer();
  let manifest;
  const { upload } = newUpload(server, data, {
    sealManifest: async (_peer, mf) => {
      manifest = structuredClone(mf);
      return fakeEnvelope;
    },
  });
  await upload.start();
  assert.equal(upload.state, 'done');
  const [u] = server.uploads.values();
  assert.deepEqual(await openStored(u.data, manifest), data);
});

test('a PATCH that drops mid-way is followed by HEAD and the upload continues from the server offset', async () => {
  const data = randomBytes(23 * RS + 77);
  const server = tusServer({ failPatches: new Set([2, 3]) });
  let manifest;
  const { upload } = newUpload(server, data, { sealManifest: async (_p, mf) => ((manifest = structuredClone(mf)), fakeEnvelope) });
  const states = [];
  upload.addEventListener('change', () => states.push(upload.state));
  await upload.start();
  assert.equal(upload.state, 'done', upload.error?.message);
  assert.ok(states.includes('retrying'));
  const methods = server.calls.map((c) => c.method).filter((m) => m !== 'GET');
  assert.deepEqual(methods.slice(0, 6), ['POST', 'PATCH', 'PATCH', 'HEAD', 'PATCH', 'HEAD']);
  const [u] = server.uploads.values();
  assert.deepEqual(await openStored(u.data, manifest), data);
});

test('a refused file never reaches POST: too large, and not allowed', async () => {
  for (const opts of [{ maxFile: 1000 }, { maySend: false }]) {
    const server = tusServer(opts);
    const { upload, sealed } = newUpload(server, randomBytes(2000));
    await upload.start();
    assert.equal(upload.state, 'failed');
    assert.ok(['file_too_large', 'files_not_allowed'].includes(upload.error.code));
    assert.equal(sealed.length, 0);
    assert.deepEqual(server.calls.map((c) => c.method), ['GET']);
  }
});

test('pause stops after the PATCH in flight; resume asks HEAD and finishes; cancel sends DELETE', async () => {
  const data = randomBytes(30 * RS);
  const server = tusServer();
  let manifest;
  const { upload } = newUpload(server, data, { sealManifest: async (_p, mf) => ((manifest = structuredClone(mf)), fakeEnvelope) });
  let paused = false;
  upload.addEventListener('change', () => {
    if (!paused && upload.offset >= 5 * C) {
      paused = true;
      upload.pause();
    }
  });
  await upload.start();
  assert.equal(upload.state, 'paused');
  const sentBefore = server.calls.filter((c) => c.method === 'PATCH').length;
  await upload.resume();
  assert.equal(upload.state, 'done');
  const after = server.calls.filter((c) => c.method !== 'GET').map((c) => c.method);
  assert.equal(after[sentBefore + 1], 'HEAD');
  const [u] = server.uploads.values();
  assert.deepEqual(await openStored(u.data, manifest), data);

  const server2 = tusServer();
  const { upload: u2 } = newUpload(server2, data);
  let cancelled = false;
  u2.addEventListener('change', () => {
    if (!cancelled && u2.offset > 0) {
      cancelled = true;
      u2.cancel();
    }
  });
  await u2.start();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(u2.state, 'cancelled');
  assert.ok(server2.calls.some((c) => c.method === 'DELETE'));
  assert.equal(server2.uploads.size, 0);
});

test('after a reload the stored upload needs the same file: another file is refused, the same one resumes from HEAD', async () => {
  const data = randomBytes(12 * RS + 5);
  const server = tusServer();
  const store = memoryStore();
  let manifest;
  const { upload } = newUpload(server, data, { store, sealManifest: async (_p, mf) => ((manifest = structuredClone(mf)), fakeEnvelope) });
  upload.addEventListener('change', () => {
    if (upload.offset >= 5 * C && upload.state === 'sending') upload.pause();
  });
  await upload.start();
  assert.equal(upload.state, 'paused');
  assert.equal(store.map.size, 1);
  const record = [...store.map.values()][0];
  assert.equal(typeof record.upload_url, 'string');
  assert.ok(record.file_key instanceof CryptoKey && !record.file_key.extractable);

  // "the page reloaded": a new Uploads restores it
  const uploads = new up.Uploads({ api: api(server.fetch), me: 'alice', sealManifest: async () => fakeEnvelope, store, timers });
  const [restored] = await uploads.restore();
  assert.equal(restored.state, 'needs_file');
  assert.equal(restored.name, record.name);
  const other = Buffer.from(data);
  other[100] ^= 1;
  await restored.attach(new Blob([other]));
  assert.equal(restored.state, 'needs_file');
  assert.equal(restored.error.code, 'file_changed');
  await restored.attach(new Blob([data.subarray(1)]));
  assert.equal(restored.error.code, 'file_changed');
  const before = server.calls.length;
  await restored.attach(new Blob([data]));
  assert.equal(restored.state, 'done', restored.error?.message);
  assert.equal(server.calls[before].method, 'HEAD');
  const [u] = server.uploads.values();
  assert.deepEqual(await openStored(u.data, manifest), data);
  assert.equal(store.map.size, 0);
});

test('speed and time left come from a sliding window', () => {
  const r = up.rate([{ t: 0, bytes: 0 }, { t: 1000, bytes: 1000 }, { t: 2000, bytes: 2000 }], 10000, 2000);
  assert.equal(r.speed, 1000);
  assert.equal(r.eta, 8);
  assert.deepEqual(up.rate([{ t: 0, bytes: 0 }], 10, 0), { speed: 0, eta: null });
  assert.equal(up.formatBytes(999), '999 B');
  assert.equal(up.formatBytes(20971520), '21.0 MB');
});

test('a 460 checksum mismatch is sent again after HEAD; a 410 expired upload stops and is forgotten', async () => {
  const data = randomBytes(12 * RS);
  const server = tusServer({ answers: { 2: [460, 'checksum_mismatch'] } });
  let manifest;
  const { upload } = newUpload(server, data, { sealManifest: async (_p, mf) => ((manifest = structuredClone(mf)), fakeEnvelope) });
  await upload.start();
  assert.equal(upload.state, 'done', upload.error?.message);
  const [u] = server.uploads.values();
  assert.deepEqual(await openStored(u.data, manifest), data);

  const store = memoryStore();
  const server2 = tusServer({ answers: { 2: [410, 'upload_expired'] } });
  const { upload: u2 } = newUpload(server2, data, { store });
  await u2.start();
  assert.equal(u2.state, 'failed');
  assert.equal(u2.error.code, 'upload_expired');
  assert.match(u2.error.message, /expired/);
  assert.equal(store.map.size, 0);
  assert.equal(server2.calls.filter((c) => c.method === 'PATCH').length, 2);
});

test('a 429 waits at least the Retry-After the server asked for, then the upload goes on', async () => {
  const data = randomBytes(12 * RS);
  const server = tusServer({ answers: { 2: [429, 'rate_limited', { 'Retry-After': '7' }] } });
  const delays = [];
  const recording = { setTimeout: (fn, ms) => (delays.push(ms), setTimeout(fn, 0)), clearTimeout: (t) => clearTimeout(t) };
  const { upload } = newUpload(server, data, { timers: recording });
  await upload.start();
  assert.equal(upload.state, 'done', upload.error?.message);
  assert.ok(delays.some((ms) => ms >= 7000), `waited ${delays}`);
});

test('the next PATCH is read and sealed while the previous one waits for its answer', async () => {
  const server = tusServer();
  const data = randomBytes(12 * RS + 77);
  let slices = 0;
  let release;
  let patches = 0;
  const fetch = async (url, init = {}) => {
    if (init.method === 'PATCH' && ++patches === 1) {
      // hold the first PATCH's answer until the next body has been read from the file
      await new Promise((resolve) => {
        release = resolve;
      });
    }
    return server.fetch(url, init);
  };
  const blob = new Blob([data], { type: 'application/x-test' });
  const file = { size: blob.size, type: blob.type, name: 'x.bin', slice: (a, b) => (slices++, blob.slice(a, b)) };
  const { upload, sealed } = newUpload({ fetch }, data, { file });
  const done = upload.start();
  while (!release) await new Promise((r) => setTimeout(r, 1));
  await new Promise((r) => setTimeout(r, 20));
  // one slice for the SHA-256 of this small file, one for the first body, one for the next
  assert.equal(slices, 3, 'the next body was read while the first PATCH was on the wire');
  release();
  await done;
  assert.equal(upload.state, 'done');
  const [stored] = [...server.uploads.values()];
  assert.ok(Buffer.from(await openStored(stored.data, sealed[0].manifest)).equals(data));
});
