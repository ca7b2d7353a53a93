// frontend/js/filebox.js with a fake server: the files list opened through the messenger
// (a refused manifest keeps no name), file_ready / file_damaged frames, and downloads that
// hand out a Blob only when every record authenticated and the SHA-256 matched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { frontendModule } from './paths.mjs';

const { Api } = await frontendModule('api.js');
const { FileBox, isPreviewable } = await frontendModule('filebox.js');
const files = await frontendModule('files.js');

const RS = 1024;

async function sealedFile(data, { fileId = crypto.randomUUID() } = {}) {
  const fk = await files.newFileKey();
  const n = files.recordCount(data.length, RS);
  const parts = [];
  for (let i = 0; i < n; i++) {
    parts.push(await files.sealRecord(fk.key, fk.nonce, fileId, i, i === n - 1, data.subarray(i * RS, Math.min(data.length, (i + 1) * RS))));
  }
  const cipher = Buffer.concat(parts);
  const manifest = {
    file_id: fileId,
    name: 'report.pdf',
    mime: 'application/pdf',
    size: data.length,
    sha256: createHash('sha256').update(data).digest('base64url'),
    record_size: RS,
    nonce: Buffer.from(fk.nonce).toString('base64url'),
    file_key: Buffer.from(fk.raw).toString('base64url'),
  };
  const file = { id: crypto.randomUUID(), file_id: fileId, from: 'alice', to: 'bob', size: cipher.length, state: 'ready', server_ts: Date.now(), manifest: { fake: fileId } };
  return { cipher, manifest, file };
}

function setup(entries, { body } = {}) {
  const byId = new Map(entries.map((e) => [e.file.id, e]));
  const fetch = async (url) => {
    if (url.startsWith('/api/conversations/alice/files')) return Response.json({ files: entries.map((e) => e.file), next_cursor: null });
    const id = url.split('/').at(-1);
    const e = byId.get(id);
    if (!e) return Response.json({ error: { code: 'not_found', message: 'x' } }, { status: 404 });
    if (e.file.damagedOnServer) return Response.json({ error: { code: 'file_damaged', message: 'x' } }, { status: 409 });
    const bytes = body ? body(e.cipher) : e.cipher;
    // streamed in uneven chunks, as a network would
    const stream = new ReadableStream({
      start(controller) {
        for (let at = 0; at < bytes.length; at += 777) controller.enqueue(new Uint8Array(bytes.subarray(at, at + 777)));
        controller.close();
      },
    });
    return new Response(stream, { status: 200, headers: { 'Content-Type': 'application/octet-stream' } });
  };
  const api = new Api({ fetch, tokens: { access_token: 't', refresh_token: 'r', access_expires_at: 0 } });
  const messenger = {
    me: 'bob',
    async openFileManifest(file) {
      const e = byId.get(file.id);
      if (e.refuse) throw new files.FileError('manifest', 'refused');
      return e.manifest;
    },
  };
  const relay = new EventTarget();
  const box = new FileBox({ api, messenger, relay, createObjectURL: () => 'blob:fake', revokeObjectURL: () => {} });
  return { box, relay };
}

test('the list opens every manifest; a refused one keeps no name and cannot be downloaded', async () => {
  const ok = await sealedFile(randomBytes(5000));
  const bad = await sealedFile(randomBytes(100));
  bad.refuse = true;
  const { box } = setup([ok, bad]);
  await box.load('alice');
  const list = box.list('alice');
  assert.equal(list.length, 2);
  const good = list.find((e) => e.file.id === ok.file.id);
  const refused = list.find((e) => e.file.id === bad.file.id);
  assert.equal(good.status, 'ok');
  assert.equal(good.manifest.name, 'report.pdf');
  assert.equal(refused.status, 'refused');
  assert.equal(refused.manifest, null);
  await assert.rejects(box.download('alice', bad.file.id));
});

test('a download verifies every record and the SHA-256 before handing out the bytes', async () => {
  const data = randomBytes(7 * RS + 99);
  const e = await sealedFile(data);
  const { box } = setup([e]);
  await box.load('alice');
  const progress = [];
  box.addEventListener('files', () => progress.push(box.entry('alice', e.file.id).download?.received));
  const blob = await box.download('alice', e.file.id);
  assert.deepEqual(Buffer.from(await blob.arrayBuffer()), data);
  assert.equal(box.entry('alice', e.file.id).download.state, 'verified');
  assert.ok(progress.filter((n) => n > 0 && n < e.cipher.length).length > 3, 'progress moved');
});

test('a flipped byte, a truncated body, a wrong SHA-256 and a damaged file are refused without a Blob', async () => {
  const data = randomBytes(4 * RS + 1);
  const flipped = await sealedFile(data);
  const { box } = setup([flipped], {
    body: (c) => {
      const b = Buffer.from(c);
      b[RS + 40] ^= 1;
      return b;
    },
  });
  await box.load('alice');
  await assert.rejects(box.download('alice', flipped.file.id), (err) => err.code === 'record_auth');
  assert.equal(box.entry('alice', flipped.file.id).download.blob, null);

  const cut = await sealedFile(data);
  const s2 = setup([cut], { body: (c) => c.subarray(0, c.length - 20) });
  await s2.box.load('alice');
  await assert.rejects(s2.box.download('alice', cut.file.id), (err) => err.code === 'size');

  const lying = await sealedFile(data);
  lying.manifest.sha256 = createHash('sha256').update('other').digest('base64url');
  const s3 = setup([lying]);
  await s3.box.load('alice');
  await assert.rejects(s3.box.download('alice', lying.file.id), (err) => err.code === 'sha256');

  const damaged = await sealedFile(data);
  damaged.file.damagedOnServer = true;
  const s4 = setup([damaged]);
  await s4.box.load('alice');
  await assert.rejects(s4.box.download('alice', damaged.file.id), (err) => err.code === 'file_damaged');
  assert.equal(s4.box.entry('alice', damaged.file.id).file.state, 'damaged');
});

test('file_ready adds a file live; file_damaged marks it; images under the limit are previewable', async () => {
  const e = await sealedFile(randomBytes(10));
  const { box, relay } = setup([e]);
  const seen = new Promise((resolve) => box.addEventListener('files', () => box.list('alice').length && resolve()));
  relay.dispatchEvent(new CustomEvent('file_ready', { detail: { type: 'file_ready', file: e.file } }));
  await seen;
  assert.equal(box.list('alice')[0].manifest.name, 'report.pdf');
  relay.dispatchEvent(new CustomEvent('file_damaged', { detail: { type: 'file_damaged', id: e.file.id, file_id: e.file.file_id } }));
  assert.equal(box.entry('alice', e.file.id).file.state, 'damaged');
  // a frame about a file between two others is ignored
  relay.dispatchEvent(new CustomEvent('file_ready', { detail: { file: { ...e.file, id: crypto.randomUUID(), from: 'carol', to: 'dave' } } }));
  assert.equal(box.list('alice').length, 1);
  assert.equal(isPreviewable({ mime: 'image/png', size: 100 }), true);
  assert.equal(isPreviewable({ mime: 'image/svg+xml', size: 100 }), false);
  assert.equal(isPreviewable({ mime: 'image/jpeg', size: 1 << 30 }), false);
});
