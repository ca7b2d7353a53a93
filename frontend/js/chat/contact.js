// Owns the safety-number dialog (#safety-dialog with the card #contact): the safety number of a
// conversation (digits and a QR code of them) and the peer's fingerprint, both computed from
// the keys this browser PINNED for them (the keys it seals for and verifies with), never from a
// fresh directory answer; whether the user has verified that number ("Mark as verified",
// cleared by a key change); and a warning when the directory's current answer differs from the
// pin. The card is filled by show() (picking someone in the directory does that, so first use
// pins at once) and the dialog is opened with showModal() from the conversation header's
// "Safety number" button; it scrolls inside itself, so it is always fully within the viewport.
import { authErrorMessage } from '../auth.js';
import { safetyNumber } from '../crypto.js';
import { $, renderDigits, say, show } from '../ui.js';
import { fullFormat } from './format.js';
import { qrSvg } from './qr.js';

export class ContactCard {
  /**
   * @param {import('../messenger.js').Messenger} messenger
   * @param {object} session  the signed-in user's session (username, fingerprint)
   */
  constructor(messenger, session) {
    this.m = messenger;
    this.session = session;
    this.peer = null;
    this.generation = 0; // only the newest show() writes its answer
  }

  wire() {
    $('contact-verify').addEventListener('click', () => this.toggleVerified());
    $('safety-close').addEventListener('click', () => this.closeDialog());
    // a click on the backdrop (outside the dialog's box) closes it too
    $('safety-dialog').addEventListener('click', (event) => {
      if (event.target === $('safety-dialog')) this.closeDialog();
    });
  }

  /** Forgets the card (the conversation was closed) and closes the dialog. */
  hide() {
    this.peer = null;
    this.closeDialog();
  }

  /** Whether the card holds `peer` (open in the dialog or filled behind it). */
  isOpen(peer) {
    return this.peer === peer;
  }

  /** Whether the dialog is on screen. */
  dialogOpen() {
    return $('safety-dialog').open;
  }

  /** Fills the card of `username` and shows it in the modal dialog. */
  openDialog(username) {
    const dialog = $('safety-dialog');
    const loading = this.show(username);
    if (!dialog.open) dialog.showModal();
    $('contact').focus();
    return loading;
  }

  closeDialog() {
    const dialog = $('safety-dialog');
    if (dialog.open) dialog.close();
  }

  /** Fills the card of `username`: checks their keys against the pin (pinning on first use). */
  async show(username) {
    const mine = ++this.generation;
    this.peer = username;
    $('contact-name').textContent = username;
    $('contact-name-2').textContent = username;
    show($('contact-details'), false);
    show($('contact-warning'), false);
    say($('contact-status'), 'Checking their keys…');
    if (username === this.session.username) {
      this.render(null);
      return;
    }
    try {
      const keys = await this.m.checkKeys(username, { force: true });
      if (mine === this.generation) this.render(keys);
    } catch (err) {
      if (mine !== this.generation) return;
      const pinned = this.m.conversations.get(username)?.keys;
      if (pinned?.pin) {
        this.render(pinned);
        say($('contact-status'), `Could not check ${username}’s keys with the server just now (${authErrorMessage(err)}); showing the keys pinned here.`);
      } else {
        say($('contact-status'), `Could not load ${username}’s keys: ${authErrorMessage(err)}`);
      }
    }
  }

  /** Fills the card from the conversation's key state ({status, pin, current}); null for oneself. */
  render(keys) {
    const username = this.peer;
    if (!username) return;
    const warning = $('contact-warning');
    const self = username === this.session.username;
    show($('contact-self'), self);
    show($('safety-box'), !self);
    if (self) {
      renderDigits($('contact-fingerprint'), this.session.fingerprint);
      $('contact-key-version').textContent = String(this.session.key_version);
      show(warning, false);
      say($('contact-status'), '');
      show($('contact-details'));
      return;
    }
    const pin = keys?.pin;
    const problems = [];
    if (keys?.status === 'changed') {
      problems.push(
        `The server now shows other keys for ${username} than the ones pinned here. The number below is the one of the ` +
          'pinned keys; see the warning above the messages before you trust anything new.',
      );
    } else if (keys?.status === 'invalid') {
      problems.push(
        `The keys the server now shows for ${username} fail their integrity check (the self-signature, or the fingerprint ` +
          'the server reports): they are not used.',
      );
    }
    warning.textContent = problems.join(' ');
    show(warning, problems.length > 0);
    if (!pin) {
      say($('contact-status'), `No keys of ${username} are pinned in this browser, so there is no safety number to compare.`);
      show($('contact-details'), false);
      return;
    }
    renderDigits($('contact-fingerprint'), pin.fingerprint);
    $('contact-key-version').textContent = String(pin.key_version);
    $('contact-pinned-at').textContent = Number.isFinite(pin.pinned_at) ? fullFormat.format(new Date(pin.pinned_at)) : 'earlier';
    const number = safetyNumber({ username: this.session.username, fingerprint: this.session.fingerprint }, { username, fingerprint: pin.fingerprint });
    renderDigits($('safety-number'), number);
    const qr = $('safety-qr');
    if (qr.dataset.digits !== number) {
      qr.dataset.digits = number;
      qr.replaceChildren(qrSvg(number, `QR code of the safety number with ${username}`));
    }
    const verified = Number.isFinite(pin.verified_at);
    const state = $('contact-verified');
    state.dataset.verified = verified ? 'true' : 'false';
    state.textContent = verified
      ? `✓ You verified this safety number on ${fullFormat.format(new Date(pin.verified_at))}.`
      : 'Not verified: these keys were pinned the first time this browser saw them, or after a key change. Compare the number, then mark it as verified.';
    const button = $('contact-verify');
    button.textContent = verified ? 'Clear verification' : 'Mark as verified';
    button.dataset.verified = verified ? 'true' : 'false';
    show(button, keys.status === 'ok' || keys.status === 'pinned');
    say($('contact-status'), '');
    show($('contact-details'));
  }

  async toggleVerified() {
    const peer = this.peer;
    if (!peer) return;
    const button = $('contact-verify');
    const verify = button.dataset.verified !== 'true';
    button.disabled = true;
    try {
      await this.m.markVerified(peer, verify);
      this.render(this.m.conversations.get(peer)?.keys);
    } catch (err) {
      say($('contact-status'), `Could not change the verified state: ${authErrorMessage(err)}`);
    } finally {
      button.disabled = false;
    }
  }
}
