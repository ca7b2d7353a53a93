// Owns reporting a received message (#report-dialog): the confirm dialog that says exactly
// what is disclosed — this one message's text and its key, nothing else of the conversation —
// with the reason to pick, and what the server answered. Whether the action is offered at all
// depends on GET /api/features (the admin_logs plugin, which keeps reports, must be enabled).
// The disclosure itself (re-opening the envelope for K and the exact bytes) is in
// messenger.js / envelope.js; nothing here holds a key. Text only ever goes in with textContent.
import { ApiError } from '../api.js';
import { authErrorMessage } from '../auth.js';
import { $, say, setBusy } from '../ui.js';

export const REPORT_REASONS = ['spam', 'abuse', 'illegal', 'other'];

/** Whether a GET /api/features answer lists the admin_logs plugin as enabled. */
export function reportsEnabled(features) {
  const plugins = Array.isArray(features?.plugins) ? features.plugins : [];
  return plugins.some((p) => p?.name === 'admin_logs' && p.enabled === true);
}

const VERDICTS = {
  verified: 'the server confirmed that the text is what the sender sent',
  not_verifiable: 'the server could not confirm the text',
};

/** The sentence for a report's outcome: the 201 answer, or the error it failed with. */
export function reportOutcome(answer, err) {
  if (!err) {
    const verdict = VERDICTS[answer?.verdict];
    return verdict ? `Reported: ${verdict}.` : 'Reported.';
  }
  if (err instanceof ApiError && err.status === 409 && err.code === 'already_reported') return 'Already reported.';
  if (err instanceof ApiError && err.status === 404) {
    return 'This message could not be reported: the server does not know it as a message to you, or reports are switched off.';
  }
  return `Could not report this message: ${authErrorMessage(err)}`;
}

export class ReportDialog {
  /**
   * @param {import('../messenger.js').Messenger} messenger
   * @param {Function} done  called with (peer, sentence) after an answer, to show it in the conversation
   */
  constructor(messenger, done) {
    this.m = messenger;
    this.done = done;
    this.target = null; // { peer, key, opener }
  }

  wire() {
    const dialog = $('report-dialog');
    $('report-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    $('report-cancel').addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      const opener = this.target?.opener;
      this.target = null;
      // the button is replaced by "Reported" once the report went through
      if (opener?.isConnected) opener.focus();
      else $('messages').focus();
    });
  }

  /** Asks whether to report `message` (a received one that opened) of the conversation with `peer`. */
  open(peer, message, opener) {
    this.target = { peer, key: message.key, opener };
    $('report-sender').textContent = message.from;
    $('report-sender-2').textContent = message.from;
    $('report-text').textContent = message.text;
    for (const input of $('report-form').elements.reason) input.checked = input.value === 'spam';
    say($('report-error'), '');
    setBusy($('report-submit'), false, 'Reporting…');
    $('report-dialog').showModal();
    $('report-cancel').focus();
  }

  async submit() {
    const target = this.target;
    if (!target) return;
    const reason = $('report-form').elements.reason.value;
    if (!REPORT_REASONS.includes(reason)) {
      say($('report-error'), 'Pick a reason.');
      return;
    }
    const button = $('report-submit');
    setBusy(button, true, 'Reporting…');
    say($('report-error'), '');
    let answer;
    let failure;
    try {
      answer = await this.m.report(target.peer, target.key, reason);
    } catch (err) {
      failure = err;
    }
    setBusy(button, false, 'Reporting…');
    if (this.target !== target) return;
    const sentence = reportOutcome(answer, failure);
    const finished = !failure || (failure instanceof ApiError && failure.code === 'already_reported');
    if (finished) {
      $('report-dialog').close();
      this.done(target.peer, sentence);
    } else {
      say($('report-error'), sentence);
    }
  }
}
