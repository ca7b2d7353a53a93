// Owns "Password, sessions and account" in the settings view (#settings-security; issue #17
// item 6): change the password (auth.js changePassword: the keys are derived again here, the
// same key bundle re-wrapped, one POST that signs out the other sessions; this browser's KDF
// memory, session record and search index key follow), the list of active sessions with "this
// browser" marked and a Revoke button each, and deleting the account (password, confirmation,
// then the device is forgotten and the page leaves). All text goes in with textContent.
import { ApiError } from '../api.js';
import { AuthError, authErrorMessage, changePassword, deleteAccount, passwordProblem } from '../auth.js';
import { forgetAccount, kdfMemory, saveIndexKey } from '../store.js';
import { markInvalid, say, setBusy } from '../ui.js';
import { el, fullFormat } from './format.js';

/** A labelled password field inside `form`: returns the input. */
function passwordField(form, id, text, autocomplete) {
  const label = el('label', '', text);
  label.htmlFor = id;
  const input = el('input');
  input.id = id;
  input.type = 'password';
  input.autocomplete = autocomplete;
  input.required = true;
  form.append(label, input);
  return input;
}

function liveLine(className, id, role) {
  const p = el('p', className);
  p.id = id;
  p.setAttribute('role', role);
  if (role === 'status') p.setAttribute('aria-live', 'polite');
  return p;
}

/** A titled block of the section: <section aria-labelledby> with its <h4>. */
function block(titleId, title, className = 'settings-block') {
  const section = el('section', className);
  section.setAttribute('aria-labelledby', titleId);
  const h = el('h4', '', title);
  h.id = titleId;
  section.append(h);
  return section;
}

/** A form that the page validates itself (the messages go to its live lines). */
function form(id) {
  const f = el('form', 'form');
  f.id = id;
  f.noValidate = true;
  return f;
}

/** A button of `type` with an id. */
function button(id, className, text, type = 'button') {
  const b = el('button', className, text);
  b.type = type;
  b.id = id;
  return b;
}

export class AccountSettings {
  /**
   * @param {object} o
   * @param {import('../api.js').Api} o.api
   * @param {object} o.session  the stored session (this page's)
   * @param {import('../search-index.js').SearchIndex | null} o.index
   * @param {() => void} o.leave  stops the page's messaging before the account goes away
   */
  constructor({ api, session, index, leave }) {
    this.api = api;
    this.session = session;
    this.index = index;
    this.leave = leave;
  }

  mount(host) {
    const passwordBox = block('pw-title', 'Change password');
    const pwForm = form('password-form');
    const current = passwordField(pwForm, 'pw-current', 'Current password', 'current-password');
    const next = passwordField(pwForm, 'pw-new', 'New password (at least 12 characters)', 'new-password');
    const again = passwordField(pwForm, 'pw-again', 'New password again', 'new-password');
    const error = liveLine('error', 'pw-error', 'alert');
    const status = liveLine('status', 'pw-status', 'status');
    const submit = button('pw-submit', 'button primary small', 'Change password', 'submit');
    pwForm.append(error, status, submit);
    passwordBox.append(el('p', 'muted', 'Your keys stay the same; they are wrapped again under the new password. Every other session is signed out.'), pwForm);
    pwForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.changePassword({ current, next, again, error, status, submit });
    });

    const sessionsBox = block('sessions-title', 'Active sessions');
    const list = el('ul', 'sessions');
    list.id = 'sessions';
    list.setAttribute('aria-labelledby', 'sessions-title');
    const sStatus = liveLine('status', 'sessions-status', 'status');
    const refresh = button('sessions-refresh', 'button small subtle', 'Refresh');
    refresh.addEventListener('click', () => this.loadSessions());
    sessionsBox.append(list, sStatus, refresh);
    this.sessionsList = list;
    this.sessionsStatus = sStatus;

    const deleteBox = block('delete-title', 'Delete account', 'settings-block danger');
    const dForm = form('delete-account-form');
    const dPassword = passwordField(dForm, 'delete-password', 'Your password', 'current-password');
    const confirmLabel = el('label', 'checkbox');
    const confirmBox = el('input');
    confirmBox.type = 'checkbox';
    confirmBox.id = 'delete-confirm';
    confirmLabel.append(confirmBox, ' I understand: my keys, sessions and undelivered messages are deleted and this name cannot be used again.');
    const dError = liveLine('error', 'delete-error', 'alert');
    const dStatus = liveLine('status', 'delete-status', 'status');
    const dSubmit = button('delete-submit', 'button danger small', 'Delete my account', 'submit');
    dForm.append(confirmLabel, dError, dStatus, dSubmit);
    deleteBox.append(dForm);
    dForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.deleteAccount({ password: dPassword, confirmBox, error: dError, status: dStatus, submit: dSubmit });
    });

    host.append(passwordBox, sessionsBox, deleteBox);
    this.loadSessions();
  }

  async changePassword({ current, next, again, error, status, submit }) {
    say(error, '');
    for (const input of [current, next, again]) markInvalid(input, false);
    if (!current.value) {
      say(error, 'Enter your current password');
      markInvalid(current, true, 'pw-error');
      current.focus();
      return;
    }
    const problem = passwordProblem(next.value, again.value);
    if (problem) {
      say(error, problem);
      markInvalid(next.value.length && problem.includes('match') ? again : next, true, 'pw-error');
      (problem.includes('match') ? again : next).focus();
      return;
    }
    setBusy(submit, true, 'Changing…');
    say(status, 'Checking your password and wrapping your keys again…');
    try {
      const { indexKey } = await changePassword(this.api, {
        session: this.session,
        password: current.value,
        newPassword: next.value,
        kdfMemory,
      });
      await this.index?.rekey(indexKey).catch(() => {});
      await saveIndexKey(indexKey);
      this.session.indexKey = indexKey;
      for (const input of [current, next, again]) input.value = '';
      say(status, 'Your password was changed. Every other session was signed out.');
      this.loadSessions();
    } catch (err) {
      say(status, '');
      say(error, `Your password was not changed: ${err instanceof AuthError ? err.message : authErrorMessage(err)}`);
      if (err instanceof AuthError && err.code === 'invalid_credentials') {
        markInvalid(current, true, 'pw-error');
        current.focus();
      }
    } finally {
      current.value = '';
      setBusy(submit, false);
    }
  }

  async loadSessions() {
    const list = this.sessionsList;
    say(this.sessionsStatus, 'Loading your sessions…');
    let answer;
    try {
      answer = await this.api.get('/api/sessions', { auth: true });
    } catch (err) {
      say(this.sessionsStatus, `Could not load your sessions: ${authErrorMessage(err)}`);
      return;
    }
    const sessions = Array.isArray(answer?.sessions) ? answer.sessions : [];
    list.replaceChildren();
    for (const s of sessions) {
      const li = el('li', 'session');
      li.dataset.id = String(s.id);
      li.dataset.current = s.current ? 'true' : 'false';
      const at = (ms) => (Number.isFinite(ms) ? fullFormat.format(new Date(ms)) : 'unknown');
      const title = el('strong', '', s.current ? 'This browser' : 'Another session');
      li.append(title, el('span', 'muted', ` · signed in ${at(s.created_at)} · last used ${at(s.last_used_at)}`));
      if (!s.current) {
        const revoke = el('button', 'button small subtle', 'Revoke');
        revoke.type = 'button';
        revoke.dataset.role = 'revoke';
        revoke.setAttribute('aria-label', `Revoke the session signed in ${at(s.created_at)}`);
        revoke.addEventListener('click', () => this.revoke(s.id, revoke));
        li.append(' ', revoke);
      }
      list.append(li);
    }
    say(this.sessionsStatus, sessions.length === 1 ? 'Only this browser is signed in.' : `${sessions.length} sessions are signed in.`);
  }

  async revoke(id, button) {
    setBusy(button, true, 'Revoking…');
    try {
      await this.api.del(`/api/sessions/${encodeURIComponent(id)}`, { auth: true });
      say(this.sessionsStatus, 'The session was signed out.');
    } catch (err) {
      setBusy(button, false);
      say(this.sessionsStatus, `Could not revoke it: ${authErrorMessage(err)}`);
      return;
    }
    await this.loadSessions();
    this.sessionsStatus.textContent = `The session was signed out. ${this.sessionsStatus.textContent}`;
  }

  async deleteAccount({ password, confirmBox, error, status, submit }) {
    say(error, '');
    markInvalid(password, false);
    if (!password.value) {
      say(error, 'Enter your password');
      markInvalid(password, true, 'delete-error');
      password.focus();
      return;
    }
    if (!confirmBox.checked) {
      say(error, 'Tick the box to confirm');
      confirmBox.focus();
      return;
    }
    setBusy(submit, true, 'Deleting…');
    say(status, 'Checking your password…');
    try {
      await deleteAccount(this.api, {
        session: this.session,
        password: password.value,
        kdfMemory,
      });
    } catch (err) {
      password.value = '';
      setBusy(submit, false);
      say(status, '');
      say(error, `Your account was not deleted: ${err instanceof AuthError || err instanceof ApiError ? err.message : authErrorMessage(err)}`);
      markInvalid(password, true, 'delete-error');
      password.focus();
      return;
    }
    password.value = '';
    say(status, 'Your account was deleted. Forgetting this device…');
    this.leave();
    await forgetAccount(this.session.username).catch(() => {});
    location.replace('login.html?deleted=1');
  }
}
