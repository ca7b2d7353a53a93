// admin.html: the admin console (plugin admin-logs, docs/API-CONTRACT.md "Admin console").
// This file owns the gate and the wiring: it asks GET /api/features and GET /api/me, and
// unless the plugin is enabled and the signed-in user is an admin it shows a refusal and asks
// nothing more; otherwise it shows the views of admin/ (logs.js, users.js, ops.js, audit.js,
// reports.js; shared table and dialog helpers in table.js), one at a time, picked by the
// location hash (#messages, #files, …), each loaded when it is opened.
import { Api, ApiError, featureEnabled } from './api.js';
import { describeError } from './errors.js';
import { clearSession, loadSession, loadTokens, saveTokens, withRefreshLock } from './store.js';
import { $, say, show } from './ui.js';
import { AuditView } from './admin/audit.js';
import { LogView } from './admin/logs.js';
import { HealthView, JobsView } from './admin/ops.js';
import { ReportsView } from './admin/reports.js';
import { UsersView } from './admin/users.js';

const main = $('main');
const status = $('admin-status');
const error = $('admin-error');
const onError = (text) => say(error, text);

/** Shows the refusal (nothing else of the console); `signIn` links to the login page. */
function refuse(text, { signIn = false } = {}) {
  say(status, '');
  say($('refusal-text'), text);
  const link = $('refusal-link');
  link.href = signIn ? 'login.html' : 'chat.html';
  link.textContent = signIn ? 'Sign in' : 'Back to securechat';
  show($('refusal'));
  main.setAttribute('aria-busy', 'false');
}

/** The views, by the hash that opens them. */
function makeViews(api) {
  return {
    messages: new LogView(api, 'messages', onError),
    files: new LogView(api, 'files', onError),
    users: new UsersView(api, onError),
    jobs: new JobsView(api, onError),
    health: new HealthView(api, onError),
    audit: new AuditView(api, onError),
    reports: new ReportsView(api, onError),
  };
}

/** Shows the view named by the location hash (Messages when none or unknown) and loads it. */
function route(views, { focus }) {
  const wanted = location.hash.slice(1);
  const name = Object.hasOwn(views, wanted) ? wanted : 'messages';
  for (const key of Object.keys(views)) show($(`view-${key}`), key === name);
  for (const link of document.querySelectorAll('.admin-nav a')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  say(error, '');
  if (focus) $(`${name}-title`).focus();
  return views[name].show();
}

async function start() {
  const session = await loadSession();
  const api = new Api({
    tokens: session
      ? { access_token: session.access_token, refresh_token: session.refresh_token, access_expires_at: session.access_expires_at }
      : null,
    saveTokens,
    loadTokens,
    withLock: withRefreshLock,
    onSessionEnded: async () => {
      await clearSession().catch(() => {});
      location.replace('login.html?expired=1');
    },
  });

  const enabled = await featureEnabled(api, 'admin_logs');
  if (!session) {
    refuse('You are not signed in. Sign in with an administrator’s account to use it.', { signIn: true });
    return;
  }
  let me;
  try {
    me = await api.get('/api/me', { auth: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      refuse('Your session has ended. Sign in with an administrator’s account to use it.', { signIn: true });
      return;
    }
    throw err;
  }
  if (!enabled) {
    refuse('The admin console is not enabled on this server (the admin_logs plugin is not compiled in or is turned off).');
    return;
  }
  if (me?.is_admin !== true) {
    refuse(`You are signed in as ${me?.username ?? session.username}, who is not an administrator.`);
    return;
  }

  $('admin-username').textContent = me.username;
  show($('admin-who'));
  const views = makeViews(api);
  for (const view of Object.values(views)) view.wire();
  say(status, '');
  show($('console'));
  main.setAttribute('aria-busy', 'false');
  window.addEventListener('hashchange', () => route(views, { focus: true }));
  await route(views, { focus: false });
}

try {
  await start();
} catch (err) {
  say(status, '');
  say(error, `The admin console could not start: ${describeError(err)}`);
  main.setAttribute('aria-busy', 'false');
}
