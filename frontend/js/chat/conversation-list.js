// Owns the conversation list (#conversations, #convs-empty) and the connection line above it
// (#conn-status): one button per conversation, most recent first, with presence, unread
// count and which one is open. Rows are kept and moved, not rebuilt, so focus survives.
import { $, show } from '../ui.js';
import { dropMissing, el, placeAfter, presenceText } from './format.js';

const CONNECTION_TEXT = { open: 'Connected', connecting: 'Connecting…', waiting: 'Offline — reconnecting…', stopped: 'Disconnected' };

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
  }

  renderConnection(state) {
    const status = $('conn-status');
    status.dataset.state = state;
    status.textContent = CONNECTION_TEXT[state] ?? '';
  }

  /** Renders the list from the messenger; `current` is the open conversation's peer, or null. */
  render(current) {
    const list = $('conversations');
    const convs = this.m.list();
    show($('convs-empty'), convs.length === 0);
    const keep = new Set();
    let previous = null;
    for (const c of convs) {
      keep.add(c.peer);
      let li = this.items.get(c.peer);
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
        this.items.set(c.peer, li);
      }
      const button = li.firstChild;
      const [dot, , sub, badge] = button.children;
      const p = this.m.presence.get(c.peer);
      dot.dataset.online = p?.online ? 'true' : 'false';
      sub.textContent = presenceText(this.m, c.peer);
      badge.textContent = c.unread > 0 ? String(c.unread) : '';
      badge.hidden = c.unread <= 0;
      button.dataset.unread = String(c.unread);
      button.setAttribute('aria-label', `${c.peer}${c.peer === this.me ? ' (you)' : ''}, ${sub.textContent || 'presence unknown'}${c.unread > 0 ? `, ${c.unread} unread` : ''}`);
      if (c.peer === current) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
      placeAfter(list, li, previous);
      previous = li;
    }
    dropMissing(this.items, keep);
  }

  /** Moves focus to the row of `peer` (after its conversation was closed), if it has one. */
  focus(peer) {
    this.items.get(peer)?.firstChild.focus();
  }
}
