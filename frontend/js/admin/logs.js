// Owns the Messages and Files views of the admin console: the filter form (sender, recipient,
// from/until as local date-times sent as ms since the epoch), the newest-first table with
// "Load older", and "Export CSV" (the same filters, fetched with the Bearer token and saved
// through a Blob link). Only metadata and fingerprints ever reach this page.
import { ApiError } from '../api.js';
import { describeError } from '../errors.js';
import { el } from '../chat/format.js';
import { $, say, setBusy } from '../ui.js';
import { Paged, bytes, query, timeCell } from './table.js';

/** The two logs: how a row is named, and its time field. */
const LOGS = {
  messages: { noun: ['message', 'messages'], time: 'server_ts' },
  files: { noun: ['file', 'files'], time: 'created_at' },
};

function columns(time) {
  return [
    { cell: (r) => r.id, className: 'mono' },
    { cell: (r) => r.sender },
    { cell: (r) => r.recipient },
    { cell: (r) => timeCell(r[time]) },
    { cell: (r) => bytes(r.size) },
    { cell: (r) => (r.fingerprint ? el('code', 'fingerprint-hex', r.fingerprint) : '—') },
    { cell: (r) => el('span', 'state-tag', r.state) },
  ];
}

/** ms since the epoch of a datetime-local input's value, or null when empty or invalid. */
function msOf(input) {
  if (!input.value) return null;
  const ms = new Date(input.value).getTime();
  return Number.isFinite(ms) ? ms : null;
}

/** Saves `blob` as `name` through a temporary object URL. */
function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

export class LogView {
  /** `kind`: 'messages' or 'files'. */
  constructor(api, kind, onError) {
    const { noun, time } = LOGS[kind];
    this.api = api;
    this.kind = kind;
    this.onError = onError;
    this.list = new Paged(api, { prefix: kind, path: `/api/admin/${kind}`, key: kind, columns: columns(time), noun, onError });
    this.inputs = ['sender', 'recipient', 'since', 'until'].map((name) => $(`${kind}-${name}`));
  }

  /** The filters as the contract's query parameters (empty ones left out by query()). */
  filters() {
    const [sender, recipient, since, until] = this.inputs;
    return { sender: sender.value.trim(), recipient: recipient.value.trim(), since: msOf(since), until: msOf(until) };
  }

  wire() {
    $(`${this.kind}-filters`).addEventListener('submit', (event) => {
      event.preventDefault();
      this.onError('');
      this.list.load(this.filters());
    });
    const exportButton = $(`${this.kind}-export`);
    exportButton.addEventListener('click', () => this.exportCsv(exportButton));
  }

  show() {
    return this.list.load(this.filters());
  }

  async exportCsv(button) {
    setBusy(button, true, 'Exporting…');
    this.onError('');
    try {
      const response = await this.api.raw('GET', `/api/admin/${this.kind}.csv${query(this.filters())}`, {
        headers: { Accept: 'text/csv' },
      });
      if (!response.ok) throw await ApiError.errorOf(response);
      save(await response.blob(), `securechat-${this.kind}.csv`);
      say(this.list.status, `Exported the ${this.kind} log as CSV.`);
    } catch (err) {
      this.onError(`Could not export the ${this.kind} log: ${describeError(err)}`);
    } finally {
      setBusy(button, false);
    }
  }
}
