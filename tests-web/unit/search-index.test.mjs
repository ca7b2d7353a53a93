// js/search-index.js: the local search index (PROTOCOL.md §8.10) over an in-memory backing:
// records hold no plaintext, words match as accent-free prefixes, removal and re-keying work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from './paths.mjs';

const { SearchIndex, words } = await frontendModule('search-index.js');
const c = await frontendModule('crypto.js');

function memoryBacking() {
  const map = new Map();
  return {
    map,
    put: async (k, v) => void map.set(k, structuredClone(v)),
    delete: async (k) => void map.delete(k),
    entries: async () => [...map.entries()],
  };
}

const id1 = '11111111-1111-4111-8111-111111111111';
const id2 = '22222222-2222-4222-8222-222222222222';

test('words are lower-case, accent-free and split on anything that is not a letter or digit', () => {
  assert.deepEqual(words('Crème BRÛLÉE, at 8pm!'), ['creme', 'brulee', 'at', '8pm']);
});

test('the index finds a message by a word prefix, newest first, and its records hold no plaintext', async () => {
  const backing = memoryBacking();
  const key = await c.deriveIndexKey(new Uint8Array(32).fill(1));
  const index = new SearchIndex({ me: 'alice', key, backing });
  await index.add('bob', { from: 'bob', id: id1, sentAt: 1, text: 'The zanzibar crème brûlée' });
  await index.add('bob', { from: 'alice', id: id2, sentAt: 2, text: 'zanzibar again' });
  await index.writes;
  const raw = JSON.stringify([...backing.map]);
  assert.ok(!/zanzibar|brûlée|crème/i.test(raw), 'no plaintext at rest');
  // a fresh index over the same records (a reload) decrypts them
  const again = new SearchIndex({ me: 'alice', key, backing });
  assert.deepEqual((await again.search('ZANZ')).map((h) => h.id), [id2, id1]);
  assert.deepEqual((await again.search('zanzibar creme')).map((h) => h.id), [id1]);
  assert.deepEqual(await again.search('nothing'), []);
  assert.deepEqual(await again.search('  '), []);
  // removal, and a record under the wrong key is ignored
  await again.remove('bob', id1);
  assert.deepEqual((await again.search('zanzibar')).map((h) => h.id), [id2]);
  const other = new SearchIndex({ me: 'alice', key: await c.deriveIndexKey(new Uint8Array(32).fill(2)), backing });
  assert.deepEqual(await other.search('zanzibar'), []);
  // re-keyed after a password change: the new key reads everything, the old one nothing
  const newKey = await c.deriveIndexKey(new Uint8Array(32).fill(3));
  await again.rekey(newKey);
  assert.deepEqual((await new SearchIndex({ me: 'alice', key: newKey, backing }).search('zanzibar')).map((h) => h.id), [id2]);
  assert.deepEqual(await new SearchIndex({ me: 'alice', key, backing }).search('zanzibar'), []);
  // a record moved to another message's name does not open (the AAD binds it)
  const [[k, v]] = [...backing.map];
  backing.map.set(`bob\n${id1}`, v);
  backing.map.delete(k);
  assert.deepEqual(await new SearchIndex({ me: 'alice', key: newKey, backing }).search('zanzibar'), []);
});

test('an entry past its expiry is never found and leaves the index', async () => {
  const backing = memoryBacking();
  const key = await c.deriveIndexKey(new Uint8Array(32).fill(4));
  const index = new SearchIndex({ me: 'alice', key, backing });
  await index.add('bob', { from: 'bob', id: id1, sentAt: 1, expiresAt: 5000, text: 'ephemeral words' });
  await index.add('bob', { from: 'bob', id: id2, sentAt: 2, text: 'ephemeral but kept' });
  const again = new SearchIndex({ me: 'alice', key, backing });
  assert.deepEqual((await again.search('ephemeral', { now: 4999 })).map((h) => h.id), [id2, id1]);
  assert.deepEqual((await again.search('ephemeral', { now: 5000 })).map((h) => h.id), [id2]);
  await again.writes;
  assert.equal(backing.map.size, 1);
});
