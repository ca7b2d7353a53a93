// frontend/js/sha256.js against node:crypto: random sizes (0, around the 55/56/64-byte padding
// edges, non-multiples of 64), fed whole and in random slices, and the FIPS 180-2 examples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { frontendModule } from './paths.mjs';

const { Sha256, sha256 } = await frontendModule('sha256.js');

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const nodeHex = (bytes) => createHash('sha256').update(bytes).digest('hex');

test('the FIPS 180-2 examples hash to the published digests', () => {
  assert.equal(hex(sha256(new Uint8Array(0))), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(hex(sha256(new TextEncoder().encode('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(
    hex(sha256(new TextEncoder().encode('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'))),
    '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
  );
});

test('every size from 0 to 200 bytes (all padding edges) matches node:crypto', () => {
  const data = randomBytes(200);
  for (let n = 0; n <= 200; n++) assert.equal(hex(sha256(data.subarray(0, n))), nodeHex(data.subarray(0, n)), `size ${n}`);
});

test('random sizes up to 3 MiB, fed in random slices, match node:crypto', () => {
  for (let round = 0; round < 25; round++) {
    const size = round < 5 ? randomInt(0, 1000) : randomInt(0, 3 * 1024 * 1024);
    const data = randomBytes(size);
    const h = new Sha256();
    let at = 0;
    while (at < size) {
      const step = Math.min(size - at, randomInt(0, 3) === 0 ? randomInt(1, 70) : randomInt(1, 300000));
      h.update(data.subarray(at, at + step));
      at += step;
    }
    assert.equal(hex(h.digest()), nodeHex(data), `size ${size}`);
  }
});

test('accepts ArrayBuffer and other views, and refuses use after digest', () => {
  const data = randomBytes(1000);
  const ab = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  assert.equal(hex(new Sha256().update(ab).digest()), nodeHex(data));
  assert.equal(hex(new Sha256().update(new DataView(ab, 10, 500)).digest()), nodeHex(data.subarray(10, 510)));
  const h = new Sha256();
  h.digest();
  assert.throws(() => h.update(new Uint8Array(1)));
  assert.throws(() => h.digest());
  assert.throws(() => new Sha256().update('text'), TypeError);
});
