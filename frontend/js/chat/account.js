// Owns who is signed in: the account section of the settings view (#account: name, the admin
// console link for admins, "Sign out", "Sign out everywhere"; your own fingerprint and the
// account actions under it: "Replace my keys", "Forget this device"), the ends of a session the relay reports (close code 4401, a
// `keys_changed` frame from another session), and leaving the page (the local session
// forgotten, the messenger stopped, off to the login page, which says why).
import { ApiError, featureEnabled } from '../api.js';
import { authErrorMessage, isOwnRotation, replaceKeys } from '../auth.js';
import { clearSession, forgetAccount, kdfMemory, loadSession, saveSession } from '../store.js';
import { $, markInvalid, renderDigits, say, setBusy, show } from '../ui.js';

export class Account {
  constructor() {
    this.leaving = false;
    /** the running messenger, stopped on the way out (null before it exists) */
    this.messenger = null;
    /** the stored session this page runs with (set by show) */
    this.session = null;
  }

  /** Fills the account bar and the fingerprint card from the stored session. */
  show(session) {
    this.session = session;
    for (const id of ['me-username', 'me-username-2', 'me-username-3']) $(id).textContent = session.username;
    $('me-key-version').textContent = String(session.key_version);
    renderDigits($('own-fingerprint'), session.fingerprint);
    show($('account'));
  }

  /** Shows the link to admin.html (for an admin) when GET /api/features lists admin_logs enabled. */
  async offerAdminConsole(api) {
    try {
      show($('admin-link'), await featureEnabled(api, 'admin_logs'));
    } catch {
      // no link: the console itself would say why
    }
  }

  /**
   * Leaves for the login page, which says why (`?expired=1`, `?signed_out=1`, `?ended=1`,
   * `?keys_changed=1`, `?rotated=1`, `?forgotten=1`).
   */
  async leave(reason) {
    if (this.leaving) return;
    this.leaving = true;
    this.messenger?.stop();
    await clearSession().catch(() => {});
    location.replace(reason ? `login.html?${reason}=1` : 'login.html');
  }

  /** Ends this session on the server (best effort), then leaves. */
  async signOut(api, reason) {
    if (this.leaving) return;
    this.leaving = true; // a 401 on the way (Api's onSessionEnded) must not leave first
    this.messenger?.stop();
    await logout(api);
    await clearSession().catch(() => {});
    location.replace(`login.html?${reason}=1`);
  }

  /** Sign-out for a page that failed to start: forget the local session, go to the login page. */
  wireSignOutFallback() {
    for (const id of ['sign-out', 'sign-out-all']) {
      $(id).addEventListener('click', () => this.leave('signed_out'));
    }
    this.wireForget(null);
  }

  /**
   * Everything the account owns on a running page: the two sign-out buttons, the account
   * actions, and the session ends the messenger's relay reports.
   */
  wireSignOut(api) {
    const appStatus = $('app-status');
    const appError = $('app-error');
    const signOut = $('sign-out');
    const signOutAll = $('sign-out-all');
    const buttons = [signOut, signOutAll];

    signOut.addEventListener('click', () => {
      for (const b of buttons) b.disabled = true;
      say(appStatus, 'Signing out…');
      this.signOut(api, 'signed_out');
    });

    signOutAll.addEventListener('click', async () => {
      for (const b of buttons) b.disabled = true;
      say(appError, '');
      say(appStatus, 'Signing out of every device…');
      try {
        await api.post('/api/auth/logout-all', undefined, { auth: true });
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 401)) {
          // keep the session so the user can retry: the other devices are still signed in
          say(appStatus, '');
          say(appError, `Could not sign out everywhere: ${authErrorMessage(err)}`);
          for (const b of buttons) b.disabled = false;
          return;
        }
      }
      this.messenger?.stop();
      this.leaving = true;
      await clearSession().catch(() => {});
      location.replace('login.html?signed_out=1');
    });

    this.wireReplaceKeys(api);
    this.wireForget(api);
    if (this.messenger?.relay) this.watchRelay(api, this.messenger.relay);
  }

  /**
   * The relay's word that this session is over: closed with 4401 (signed out on the server),
   * or the account's keys replaced by another session (this one holds the old keys).
   */
  watchRelay(api, relay) {
    relay.addEventListener('ended', () => this.leave('ended'));
    relay.addEventListener('keys_changed', ({ detail: frame }) => {
      const version = frame?.key_version;
      const me = this.session;
      if (!me || !Number.isSafeInteger(version) || version <= me.key_version) return;
      if (isOwnRotation(me.username, version)) return; // this page's own "Replace my keys"
      say($('app-error'), 'Your account’s keys were replaced from another session. Signing this session out…');
      this.signOut(api, 'keys_changed');
    });
  }

  /** "Replace my keys": a password form, then rotation and a new sign-in with the new keys. */
  wireReplaceKeys(api) {
    const toggle = $('replace-keys');
    const form = $('replace-keys-form');
    const password = $('replace-password');
    const submit = $('replace-submit');
    const error = $('replace-error');
    const status = $('replace-status');
    const open = (visible) => {
      show(form, visible);
      toggle.setAttribute('aria-expanded', String(visible));
      password.value = '';
      say(error, '');
      say(status, '');
      markInvalid(password, false);
      if (visible) password.focus();
    };
    toggle.addEventListener('click', () => open(form.hidden));
    $('replace-cancel').addEventListener('click', () => open(false));

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (submit.disabled || this.leaving) return;
      say(error, '');
      markInvalid(password, false);
      if (!password.value) {
        say(error, 'Enter your password');
        markInvalid(password, true, 'replace-error');
        password.focus();
        return;
      }
      const session = this.session;
      setBusy(submit, true, 'Replacing…');
      say(status, 'Generating new keys and checking your password…');
      try {
        const fresh = await replaceKeys(api, { session, password: password.value, kdfMemory });
        password.value = '';
        say(status, 'Your keys were replaced. Signing in with them…');
        this.leaving = true;
        this.messenger?.stop();
        await logout(api); // the old session (its answer may clear the site's storage: save after it)
        await clearSession().catch(() => {});
        await saveSession(fresh);
        location.reload();
      } catch (err) {
        password.value = '';
        setBusy(submit, false);
        say(status, '');
        if (isOwnRotation(session.username, session.key_version + 1)) {
          // the keys were replaced, only the new sign-in failed: this session is stale now
          this.leaving = false;
          this.signOut(api, 'rotated');
          return;
        }
        say(error, `Your keys were not replaced: ${authErrorMessage(err)}`);
        markInvalid(password, true, 'replace-error');
        password.focus();
      }
    });
  }

  /** "Forget this device": sign out, then delete every record of this account here. */
  wireForget(api) {
    const toggle = $('forget-device');
    const panel = $('forget-panel');
    const confirm = $('forget-confirm');
    const error = $('forget-error');
    const open = (visible) => {
      show(panel, visible);
      toggle.setAttribute('aria-expanded', String(visible));
      say(error, '');
    };
    toggle.addEventListener('click', () => open(panel.hidden));
    $('forget-cancel').addEventListener('click', () => open(false));
    confirm.addEventListener('click', async () => {
      if (this.leaving) return;
      setBusy(confirm, true, 'Forgetting…');
      this.leaving = true;
      this.messenger?.stop();
      const username = this.session?.username ?? (await loadSession())?.username;
      if (api) await logout(api);
      try {
        if (username) await forgetAccount(username);
      } catch {
        say(error, 'This browser could not delete your data. Try again, or clear this site’s data in the browser settings.');
        setBusy(confirm, false);
        this.leaving = false;
        return;
      }
      location.replace('login.html?forgotten=1');
    });
  }
}

/** POST /api/auth/logout for the page's session; a failure is harmless (the local session goes anyway). */
async function logout(api) {
  try {
    await api.post('/api/auth/logout', () => ({ refresh_token: api.tokens?.refresh_token }), { auth: true });
  } catch {
    // a dead or unreachable server session: nothing more to end
  }
}
