// js/chat/report.js: when the "Report" action is offered, and the sentence shown for each answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from './paths.mjs';

const { reportsEnabled, reportOutcome, REPORT_REASONS } = await frontendModule('chat/report.js');
const { ApiError } = await frontendModule('api.js');

test('reports are offered only when GET /api/features lists admin_logs as enabled', () => {
  assert.equal(reportsEnabled({ plugins: [{ name: 'rate_limit', enabled: true }, { name: 'admin_logs', enabled: true }] }), true);
  assert.equal(reportsEnabled({ plugins: [{ name: 'admin_logs', enabled: false }] }), false);
  assert.equal(reportsEnabled({ plugins: [{ name: 'rate_limit', enabled: true }] }), false);
  assert.equal(reportsEnabled({ plugins: [{ name: 'admin_logs', enabled: 'yes' }] }), false);
  for (const odd of [undefined, null, {}, { plugins: null }, []]) assert.equal(reportsEnabled(odd), false);
});

test('each answer to a report has its own sentence', () => {
  assert.equal(reportOutcome({ verdict: 'verified' }), 'Reported: the server confirmed that the text is what the sender sent.');
  assert.match(reportOutcome({ verdict: 'not_verifiable', detail: 'bad_key' }), /^Reported: the server could not confirm/);
  assert.equal(reportOutcome({ verdict: 'something new' }), 'Reported.');
  assert.equal(reportOutcome(undefined, new ApiError(409, 'already_reported', 'x')), 'Already reported.');
  assert.match(reportOutcome(undefined, new ApiError(404, 'not_found', 'x')), /could not be reported: the server does not know it/);
  assert.match(reportOutcome(undefined, new ApiError(0, 'network', 'x')), /^Could not report this message: /);
  assert.deepEqual(REPORT_REASONS, ['spam', 'abuse', 'illegal', 'other']);
});
