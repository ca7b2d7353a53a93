// Owns the composer (#composer, at the foot of the conversation panel): writing and sending a
// message to the open conversation (Enter sends, Shift+Enter is a new line), the byte count
// near the limit, typing notices, and why sending failed or is blocked (a changed or invalid key).
import { authErrorMessage } from '../auth.js';
import { MAX_TEXT_BYTES } from '../envelope.js';
import { BlockedError, textBytes } from '../messenger.js';
import { $, say } from '../ui.js';

export class Composer {
  /**
   * @param {import('../messenger.js').Messenger} messenger
   * @param {() => string | null} peer  the open conversation's peer, or null
   */
  constructor(messenger, peer) {
    this.m = messenger;
    this.peer = peer;
    /** (peer, text) => Promise: replaces sendText when set (chat/actions.js) */
    this.onSend = null;
  }

  wire() {
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
      if (input.value.trim()) this.m.typing(this.peer());
    });
  }

  /** Empties the composer (another conversation was opened). */
  clear() {
    $('composer-input').value = '';
    say($('composer-error'), '');
  }

  /** Names the recipient in the input's label. */
  label(peer) {
    $('composer-peer').textContent = peer;
  }

  focus() {
    $('composer-input').focus();
  }

  /** The send button and the blocked note, from the open conversation's key state. */
  render() {
    const peer = this.peer();
    // keys not checked yet: sendText() checks them itself; only a changed or invalid key blocks
    const found = this.m.blocked(peer);
    const blocked = found === 'key_changed' || found === 'key_invalid' ? found : null;
    const send = $('send');
    const error = $('composer-error');
    send.disabled = Boolean(blocked);
    $('composer').dataset.blocked = blocked ?? '';
    if (blocked === 'key_changed') {
      say(error, `Sending to ${peer} is blocked until you accept their new keys (above); compare the new safety number first.`);
    } else if (blocked === 'key_invalid') {
      say(error, `Sending to ${peer} is blocked: their published keys are not valid.`);
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

  async send() {
    const input = $('composer-input');
    const error = $('composer-error');
    const text = input.value;
    const peer = this.peer();
    if (!peer || !text.trim()) return;
    try {
      input.value = '';
      this.renderCount();
      // chat/actions.js sets onSend: a reply or an edit while one is pending
      await (this.onSend ? this.onSend(peer, text) : this.m.sendText(peer, text));
      if (error.dataset.kind !== 'blocked') say(error, '');
    } catch (err) {
      if (this.peer() === peer && !input.value) input.value = text;
      this.renderCount();
      error.dataset.kind = err instanceof BlockedError && err.code.startsWith('key') ? 'blocked' : '';
      say(error, err instanceof BlockedError ? err.message : `Not sent: ${authErrorMessage(err)}`);
    }
  }
}
