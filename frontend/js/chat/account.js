// Owns who is signed in: the account bar (#account: name, "Sign out", "Sign out everywhere"),
// the card with your own fingerprint, and leaving the page (the local session forgotten,
// the messenger stopped, off to the login page).
import { ApiError } from '../api.js';
import { authErrorMessage } from '../auth.js';
import { clearSession } from '../store.js';
import { $, renderDigits, say, show } from '../ui.js';

export class Account {
  constructor() {
    this.leaving = false;
    /** the running messenger, stopped on the way out (null before it exists) */
    this.messenger = null;
  }

  /** Fills the account bar and the fingerprint card from the stored session. */
  show(session) {
    $('me-username').textContent = session.username;
    $('me-username-2').textContent = session.username;
    $('me-key-version').textContent = String(session.key_version);
    renderDigits($('own-fingerprint'), session.fingerprint);
    show($('account'));
  }

  /** Leaves for the login page, which says why (`?expired=1`, `?signed_out=1`). */
  async leave(reason) {
    if (this.leaving) return;
    this.leaving = true;
    this.messenger?.stop();
    await clearSession().catch(() => {});
    location.replace(reason ? `login.html?${reason}=1` : 'login.html');
  }

  /** Sign-out for a page that failed to start: forget the local session, go to the login page. */
  wireSignOutFallback() {
    for (const id of ['sign-out', 'sign-out-all']) {
      $(id).addEventListener('click', () => this.leave('signed_out'));
    }
  }

  /** The two sign-out buttons of a running page. */
  wireSignOut(api) {
    const appStatus = $('app-status');
    const appError = $('app-error');
    const signOut = $('sign-out');
    const signOutAll = $('sign-out-all');
    const buttons = [signOut, signOutAll];

    signOut.addEventListener('click', async () => {
      for (const b of buttons) b.disabled = true;
      say(appStatus, 'Signing out…');
      this.messenger?.stop();
      try {
        await api.post('/api/auth/logout', () => ({ refresh_token: api.tokens?.refresh_token }), { auth: true });
      } catch {
        // the local session goes away in any case; a dead server session is harmless
      }
      this.leaving = true;
      await clearSession().catch(() => {});
      location.replace('login.html?signed_out=1');
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
  }
}
