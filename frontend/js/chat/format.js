// Owns how the chat views put things into words and elements: times, a contact's presence
// line, and the element helpers every chat view builds its keyed lists with. No state.

/** A new element with an optional class and text (always textContent, never HTML). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Moves `li` right after `previous` in `list` (first when `previous` is null), unless it
 *  is there already, so a keyed list is put in order with the fewest DOM moves. */
export function placeAfter(list, li, previous) {
  const wanted = previous ? previous.nextSibling : list.firstChild;
  if (wanted !== li) list.insertBefore(li, wanted);
}

/** Removes from the page, and from `items` (key -> li), every item whose key is not in `keep`. */
export function dropMissing(items, keep) {
  for (const [key, li] of items) {
    if (!keep.has(key)) {
      li.remove();
      items.delete(key);
    }
  }
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
/** Date and time in full (titles, the key-change texts). */
export const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** The time of day alone (inside a day the separators name). */
export function timeOfDay(ms) {
  return timeFormat.format(new Date(ms));
}

/** A time of day for today, else the date and time. */
export function when(ms) {
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFormat.format(d) : dateTimeFormat.format(d);
}

/**
 * What the page knows of `user`'s presence: 'true' (online), 'false' (offline) or 'unknown'.
 * The server only tells partners' presence, so before the first message it is unknown, which
 * is drawn differently from offline (an online contact must not look offline).
 */
export function presenceState(messenger, user) {
  const p = messenger.presence.get(user);
  if (!p) return 'unknown';
  return p.online ? 'true' : 'false';
}

const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const dayYearFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'long', year: 'numeric' });

/** The day separator's words for a time: "Today", "Yesterday", a weekday and date, or a date with the year. */
export function dayLabel(ms, now = Date.now()) {
  const d = new Date(ms);
  const today = new Date(now);
  const yesterday = new Date(now);
  yesterday.setDate(today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.getFullYear() === today.getFullYear() ? dayFormat.format(d) : dayYearFormat.format(d);
}

/** The presence line of `user` in the list and the conversation header. */
export function presenceText(messenger, user) {
  if (user === messenger.me) return 'Notes to yourself';
  const p = messenger.presence.get(user);
  if (p?.online) return 'online';
  if (p?.last_seen) return `last seen ${when(p.last_seen)}`;
  // the server reports presence only between people who share a conversation
  return p ? 'offline' : 'online status shows once you have written to each other';
}
