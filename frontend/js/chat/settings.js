// Owns the settings view (#settings, opened from the list header's button #open-settings): it
// takes the right pane on a desktop and the whole screen on a phone (#app[data-view="settings"]),
// and closes back to the list. What is inside belongs to others: the account section to
// chat/account.js, "Password, sessions and account" (#settings-security) to
// chat/settings-account.js, the notification choices to chat/notify.js.
import { $, show } from '../ui.js';

export class SettingsView {
  /**
   * @param {{ peer: string | null, close(): void }} conversation  the conversation pane, closed
   *   when the settings open (they take its place)
   */
  constructor(conversation) {
    this.conversation = conversation;
  }

  wire() {
    $('open-settings').addEventListener('click', () => (this.isOpen() ? this.close() : this.open()));
    $('settings-back').addEventListener('click', () => this.close());
    $('settings').addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && !event.defaultPrevented) this.close();
    });
  }

  isOpen() {
    return !$('settings').hidden;
  }

  open() {
    if (this.conversation?.peer) this.conversation.close({ focus: false });
    show($('panel-empty'), false);
    show($('settings'));
    $('app').dataset.view = 'settings';
    $('open-settings').setAttribute('aria-expanded', 'true');
    $('settings-back').focus();
  }

  /** Hides the view without moving focus (a conversation is taking the pane). */
  hide() {
    if (!this.isOpen()) return;
    show($('settings'), false);
    $('open-settings').setAttribute('aria-expanded', 'false');
  }

  close() {
    if (!this.isOpen()) return;
    this.hide();
    show($('panel-empty'));
    $('app').dataset.view = 'list';
    $('open-settings').focus();
  }
}

/** For a page that could not start: only the settings view, whose sign-out buttons still work. */
export function showSettingsOnly() {
  show($('app'));
  show($('panel-empty'), false);
  show($('conversation'), false);
  show($('settings'));
  $('app').dataset.view = 'settings';
}
