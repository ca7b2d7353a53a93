// Encrypted files end to end with the Rust client against the real server (issue #14): alice's
// `securechat-client send-file` uploads through a TCP proxy that cuts the connection in the
// middle of a PATCH, the client resumes from the server's offset; bob's `fetch-file` downloads
// through a proxy that cuts the answer mid-way, resumes with Range, verifies every record and the
// SHA-256; the data dir never holds the plaintext; a flipped byte in the stored blob is refused.
// No browser: it is in browser/ because it needs both binaries (SECURECHAT_BIN, SECURECHAT_CLIENT_BIN).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLIENT_BIN, SERVER_BIN, runClient, startServer } from './server.mjs';

/**
 * A TCP proxy to `target` (http://127.0.0.1:PORT). When armed with cut = {up|down: bytes}, the
 * first connection whose client->server (up) or server->client (down) bytes pass that count is
 * destroyed on both sides, once; `cuts` counts those. With `corrupt` set, one byte 5000 bytes
 * after the next "PATCH " request line (inside its body: headers are shorter) is flipped, once;
 * `corrupted` counts those.
 */
async function startProxy(target) {
  const { port: targetPort } = new URL(target);
  const proxy = { cut: null, cuts: 0, corrupt: false, corrupted: 0, sockets: new Set() };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(targetPort), '127.0.0.1');
    proxy.sockets.add(client);
    proxy.sockets.add(upstream);
    let up = 0;
    let down = 0;
    let flipAt = -1; // connection offset of the byte to flip
    const kill = () => {
      proxy.cut = null;
      proxy.cuts += 1;
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk) => {
      const start = up;
      up += chunk.length;
      if (proxy.cut?.up !== undefined && up > proxy.cut.up) return kill();
      if (proxy.corrupt && flipAt < 0) {
        const at = chunk.indexOf('PATCH /api/uploads/');
        if (at >= 0) flipAt = start + at + 5000;
      }
      if (flipAt >= start && flipAt < up) {
        chunk = Buffer.from(chunk);
        chunk[flipAt - start] ^= 0x01;
        flipAt = -1;
        proxy.corrupt = false;
        proxy.corrupted += 1;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      down += chunk.length;
      if (proxy.cut?.down !== undefined && down > proxy.cut.down) return kill();
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  proxy.close = () =>
    new Promise((resolve) => {
      for (const s of proxy.sockets) s.destroy();
      server.close(resolve);
    });
  return proxy;
}

async function filesUnder(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(p)));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

const skip = (!existsSync(CLIENT_BIN) || !existsSync(SERVER_BIN)) && 'server or client binary missing';
const PASSWORD = 'files test password';
const login = (server, user) => ['--server', server, '--username', user, '--password', PASSWORD, '--min-iterations', '1000'];
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('base64url');

describe('files with the Rust client and the real server', { skip }, () => {
  let server;
  let proxy;
  let dir;
  let sent;
  let plain;
  const marker = 'PLAINTEXT-MARKER-7f3a9c';

  before(async () => {
    server = await startServer();
    proxy = await startProxy(server.url);
    dir = await mkdtemp(path.join(tmpdir(), 'securechat-files-'));
    for (const user of ['alice', 'bob']) {
      const out = await runClient(['register', '--server', server.url, '--username', user, '--password', PASSWORD, '--iterations', '1000']);
      assert.equal(out.username, user);
    }
    // 30 records of 64 KiB, the last short; the marker repeats so any plaintext leak shows.
    // SECURECHAT_FILES_TEST_BYTES picks another size (the default stays under 2 MiB of
    // ciphertext: issue14-server at 9bcdf7c answers 500 "bad hash state" past 2 MiB).
    const body = randomBytes(Number(process.env.SECURECHAT_FILES_TEST_BYTES || 29 * 65536 + 4321));
    for (let at = 0; at + marker.length < body.length; at += 100000) body.write(marker, at, 'latin1');
    plain = body;
    await writeFile(path.join(dir, 'holiday.bin'), plain);
  });

  after(async () => {
    await proxy?.close();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('send-file resumes after the connection is cut in the middle of a PATCH', async () => {
    proxy.cut = { up: 1_000_000 }; // about 0.95 MiB into the connection: inside the 4th PATCH of 256 KiB
    sent = await runClient([
      'send-file', ...login(proxy.url, 'alice'), '--to', 'bob', '--mime', 'application/x-test', '--records-per-patch', '4',
      path.join(dir, 'holiday.bin'),
    ]);
    assert.equal(proxy.cuts, 1, 'the connection was cut once');
    assert.match(sent.id, /^[0-9a-f-]{36}$/);
    assert.equal(sent.size, plain.length);
    assert.equal(sent.cipher_size, plain.length + 16 * Math.ceil(plain.length / 65536));
    assert.equal(sent.sha256, sha256(plain));
  });

  test('a PATCH body corrupted on the way gets 460 from the server, and the client sends it again', async () => {
    const data = randomBytes(10 * 65536 + 5);
    await writeFile(path.join(dir, 'corrupt.bin'), data);
    proxy.corrupt = true;
    const one = await runClient([
      'send-file', ...login(proxy.url, 'alice'), '--to', 'bob', '--records-per-patch', '2', path.join(dir, 'corrupt.bin'),
    ]);
    assert.equal(proxy.corrupted, 1, 'one PATCH body was corrupted');
    // eslint-disable-next-line no-control-regex
    const logs = server.logs().replace(/\x1b\[[0-9;]*m/g, '');
    assert.match(logs, /method=PATCH .*status=460/, 'the server answered 460');
    const out = path.join(dir, 'corrupt-bob.bin');
    await runClient(['fetch-file', ...login(server.url, 'bob'), '--peer', 'alice', '--out', out, one.id]);
    assert.equal(sha256(await readFile(out)), sha256(data));
  });

  test('creation-with-upload: the first records come with the POST, a small file in one request', async () => {
    const small = randomBytes(70000); // two records
    await writeFile(path.join(dir, 'small.txt'), small);
    const one = await runClient([
      'send-file', ...login(server.url, 'alice'), '--to', 'bob', '--mime', 'text/plain', '--records-in-create', '2', '--name', 'notes – ü.txt',
      path.join(dir, 'small.txt'),
    ]);
    assert.equal(one.cipher_size, 70000 + 32);
    const out = path.join(dir, 'small-bob.bin');
    const got = await runClient(['fetch-file', ...login(server.url, 'bob'), '--peer', 'alice', '--out', out, one.id]);
    assert.equal(got.name, 'notes – ü.txt');
    assert.equal(got.mime, 'text/plain');
    assert.equal(sha256(await readFile(out)), sha256(small));
  });

  test('the data dir holds the ciphertext only, never the plaintext', async () => {
    const files = await filesUnder(server.dataDir);
    assert.ok(files.length > 0);
    let blob = null;
    for (const f of files) {
      const bytes = await readFile(f);
      assert.equal(bytes.includes(Buffer.from(marker)), false, `plaintext marker found in ${path.relative(server.dataDir, f)}`);
      if (bytes.length === sent.cipher_size) blob = f;
    }
    assert.ok(blob, 'a blob of exactly Upload-Length bytes is stored');
  });

  test('fetch-file resumes a cut download with Range and writes the verified plaintext', async () => {
    proxy.cut = { down: 700_000 };
    const out = path.join(dir, 'bob.bin');
    const got = await runClient(['fetch-file', ...login(proxy.url, 'bob'), '--peer', 'alice', '--out', out, sent.id]);
    assert.equal(proxy.cuts, 2, 'the download was cut once');
    assert.equal(got.name, 'holiday.bin');
    assert.equal(got.mime, 'application/x-test');
    assert.equal(got.size, plain.length);
    const bytes = await readFile(out);
    assert.equal(sha256(bytes), sha256(plain));
    assert.equal(existsSync(`${out.slice(0, -4)}.part`), false);
    // the sender may download it too (own key)
    const mine = await runClient(['fetch-file', ...login(server.url, 'alice'), '--out', path.join(dir, 'alice.bin'), '--peer', 'bob', sent.id]);
    assert.equal(mine.sha256, sha256(plain).replace(/=+$/, ''));
  });

  test('a flipped byte in the stored blob is refused by the download and nothing is written', async () => {
    const files = await filesUnder(server.dataDir);
    let blob = null;
    for (const f of files) if ((await stat(f)).size === sent.cipher_size) blob = f;
    assert.ok(blob);
    const bytes = await readFile(blob);
    bytes[70000] ^= 0x01; // inside record 1
    await writeFile(blob, bytes);
    const out = path.join(dir, 'damaged.bin');
    await assert.rejects(runClient(['fetch-file', ...login(server.url, 'bob'), '--peer', 'alice', '--out', out, sent.id]), (err) => {
      assert.match(err.message, /record_auth|file_damaged/);
      return true;
    });
    assert.equal(existsSync(out), false);
    assert.equal(existsSync(path.join(dir, 'damaged.part')), false);
  });
});
