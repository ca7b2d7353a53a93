// Owns the Audit log view of the admin console: the verdict of the server's check of the hash
// chain (/api/admin/audit/verify), shown first and prominently, then the entries newest first
// with "Load older". Opening the view is itself audited by the server (two entries: the check
// and the read).
import { describeError } from '../errors.js';
import { el } from '../chat/format.js';
import { $, say } from '../ui.js';
import { Paged, timeCell } from './table.js';

/** A hash shortened for the table; the whole value stays in the title. */
function hashCell(hash) {
  if (typeof hash !== 'string') return '—';
  const code = el('code', 'hash', hash.length > 16 ? `${hash.slice(0, 16)}…` : hash);
  code.title = hash;
  return code;
}

export class AuditView {
  constructor(api, onError) {
    this.api = api;
    this.onError = onError;
    this.verdict = $('audit-verdict');
    this.list = new Paged(api, {
      prefix: 'audit',
      path: '/api/admin/audit',
      key: 'entries',
      noun: ['entry', 'entries'],
      onError,
      columns: [
        { cell: (e) => e.seq },
        { cell: (e) => timeCell(e.at) },
        { cell: (e) => e.actor },
        { cell: (e) => e.action, className: 'mono' },
        { cell: (e) => e.target },
        { cell: (e) => (e.detail ? el('code', 'detail', e.detail) : '—'), className: 'wrap' },
        { cell: (e) => hashCell(e.hash) },
      ],
    });
  }

  wire() {
    $('audit-refresh').addEventListener('click', () => this.show());
  }

  async show() {
    await this.verify();
    await this.list.load();
  }

  async verify() {
    this.verdict.dataset.ok = '';
    say(this.verdict, 'Checking the audit log’s hash chain…');
    try {
      const answer = await this.api.get('/api/admin/audit/verify', { auth: true });
      const ok = answer?.ok === true;
      this.verdict.dataset.ok = String(ok);
      say(
        this.verdict,
        ok
          ? `Audit log intact: all ${answer.entries} entries check out, each chained to the one before.`
          : `Audit log damaged: entry ${answer?.first_bad_seq} does not match its hash chain (${answer?.reason ?? 'no reason given'}). ` +
              `${answer?.entries ?? '?'} entries were checked. Entries from there on cannot be trusted.`,
      );
    } catch (err) {
      this.verdict.dataset.ok = 'unknown';
      say(this.verdict, `The audit log could not be checked: ${describeError(err)}`);
    }
  }
}
