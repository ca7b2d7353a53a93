// Owns browser notifications (opt-in, in the settings view's #settings-notifications): the two
// choices ("notify me", "show message previews"), asking the browser's permission when the
// first is ticked, keeping both in the stored session (store.js updateSession; they go with
// it at sign-out), and showing a notification for a new message while the page is not in
// front or another conversation is open. Without previews a notification says only
// "New message" — no name, no text; with them, the sender and the text opened here.
import { $, say, show } from '../ui.js';
import { updateSession } from '../store.js';

/** The title and body of the notification for `message` from `peer`. */
export function notificationFor(peer, message, previews) {
  if (!previews) return { title: 'securechat', body: 'New message' };
  const text = message.status === 'ok' && typeof message.text === 'string' ? message.text : 'a message that could not be verified';
  return { title: peer, body: text.length > 160 ? `${text.slice(0, 159)}…` : text };
}

export class Notifier {
  /**
   * @param {object} session  the stored session (its `notify` member holds the choices)
   * @param {() => string | null} openPeer  the conversation on screen, or null
   * @param {(peer: string) => void} open  opens a conversation (a click on a notification)
   */
  constructor(session, openPeer, open) {
    this.prefs = { enabled: false, previews: false, ...(session.notify ?? {}) };
    this.openPeer = openPeer;
    this.open = open;
    this.supported = typeof globalThis.Notification === 'function';
  }

  wire() {
    show($('settings-notifications'));
    const enabled = $('notify-enabled');
    const previews = $('notify-previews');
    const status = $('notify-status');
    const render = () => {
      const granted = this.supported && Notification.permission === 'granted';
      enabled.checked = this.prefs.enabled && granted;
      enabled.disabled = !this.supported || (this.supported && Notification.permission === 'denied');
      previews.checked = this.prefs.previews;
      previews.disabled = !enabled.checked;
      if (!this.supported) say(status, 'This browser does not offer notifications.');
      else if (Notification.permission === 'denied') say(status, 'Notifications are blocked for this site in the browser’s settings.');
      else say(status, '');
    };
    enabled.addEventListener('change', async () => {
      let on = enabled.checked;
      if (on && Notification.permission !== 'granted') on = (await Notification.requestPermission()) === 'granted';
      await this.save({ enabled: on });
      render();
    });
    previews.addEventListener('change', async () => {
      await this.save({ previews: previews.checked });
      render();
    });
    render();
  }

  async save(change) {
    this.prefs = { ...this.prefs, ...change };
    await updateSession({ notify: this.prefs }).catch(() => {});
  }

  /** A new live message from `peer`: a notification, if chosen and the user is not looking at it. */
  incoming(peer, message) {
    if (!this.prefs.enabled || !this.supported || Notification.permission !== 'granted') return;
    const looking = document.visibilityState === 'visible' && document.hasFocus() && this.openPeer() === peer;
    if (looking) return;
    const { title, body } = notificationFor(peer, message, this.prefs.previews);
    try {
      const note = new Notification(title, { body, tag: `securechat-${peer}`, icon: 'favicon.svg' });
      note.addEventListener('click', () => {
        window.focus();
        this.open(peer);
        note.close();
      });
    } catch {
      // some browsers only allow notifications from a service worker: nothing shown
    }
  }
}
