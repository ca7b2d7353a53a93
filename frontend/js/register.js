// register.html: validate, generate keys, derive, register (the KDF parameters remembered for
// later sign-ins), sign in, open the app. The submit button stays disabled until the handler
// is attached, so nothing can submit the form natively.
import { Api } from './api.js';
import {
  AuthError,
  authErrorMessage,
  normalizeUsername,
  passwordProblem,
  register,
  usernameProblem,
} from './auth.js';
import { DEFAULT_ITERATIONS } from './crypto.js';
import { clearSession, kdfMemory, loadSession, saveSession } from './store.js';
import { $, formFailure, markInvalid, noteExistingSession, say, setBusy } from './ui.js';

const form = $('register-form');
const username = $('username');
const password = $('password');
const password2 = $('password2');
const submit = $('submit');
const error = $('form-error');
const status = $('form-status');

const STEPS = {
  keys: 'Generating your encryption and signing keys…',
  kdf: `Deriving your password key (${DEFAULT_ITERATIONS.toLocaleString('en')} PBKDF2 rounds)…`,
  register: 'Creating your account…',
  login: 'Signing you in…',
};

const fail = formFailure(error, status);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (submit.disabled) return;
  say(error, '');
  for (const input of [username, password, password2]) markInvalid(input, false);

  const name = normalizeUsername(username.value);
  username.value = name;
  const nameProblem = usernameProblem(name);
  if (nameProblem) return fail(nameProblem, username);
  const pwProblem = passwordProblem(password.value, password2.value);
  if (pwProblem) return fail(pwProblem, pwProblem.includes('match') ? password2 : password);

  setBusy(submit, true, 'Generating your keys…');
  form.setAttribute('aria-busy', 'true');
  say(status, STEPS.keys);
  try {
    const api = new Api();
    const session = await register(api, {
      username: name,
      password: password.value,
      kdfMemory,
      onProgress: (step) => say(status, STEPS[step] ?? ''),
    });
    await clearSession();
    await saveSession(session);
    password.value = '';
    password2.value = '';
    say(status, 'Your account is ready. Opening securechat…');
    location.assign('chat.html');
  } catch (err) {
    setBusy(submit, false);
    form.removeAttribute('aria-busy');
    const field = err instanceof AuthError && err.code === 'username_taken' ? username : null;
    fail(authErrorMessage(err), field);
    if (!(err instanceof AuthError)) console.warn('registration failed:', err?.name, err?.message);
  }
});

submit.disabled = false;
noteExistingSession(await loadSession());
