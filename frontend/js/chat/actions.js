// Owns the message actions of the open conversation (issue #17 item 4; the model is
// messenger.js, the plaintext kinds PROTOCOL.md §8.9): on each bubble a menu button ("Message
// actions") with Reply, Edit (my text messages), Delete for everyone (mine) and a row of
// reactions; the quote, "edited", "This message was deleted" and the reactions inside a bubble;
// the reply/edit bar above the composer (with Cancel); and the disappearing-timer control in
// the conversation header. The conversation view calls decorate() for each bubble and
// system() for each system line; everything here is built with textContent only.
import { authErrorMessage } from '../auth.js';
import { BlockedError, timerText } from '../messenger.js';
import { $ } from '../ui.js';
import { el } from './format.js';

/** The reactions offered (any short string that arrives is shown). */
export const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🙏'];
/** The timer choices of the header control, in seconds (0 = off). */
export const TIMER_CHOICES = [0, 30, 300, 3600, 86400, 604800];

const QUOTE_CHARS = 140;
const clip = (text) => (text.length > QUOTE_CHARS ? `${text.slice(0, QUOTE_CHARS)}…` : text);

export class MessageActions {
  /**
   * @param {import('../messenger.js').Messenger} messenger
   * @param {() => string | null} peer  the open conversation's peer
   * @param {object} composer  chat/composer.js's Composer (its onSend hook is set here)
   * @param {(text: string) => void} status  a line for the user in the conversation
   */
  constructor(messenger, peer, composer, status) {
    this.m = messenger;
    this.peer = peer;
    this.composer = composer;
    this.status = status;
    /** { mode: 'reply' | 'edit', key, id } or null */
    this.context = null;
    this.openMenu = null;
    this.bar = null;
    this.timer = null;
  }

  wire() {
    // the bar above the composer: "Replying to bob: …" / "Editing your message" + Cancel
    const bar = el('div', 'compose-context');
    bar.id = 'compose-context';
    bar.hidden = true;
    const label = el('p', 'compose-context-text');
    label.id = 'compose-context-text';
    const cancel = el('button', 'button small subtle', 'Cancel');
    cancel.type = 'button';
    cancel.id = 'compose-context-cancel';
    cancel.addEventListener('click', () => {
      const wasEdit = this.context?.mode === 'edit';
      this.cancel();
      if (wasEdit) $('composer-input').value = '';
      this.composer.focus();
    });
    bar.append(label, cancel);
    $('composer').before(bar);
    this.bar = bar;
    this.composer.onSend = (peer, text) => this.send(peer, text);

    // the timer control in the conversation header
    const wrap = el('span', 'timer-control');
    const tlabel = el('label', 'visually-hidden', 'Disappearing messages');
    tlabel.htmlFor = 'conv-timer';
    const select = el('select', 'timer-select');
    select.id = 'conv-timer';
    select.title = 'Disappearing messages';
    for (const secs of TIMER_CHOICES) {
      const option = el('option', '', `Disappearing: ${timerText(secs)}`);
      option.value = String(secs);
      select.append(option);
    }
    select.addEventListener('change', () => this.setTimer(Number(select.value)));
    wrap.append(tlabel, select);
    (document.getElementById('conv-actions') ?? $('conv-safety').parentElement).append(wrap);
    this.timer = select;

    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && this.openMenu) {
        const button = this.openMenu.button;
        this.closeMenu();
        button.focus();
      }
    });
    document.addEventListener('click', (event) => {
      if (this.openMenu && !this.openMenu.menu.contains(event.target) && event.target !== this.openMenu.button) this.closeMenu();
    });
  }

  /** Another conversation was opened: no reply/edit carries over. */
  reset() {
    this.cancel();
    this.closeMenu();
  }

  /** The header's timer control shows the conversation's timer (hidden for notes to myself). */
  render() {
    const peer = this.peer();
    if (!this.timer || !peer) return;
    const secs = this.m.timerOf(peer);
    if (!TIMER_CHOICES.includes(secs) && ![...this.timer.options].some((o) => o.value === String(secs))) {
      const option = el('option', '', `Disappearing: ${timerText(secs)}`);
      option.value = String(secs);
      this.timer.append(option);
    }
    this.timer.value = String(secs);
    this.timer.parentElement.hidden = peer === this.m.me;
    if (this.context && !this.m.conversations.get(peer)?.messages.has(this.context.key)) this.cancel();
  }

  async setTimer(secs) {
    const peer = this.peer();
    if (!peer) return;
    this.timer.disabled = true;
    try {
      await this.m.setTimer(peer, secs);
      this.status('');
    } catch (err) {
      this.status(`Could not change disappearing messages: ${err instanceof BlockedError ? err.message : authErrorMessage(err)}`);
    } finally {
      this.timer.disabled = false;
      this.render();
    }
  }

  // ---------------------------------------------------------------- composer context

  begin(mode, item) {
    const m = item.message;
    this.context = { mode, key: m.key, id: m.id };
    const text = $('compose-context-text');
    if (mode === 'reply') {
      text.textContent = `Replying to ${m.mine ? 'yourself' : m.from}: ${clip(item.text ?? '')}`;
    } else {
      text.textContent = 'Editing your message';
      $('composer-input').value = item.text ?? '';
    }
    this.bar.dataset.mode = mode;
    this.bar.hidden = false;
    this.composer.focus();
  }

  cancel() {
    this.context = null;
    if (this.bar) this.bar.hidden = true;
  }

  /** The composer's send: a reply or an edit while one is pending, else a plain text. */
  async send(peer, text) {
    const ctx = this.context;
    if (ctx?.mode === 'edit') {
      await this.m.editMessage(peer, ctx.key, text);
    } else if (ctx?.mode === 'reply') {
      await this.m.sendText(peer, text, { replyTo: ctx.id });
    } else {
      await this.m.sendText(peer, text);
    }
    if (this.context === ctx) this.cancel();
  }

  // ---------------------------------------------------------------- bubbles

  /**
   * Fills the action parts of one bubble `li` for a view() item: the quote (before the text),
   * the text of an edited or deleted message, the "edited" mark, the reactions and the menu
   * button. `body` is the bubble's text element.
   */
  decorate(li, item, body) {
    for (const old of li.querySelectorAll(':scope > .msg-quote, :scope > .msg-reactions, :scope > .msg-menu-button')) old.remove();
    const m = item.message;
    li.dataset.deleted = item.deleted ? 'true' : 'false';
    li.dataset.edited = item.edited ? 'true' : 'false';
    if (m.status !== 'ok') return;
    // the view wrote item.text (the newest edit) into body already
    if (item.deleted) {
      body.textContent = 'This message was deleted';
      body.classList.add('msg-deleted');
    } else if (item.edited) {
      body.append(el('span', 'msg-edited', ' (edited)'));
    }
    if (item.quote) {
      const q = el('blockquote', 'msg-quote');
      if (item.quote.missing) {
        q.textContent = 'original message not found';
        q.dataset.missing = 'true';
      } else {
        const who = item.quote.from === this.m.me ? 'You' : item.quote.from;
        q.append(el('span', 'msg-quote-from', `${who}: `), el('span', 'msg-quote-text', item.quote.deleted ? 'This message was deleted' : clip(item.quote.text ?? '')));
      }
      body.before(q);
    }
    if (item.reactions.length) {
      const row = el('div', 'msg-reactions');
      row.setAttribute('role', 'group');
      row.setAttribute('aria-label', `Reactions: ${item.reactions.map((r) => `${r.emoji} from ${r.from === this.m.me ? 'you' : r.from}`).join(', ')}`);
      for (const r of item.reactions) {
        const chip = el('span', 'reaction', r.emoji);
        chip.dataset.from = r.from;
        chip.title = r.from === this.m.me ? 'You' : r.from;
        chip.setAttribute('aria-hidden', 'true');
        row.append(chip);
      }
      body.after(row);
    }
    if (!item.deleted && m.state !== 'failed') {
      const button = el('button', 'msg-menu-button', '⋯');
      button.type = 'button';
      button.setAttribute('aria-haspopup', 'menu');
      button.setAttribute('aria-expanded', 'false');
      button.setAttribute('aria-label', `Actions for the message ${m.mine ? 'you sent' : `from ${m.from}`}`);
      button.addEventListener('click', (event) => {
        event.stopPropagation();
        if (this.openMenu?.button === button) this.closeMenu();
        else this.showMenu(li, button, item);
      });
      li.append(button);
      if (this.openMenu?.key === m.key && this.openMenu.button !== button) {
        // the bubble was re-rendered under an open menu: keep it open, and the focus in it
        const focused = this.openMenu.menu.contains(document.activeElement) ? document.activeElement : null;
        button.setAttribute('aria-expanded', 'true');
        li.append(this.openMenu.menu);
        this.openMenu.button = button;
        focused?.focus();
      }
    }
  }

  /** A system line (a timer change). */
  system(li, item) {
    li.replaceChildren(el('p', 'msg-system-text', item.text));
  }

  closeMenu() {
    if (!this.openMenu) return;
    this.openMenu.menu.remove();
    this.openMenu.button.setAttribute('aria-expanded', 'false');
    this.openMenu = null;
  }

  showMenu(li, button, item) {
    this.closeMenu();
    const m = item.message;
    const peer = this.peer();
    const menu = el('div', 'msg-menu');
    menu.setAttribute('role', 'menu');
    menu.setAttribute('aria-label', 'Message actions');
    const entries = [];
    const add = (label, fn, extra = {}) => {
      const b = el('button', `msg-menu-item${extra.className ? ` ${extra.className}` : ''}`, label);
      b.type = 'button';
      b.setAttribute('role', 'menuitem');
      if (extra.aria) b.setAttribute('aria-label', extra.aria);
      if (extra.role) b.dataset.action = extra.role;
      b.tabIndex = -1;
      b.addEventListener('click', async (event) => {
        event.stopPropagation();
        this.closeMenu();
        try {
          await fn();
        } catch (err) {
          this.status(err instanceof BlockedError ? err.message : `That did not work: ${authErrorMessage(err)}`);
        }
      });
      entries.push(b);
      return b;
    };
    add('Reply', () => this.begin('reply', item), { role: 'reply' });
    if (m.mine && m.content?.kind === 'text') {
      add('Edit', () => this.begin('edit', item), { role: 'edit' });
      add('Delete for everyone', async () => {
        if (!globalThis.confirm('Delete this message for everyone? It is removed from both sides and from the server.')) return;
        if (this.context?.key === m.key) this.cancel();
        await this.m.deleteForEveryone(peer, m.key);
      }, { role: 'delete' });
    }
    const mine = this.m.myReaction(peer, m.key);
    const row = el('div', 'msg-menu-reactions');
    row.setAttribute('role', 'group');
    row.setAttribute('aria-label', 'React');
    for (const emoji of REACTIONS) {
      const chosen = mine === emoji;
      const b = add(emoji, () => this.m.react(peer, m.key, chosen ? '' : emoji), {
        aria: chosen ? `Remove your reaction ${emoji}` : `React with ${emoji}`,
        role: `react-${emoji}`,
        className: 'msg-menu-emoji',
      });
      if (chosen) b.setAttribute('aria-pressed', 'true');
      row.append(b);
    }
    for (const b of entries) if (!row.contains(b)) menu.append(b);
    menu.append(row);
    menu.addEventListener('keydown', (event) => {
      const i = entries.indexOf(document.activeElement);
      if (event.key === 'ArrowDown' || event.key === 'ArrowRight') entries[(i + 1) % entries.length].focus();
      else if (event.key === 'ArrowUp' || event.key === 'ArrowLeft') entries[(i - 1 + entries.length) % entries.length].focus();
      else if (event.key === 'Home') entries[0].focus();
      else if (event.key === 'End') entries[entries.length - 1].focus();
      else if (event.key === 'Tab') this.closeMenu();
      else return;
      event.preventDefault();
    });
    li.append(menu);
    button.setAttribute('aria-expanded', 'true');
    this.openMenu = { menu, button, key: m.key };
    entries[0].focus();
  }
}
