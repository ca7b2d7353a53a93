// Owns the conversation list (#conversations, #convs-empty), the connection line in the list
// header (#conn-status) and the unread total in the tab title: one button per conversation,
// most recent activity first (the open one too, as soon as it is opened, before any message),
// with its presence dot (text for screen readers beside it), a ✓ when the user verified the
// safety number, the last message's preview
// (decrypted here, never sent anywhere) and time, and the unread count. Rows are kept and
// moved, not rebuilt, so focus survives. Text only ever goes in with textContent.
import { $, show } from '../ui.js';
import { dropMissing, el, placeAfter, presenceState, presenceText, when } from './format.js';

const CONNECTION_TEXT = { open: 'Connected', connecting: 'Connecting…', waiting: 'Offline — reconnecting…', stopped: 'Disconnected' };
const TITLE = 'securechat';

/** The preview of a message in the list: its text on one line, or what it is. */
export function previewText(message, me) {
  if (!message) return '';
  const who = message.from === me && message.to !== me ? 'You: ' : '';
  if (message.status === 'ok' && typeof message.text === 'string') return who + message.text.replace(/\s+/g, ' ').trim();
  if (message.status === 'pending') return `${who}…`;
  return `${who}(a message that could not be shown)`;
}

/** "(3) securechat" with 3 unread messages in all, else "securechat". */
export function titleFor(unreadTotal) {
  return unreadTotal > 0 ? `(${unreadTotal}) ${TITLE}` : TITLE;
}

export class ConversationList {
  /**
   * @param {import('../messenger.js').Messenger} messenger
   * @param {(peer: string) => void} open  called when a conversation is clicked
   */
  constructor(messenger, open) {
    this.m = messenger;
    this.me = messenger.me;
    this.open = open;
    this.items = new Map(); // peer -> <li>
    /** peer -> whether the pinned keys are marked verified, read from the pins for rows not opened yet */
    this.verifiedPins = new Map();
  }

  renderConnection(state) {
    const status = $('conn-status');
    status.dataset.state = state;
    status.textContent = CONNECTION_TEXT[state] ?? '';
  }

  /** The list's conversations: the messenger's, and the open one even before its first message. */
  conversations(current) {
    const convs = this.m.list();
    if (current && !convs.some((c) => c.peer === current)) {
      convs.unshift(this.m.conversations.get(current) ?? { peer: current, unread: 0 });
    }
    return convs;
  }

  /** Renders the list from the messenger; `current` is the open conversation's peer, or null. */
  render(current) {
    const list = $('conversations');
    const convs = this.conversations(current);
    show($('convs-empty'), convs.length === 0);
    const keep = new Set();
    let previous = null;
    let unreadTotal = 0;
    for (const c of convs) {
      keep.add(c.peer);
      let li = this.items.get(c.peer);
      if (!li) {
        li = this.row(c.peer);
        this.items.set(c.peer, li);
      }
      this.fill(li.firstChild, c, current);
      unreadTotal += c.unread > 0 ? c.unread : 0;
      placeAfter(list, li, previous);
      previous = li;
    }
    dropMissing(this.items, keep);
    document.title = titleFor(unreadTotal);
  }

  /** A new row: dot, name, presence for screen readers, time, preview, unread badge. */
  row(peer) {
    const li = el('li');
    const button = el('button', 'conv');
    button.type = 'button';
    button.dataset.peer = peer;
    button.addEventListener('click', () => this.open(peer));
    const dot = el('span', 'presence-dot');
    dot.setAttribute('aria-hidden', 'true');
    const name = el('span', 'conv-name');
    const nameText = el('span', '', peer === this.me ? `${peer} (you)` : peer);
    const verified = el('span', 'conv-verified');
    verified.hidden = true;
    const mark = el('span', '', ' ✓');
    mark.setAttribute('aria-hidden', 'true');
    verified.append(mark, el('span', 'visually-hidden', ', verified'));
    name.append(nameText, verified);
    // the accessible name is the visible text plus these hidden words (no aria-label that would differ from it)
    const presence = el('span', 'visually-hidden');
    const time = el('time', 'conv-time');
    const sub = el('span', 'conv-sub');
    const badge = el('span', 'badge');
    const unread = el('span', 'visually-hidden');
    button.append(dot, name, presence, time, sub, badge, unread);
    li.append(button);
    return li;
  }

  fill(button, c, current) {
    const [dot, name, presence, time, sub, badge, unread] = button.children;
    const verified = this.isVerified(c);
    name.lastChild.hidden = !verified;
    button.dataset.verified = verified ? 'true' : 'false';
    const state = presenceState(this.m, c.peer);
    dot.dataset.online = state;
    const presenceWords = presenceText(this.m, c.peer);
    // the newest bubble with its newest edit (actions, timers and reactions are no preview: messenger.js preview())
    const item = c.messages ? this.m.preview(c.peer) : null;
    const last = item ? { ...item.message, text: item.deleted ? 'This message was deleted' : item.text } : null;
    const preview = previewText(last, this.me);
    // without a message to preview, the second line says what is known of their presence
    presence.textContent = preview && c.peer !== this.me ? `, ${presenceWords}, ` : ', ';
    sub.textContent = preview || presenceWords;
    const at = last?.sentAt;
    if (Number.isFinite(at)) {
      time.textContent = when(at);
      time.dateTime = new Date(at).toISOString();
    } else {
      time.textContent = '';
      time.removeAttribute('datetime');
    }
    badge.textContent = c.unread > 0 ? String(c.unread) : '';
    badge.hidden = !(c.unread > 0);
    unread.textContent = c.unread > 0 ? ` unread message${c.unread === 1 ? '' : 's'}` : '';
    button.dataset.unread = String(c.unread ?? 0);
    button.dataset.online = state;
    if (c.peer === current) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
  }

  /**
   * Whether the user marked `c.peer`'s pinned keys as verified (false while they changed). An
   * unopened conversation's pin is read once from the pins store, then the row is drawn again.
   */
  isVerified(c) {
    const keys = c.keys;
    if (keys?.pin) return Number.isFinite(keys.pin.verified_at) && keys.status !== 'changed' && keys.status !== 'invalid';
    if (c.peer === this.me) return false;
    if (!this.verifiedPins.has(c.peer)) {
      this.verifiedPins.set(c.peer, false);
      Promise.resolve(this.m.pins?.get(c.peer))
        .then((pin) => {
          if (!Number.isFinite(pin?.verified_at)) return;
          this.verifiedPins.set(c.peer, true);
          const li = this.items.get(c.peer);
          if (li) this.fill(li.firstChild, c, li.firstChild.getAttribute('aria-current') === 'true' ? c.peer : null);
        })
        .catch(() => {});
    }
    return this.verifiedPins.get(c.peer);
  }

  /** Moves focus to the row of `peer` (after its conversation was closed), if it has one. */
  focus(peer) {
    this.items.get(peer)?.firstChild.focus();
  }
}
