// File records across implementations (issue #14 "property test"): records sealed by
// frontend/js/files.js in Node open in the Rust client (securechat-client file-open) and the
// reverse, byte for byte the same ciphertext from the same inputs; and every kind of record
// tampering is refused by the Rust client with record_auth. No browser and no server: it lives in
// browser/ because it needs the client binary (SECURECHAT_CLIENT_BIN), like crosscheck.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import nodeCrypto from 'node:crypto';
import { CLIENT_BIN } from './server.mjs';

const f = await import('../../frontend/js/files.js');
const b64 = await import('../../frontend/js/b64.js');

/** Runs the client CLI with `input` on stdin; resolves {code, stdout: Buffer, stderr}. */
function runRaw(args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(CLIENT_BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    let stderr = '';
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
    child.stdin.on('error', () => {}); // the child may exit before reading everything
    child.stdin.end(Buffer.from(input));
  });
}

function recordArgs({ raw, nonce, fileId, recordSize }) {
  // --name=value: a b64 value may start with '-'
  return [`--key=${b64.encode(raw)}`, `--nonce=${b64.encode(nonce)}`, `--file-id=${fileId}`, `--record-size=${recordSize}`];
}

async function jsSeal(p, plain) {
  const sealer = new f.RecordSealer({ ...p, size: plain.length });
  const parts = [];
  while (!sealer.done) {
    const at = sealer.index * p.recordSize;
    parts.push(await sealer.sealNext(plain.subarray(at, at + sealer.nextLength)));
  }
  return parts;
}

async function jsOpen(p, size, cipher) {
  const opener = new f.RecordOpener({ ...p, size });
  const out = [];
  for (let i = 0; i < cipher.length; i += 5000) out.push(...(await opener.push(cipher.subarray(i, i + 5000))));
  if (cipher.length === 0) out.push(...(await opener.push(new Uint8Array(0))));
  opener.finish();
  return Buffer.concat(out);
}

async function params(recordSize) {
  const fk = await f.newFileKey();
  return { raw: fk.raw, key: fk.key, nonce: fk.nonce, fileId: crypto.randomUUID(), recordSize };
}

const skip = !existsSync(CLIENT_BIN) && `client binary not found at ${CLIENT_BIN}`;

test('40 random files: sealed in Node open in Rust, sealed in Rust open in Node, the same bytes both ways', { skip }, async () => {
  const recordSizes = [1024, 1025, 4096, 65536];
  for (let n = 0; n < 40; n++) {
    const recordSize = n < 36 ? recordSizes[n % recordSizes.length] : 1024 + nodeCrypto.randomInt(8192);
    const edge = [0, 1, recordSize - 1, recordSize, recordSize + 1];
    const size = n < 10 ? edge[n % edge.length] : nodeCrypto.randomInt(recordSize * 5 + 3);
    const plain = new Uint8Array(nodeCrypto.randomBytes(size));
    const p = await params(recordSize);
    const what = `case ${n}: size ${size}, record_size ${recordSize}`;
    const jsCipher = Buffer.concat(await jsSeal(p, plain));
    assert.equal(jsCipher.length, f.cipherSize(size, recordSize), what);

    const opened = await runRaw(['file-open', ...recordArgs(p), '--size', String(size)], jsCipher);
    assert.equal(opened.code, 0, `${what}: ${opened.stderr}`);
    assert.ok(opened.stdout.equals(Buffer.from(plain)), `${what}: Rust opened other bytes`);

    const sealed = await runRaw(['file-seal', ...recordArgs(p)], plain);
    assert.equal(sealed.code, 0, `${what}: ${sealed.stderr}`);
    assert.ok(sealed.stdout.equals(jsCipher), `${what}: Rust sealed other bytes than Node`);
    assert.ok((await jsOpen(p, size, new Uint8Array(sealed.stdout))).equals(Buffer.from(plain)), what);

    // without --size the Rust client derives it from the ciphertext length
    const derived = await runRaw(['file-open', ...recordArgs(p)], sealed.stdout);
    assert.equal(derived.code, 0, `${what}: ${derived.stderr}`);
    assert.ok(derived.stdout.equals(Buffer.from(plain)), what);
  }
});

test('every kind of record tampering is refused by the Rust client with record_auth', { skip }, async () => {
  const p = await params(1024);
  const size = 4 * 1024 + 100; // 5 records, the last short
  const plain = new Uint8Array(nodeCrypto.randomBytes(size));
  const r = (await jsSeal(p, plain)).map((x) => Buffer.from(x));
  const other = await jsSeal({ ...p, fileId: crypto.randomUUID() }, new Uint8Array(nodeCrypto.randomBytes(size))); // same key, other file_id
  const otherKey = await jsSeal(await params(1024), new Uint8Array(nodeCrypto.randomBytes(size)));
  const all = Buffer.concat(r);
  const flip = (at) => {
    const copy = Buffer.from(all);
    copy[at] ^= 1;
    return copy;
  };
  const cases = {
    moved: [size, Buffer.concat([r[0], r[2], r[1], r[3], r[4]])],
    dropped: [size, Buffer.concat([r[0], r[1], r[3], r[4]])],
    'last dropped': [size, Buffer.concat(r.slice(0, 4))],
    appended: [size, Buffer.concat([...r, r[0]])],
    'one byte appended': [size, Buffer.concat([all, Buffer.alloc(1)])],
    'last record cut': [size, all.subarray(0, all.length - 1)],
    'non-last presented as last': [4 * 1024, Buffer.concat(r.slice(0, 4))],
    'spliced (same key, other file_id)': [size, Buffer.concat([r[0], Buffer.from(other[1]), r[2], r[3], r[4]])],
    'spliced (other key)': [size, Buffer.concat([r[0], r[1], r[2], Buffer.from(otherKey[3]), r[4]])],
    'flipped first byte': [size, flip(0)],
    'flipped tag byte': [size, flip(2 * 1040 - 1)],
    'flipped last byte': [size, flip(all.length - 1)],
  };
  const good = await runRaw(['file-open', ...recordArgs(p), '--size', String(size)], all);
  assert.equal(good.code, 0, good.stderr);
  assert.ok(good.stdout.equals(Buffer.from(plain)));
  for (const [what, [claimed, cipher]] of Object.entries(cases)) {
    const res = await runRaw(['file-open', ...recordArgs(p), '--size', String(claimed)], cipher);
    assert.equal(res.code, 1, `${what}: exit code`);
    assert.match(res.stderr, /record_auth/, what);
    // and JS agrees
    await assert.rejects(jsOpen(p, claimed, new Uint8Array(cipher)), { code: 'record_auth' }, what);
  }
  // opened as another file: every record is refused
  const moved = await runRaw(['file-open', ...recordArgs({ ...p, fileId: crypto.randomUUID() }), '--size', String(size)], all);
  assert.equal(moved.code, 1);
  assert.match(moved.stderr, /record_auth/);
  assert.equal(moved.stdout.length, 0, 'nothing unverified is written');
});
