// chat.html: the signed-in home. Your fingerprint, the user directory with fingerprints and
// safety numbers, and end-to-end encrypted messaging: the conversation list (unread counts,
// presence), a conversation (history with paging, live messages, states of your own messages,
// typing, key-change warnings) and the composer. All message crypto is in envelope.js, the
// model in messenger.js, the socket in ws.js; this file only renders. Message text is only
// ever written with textContent.
import { Api, ApiError } from './api.js';
import { authErrorMessage, fetchVerifiedKeys, normalizeUsername } from './auth.js';
import { safetyNumber } from './crypto.js';
import { MAX_TEXT_BYTES } from './envelope.js';
import { BlockedError, Messenger, textBytes } from './messenger.js';
import { changedSafetyNumbers, fetchKeyChanges } from './pins.js';
import { PINS, SEEN, clearSession, loadSession, loadTokens, recordStore, saveTokens, withRefreshLock } from './store.js';
import { $, renderDigits, say, show } from './ui.js';
import { Relay } from './ws.js';

const main = $('main');
const appStatus = $('app-status');
const appError = $('app-error');

let leaving = false;
let messenger = null;

async function leave(reason) {
  if (leaving) return;
  leaving = true;
  messenger?.stop();
  await clearSession().catch(() => {});
  location.replace(reason ? `login.html?${reason}=1` : 'login.html');
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

  const relay = new Relay({ api });
  messenger = new Messenger({
    api,
    session,
    relay,
    pins: recordStore(PINS, me),
    seen: recordStore(SEEN, me),
    isVisible: () => document.visibilityState === 'visible',
  });
  const view = new ChatView(messenger, api, session);
  wireSignOut(api);
  wireDirectory(api, session, view);
  view.wire();
  await messenger.start();
}

function wireSignOut(api) {
  const signOut = $('sign-out');
  const signOutAll = $('sign-out-all');
  const buttons = [signOut, signOutAll];

  signOut.addEventListener('click', async () => {
    for (const b of buttons) b.disabled = true;
    say(appStatus, 'Signing out…');
    messenger?.stop();
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
    messenger?.stop();
    leaving = true;
    await clearSession().catch(() => {});
    location.replace('login.html?signed_out=1');
  });
}

function wireDirectory(api, session, view) {
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
      view.open(user.username, { showSafety: true });
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

// ---------------------------------------------------------------- the contact card

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
  } catch (err) {
    if (mine !== contactGeneration) return;
    say(status, `Could not load ${username}’s keys: ${authErrorMessage(err)}`);
  }
}

// ---------------------------------------------------------------- formatting

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function when(ms) {
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFormat.format(d) : dateTimeFormat.format(d);
}

const STATE_LABEL = { sending: 'Sending…', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent' };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------- the messenger view

class ChatView {
  constructor(messenger, api, session) {
    this.m = messenger;
    this.api = api;
    this.session = session;
    this.me = session.username;
    this.peer = null;
    this.items = new Map(); // message key -> <li>
    this.convItems = new Map(); // peer -> <li>
    this.keyLogFor = null;
    this.renderQueued = new Set();
  }

  wire() {
    const m = this.m;
    m.addEventListener('conversations', () => this.queue('list'));
    m.addEventListener('conversation', ({ detail: peer }) => {
      if (peer === this.peer) this.queue('conversation');
    });
    m.addEventListener('incoming', ({ detail: { peer, message } }) => this.announce(peer, message));
    m.addEventListener('connection', ({ detail: state }) => this.renderConnection(state));
    m.addEventListener('notice', ({ detail: text }) => say($('conv-status'), text));

    $('composer').addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    const input = $('composer-input');
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && !event.altKey && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        this.send();
      }
    });
    input.addEventListener('input', () => {
      this.renderCount();
      if (input.value.trim()) m.typing(this.peer);
    });
    $('load-older').addEventListener('click', () => this.loadOlder());
    $('back').addEventListener('click', () => this.close());
    $('conv-safety').addEventListener('click', () => {
      const open = $('conv-safety').getAttribute('aria-expanded') !== 'true';
      this.toggleSafety(open);
    });
    $('accept-key').addEventListener('click', () => this.acceptKey());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') {
        m.markRead();
        m.relay.reconnectNow();
      }
    });
    window.addEventListener('online', () => m.relay.reconnectNow());
    this.renderList();
  }

  /** Coalesces renders: each part is rendered at most once per microtask turn. */
  queue(part) {
    if (this.renderQueued.has(part)) return;
    this.renderQueued.add(part);
    queueMicrotask(() => {
      this.renderQueued.delete(part);
      if (part === 'list') this.renderList();
      else this.renderConversation();
    });
  }

  // -------------------------------------------------------------- connection

  renderConnection(state) {
    const status = $('conn-status');
    status.dataset.state = state;
    const text = { open: 'Connected', connecting: 'Connecting…', waiting: 'Offline — reconnecting…', stopped: 'Disconnected' };
    status.textContent = text[state] ?? '';
    this.queue('conversation');
  }

  // -------------------------------------------------------------- conversation list

  presenceText(user) {
    if (user === this.me) return 'Notes to yourself';
    const p = this.m.presence.get(user);
    if (p?.online) return 'online';
    if (p?.last_seen) return `last seen ${when(p.last_seen)}`;
    // unknown unless the server said so: it only reports partners' presence (see the report)
    return p ? 'offline' : '';
  }

  renderList() {
    const list = $('conversations');
    const convs = this.m.list();
    show($('convs-empty'), convs.length === 0);
    const keep = new Set();
    let previous = null;
    for (const c of convs) {
      keep.add(c.peer);
      let li = this.convItems.get(c.peer);
      if (!li) {
        li = el('li');
        const button = el('button', 'conv');
        button.type = 'button';
        button.dataset.peer = c.peer;
        button.addEventListener('click', () => this.open(c.peer));
        const dot = el('span', 'presence-dot');
        dot.setAttribute('aria-hidden', 'true');
        const name = el('span', 'conv-name', c.peer === this.me ? `${c.peer} (you)` : c.peer);
        const sub = el('span', 'conv-sub');
        const badge = el('span', 'badge');
        button.append(dot, name, sub, badge);
        li.append(button);
        this.convItems.set(c.peer, li);
      }
      const button = li.firstChild;
      const [dot, , sub, badge] = button.children;
      const p = this.m.presence.get(c.peer);
      dot.dataset.online = p?.online ? 'true' : 'false';
      sub.textContent = this.presenceText(c.peer);
      badge.textContent = c.unread > 0 ? String(c.unread) : '';
      badge.hidden = c.unread <= 0;
      button.dataset.unread = String(c.unread);
      button.setAttribute('aria-label', `${c.peer}${c.peer === this.me ? ' (you)' : ''}, ${sub.textContent || 'presence unknown'}${c.unread > 0 ? `, ${c.unread} unread` : ''}`);
      if (c.peer === this.peer) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
      const wanted = previous ? previous.nextSibling : list.firstChild;
      if (wanted !== li) list.insertBefore(li, wanted);
      previous = li;
    }
    for (const [peer, li] of this.convItems) {
      if (!keep.has(peer)) {
        li.remove();
        this.convItems.delete(peer);
      }
    }
    if (this.peer) this.renderPresence();
  }

  // -------------------------------------------------------------- one conversation

  async open(peer, { showSafety = false } = {}) {
    const changed = peer !== this.peer;
    if (changed) {
      this.peer = peer;
      this.items.clear();
      $('messages').replaceChildren();
      $('composer-input').value = '';
      say($('composer-error'), '');
      say($('conv-status'), 'Loading messages…');
      this.keyLogFor = null;
    }
    $('conv-name').textContent = peer === this.me ? `${peer} (you)` : peer;
    $('composer-peer').textContent = peer;
    $('messages').setAttribute('aria-label', `Messages with ${peer}`);
    show($('panel-empty'), false);
    show($('conversation'));
    $('app').dataset.view = 'conversation';
    this.toggleSafety(showSafety);
    this.renderList();
    this.renderConversation();
    if (!showSafety) $('composer-input').focus();
    try {
      await this.m.openConversation(peer);
      if (this.peer === peer) say($('conv-status'), '');
    } catch (err) {
      if (this.peer === peer) say($('conv-status'), `Could not load the conversation: ${authErrorMessage(err)}`);
    }
    this.renderConversation();
    this.scrollToEnd();
  }

  close() {
    const peer = this.peer;
    this.m.closeConversation();
    this.peer = null;
    show($('conversation'), false);
    show($('contact'), false);
    show($('panel-empty'));
    $('app').dataset.view = 'list';
    this.renderList();
    this.convItems.get(peer)?.firstChild.focus();
  }

  toggleSafety(open) {
    const button = $('conv-safety');
    button.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open && this.peer) {
      showContact(this.api, this.session, this.peer);
    } else {
      show($('contact'), false);
    }
  }

  renderPresence() {
    const p = this.m.presence.get(this.peer);
    $('conv-dot').dataset.online = p?.online ? 'true' : 'false';
    $('conv-dot').hidden = this.peer === this.me;
    say($('conv-presence'), this.presenceText(this.peer));
  }

  renderConversation() {
    const peer = this.peer;
    if (!peer) return;
    const c = this.m.conversations.get(peer);
    this.renderPresence();
    say($('typing'), this.m.isTyping(peer) ? `${peer} is typing…` : '');
    this.renderKeys(c);
    this.renderMessages(c);
    show($('load-older'), Boolean(c?.hasOlder));
    this.renderComposer(c);
  }

  renderMessages(c) {
    const list = $('messages');
    const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
    const messages = this.m.ordered(this.peer);
    let previous = null;
    let addedOwn = false;
    const keep = new Set();
    for (const m of messages) {
      keep.add(m.key);
      let li = this.items.get(m.key);
      if (!li) {
        li = el('li', `msg ${m.mine ? 'mine' : 'theirs'}`);
        li.dataset.id = m.id;
        this.items.set(m.key, li);
        if (m.mine && m.state === 'sending') addedOwn = true;
      }
      this.fillMessage(li, m);
      const wanted = previous ? previous.nextSibling : list.firstChild;
      if (wanted !== li) list.insertBefore(li, wanted);
      previous = li;
    }
    for (const [key, li] of this.items) {
      if (!keep.has(key)) {
        li.remove();
        this.items.delete(key);
      }
    }
    const empty = messages.length === 0 && c?.loaded;
    list.dataset.empty = empty ? 'true' : 'false';
    if (atEnd || addedOwn) this.scrollToEnd();
  }

  fillMessage(li, m) {
    const signature = `${m.status}|${m.state}|${m.seq}|${m.text === null ? '' : m.text.length}|${m.error ?? ''}`;
    if (li.dataset.render === signature) return;
    li.dataset.render = signature;
    li.dataset.state = m.mine ? m.state : '';
    li.dataset.status = m.status;
    if (m.seq != null) li.dataset.seq = String(m.seq);
    const who = el('span', 'visually-hidden', m.mine ? 'You: ' : `${m.from}: `);
    let body;
    if (m.status === 'ok') {
      body = el('p', 'msg-text', m.text);
    } else {
      const reasons = {
        unverified: `Could not verify this message: it is not signed with ${m.from}’s verified key, so it is not shown.`,
        undecryptable: 'This message could not be decrypted here (it may have been encrypted for an earlier key of yours).',
        invalid: 'This message is malformed and is not shown.',
        pending: 'Opening…',
      };
      body = el('p', 'msg-text msg-problem', reasons[m.status] ?? reasons.invalid);
    }
    const meta = el('p', 'msg-meta');
    const time = el('time', '', when(m.serverTs ?? m.sentAt));
    time.dateTime = new Date(m.serverTs ?? m.sentAt).toISOString();
    time.title = fullFormat.format(new Date(m.serverTs ?? m.sentAt));
    meta.append(time);
    if (m.mine) {
      const state = el('span', 'msg-state', STATE_LABEL[m.state] ?? m.state);
      state.dataset.state = m.state;
      meta.append(' · ', state);
      if (m.state === 'failed' && m.error) meta.append(el('span', 'msg-error', ` — ${m.error}`));
    }
    li.replaceChildren(who, body, meta);
  }

  renderComposer(c) {
    // keys not checked yet: sendText() checks them itself; only a changed or invalid key blocks
    const found = this.m.blocked(this.peer);
    const blocked = found === 'key_changed' || found === 'key_invalid' ? found : null;
    const send = $('send');
    const error = $('composer-error');
    send.disabled = Boolean(blocked);
    $('composer').dataset.blocked = blocked ?? '';
    if (blocked === 'key_changed') {
      say(error, `Sending to ${this.peer} is blocked until you verify their new safety number (above).`);
    } else if (blocked === 'key_invalid') {
      say(error, `Sending to ${this.peer} is blocked: their published keys are not valid.`);
    } else if (error.dataset.kind === 'blocked') {
      say(error, '');
    }
    error.dataset.kind = blocked ? 'blocked' : '';
  }

  renderCount() {
    const bytes = textBytes($('composer-input').value);
    const count = $('composer-count');
    count.textContent = bytes > MAX_TEXT_BYTES * 0.8 ? `${bytes} / ${MAX_TEXT_BYTES} bytes` : '';
    count.dataset.over = bytes > MAX_TEXT_BYTES ? 'true' : 'false';
  }

  renderKeys(c) {
    const box = $('key-warning');
    const keys = c?.keys;
    if (!keys || (keys.status !== 'changed' && keys.status !== 'invalid') || this.peer === this.me) {
      show(box, false);
      this.keyLogFor = null;
      return;
    }
    const peer = this.peer;
    show(box);
    $('key-log-name').textContent = peer;
    if (keys.status === 'invalid') {
      $('key-warning-title').textContent = `${peer}’s published keys are not valid`;
      $('key-warning-text').textContent =
        `The keys the server publishes for ${peer} do not carry a valid self-signature (or the server misreports their fingerprint). ` +
        'Sending is blocked and messages that are not signed with a key you accepted are not shown.';
      show($('key-compare'), false);
      show($('accept-key'), false);
    } else {
      $('key-warning-title').textContent = `${peer}’s safety number has changed`;
      const pinnedOn = keys.pin?.pinned_at ? `, pinned ${fullFormat.format(new Date(keys.pin.pinned_at))}` : '';
      $('key-warning-text').textContent =
        `The server now shows other keys for ${peer} (version ${keys.pin.key_version}${pinnedOn} → version ${keys.current.key_version}). ` +
        'That happens when someone sets up their keys again — or when someone tries to read along. ' +
        `Compare the new safety number with ${peer} in person or over a channel you trust before you write again.`;
      const numbers = changedSafetyNumbers({ username: this.me, fingerprint: this.session.fingerprint }, peer, keys.pin, keys.current);
      renderDigits($('old-safety'), numbers.old);
      renderDigits($('new-safety'), numbers.new);
      show($('key-compare'));
      show($('accept-key'));
    }
    const logKey = `${peer}|${keys.current?.fingerprint}`;
    if (this.keyLogFor !== logKey) {
      this.keyLogFor = logKey;
      this.renderKeyLog(peer, logKey);
    }
  }

  async renderKeyLog(peer, logKey) {
    const list = $('key-log');
    const status = $('key-log-status');
    list.replaceChildren();
    say(status, 'Loading the key-change log…');
    try {
      const changes = await fetchKeyChanges(this.api, peer);
      if (this.keyLogFor !== logKey) return;
      const pinned = this.m.conversations.get(peer)?.keys?.pin?.fingerprint;
      for (const change of changes) {
        const li = el('li');
        li.dataset.version = String(change.key_version);
        const head = el('strong', '', `Key version ${change.key_version}`);
        const at = Number.isFinite(change.changed_at) ? ` · ${fullFormat.format(new Date(change.changed_at))}` : '';
        li.append(head, at);
        const fp = el('span', 'log-fp', change.fingerprint ? ` · fingerprint ${change.fingerprint.match(/.{5}/g).join(' ')}` : ' · fingerprint unavailable');
        li.append(fp);
        const notes = [];
        if (!change.selfSigValid) notes.push('no valid self-signature');
        if (change.chained === true) notes.push('signed by their previous key');
        if (change.chained === false) notes.push('NOT signed by their previous key');
        if (change.fingerprint && change.fingerprint === pinned) notes.push('the key you pinned');
        if (notes.length) li.append(el('span', 'log-note', ` · ${notes.join(' · ')}`));
        list.append(li);
      }
      say(status, changes.length ? '' : 'The server published no key changes.');
    } catch (err) {
      if (this.keyLogFor === logKey) say(status, `Could not load the key-change log: ${authErrorMessage(err)}`);
    }
  }

  async acceptKey() {
    const peer = this.peer;
    const button = $('accept-key');
    button.disabled = true;
    try {
      await this.m.acceptKeyChange(peer);
      say($('conv-status'), `You verified ${peer}’s new safety number. Sending is possible again.`);
      $('composer-input').focus();
    } catch (err) {
      say($('conv-status'), `Could not accept the new keys: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  async loadOlder() {
    const list = $('messages');
    const button = $('load-older');
    const fromEnd = list.scrollHeight - list.scrollTop;
    button.disabled = true;
    try {
      await this.m.loadOlder(this.peer);
      this.renderConversation();
      list.scrollTop = list.scrollHeight - fromEnd;
    } catch (err) {
      say($('conv-status'), `Could not load earlier messages: ${authErrorMessage(err)}`);
    } finally {
      button.disabled = false;
    }
  }

  scrollToEnd() {
    const list = $('messages');
    list.scrollTop = list.scrollHeight;
  }

  async send() {
    const input = $('composer-input');
    const error = $('composer-error');
    const text = input.value;
    if (!this.peer || !text.trim()) return;
    const peer = this.peer;
    try {
      input.value = '';
      this.renderCount();
      await this.m.sendText(peer, text);
      if (error.dataset.kind !== 'blocked') say(error, '');
    } catch (err) {
      if (this.peer === peer && !input.value) input.value = text;
      this.renderCount();
      error.dataset.kind = err instanceof BlockedError && err.code.startsWith('key') ? 'blocked' : '';
      say(error, err instanceof BlockedError ? err.message : `Not sent: ${authErrorMessage(err)}`);
    }
  }

  announce(peer, message) {
    const live = $('live');
    const text = message.status === 'ok' ? message.text : 'a message that could not be verified';
    const note = el('p', '', `New message from ${peer}: ${text}`);
    live.append(note);
    while (live.childElementCount > 5) live.firstElementChild.remove();
  }
}

// ---------------------------------------------------------------- start (after every declaration above)

const session = await loadSession();
if (!session) {
  leaving = true;
  location.replace('login.html');
} else {
  try {
    await start(session);
  } catch (err) {
    console.warn('securechat could not start:', err);
    say(appStatus, '');
    say(appError, `securechat could not start: ${authErrorMessage(err)} Try signing out and in again.`);
    show($('account'));
    wireSignOutFallback();
  }
}
