// Owns the contact card (#contact, inside the conversation panel): a user's verified keys,
// their fingerprint and the safety number to compare with them. Opened from the conversation
// header's "Safety number" button and by picking someone in the directory.
import { authErrorMessage, fetchVerifiedKeys } from '../auth.js';
import { safetyNumber } from '../crypto.js';
import { $, renderDigits, say, show } from '../ui.js';

export class ContactCard {
  /**
   * @param {import('../api.js').Api} api
   * @param {object} session  the signed-in user's session (username, fingerprint)
   */
  constructor(api, session) {
    this.api = api;
    this.session = session;
    this.generation = 0; // only the newest show() writes its answer
  }

  hide() {
    show($('contact'), false);
  }

  /** Shows the card of `username` and fills it once their keys are fetched and verified. */
  async show(username) {
    const mine = ++this.generation;
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
      const keys = await fetchVerifiedKeys(this.api, username);
      if (mine !== this.generation) return;
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
      const self = username === this.session.username;
      show($('contact-self'), self);
      show($('safety-box'), !self);
      if (!self) {
        renderDigits(
          $('safety-number'),
          safetyNumber({ username: this.session.username, fingerprint: this.session.fingerprint }, keys),
        );
      }
      say(status, '');
      show(details);
    } catch (err) {
      if (mine !== this.generation) return;
      say(status, `Could not load ${username}’s keys: ${authErrorMessage(err)}`);
    }
  }
}
