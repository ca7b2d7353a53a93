// Owns the conversation pane (#conversation, or #panel-empty when none is open): the header
// (back button on a phone, name, presence, whether the safety number is verified, the
// "Safety number" button that opens the dialog of contact.js), the banner while the relay is
// offline or reconnecting, the key-change warning (old and new numbers, one verdict on whether
// the new keys descend from the pinned ones, the published key log, "Accept the new keys"),
// the messages (day separators, a sender's consecutive messages grouped, infinite scroll back
// through history keeping what is on screen in place, the newest kept in view when the list
// was at the bottom — across resizes too —, ticks for the states of your own messages with a
// label for screen readers, http(s) links made clickable with DOM calls, the signed send time
// with a mark when the server's time differs much, a label on messages signed by a previous
// key, messages that did not verify shown as such, and on a received message that opened, a
// "Report" action when reports are enabled) and the typing line. The composer and the
// contact card inside the pane are their own modules, and so are the files (attachments.js,
// set by chat.js); this one opens, closes and re-renders them; the report dialog is
// chat/report.js. Message text is only ever written with textContent (links: text nodes and
// <a> elements built one by one).
import { authErrorMessage } from '../auth.js';
import { changedSafetyNumbers, fetchKeyChanges } from '../pins.js';
import { $, renderDigits, say, show } from '../ui.js';
import { Composer } from './composer.js';
import { ContactCard } from './contact.js';
import { dayLabel, dropMissing, el, fullFormat, placeAfter, presenceState, presenceText, timeOfDay } from './format.js';

/** A signed send time further than this from the server's time is marked. */
export const CLOCK_SKEW_MARK_MS = 5 * 60 * 1000;

/** Consecutive messages of one sender closer than this are grouped (one tail, less space). */
export const GROUP_WITHIN_MS = 3 * 60 * 1000;
/** Older messages are fetched when the list is scrolled this close to its top. */
const LOAD_OLDER_AT_PX = 240;

const STATE_LABEL = { queued: 'Queued: sends when you are back online', sending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent' };
// the ticks are drawn as text; their meaning is read out from the hidden label beside them
const STATE_TICKS = { queued: '⏲', sending: '○', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' };

/** The local calendar day of a time, as YYYY-MM-DD. */
function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** Matches http(s) links in message text (trailing punctuation is cut off below). */
const LINK = /\bhttps?:\/\/[^\s<>"']+/gi;

/**
 * The text of a message as DOM nodes: text nodes, and <a> elements for http/https links only
 * (opened in a new tab without referrer or opener). Never HTML.
 */
export function linkified(text) {
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(LINK)) {
    let href = match[0];
    while (/[.,;:!?)\]}'"»]$/.test(href)) href = href.slice(0, -1);
    let url;
    try {
      url = new URL(href);
    } catch {
      continue;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') continue;
    if (match.index > at) nodes.push(document.createTextNode(text.slice(at, match.index)));
    const a = document.createElement('a');
    a.href = url.href;
    a.textContent = href;
    a.rel = 'noopener noreferrer';
    a.target = '_blank';
    a.className = 'msg-link';
    nodes.push(a);
    at = match.index + href.length;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

/** Whether the message list is scrolled to (within a few pixels of) its newest message. */
function isAtEnd(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 48;
}

export class ConversationView {
  /**
   * @param {import('../messenger.js').Messenger} messenger
   * @param {import('../api.js').Api} api
   * @param {object} session  the signed-in user's session
   * @param {object} list  the page's conversation list: { render(), focus(peer) }
   */
  constructor(messenger, api, session, list) {
    this.m = messenger;
    this.api = api;
    this.session = session;
    this.me = session.username;
    this.list = list;
    this.peer = null;
    /** whether the message list was at its newest message when last scrolled */
    this.atEnd = true;
    this.items = new Map(); // message key -> <li>
    this.keyLogFor = null;
    this.contact = new ContactCard(messenger, session);
    this.composer = new Composer(messenger, () => this.peer);
    /** the files of the conversation (chat/attachments.js), or null */
    this.attachments = null;
    /** the report dialog (chat/report.js), set by chat.js only when reports are enabled */
    this.reports = null;
    /** the message actions (chat/actions.js), set by chat.js: decorates bubbles and system lines */
    this.actions = null;
    /** called before the pane shows a conversation (chat.js closes the settings view) */
    this.beforeOpen = null;
  }

  wire() {
    this.composer.wire();
    this.contact.wire();
    $('load-older').addEventListener('click', () => this.loadOlder());
    $('back').addEventListener('click', () => this.close());
    $('conv-safety').addEventListener('click', () => {
      if (this.peer) this.contact.openDialog(this.peer);
    });
    // back on the button that opened it (the dialog's own default is the body)
    $('safety-dialog').addEventListener('close', () => {
      if (this.peer && !$('conversation').hidden) $('conv-safety').focus();
    });
    $('accept-key').addEventListener('click', () => this.acceptKey());
    // the list stays at the newest message when its box changes size (a resize, the keyboard
    // on a phone, the key warning or the files panel growing) if it was there before
    const list = $('messages');
    list.addEventListener('scroll', () => {
      this.atEnd = isAtEnd(list);
      // infinite scroll back through history
      if (list.scrollTop < LOAD_OLDER_AT_PX && this.peer && this.m.conversations.get(this.peer)?.hasOlder) this.loadOlder();
    }, { passive: true });
    new ResizeObserver(() => {
      if (this.atEnd) this.scrollToEnd();
    }).observe(list);
  }

  /**
   * The banner under the header while the relay is not connected (offline, reconnecting);
   * nothing while it connects for the first time.
   */
  renderConnection(state) {
    if (state === 'open') this.wasOpen = true;
    const banner = $('conn-banner');
    banner.dataset.state = state;
    const text =
      state === 'waiting'
        ? 'Offline — reconnecting… Messages you write are sent when the connection is back.'
        : state === 'stopped'
          ? 'Disconnected.'
          : state === 'connecting' && this.wasOpen
            ? 'Reconnecting…'
            : '';
    say(banner, text);
    show(banner, Boolean(text));
  }

  /** A line for the user above the messages ('' clears it). */
  status(text) {
    say($('conv-status'), text);
  }

  async open(peer, { showSafety = false } = {}) {
    const changed = peer !== this.peer;
    if (changed) {
      this.peer = peer;
      this.items.clear();
      $('messages').replaceChildren();
      this.composer.clear();
      this.actions?.reset();
      this.status('Loading messages…');
      this.keyLogFor = null;
      this.attachments?.open(peer);
    }
    $('conv-name').textContent = peer === this.me ? `${peer} (you)` : peer;
    this.composer.label(peer);
    $('messages').setAttribute('aria-label', `Messages with ${peer}`);
    this.beforeOpen?.();
    show($('panel-empty'), false);
    show($('conversation'));
    $('app').dataset.view = 'conversation';
    // picked in the directory: the card is filled (first use pins the keys) for the dialog
    if (showSafety) this.contact.show(peer);
    else if (changed) this.contact.hide();
    this.list.render();
    this.render();
    this.composer.focus();
    try {
      await this.m.openConversation(peer);
      if (this.peer === peer) this.status('');
    } catch (err) {
      if (this.peer === peer) this.status(`Could not load the conversation: ${authErrorMessage(err)}`);
    }
    this.render();
    this.scrollToEnd();
  }

  /** Closes the open conversation; `focus` moves focus to its row in the list. */
  close({ focus = true } = {}) {
    const peer = this.peer;
    this.m.closeConversation();
    this.peer = null;
    show($('conversation'), false);
    this.contact.hide();
    show($('panel-empty'));
    $('app').dataset.view = 'list';
    this.list.render();
    if (focus) this.list.focus(peer);
  }

  /** The header's presence line (nothing when no conversation is open). */
  renderPresence() {
    if (!this.peer) return;
    $('conv-dot').dataset.online = presenceState(this.m, this.peer);
    $('conv-dot').hidden = this.peer === this.me;
    say($('conv-presence'), presenceText(this.m, this.peer));
  }

  render() {
    const peer = this.peer;
    if (!peer) return;
    const c = this.m.conversations.get(peer);
    this.renderPresence();
    this.renderTrust(c);
    if (this.contact.isOpen(peer)) this.contact.render(c?.keys);
    say($('typing'), this.m.isTyping(peer) ? `${peer} is typing…` : '');
    this.renderKeys(c);
    this.renderMessages(c);
    show($('load-older'), Boolean(c?.hasOlder));
    this.composer.render();
    this.actions?.render();
    this.attachments?.render();
  }

  /** The header's badge: whether the user verified the pinned safety number. */
  renderTrust(c) {
    const badge = $('conv-trust');
    const pin = c?.keys?.pin;
    if (this.peer === this.me || !pin || c.keys.status === 'changed' || c.keys.status === 'invalid') {
      show(badge, false);
      return;
    }
    const verified = Number.isFinite(pin.verified_at);
    badge.dataset.verified = verified ? 'true' : 'false';
    badge.textContent = verified ? '✓ Verified' : 'Not verified';
    badge.title = verified
      ? `You compared the safety number with ${this.peer}.`
      : `You have not compared the safety number with ${this.peer} yet (Safety number → Mark as verified).`;
    show(badge);
  }

  renderMessages(c) {
    const list = $('messages');
    const atEnd = isAtEnd(list);
    // bubbles and system lines; edits, deletes and reactions are folded in (messenger.js view())
    const messages = this.m.view(this.peer);
    let previous = null;
    let before = null; // the message placed before this one
    let addedOwn = false;
    const keep = new Set();
    for (const item of messages) {
      const m = item.message;
      // a separator at each new day (of the sender's signed send time)
      const day = dayKey(m.sentAt);
      if (!before || dayKey(before.sentAt) !== day) {
        const sepKey = `day:${day}`;
        let sep = this.items.get(sepKey);
        if (!sep) {
          sep = el('li', 'day-sep');
          sep.dataset.day = day;
          sep.append(el('span', '', ''));
          this.items.set(sepKey, sep);
        }
        sep.firstChild.textContent = dayLabel(m.sentAt);
        keep.add(sepKey);
        placeAfter(list, sep, previous);
        previous = sep;
        before = null;
      }
      keep.add(m.key);
      let li = this.items.get(m.key);
      if (!li) {
        li = el('li', item.type === 'system' ? 'msg system' : `msg ${m.mine ? 'mine' : 'theirs'}`);
        li.dataset.id = m.id;
        this.items.set(m.key, li);
        if (m.mine && (m.state === 'sending' || m.state === 'queued')) addedOwn = true;
      }
      const grouped = item.type !== 'system' && Boolean(before) && before.from === m.from && Math.abs(m.sentAt - before.sentAt) < GROUP_WITHIN_MS;
      li.classList.toggle('grouped', grouped);
      if (item.type === 'system') this.actions?.system(li, item);
      else this.fillMessage(li, m, item);
      placeAfter(list, li, previous);
      previous = li;
      before = m;
    }
    dropMissing(this.items, keep);
    const empty = messages.length === 0 && c?.loaded;
    list.dataset.empty = empty ? 'true' : 'false';
    if (atEnd || addedOwn) this.scrollToEnd();
  }

  fillMessage(li, m, item = null) {
    const previousKey = this.m.previousKeyOf(m);
    const reportable = Boolean(this.reports) && !m.mine && m.status === 'ok';
    // the actions folded in (chat/actions.js): a change of any re-renders the bubble
    const acted = item && this.actions ? JSON.stringify([item.text, item.edited, item.deleted, item.reactions, item.quote]) : '';
    const signature = `${m.status}|${m.state}|${m.seq}|${m.text === null ? '' : m.text.length}|${m.error ?? ''}|${previousKey}|${m.serverTs}|${reportable}|${m.reported}|${acted}`;
    if (li.dataset.render === signature) return;
    li.dataset.render = signature;
    li.dataset.state = m.mine ? m.state : '';
    li.dataset.status = m.status;
    if (m.seq != null) li.dataset.seq = String(m.seq);
    const who = el('span', 'visually-hidden', m.mine ? 'You: ' : `${m.from}: `);
    let body;
    if (m.status === 'ok') {
      body = el('p', 'msg-text');
      body.append(...linkified((item ? item.text : m.text) ?? ''));
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
    // the time the sender signed (the server's time only says when it was stored)
    const time = el('time', '', timeOfDay(m.sentAt));
    time.dateTime = new Date(m.sentAt).toISOString();
    time.title = `Sent ${fullFormat.format(new Date(m.sentAt))} (the sender’s clock)`;
    meta.append(time);
    if (Number.isFinite(m.serverTs) && Math.abs(m.serverTs - m.sentAt) > CLOCK_SKEW_MARK_MS) {
      const skew = el('span', 'msg-skew', ' ⚠');
      skew.dataset.role = 'clock-skew';
      const text = `the server stored it ${fullFormat.format(new Date(m.serverTs))}`;
      skew.title = `Sent ${fullFormat.format(new Date(m.sentAt))} by the sender’s clock, but ${text}`;
      skew.append(el('span', 'visually-hidden', ` (${text})`));
      meta.append(skew);
    }
    if (previousKey != null) {
      const label = el('span', 'msg-prevkey', ` · signed with ${m.from}’s previous key (version ${previousKey})`);
      label.dataset.role = 'previous-key';
      meta.append(label);
    }
    if (m.mine) {
      const label = STATE_LABEL[m.state] ?? m.state;
      const state = el('span', 'msg-state');
      state.dataset.state = m.state;
      state.title = label;
      const ticks = el('span', 'ticks', STATE_TICKS[m.state] ?? '');
      ticks.setAttribute('aria-hidden', 'true');
      state.append(ticks, el('span', 'visually-hidden', ` ${label}`));
      meta.append(' ', state);
      if (m.state === 'failed' && m.error) meta.append(el('span', 'msg-error', ` — ${m.error}`));
    }
    if (reportable) meta.append(' · ', this.reportAction(m));
    li.replaceChildren(who, body, meta);
    if (item) this.actions?.decorate(li, item, body);
  }

  /** "Report" on a received message (opens the confirm dialog), or "Reported" once it was. */
  reportAction(m) {
    if (m.reported) {
      const done = el('span', 'msg-reported', 'Reported');
      done.dataset.role = 'reported';
      return done;
    }
    const button = el('button', 'msg-report', 'Report');
    button.type = 'button';
    button.dataset.role = 'report';
    button.setAttribute('aria-haspopup', 'dialog');
    button.setAttribute('aria-label', `Report this message from ${m.from}`);
    button.addEventListener('click', () => this.reports?.open(this.peer, m, button));
    return button;
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
      show($('key-chain'), false);
      show($('accept-key'), false);
    } else {
      $('key-warning-title').textContent = `${peer}’s safety number has changed`;
      const pinnedOn = keys.pin?.pinned_at ? `, pinned ${fullFormat.format(new Date(keys.pin.pinned_at))}` : '';
      $('key-warning-text').textContent =
        `The server now shows other keys for ${peer} (version ${keys.pin.key_version}${pinnedOn} → version ${keys.current.key_version}). ` +
        'That happens when someone sets up their keys again — or when someone tries to read along. ' +
        `Sending is blocked until you accept the new keys; compare the new safety number with ${peer} in person or over a channel you trust, then mark it as verified.`;
      const chain = $('key-chain');
      const verdict = keys.chain?.verdict ?? 'unknown';
      chain.dataset.verdict = verdict;
      chain.textContent =
        verdict === 'chained'
          ? `The new keys are signed by the keys you pinned (${keys.chain.reason}): the change was made by whoever holds ${peer}’s previous key — normally ${peer}. That is not proof it was them: compare the number.`
          : `The server could not show that the new keys were signed by the keys you pinned: ${keys.chain?.reason ?? 'no verdict'}. Treat this change as suspicious until you have compared the number with ${peer}.`;
      const numbers = changedSafetyNumbers({ username: this.me, fingerprint: this.session.fingerprint }, peer, keys.pin, keys.current);
      renderDigits($('old-safety'), numbers.old);
      renderDigits($('new-safety'), numbers.new);
      show($('key-compare'));
      show($('key-chain'));
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
        // the self-signature is the entry's integrity, not a reason to trust it
        if (!change.selfSigValid) notes.push('damaged entry (no valid self-signature)');
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
      this.status(`You accepted ${peer}’s new keys; sending is possible again. Compare the new safety number and mark it as verified.`);
      this.composer.focus();
    } catch (err) {
      this.status(`Could not accept the new keys: ${authErrorMessage(err)}`);
    } finally {
      button.disabled = false;
    }
  }

  /** One older page, keeping what is on screen where it is. */
  async loadOlder() {
    if (this.loadingOlder) return;
    const peer = this.peer;
    const list = $('messages');
    const button = $('load-older');
    this.loadingOlder = true;
    button.disabled = true;
    list.setAttribute('aria-busy', 'true');
    // what is on screen stays put: the list scrolls down by what was put above it (measured
    // from before the load, as the model's own events render too; a scroll meanwhile is kept)
    const heightBefore = list.scrollHeight;
    try {
      await this.m.loadOlder(peer);
      if (this.peer !== peer) return;
      this.render();
      list.scrollTop += list.scrollHeight - heightBefore;
    } catch (err) {
      this.status(`Could not load earlier messages: ${authErrorMessage(err)}`);
    } finally {
      this.loadingOlder = false;
      button.disabled = false;
      list.setAttribute('aria-busy', 'false');
    }
  }

  scrollToEnd() {
    const list = $('messages');
    list.scrollTop = list.scrollHeight;
    this.atEnd = true;
  }
}
