// login.html: prelogin (checked against the remembered KDF parameters) -> derive -> login ->
// unwrap -> verify against the directory -> store -> app. The submit button stays disabled
// until the handler is attached, so nothing can submit the form natively.
import { Api } from './api.js';
import { AuthError, WRONG_CREDENTIALS, authErrorMessage, normalizeUsername, signIn } from './auth.js';
import { clearSession, kdfMemory, loadSession, saveSession } from './store.js';
import { $, formFailure, markInvalid, noteExistingSession, queryFlag, say, setBusy } from './ui.js';

const form = $('login-form');
const username = $('username');
const password = $('password');
const submit = $('submit');
const error = $('form-error');
const status = $('form-status');

const STEPS = {
  prelogin: 'Contacting the server…',
  kdf: 'Deriving your keys from your password…',
  login: 'Unlocking your keys…',
};

/** Why the page was opened, from its query flag (set by chat/account.js). */
const REASONS = {
  expired: 'Your session has ended. Please sign in again.',
  signed_out: 'You have been signed out.',
  ended: 'You were signed out: this session was ended on the server (sign-out here or on another device).',
  keys_changed:
    'Your account’s keys were replaced from another session, so this session was signed out (its keys are the old ones). Sign in again to use the new keys.',
  rotated: 'Your keys were replaced. Sign in again to use them.',
  forgotten: 'You were signed out, and this browser no longer keeps anything of your account.',
  deleted: 'Your account was deleted, and this browser no longer keeps anything of it.',
};
for (const [flag, text] of Object.entries(REASONS)) if (queryFlag(flag)) say(status, text);

const fail = formFailure(error, status);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (submit.disabled) return;
  say(error, '');
  markInvalid(username, false);
  markInvalid(password, false);

  const name = normalizeUsername(username.value);
  username.value = name;
  if (!name) return fail('Enter your username', username);
  if (!password.value) return fail('Enter your password', password);

  setBusy(submit, true, 'Signing in…');
  form.setAttribute('aria-busy', 'true');
  say(status, STEPS.prelogin);
  try {
    const api = new Api();
    const session = await signIn(api, {
      username: name,
      password: password.value,
      kdfMemory,
      onProgress: (step) => say(status, STEPS[step] ?? ''),
    });
    const previous = await loadSession();
    await clearSession();
    await saveSession(session);
    password.value = '';
    if (previous?.refresh_token && previous.username !== session.username) {
      // end the replaced session on the server too (best effort)
      const old = new Api({ tokens: previous });
      await old.post('/api/auth/logout', { refresh_token: previous.refresh_token }, { auth: true }).catch(() => {});
    }
    say(status, 'Signed in. Opening securechat…');
    location.assign('chat.html');
  } catch (err) {
    setBusy(submit, false);
    form.removeAttribute('aria-busy');
    const message = authErrorMessage(err);
    if (message === WRONG_CREDENTIALS) {
      password.value = '';
      fail(message, password);
    } else {
      fail(message);
    }
    if (!(err instanceof AuthError)) console.warn('sign-in failed:', err?.name, err?.message);
  }
});

submit.disabled = false;
noteExistingSession(await loadSession());
