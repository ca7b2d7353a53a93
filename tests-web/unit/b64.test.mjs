import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from './paths.mjs';

const { encode, decode, Base64Error } = await frontendModule('b64.js');

test('encodes like Node base64url without padding, for every length 0..64', () => {
  for (let n = 0; n <= 64; n++) {
    const bytes = new Uint8Array(n).map((_, i) => (i * 37 + n * 11) & 255);
    const expected = Buffer.from(bytes).toString('base64url');
    assert.equal(encode(bytes), expected);
    assert.ok(!encode(bytes).includes('='));
    assert.deepEqual(decode(expected), bytes);
  }
});

test('round-trips random data and accepts ArrayBuffer input', () => {
  for (let i = 0; i < 200; i++) {
    const bytes = crypto.getRandomValues(new Uint8Array(i % 97));
    assert.deepEqual(decode(encode(bytes)), bytes);
    assert.equal(encode(bytes.buffer), encode(bytes));
  }
});

test('uses the URL-safe alphabet', () => {
  assert.equal(encode(new Uint8Array([0xfb, 0xff, 0xbf])), '-_-_');
  assert.deepEqual(decode('-_-_'), new Uint8Array([0xfb, 0xff, 0xbf]));
});

test('rejects padding', () => {
  assert.throws(() => decode('AA=='), Base64Error);
  assert.throws(() => decode('AAA='), Base64Error);
  assert.throws(() => decode('AAAA===='), Base64Error);
});

test('rejects the standard alphabet', () => {
  assert.throws(() => decode('+/+/'), /standard base64/);
  assert.throws(() => decode('ab+c'), Base64Error);
  assert.throws(() => decode('ab/c'), Base64Error);
});

test('rejects whitespace, foreign characters, impossible lengths and non-canonical tails', () => {
  for (const bad of ['AAAA AAAA', 'AAAA\n', 'AA.A', 'AAAAé', 'A', 'AAAAA', 'AB', 'AAB']) {
    assert.throws(() => decode(bad), Base64Error, bad);
  }
  assert.deepEqual(decode('AA'), new Uint8Array([0]));
  assert.deepEqual(decode('AAA'), new Uint8Array([0, 0]));
  assert.throws(() => decode(42), Base64Error);
});

test('empty string is zero bytes', () => {
  assert.equal(encode(new Uint8Array(0)), '');
  assert.deepEqual(decode(''), new Uint8Array(0));
});
