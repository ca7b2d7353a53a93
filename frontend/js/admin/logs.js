// Owns the Messages and Files views of the admin console: the filter form (sender, recipient,
// from/until as local date-times sent as ms since the epoch), the newest-first table with
// "Load older", and "Export CSV" (the same filters, fetched with the Bearer token and saved
// through a Blob link). Only metadata and fingerprints ever reach this page.
import { ApiError } from '../api.js';
import { describeError } from '../errors.js';
import { el } from '../chat/format.js';
import { $, saveBlob, say, setBusy } from '../ui.js';
import { Paged, bytes, query, timeCell } from './table.js';

/** The two logs: their words, how a row is named, and its time field. */
const LOGS = {
  messages: {
    title: 'Messages log',
    intro:
      'Metadata only: the server holds ciphertext, and shows here a fingerprint of it (first 8 bytes of its BLAKE3 hash), never its text.',
    caption: 'Messages, newest first',
    noun: ['message', 'messages'],
    time: 'server_ts',
  },
  files: {
    title: 'Files log',
    intro: 'Metadata only: a fingerprint of each encrypted blob (none while it is uploading), never a file’s name or content.',
    caption: 'Files, newest first',
    noun: ['file', 'files'],
    time: 'created_at',
  },
};

/** Fills the log's section from the page's #log-template: ids "<kind>-<part>", labels tied to them. */
function build(kind) {
  const { title, intro, caption } = LOGS[kind];
  const body = $('log-template').content.cloneNode(true);
  for (const node of body.querySelectorAll('[data-part]')) node.id = `${kind}-${node.dataset.part}`;
  for (const label of body.querySelectorAll('label[data-for]')) label.htmlFor = `${kind}-${label.dataset.for}`;
  const part = (name) => body.querySelector(`[data-part="${name}"]`);
  part('title').textContent = title;
  part('intro').textContent = intro;
  part('caption').textContent = caption;
  part('wrap').setAttribute('aria-labelledby', `${kind}-title`);
  $(`view-${kind}`).append(body);
}

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

export class LogView {
  /** `kind`: 'messages' or 'files'. */
  constructor(api, kind, onError) {
    build(kind);
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
      saveBlob(await response.blob(), `securechat-${this.kind}.csv`);
      say(this.list.status, `Exported the ${this.kind} log as CSV.`);
    } catch (err) {
      this.onError(`Could not export the ${this.kind} log: ${describeError(err)}`);
    } finally {
      setBusy(button, false);
    }
  }
}
