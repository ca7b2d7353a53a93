// chat.html: the signed-in home. Checks the stored session, starts the messaging model
// (messenger.js over the relay socket in ws.js; all message crypto is in envelope.js) and
// wires it to the views in chat/: settings.js (the settings view) with account.js inside it
// (own fingerprint, sign-out, replacing keys), conversation-list.js, directory.js (finding
// people), conversation.js (one conversation,
// with composer.js, contact.js and attachments.js inside it; files through filebox.js and
// uploads.js), report.js (reporting a received message, offered when /api/features says so);
// issue #17's actions.js (reply, edit, delete, reactions, the timer), search.js (the encrypted local
// message search) and settings-account.js (password, sessions, account deletion). This file owns only that wiring: which model
// event re-renders which view, and the page-wide listeners (visibility, online, the live
// region announcing new messages).
import { Api, ApiError } from './api.js';
import { authErrorMessage } from './auth.js';
import { Messenger } from './messenger.js';
import { FileBox } from './filebox.js';
import { OUTBOX, PINS, SEEN, loadSession, ownStore, loadTokens, recordStore, saveTokens, uploadStore, withRefreshLock } from './store.js';
import { Uploads } from './uploads.js';
import { $, say, show } from './ui.js';
import { Relay } from './ws.js';
import { Account } from './chat/account.js';
import { ConversationList } from './chat/conversation-list.js';
import { Attachments } from './chat/attachments.js';
import { ConversationView } from './chat/conversation.js';
import { wireDirectory } from './chat/directory.js';
import { ReportDialog, reportsEnabled } from './chat/report.js';
import { SettingsView, showSettingsOnly } from './chat/settings.js';
import { Notifier } from './chat/notify.js';
import { MessageActions } from './chat/actions.js';
import { MessageSearch, indexFor, openAt } from './chat/search.js';
import { AccountSettings } from './chat/settings-account.js';
import { el } from './chat/format.js';

const main = $('main');
const appStatus = $('app-status');
const appError = $('app-error');
const account = new Account();

/** Runs `render` at most once per microtask turn, however often it is asked for. */
function coalesced(render) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      render();
    });
  };
}

/** Announces a new message in the page's live region (the newest five are kept). */
function announce(peer, message) {
  const live = $('live');
  const text = message.status === 'ok' ? message.text : 'a message that could not be verified';
  const note = el('p', '', `New message from ${peer}: ${text}`);
  live.append(note);
  while (live.childElementCount > 5) live.firstElementChild.remove();
}

/** Offers "Report" on received messages once GET /api/features lists admin_logs enabled. */
async function wireReports(api, messenger, conversation) {
  let features;
  try {
    features = await api.get('/api/features');
  } catch {
    return; // without the answer, the action is not offered
  }
  if (!reportsEnabled(features)) return;
  const dialog = new ReportDialog(messenger, (peer, sentence) => {
    if (peer === conversation.peer) conversation.status(sentence);
  });
  dialog.wire();
  conversation.reports = dialog;
  conversation.render();
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
    onSessionEnded: () => account.leave('expired'),
  });

  account.show(session);

  // Checks the session with the server (refreshing an expired access token on the way).
  try {
    const info = await api.get('/api/me', { auth: true });
    if (info.username !== me) {
      await account.leave('expired');
      return;
    }
    if (info.is_admin === true) account.offerAdminConsole(api);
    if (Number.isSafeInteger(info.key_version) && info.key_version !== session.key_version) {
      say(appError, 'Your keys were changed on another device. Sign out and sign in again to use the new keys.');
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      await account.leave('expired');
      return;
    }
    say(appError, `Could not check your session: ${authErrorMessage(err)}`);
  }
  say(appStatus, '');
  show($('app'));
  main.setAttribute('aria-busy', 'false');

  const relay = new Relay({ api });
  const messenger = new Messenger({
    api,
    session,
    relay,
    pins: recordStore(PINS, me),
    seen: recordStore(SEEN, me),
    isVisible: () => document.visibilityState === 'visible',
  });
  account.messenger = messenger;
  // issue #17: queued sends survive a reload as sealed envelopes; opened texts go to the encrypted search index
  messenger.outbox = ownStore(OUTBOX, me);
  const index = indexFor(messenger, session);

  const list = new ConversationList(messenger, (peer) => conversation.open(peer));
  const renderList = () => {
    list.render(conversation.peer);
    conversation.renderPresence();
  };
  const conversation = new ConversationView(messenger, api, session, {
    render: renderList,
    focus: (peer) => list.focus(peer),
  });
  const settings = new SettingsView(conversation);
  conversation.beforeOpen = () => settings.hide();
  settings.wire();
  const queueList = coalesced(renderList);
  const queueConversation = coalesced(() => conversation.render());

  const filebox = new FileBox({ api, messenger, relay });
  const uploads = new Uploads({
    api,
    me,
    sealManifest: (peer, manifest) => messenger.sealFileManifest(peer, manifest),
    store: uploadStore(me),
  });
  const attachments = new Attachments(filebox, uploads, () => conversation.peer);
  conversation.attachments = attachments;
  const queueFiles = coalesced(() => attachments.render());
  filebox.addEventListener('files', ({ detail: peer }) => {
    if (peer === conversation.peer) queueFiles();
  });
  uploads.addEventListener('change', ({ detail: upload }) => {
    if (upload.peer === conversation.peer) queueFiles();
  });
  attachments.wire();
  // file_ready frames missed while the relay was down: fetch the open conversation's files again
  relay.addEventListener('open', () => {
    if (conversation.peer) filebox.load(conversation.peer).catch(() => {});
  });
  window.addEventListener('online', () => uploads.retryNow());
  uploads.restore().then((restored) => {
    if (restored.length) {
      const peers = [...new Set(restored.map((u) => u.peer))].join(', ');
      say(appStatus, `Unfinished uploads to ${peers}: open the conversation and pick the file again to resume.`);
    }
  });

  account.wireSignOut(api);
  wireDirectory(api, me, (username) => conversation.open(username, { showSafety: true }));

  messenger.addEventListener('conversations', queueList);
  messenger.addEventListener('conversation', ({ detail: peer }) => {
    if (peer === conversation.peer) queueConversation();
    queueList(); // its row shows the key state (verified) and the last message too
  });
  const notifier = new Notifier(session, () => conversation.peer, (peer) => conversation.open(peer));
  notifier.wire();
  messenger.addEventListener('incoming', ({ detail: { peer, message } }) => {
    announce(peer, message);
    notifier.incoming(peer, message);
  });
  messenger.addEventListener('connection', ({ detail: state }) => {
    list.renderConnection(state);
    conversation.renderConnection(state);
    queueConversation();
  });
  messenger.addEventListener('notice', ({ detail: text }) => conversation.status(text));
  conversation.wire();
  conversation.actions = new MessageActions(messenger, () => conversation.peer, conversation.composer, (text) => conversation.status(text));
  conversation.actions.wire();
  new MessageSearch(index, (peer, id) => openAt(messenger, conversation, peer, id)).mount(document.querySelector('.side-list') ?? $('convs-title').parentElement);
  new AccountSettings({ api, session, index, leave: () => messenger.stop() }).mount($('settings-security'));
  wireReports(api, messenger, conversation);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      messenger.markRead();
      relay.reconnectNow();
    }
  });
  window.addEventListener('online', () => relay.reconnectNow());
  // a cut network: say so at once instead of trusting a socket that will only time out later
  window.addEventListener('offline', () => relay.wentOffline());
  renderList();

  await messenger.start();
}

// ---------------------------------------------------------------- start (after every declaration above)

const session = await loadSession();
if (!session) {
  account.leaving = true;
  location.replace('login.html');
} else {
  try {
    await start(session);
  } catch (err) {
    console.warn('securechat could not start:', err);
    say(appStatus, '');
    say(appError, `securechat could not start: ${authErrorMessage(err)} Try signing out and in again.`);
    show($('account'));
    showSettingsOnly();
    account.wireSignOutFallback();
  }
}
