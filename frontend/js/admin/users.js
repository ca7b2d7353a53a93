// Owns the Users view of the admin console: the name search, the table (created, last seen,
// counts, storage) and each row's actions, Disable / Enable the account and Revoke its
// sessions, each asked for again in the confirmation dialog. Also what the Reports view uses
// to disable a sender (disableUser), so that both say the same thing.
import { describeError } from '../errors.js';
import { $, say, setBusy } from '../ui.js';
import { Paged, actionButton, bytes, confirmAction, timeCell } from './table.js';

const path = (name, action) => `/api/admin/users/${encodeURIComponent(name)}/${action}`;

/**
 * Disables `name` after confirmation; resolves to the sentence to show, or null when the
 * admin cancelled. Throws the ApiError of a refusal.
 */
export async function disableUser(api, name) {
  const sure = await confirmAction(
    `Disable the account ${name}? They are signed out everywhere at once and cannot sign in until it is enabled again.`,
    `Disable ${name}`,
  );
  if (!sure) return null;
  const answer = await api.post(path(name, 'disable'), undefined, { auth: true });
  return `${name} is disabled; ${answer?.sessions_revoked ?? 0} sessions were ended.`;
}

/** The row actions: what each asks, and what it says once done. */
const ACTIONS = {
  enable: {
    ask: (name) => `Enable the account ${name} again? They can sign in again.`,
    done: (name) => `${name} is enabled again.`,
  },
  'revoke-sessions': {
    ask: (name) => `End every session of ${name}? Their open pages are signed out; they can sign in again.`,
    done: (name, answer) => `${answer?.sessions_revoked ?? 0} sessions of ${name} were ended.`,
  },
};

export class UsersView {
  constructor(api, onError) {
    this.api = api;
    this.onError = onError;
    this.list = new Paged(api, {
      prefix: 'users',
      path: '/api/admin/users',
      key: 'users',
      noun: ['user', 'users'],
      onError,
      columns: [
        { cell: (u) => u.username },
        { cell: (u) => (u.is_admin ? 'Admin' : 'No') },
        { cell: (u) => (u.disabled ? 'Disabled' : 'Active'), className: 'account-state' },
        { cell: (u) => timeCell(u.created_at) },
        { cell: (u) => timeCell(u.last_seen_at) },
        { cell: (u) => u.messages_sent },
        { cell: (u) => u.messages_received },
        { cell: (u) => u.files },
        { cell: (u) => bytes(u.storage_bytes) },
        { cell: (u) => this.actions(u), className: 'row-actions' },
      ],
    });
  }

  wire() {
    $('users-filters').addEventListener('submit', (event) => {
      event.preventDefault();
      this.onError('');
      this.list.load({ query: $('users-query').value.trim() });
    });
  }

  show() {
    return this.list.load({ query: $('users-query').value.trim() });
  }

  actions(user) {
    const name = user.username;
    const toggle = user.disabled
      ? actionButton('Enable', `Enable ${name}`, (b) => this.run(b, name, 'enable'))
      : actionButton('Disable', `Disable ${name}`, (b) => this.run(b, name, 'disable'));
    const revoke = actionButton('Revoke sessions', `Revoke every session of ${name}`, (b) =>
      this.run(b, name, 'revoke-sessions'),
    );
    return [toggle, revoke];
  }

  async run(button, name, action) {
    this.onError('');
    let said = null;
    try {
      if (action === 'disable') {
        said = await disableUser(this.api, name);
      } else if (await confirmAction(ACTIONS[action].ask(name), button.textContent)) {
        setBusy(button, true, 'Working…');
        said = ACTIONS[action].done(name, await this.api.post(path(name, action), undefined, { auth: true }));
      }
    } catch (err) {
      setBusy(button, false);
      this.onError(`${name}: ${describeError(err)}`);
      return;
    }
    if (said === null) return;
    await this.list.load();
    say(this.list.status, said);
  }
}
