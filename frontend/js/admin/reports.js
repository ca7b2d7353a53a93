// Owns the Reports view of the admin console: each abuse report with its verdict badge
// (verified / not verifiable, and which check failed), reason, reporter, sender, times, and
// the plaintext the reporter disclosed — written with textContent, so a report's text can
// never become markup — and "Disable sender".
import { describeError } from '../errors.js';
import { el } from '../chat/format.js';
import { say } from '../ui.js';
import { Paged, actionButton, timeCell } from './table.js';
import { disableUser } from './users.js';

/** What a failed check (`detail`) means, in the console's words. */
const DETAIL = {
  bad_key: 'the key does not open the stored message',
  plaintext_mismatch: 'the text differs from the stored message',
  bad_signature: 'the sender’s signature does not verify',
};

function verdictBadge(report) {
  const verified = report.verdict === 'verified';
  const badge = el('span', 'verdict', verified ? 'Verified' : 'Not verifiable');
  badge.dataset.verdict = verified ? 'verified' : 'not_verifiable';
  if (verified) return badge;
  const why = Object.hasOwn(DETAIL, report.detail) ? DETAIL[report.detail] : report.detail;
  return [badge, el('span', 'verdict-detail', why ? ` (${why})` : '')];
}

function disclosed(report) {
  if (typeof report.text !== 'string') return el('span', 'muted', 'none (not verified)');
  return el('p', 'disclosed', report.text);
}

export class ReportsView {
  constructor(api, onError) {
    this.api = api;
    this.onError = onError;
    this.list = new Paged(api, {
      prefix: 'reports',
      path: '/api/admin/reports',
      key: 'reports',
      noun: ['report', 'reports'],
      onError,
      columns: [
        { cell: verdictBadge },
        { cell: (r) => r.reason },
        { cell: (r) => r.reporter },
        { cell: (r) => r.sender },
        { cell: (r) => timeCell(r.server_ts) },
        { cell: (r) => timeCell(r.reported_at) },
        { cell: disclosed, className: 'wrap' },
        {
          className: 'row-actions',
          cell: (r) => actionButton('Disable sender', `Disable ${r.sender}, the sender of report ${r.id}`, () => this.disable(r.sender)),
        },
      ],
    });
  }

  wire() {}

  show() {
    return this.list.load();
  }

  async disable(sender) {
    this.onError('');
    try {
      const said = await disableUser(this.api, sender);
      if (said) say(this.list.status, said);
    } catch (err) {
      this.onError(`${sender}: ${describeError(err)}`);
    }
  }
}
