// chat.html: the signed-in home. Shows who you are and your key fingerprint, searches the user
// directory and shows a user's fingerprint and your safety number with them, and signs out.
// (Messaging arrives in a later issue.)
import { Api, ApiError } from './api.js';
import { authErrorMessage, fetchVerifiedKeys, normalizeUsername } from './auth.js';
import { safetyNumber } from './crypto.js';
import { clearSession, loadSession, loadTokens, saveTokens, withRefreshLock } from './store.js';
import { $, renderDigits, say, show } from './ui.js';

const main = $('main');
const appStatus = $('app-status');
const appError = $('app-error');

let leaving = false;
async function leave(reason) {
  if (leaving) return;
  leaving = true;
  await clearSession().catch(() => {});
  location.replace(reason ? `login.html?${reason}=1` : 'login.html');
}

const session = await loadSession();
if (!session) {
  leaving = true;
  location.replace('login.html');
} else {
  try {
    await start(session);
  } catch (err) {
    say(appStatus, '');
    say(appError, `securechat could not start: ${authErrorMessage(err)} Try signing out and in again.`);
    show($('account'));
    wireSignOutFallback();
  }
}

/** Sign-out for a page that failed to start: forget the local session, go to the login page. */
function wireSignOutFallback() {
  for (const id of ['sign-out', 'sign-out-all']) {
    $(id).addEventListener('click', () => leave('signed_out'));
  }
}

async function start(session) {
  const me = session.username;
  const api = new Api({
    tokens: {
      access_token: session.access_token,
      refresh_token: session.refresh_token,
      access_expires_at: session.access_expires_at,
    },
    saveTokens,
    loadTokens,
    withLock: withRefreshLock,
    onSessionEnded: () => leave('expired'),
  });

  $('me-username').textContent = me;
  $('me-username-2').textContent = me;
  $('me-key-version').textContent = String(session.key_version);
  renderDigits($('own-fingerprint'), session.fingerprint);
  show($('account'));

  // Checks the session with the server (refreshing an expired access token on the way).
  try {
    const info = await api.get('/api/me', { auth: true });
    if (info.username !== me) {
      await leave('expired');
      return;
    }
    if (Number.isSafeInteger(info.key_version) && info.key_version !== session.key_version) {
      say(appError, 'Your keys were changed on another device. Sign out and sign in again to use the new keys.');
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      await leave('expired');
      return;
    }
    say(appError, `Could not check your session: ${authErrorMessage(err)}`);
  }
  say(appStatus, '');
  show($('app'));
  main.setAttribute('aria-busy', 'false');

  wireSignOut(api);
  wireDirectory(api, session);
}

function wireSignOut(api) {
  const signOut = $('sign-out');
  const signOutAll = $('sign-out-all');
  const buttons = [signOut, signOutAll];

  signOut.addEventListener('click', async () => {
    for (const b of buttons) b.disabled = true;
    say(appStatus, 'Signing out…');
    try {
      await api.post('/api/auth/logout', () => ({ refresh_token: api.tokens?.refresh_token }), { auth: true });
    } catch {
      // the local session goes away in any case; a dead server session is harmless
    }
    leaving = true;
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
    leaving = true;
    await clearSession().catch(() => {});
    location.replace('login.html?signed_out=1');
  });
}

function wireDirectory(api, session) {
  const form = $('search-form');
  const input = $('search');
  const results = $('results');
  const more = $('more');
  const searchStatus = $('search-status');
  let generation = 0;
  let nextCursor = null;
  let currentQuery = '';
  let debounce = null;

  async function search(query, cursor = null) {
    const mine = ++generation;
    currentQuery = query;
    const params = new URLSearchParams({ query });
    if (cursor) params.set('cursor', cursor);
    say(searchStatus, 'Searching…');
    try {
      const answer = await api.get(`/api/users?${params}`, { auth: true });
      if (mine !== generation) return;
      if (!cursor) results.replaceChildren();
      for (const user of answer.users ?? []) results.append(userItem(user, session.username));
      results.dataset.query = query; // what the list shows (tests wait on it)
      nextCursor = answer.next_cursor ?? null;
      show(more, Boolean(nextCursor));
      const count = results.children.length;
      say(searchStatus, count === 0 ? 'No users found.' : `${count} user${count === 1 ? '' : 's'} found.`);
    } catch (err) {
      if (mine !== generation) return;
      say(searchStatus, `Search failed: ${authErrorMessage(err)}`);
    }
  }

  function userItem(user, me) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'user';
    button.dataset.username = user.username;
    button.textContent = user.username;
    if (user.username === me) {
      const you = document.createElement('span');
      you.className = 'tag';
      you.textContent = 'you';
      button.append(' ', you);
    }
    button.addEventListener('click', () => {
      for (const other of results.querySelectorAll('button.user[aria-current]')) other.removeAttribute('aria-current');
      button.setAttribute('aria-current', 'true');
      showContact(api, session, user.username);
    });
    li.append(button);
    return li;
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(debounce);
    search(normalizeUsername(input.value));
  });
  input.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => search(normalizeUsername(input.value)), 250);
  });
  more.addEventListener('click', () => {
    if (nextCursor) search(currentQuery, nextCursor);
  });

  search('');
}

let contactGeneration = 0;

async function showContact(api, session, username) {
  const mine = ++contactGeneration;
  const panel = $('contact');
  const status = $('contact-status');
  const warning = $('contact-warning');
  const details = $('contact-details');
  $('contact-name').textContent = username;
  $('contact-name-2').textContent = username;
  show(panel);
  show(details, false);
  show(warning, false);
  warning.textContent = '';
  say(status, 'Checking their keys…');
  try {
    const keys = await fetchVerifiedKeys(api, username);
    if (mine !== contactGeneration) return;
    const problems = [];
    if (!keys.selfSigValid) {
      problems.push('These keys do not carry a valid self-signature. Do not trust them.');
    }
    if (!keys.serverFingerprintMatches) {
      problems.push('The fingerprint the server reports differs from the one computed from the keys.');
    }
    if (problems.length) {
      warning.textContent = problems.join(' ');
      show(warning);
    }
    renderDigits($('contact-fingerprint'), keys.fingerprint);
    $('contact-key-version').textContent = String(keys.key_version);
    const self = username === session.username;
    show($('contact-self'), self);
    show($('safety-box'), !self);
    if (!self) {
      renderDigits(
        $('safety-number'),
        safetyNumber({ username: session.username, fingerprint: session.fingerprint }, keys),
      );
    }
    say(status, '');
    show(details);
    panel.scrollIntoView({ block: 'nearest' });
  } catch (err) {
    if (mine !== contactGeneration) return;
    say(status, `Could not load ${username}’s keys: ${authErrorMessage(err)}`);
  }
}
