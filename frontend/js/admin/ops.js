// Owns the operations views of the admin console: Jobs (the count of each queue's jobs by
// state, and the newest failed jobs with Retry / Cancel) and Health (the server's figures).
// Never a job's payload: the server does not send it.
import { describeError } from '../errors.js';
import { el } from '../chat/format.js';
import { $, say, setBusy } from '../ui.js';
import { actionButton, bytes, confirmAction, fillRows, timeCell } from './table.js';

const QUEUE_COLUMNS = [
  { cell: (q) => q.queue },
  { cell: (q) => q.available },
  { cell: (q) => q.running },
  { cell: (q) => q.done },
  { cell: (q) => q.failed },
  { cell: (q) => q.cancelled },
  { cell: (q) => timeCell(q.oldest_due_ms) },
];

export class JobsView {
  constructor(api, onError) {
    this.api = api;
    this.onError = onError;
    this.status = $('jobs-status');
    this.failedColumns = [
      { cell: (j) => j.id, className: 'mono' },
      { cell: (j) => j.queue },
      { cell: (j) => j.kind },
      { cell: (j) => `${j.attempt} of ${j.max_attempts}` },
      { cell: (j) => j.last_error, className: 'wrap' },
      { cell: (j) => timeCell(j.updated_at) },
      {
        className: 'row-actions',
        cell: (j) => [
          actionButton('Retry', `Retry job ${j.id}`, (b) => this.act(b, j.id, 'retry')),
          actionButton('Cancel', `Cancel job ${j.id}`, (b) => this.act(b, j.id, 'cancel')),
        ],
      },
    ];
  }

  wire() {
    $('jobs-refresh').addEventListener('click', () => this.show());
  }

  async show() {
    say(this.status, 'Loading…');
    try {
      const answer = await this.api.get('/api/admin/jobs', { auth: true });
      const failed = answer?.failed ?? [];
      fillRows($('queues-table').tBodies[0], answer?.queues ?? [], QUEUE_COLUMNS);
      fillRows($('failed-table').tBodies[0], failed, this.failedColumns);
      say(this.status, failed.length ? `${failed.length} failed jobs.` : 'No failed jobs.');
    } catch (err) {
      say(this.status, '');
      this.onError(`Could not load the jobs: ${describeError(err)}`);
    }
  }

  async act(button, id, action) {
    this.onError('');
    if (action === 'cancel' && !(await confirmAction(`Cancel job ${id}? It will not run again.`, 'Cancel the job'))) return;
    setBusy(button, true, 'Working…');
    try {
      const answer = await this.api.post(`/api/admin/jobs/${encodeURIComponent(id)}/${action}`, undefined, { auth: true });
      await this.show();
      say(this.status, `Job ${id} is now ${answer?.state ?? 'changed'}.`);
    } catch (err) {
      setBusy(button, false);
      this.onError(`Job ${id}: ${describeError(err)}`);
    }
  }
}

/** The health figures, in the order shown, with how each is written. */
const HEALTH = [
  ['status', 'Status', String],
  ['version', 'Version', String],
  ['uptime_secs', 'Up for', (s) => `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ${s % 60} s`],
  ['users', 'Users', String],
  ['messages', 'Messages', String],
  ['files', 'Files', String],
  ['connections', 'Open connections', String],
  ['db_bytes', 'Database', bytes],
  ['wal_bytes', 'Write-ahead log', bytes],
  ['blob_bytes', 'File blobs', bytes],
  ['disk_free_bytes', 'Free disk space', bytes],
];

export class HealthView {
  constructor(api, onError) {
    this.api = api;
    this.onError = onError;
    this.status = $('health-status');
  }

  wire() {
    $('health-refresh').addEventListener('click', () => this.show());
  }

  async show() {
    say(this.status, 'Loading…');
    try {
      const answer = await this.api.get('/api/admin/health', { auth: true });
      const items = [];
      for (const [key, label, format] of HEALTH) {
        const value = answer?.[key];
        items.push(el('dt', '', label), el('dd', '', value === undefined || value === null ? '—' : format(value)));
      }
      $('health-list').replaceChildren(...items);
      say(this.status, '');
    } catch (err) {
      say(this.status, '');
      this.onError(`Could not load the server health: ${describeError(err)}`);
    }
  }
}
