// Owns how the admin console shows what the server answers: table rows built from column
// specs (every server string written with textContent, never as HTML), the paged list behind
// "Load older" (the contract's opaque `next_cursor`), query strings, the formats of times and
// sizes, and the one confirmation dialog. No state beyond the list a Paged instance holds.
import { describeError } from '../errors.js';
import { el } from '../chat/format.js';
import { $, say, show } from '../ui.js';

const stamp = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** A <time> element for ms since the epoch ('—' when null). */
export function timeCell(ms) {
  if (!Number.isFinite(ms)) return '—';
  const node = el('time', '', stamp.format(new Date(ms)));
  node.dateTime = new Date(ms).toISOString();
  return node;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Bytes for people: 1023 B, 1.5 MiB ('—' when not a number). */
export function bytes(n) {
  if (!Number.isFinite(n)) return '—';
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** A query string of the non-empty values of `params` ('' when none). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') q.set(name, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** A small action button; `run` gets the button (its busy state is the caller's). */
export function actionButton(text, label, run) {
  const button = el('button', 'button small', text);
  button.type = 'button';
  button.setAttribute('aria-label', label);
  button.addEventListener('click', () => run(button));
  return button;
}

/**
 * One table row: `columns` are [{ cell(row) -> string | Node | Node[], className? }]; the row's
 * first cell is a <th scope="row"> (it names the row for screen readers).
 */
export function rowOf(row, columns) {
  const tr = document.createElement('tr');
  columns.forEach((column, i) => {
    const td = document.createElement(i === 0 ? 'th' : 'td');
    if (i === 0) td.scope = 'row';
    if (column.className) td.className = column.className;
    const value = column.cell(row);
    if (value instanceof Node) td.append(value);
    else if (Array.isArray(value)) td.append(...value);
    else td.textContent = value === null || value === undefined ? '—' : String(value);
    tr.append(td);
  });
  return tr;
}

/** Fills a table body with `rows` (replacing or, with `append`, adding to what is there). */
export function fillRows(tbody, rows, columns, { append = false } = {}) {
  const made = rows.map((row) => rowOf(row, columns));
  if (append) tbody.append(...made);
  else tbody.replaceChildren(...made);
}

/**
 * A newest-first list paged with `cursor` (messages, files, users, audit, reports): `load`
 * fetches the first page for a query, `more` the next one. `prefix` names the view's elements
 * (#prefix-table tbody, #prefix-more, #prefix-status); `key` is the list's member in the answer;
 * `noun` is [singular, plural] of what a row is.
 */
export class Paged {
  constructor(api, { prefix, path, key, columns, noun, onError }) {
    this.api = api;
    this.path = path;
    this.key = key;
    this.columns = columns;
    this.noun = noun;
    this.onError = onError;
    this.tbody = $(`${prefix}-table`).tBodies[0];
    this.more = $(`${prefix}-more`);
    this.status = $(`${prefix}-status`);
    this.params = {};
    this.cursor = null;
    this.count = 0;
    this.asked = 0;
    this.more.addEventListener('click', () => this.page(true));
  }

  /** The first page for `params` (the filters); the table is replaced. */
  load(params = this.params) {
    this.params = params;
    this.cursor = null;
    return this.page(false);
  }

  async page(older) {
    say(this.status, 'Loading…');
    this.more.disabled = true;
    const asked = ++this.asked; // an answer to an older question (other filters) is dropped
    try {
      const answer = await this.api.get(`${this.path}${query({ ...this.params, cursor: older ? this.cursor : null })}`, {
        auth: true,
      });
      if (asked !== this.asked) return;
      const rows = Array.isArray(answer?.[this.key]) ? answer[this.key] : [];
      fillRows(this.tbody, rows, this.columns, { append: older });
      this.count = older ? this.count + rows.length : rows.length;
      this.cursor = typeof answer?.next_cursor === 'string' ? answer.next_cursor : null;
      show(this.more, this.cursor !== null);
      const [one, many] = this.noun;
      say(this.status, `${this.count} ${this.count === 1 ? one : many}${this.cursor ? ', more are older' : ''}.`);
      this.tbody.closest('table').dataset.loaded = 'true';
    } catch (err) {
      if (asked !== this.asked) return;
      say(this.status, '');
      this.onError(`Could not load the ${this.noun[1]}: ${describeError(err)}`);
    } finally {
      this.more.disabled = false;
    }
  }
}

/** Asks for confirmation in the page's <dialog id="confirm">; resolves true for "Confirm". */
export function confirmAction(text, confirmLabel) {
  const dialog = $('confirm');
  const yes = $('confirm-yes');
  const no = $('confirm-no');
  say($('confirm-text'), text);
  yes.textContent = confirmLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      yes.removeEventListener('click', onYes);
      no.removeEventListener('click', onNo);
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    const onClose = () => done(false); // Escape
    yes.addEventListener('click', onYes);
    no.addEventListener('click', onNo);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    no.focus();
  });
}
