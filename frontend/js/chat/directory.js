// Owns the directory search ("Find people", at the top of the list pane: #search-form, #results,
// #more): searching users by name (debounced while typing, paged with "Show more") and picking
// one, which the page turns into opening a conversation with their safety number ready. The
// directory is never listed: nothing is asked for with fewer than MIN_QUERY characters (the
// server refuses such a prefix too), and an empty box shows nothing.
import { authErrorMessage, normalizeUsername } from '../auth.js';
import { $, say, show } from '../ui.js';

/** The shortest name prefix the page searches for. */
export const MIN_QUERY = 3;

/**
 * @param {import('../api.js').Api} api
 * @param {string} me  the signed-in username (tagged "you" in the results)
 * @param {(username: string) => void} pick  called when a user in the results is clicked
 */
export function wireDirectory(api, me, pick) {
  const form = $('search-form');
  const input = $('search');
  const results = $('results');
  const more = $('more');
  const searchStatus = $('search-status');
  let generation = 0;
  let nextCursor = null;
  let currentQuery = '';
  let debounce = null;

  async function search(query, cursor = null) {
    const mine = ++generation;
    currentQuery = query;
    if (query.length < MIN_QUERY) {
      results.replaceChildren();
      results.dataset.query = query;
      nextCursor = null;
      show(more, false);
      say(searchStatus, query ? `Type at least ${MIN_QUERY} characters to search.` : '');
      return;
    }
    const params = new URLSearchParams({ query });
    if (cursor) params.set('cursor', cursor);
    say(searchStatus, 'Searching…');
    try {
      const answer = await api.get(`/api/users?${params}`, { auth: true });
      if (mine !== generation) return;
      if (!cursor) results.replaceChildren();
      for (const user of answer.users ?? []) results.append(userItem(user));
      results.dataset.query = query; // what the list shows (tests wait on it)
      nextCursor = answer.next_cursor ?? null;
      show(more, Boolean(nextCursor));
      const count = results.children.length;
      say(searchStatus, count === 0 ? 'No users found.' : `${count} user${count === 1 ? '' : 's'} found.`);
    } catch (err) {
      if (mine !== generation) return;
      say(searchStatus, `Search failed: ${authErrorMessage(err)}`);
    }
  }

  function userItem(user) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'user';
    button.dataset.username = user.username;
    button.textContent = user.username;
    if (user.username === me) {
      const you = document.createElement('span');
      you.className = 'tag';
      you.textContent = 'you';
      button.append(' ', you);
    }
    button.addEventListener('click', () => {
      // the search is done: the list of conversations (with this one in it) takes the space again
      clearTimeout(debounce);
      input.value = '';
      search('');
      pick(user.username);
    });
    li.append(button);
    return li;
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(debounce);
    search(normalizeUsername(input.value));
  });
  input.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => search(normalizeUsername(input.value)), 250);
  });
  more.addEventListener('click', () => {
    if (nextCursor) search(currentQuery, nextCursor);
  });
}
