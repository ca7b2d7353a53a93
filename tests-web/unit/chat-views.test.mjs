// The pure parts of the chat views (issue #17), run in Node: the QR wrapper picks numeric mode
// for a safety number, the day separators' words, the list's message preview and the tab title.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from './paths.mjs';

const { qrModules } = await frontendModule('chat/qr.js');
const { dayLabel } = await frontendModule('chat/format.js');
const { previewText, titleFor } = await frontendModule('chat/conversation-list.js');

test('a 60-digit safety number becomes a 25x25 QR code (numeric mode; as bytes it would need 33x33)', () => {
  const digits = '123456789012345678901234567890123456789012345678901234567890';
  const { size, dark } = qrModules(digits);
  assert.equal(size, 25);
  assert.ok(dark.length > 100 && dark.length < size * size);
  // the three finder patterns: the corners' 7x7 squares have dark outer rings
  const isDark = new Set(dark.map(([x, y]) => `${x},${y}`));
  for (const [x, y] of [[0, 0], [6, 0], [0, 6], [6, 6], [18, 0], [24, 6], [0, 18], [6, 24]]) assert.ok(isDark.has(`${x},${y}`), `${x},${y}`);
  assert.equal(qrModules('not digits: bytes').size >= 21, true);
});

test('day separators say Today, Yesterday, then the date (with the year only for other years)', () => {
  const now = new Date(2026, 11, 3, 10, 0).getTime();
  assert.equal(dayLabel(new Date(2026, 11, 3, 0, 1).getTime(), now), 'Today');
  assert.equal(dayLabel(new Date(2026, 11, 2, 23, 59).getTime(), now), 'Yesterday');
  assert.doesNotMatch(dayLabel(new Date(2026, 10, 20).getTime(), now), /2026|Today|Yesterday/);
  assert.match(dayLabel(new Date(2025, 10, 20).getTime(), now), /2025/);
});

test('the list previews the last message on one line, marks your own, and never shows a message that did not open', () => {
  assert.equal(previewText({ from: 'bob', to: 'alice', status: 'ok', text: 'hi\n  there' }, 'alice'), 'hi there');
  assert.equal(previewText({ from: 'alice', to: 'bob', status: 'ok', text: 'yes' }, 'alice'), 'You: yes');
  assert.equal(previewText({ from: 'alice', to: 'alice', status: 'ok', text: 'note' }, 'alice'), 'note');
  assert.doesNotMatch(previewText({ from: 'bob', to: 'alice', status: 'unverified', text: null }, 'alice'), /null|undefined/);
  assert.equal(previewText(null, 'alice'), '');
});

test('the tab title counts unread messages', () => {
  assert.equal(titleFor(0), 'securechat');
  assert.equal(titleFor(3), '(3) securechat');
});
