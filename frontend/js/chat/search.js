// Owns the search of your own message history (issue #17 item 8): the index's wiring to the
// messenger (every text message opened here is indexed, deleted and expired ones leave it;
// search-index.js keeps it encrypted in IndexedDB, PROTOCOL.md §8.10), and the search box in
// the conversation list's header with its results; choosing a result opens the conversation at
// that message. Nothing about a query leaves the browser: the search runs over the local index.
import { SearchIndex } from '../search-index.js';
import { SEARCH, ownStore } from '../store.js';
import { say } from '../ui.js';
import { el, when } from './format.js';

const SNIPPET_CHARS = 120;
/** Older pages fetched at most to reach a hit that is not loaded yet. */
const MAX_PAGES_TO_HIT = 40;

/**
 * The session's index, hooked to the messenger; null when the session has no index key (it
 * was stored before this version: search works after the next sign-in).
 */
export function indexFor(messenger, session) {
  if (!session.indexKey) return null;
  const index = new SearchIndex({ me: session.username, key: session.indexKey, backing: ownStore(SEARCH, session.username) });
  const written = new Map(); // "from\nid" -> text written this page load
  messenger.onOpened = (peer, message) => {
    const key = `${message.from}\n${message.id}`;
    if (written.get(key) === message.text) return;
    written.set(key, message.text);
    index.add(peer, message).catch(() => {});
  };
  messenger.onForget = (peer, message) => {
    written.delete(`${message.from}\n${message.id}`);
    index.remove(message.from, message.id).catch(() => {});
  };
  return index;
}

export class MessageSearch {
  /**
   * @param {SearchIndex | null} index
   * @param {(peer: string, id: string) => Promise<void>} openAt  opens a conversation at a message
   */
  constructor(index, openAt) {
    this.index = index;
    this.openAt = openAt;
    this.timer = null;
    this.generation = 0;
  }

  /** Builds the search box at the top of `host` (the conversation list). */
  mount(host) {
    const form = el('form', 'msg-search');
    form.id = 'msg-search-form';
    form.setAttribute('role', 'search');
    form.setAttribute('aria-label', 'Search your messages');
    form.noValidate = true;
    const label = el('label', 'visually-hidden', 'Search your messages');
    label.htmlFor = 'msg-search';
    const input = el('input');
    input.id = 'msg-search';
    input.type = 'search';
    input.placeholder = 'Search messages';
    input.autocomplete = 'off';
    input.setAttribute('aria-describedby', 'msg-search-note');
    const note = el('p', 'visually-hidden', 'Searches the messages decrypted in this browser; nothing is sent to the server.');
    note.id = 'msg-search-note';
    const status = el('p', 'status msg-search-status');
    status.id = 'msg-search-status';
    status.setAttribute('role', 'status');
    status.setAttribute('aria-live', 'polite');
    const results = el('ul', 'msg-search-results');
    results.id = 'msg-search-results';
    results.setAttribute('aria-label', 'Messages found');
    results.hidden = true;
    form.append(label, input, note, status, results);
    host.prepend(form);
    this.input = input;
    this.status = status;
    this.results = results;
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.run();
    });
    input.addEventListener('input', () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(), 200);
    });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && input.value) {
        input.value = '';
        this.run();
      } else if (event.key === 'ArrowDown' && !results.hidden) {
        event.preventDefault();
        results.querySelector('button')?.focus();
      }
    });
    if (!this.index) {
      input.disabled = true;
      say(status, 'Sign out and in again to search your messages here.');
    }
  }

  async run() {
    const query = this.input.value.trim();
    const generation = ++this.generation;
    if (!query || !this.index) {
      this.results.replaceChildren();
      this.results.hidden = true;
      if (this.index) say(this.status, '');
      return;
    }
    const hits = await this.index.search(query);
    if (generation !== this.generation) return;
    this.results.replaceChildren();
    for (const hit of hits) {
      const li = el('li');
      const button = el('button', 'msg-search-hit');
      button.type = 'button';
      button.dataset.peer = hit.peer;
      button.dataset.id = hit.id;
      const snippet = hit.text.length > SNIPPET_CHARS ? `${hit.text.slice(0, SNIPPET_CHARS)}…` : hit.text;
      button.append(el('span', 'msg-search-who', `${hit.peer}${hit.from === hit.peer ? '' : ' · you'}`), el('span', 'msg-search-when', when(hit.sent_at)), el('span', 'msg-search-text', snippet));
      button.addEventListener('click', () => this.openAt(hit.peer, hit.id));
      button.addEventListener('keydown', (event) => {
        const next = event.key === 'ArrowDown' ? li.nextElementSibling : event.key === 'ArrowUp' ? li.previousElementSibling : null;
        if (next) {
          event.preventDefault();
          next.querySelector('button').focus();
        } else if (event.key === 'ArrowUp') {
          event.preventDefault();
          this.input.focus();
        }
      });
      li.append(button);
      this.results.append(li);
    }
    this.results.hidden = hits.length === 0;
    say(this.status, hits.length ? `${hits.length} message${hits.length === 1 ? '' : 's'} found` : 'No messages found');
  }
}

/**
 * Opens `peer`'s conversation at message `id` (older pages are fetched until it is there), then
 * scrolls to it, marks it and moves the focus onto it. `conversation` is the ConversationView.
 */
export async function openAt(messenger, conversation, peer, id) {
  await conversation.open(peer);
  for (let page = 0; page < MAX_PAGES_TO_HIT && !messenger.byId(peer, id); page++) {
    const c = messenger.conversations.get(peer);
    if (!c?.hasOlder) break;
    await messenger.loadOlder(peer);
  }
  conversation.render();
  const li = [...document.querySelectorAll('#messages > li')].find((node) => node.dataset.id === id);
  if (!li) {
    conversation.status('That message is no longer in this conversation.');
    return;
  }
  for (const old of document.querySelectorAll('#messages > li.search-hit')) old.classList.remove('search-hit');
  li.classList.add('search-hit');
  li.tabIndex = -1;
  li.scrollIntoView({ block: 'center' });
  li.focus();
}
