// A standard tus client, unchanged, against the real server (issue #14: "tus-js-client in Node
// uploads a file with resume after an aborted request"). tus-js-client is the tus project's own
// JavaScript client; nothing here adapts it to securechat beyond the Authorization header and
// the metadata that docs/PROTOCOL.md asks for. Users and keys are made with the browser's own
// modules running in Node, so the manifest is a real signed envelope.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as tus from 'tus-js-client';
import { startServer } from './server.mjs';
import { Api } from '../../frontend/js/api.js';
import { register } from '../../frontend/js/auth.js';
import { envelopeJson } from '../../frontend/js/envelope.js';
import { decode as b64decode, encode as b64encode } from '../../frontend/js/b64.js';
import { newFileKey, importFileKey, RecordSealer, RecordOpener, sealManifest, openManifest, cipherSize } from '../../frontend/js/files.js';

const RECORD_SIZE = 65536;
const RECORD_CIPHER = RECORD_SIZE + 16;

/** A file sealed into records, with its signed manifest, as a sender's client would make it. */
async function sealFile(alice, bob, plain) {
  const fileId = crypto.randomUUID();
  const { raw, key, nonce } = await newFileKey();
  const sealer = new RecordSealer({ key, nonce, fileId, size: plain.length, recordSize: RECORD_SIZE });
  const parts = [];
  for (let at = 0; at < plain.length || parts.length === 0; at += RECORD_SIZE) {
    parts.push(await sealer.sealNext(plain.subarray(at, Math.min(at + RECORD_SIZE, plain.length))));
  }
  const body = Buffer.concat(parts);
  assert.equal(body.length, cipherSize(plain.length, RECORD_SIZE));
  const manifest = await sealManifest({
    from: alice.username,
    to: bob.username,
    signKey: alice.signPrivateKey,
    readers: { [alice.username]: alice.encPublicKey, [bob.username]: bob.encPublicKey },
    manifest: {
      file_id: fileId,
      name: 'report.bin',
      mime: 'application/octet-stream',
      size: plain.length,
      sha256: b64encode(createHash('sha256').update(plain).digest()),
      record_size: RECORD_SIZE,
      nonce: b64encode(nonce),
      file_key: b64encode(raw),
    },
  });
  return { fileId, body, manifest };
}

function metadataFor(bob, sealed) {
  return {
    recipient: bob.username,
    file_id: sealed.fileId,
    record_size: String(RECORD_SIZE),
    manifest: envelopeJson(sealed.manifest),
  };
}

/** Runs one tus-js-client upload to its end, or until `stopWhen(upload, bytesAccepted)` aborts it. */
function runUpload(body, options, stopWhen = () => false) {
  return new Promise((resolve, reject) => {
    let stopping = false;
    const upload = new tus.Upload(body, {
      retryDelays: [],
      ...options,
      onChunkComplete(_chunk, accepted) {
        if (!stopping && stopWhen(accepted)) {
          stopping = true;
          upload.abort(false).then(() => resolve({ upload, aborted: true }), reject);
        }
      },
      onSuccess: () => resolve({ upload, aborted: false }),
      // the socket error of the request we aborted ourselves may still be reported
      onError: (err) => (stopping ? resolve({ upload, aborted: true }) : reject(err)),
    });
    upload.start();
  });
}

async function head(server, session, url) {
  const res = await fetch(new URL(url, server.url), {
    method: 'HEAD',
    headers: { Authorization: `Bearer ${session.access_token}`, 'Tus-Resumable': '1.0.0' },
  });
  assert.equal(res.status, 200);
  return Number(res.headers.get('upload-offset'));
}

/** The file as the recipient sees it once finalize has run: its list entry. */
async function waitReady(server, bob, alice, uploadId) {
  const deadline = Date.now() + 20000;
  for (;;) {
    const res = await fetch(`${server.url}/api/conversations/${alice.username}/files`, {
      headers: { Authorization: `Bearer ${bob.access_token}` },
    });
    assert.equal(res.status, 200);
    const { files } = await res.json();
    const entry = files.find((f) => f.id === uploadId);
    if (entry?.state === 'ready') return entry;
    if (Date.now() > deadline) throw new Error(`file ${uploadId} not ready: ${JSON.stringify(entry)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Downloads as the recipient, checks the ciphertext is what was uploaded, opens it to the plaintext. */
async function downloadAndOpen(server, bob, alice, uploadId, sealed, plain) {
  const entry = await waitReady(server, bob, alice, uploadId);
  assert.equal(entry.size, sealed.body.length);
  const res = await fetch(`${server.url}/api/files/${uploadId}`, { headers: { Authorization: `Bearer ${bob.access_token}` } });
  assert.equal(res.status, 200);
  const cipher = Buffer.from(await res.arrayBuffer());
  assert.ok(cipher.equals(sealed.body), 'the server hands back exactly the uploaded ciphertext');
  const manifest = await openManifest(entry.manifest, {
    me: bob.username,
    encPrivateKey: bob.encPrivateKey,
    senderSignKeys: [alice.signPublicKey],
    fileId: entry.file_id,
    cipherSizeBytes: entry.size,
  });
  assert.equal(manifest.size, plain.length);
  const opener = new RecordOpener({
    key: await importFileKey(b64decode(manifest.file_key)),
    nonce: b64decode(manifest.nonce),
    fileId: manifest.file_id,
    size: manifest.size,
    recordSize: manifest.record_size,
  });
  const out = [];
  for (let at = 0; at < cipher.length; at += 1_000_003) out.push(...(await opener.push(cipher.subarray(at, at + 1_000_003))));
  opener.finish();
  const opened = Buffer.concat(out.map((r) => Buffer.from(r)));
  assert.equal(createHash('sha256').update(opened).digest('hex'), createHash('sha256').update(plain).digest('hex'));
}

describe('tus-js-client (the tus project client) against /api/uploads', () => {
  let server;
  let alice;
  let bob;

  before(async () => {
    server = await startServer();
    const api = () => new Api({ baseUrl: server.url });
    alice = await register(api(), { username: 'tusalice', password: 'correct horse battery staple', iterations: 1000 });
    bob = await register(api(), { username: 'tusbob', password: 'correct horse battery staple', iterations: 1000 });
  });

  after(async () => {
    await server?.stop();
  });

  test('an upload aborted between PATCHes resumes from the server offset and the recipient opens it', async () => {
    const plain = randomBytes(8 * 1024 * 1024 + 12345);
    const sealed = await sealFile(alice, bob, plain);
    const options = {
      endpoint: `${server.url}/api/uploads`,
      headers: { Authorization: `Bearer ${alice.access_token}` },
      metadata: metadataFor(bob, sealed),
      chunkSize: 16 * RECORD_CIPHER,
    };
    const first = await runUpload(sealed.body, options, (accepted) => accepted >= 3 * 16 * RECORD_CIPHER);
    assert.equal(first.aborted, true);
    const url = first.upload.url;
    assert.match(url, /\/api\/uploads\/[0-9a-f-]{36}$/);
    const offset = await head(server, alice, url);
    assert.ok(offset >= 3 * 16 * RECORD_CIPHER && offset < sealed.body.length, `offset ${offset} is mid-file`);
    assert.equal(offset % RECORD_CIPHER, 0, 'the committed offset is on a record boundary');

    // a fresh client object resumes: HEAD, then PATCHes from the server's offset
    const second = await runUpload(sealed.body, { ...options, uploadUrl: url });
    assert.equal(second.aborted, false);
    assert.equal(await head(server, alice, url), sealed.body.length);
    await downloadAndOpen(server, bob, alice, url.split('/').pop(), sealed, plain);
  });

  test('an upload whose one big PATCH is cut mid-body resumes at a record boundary', async () => {
    const plain = randomBytes(24 * 1024 * 1024);
    const sealed = await sealFile(alice, bob, plain);
    const options = {
      endpoint: `${server.url}/api/uploads`,
      headers: { Authorization: `Bearer ${alice.access_token}` },
      metadata: metadataFor(bob, sealed),
    };
    // one PATCH for the whole body; abort it once some bytes have gone out
    const cut = await new Promise((resolve, reject) => {
      let stopped = false;
      const upload = new tus.Upload(sealed.body, {
        ...options,
        retryDelays: [],
        onProgress(sent) {
          if (!stopped && sent >= 4 * 1024 * 1024) {
            stopped = true;
            upload.abort(false).then(() => resolve(upload), reject);
          }
        },
        onSuccess: () => resolve(upload),
        // the socket error of the request we aborted ourselves may still be reported
        onError: (err) => (stopped ? resolve(upload) : reject(err)),
      });
      upload.start();
    });
    const url = cut.url;
    const offset = await head(server, alice, url);
    assert.equal(offset % RECORD_CIPHER, 0, 'what a dropped PATCH left is cut to whole records');
    const second = await runUpload(sealed.body, { ...options, uploadUrl: url });
    assert.equal(second.aborted, false);
    await downloadAndOpen(server, bob, alice, url.split('/').pop(), sealed, plain);
  });
});
