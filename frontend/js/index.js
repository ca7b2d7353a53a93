// Landing page: if this browser holds a session, offer the way back into the app.
import { loadSession } from './store.js';
import { $, show } from './ui.js';

const session = await loadSession();
if (session?.username) {
  $('session-user').textContent = session.username;
  show($('session-box'));
  show($('auth-links'), false);
}
