// Small DOM helpers shared by the pages. No inline styles: visibility goes through the
// `hidden` attribute and classes only (the CSP forbids inline style).

import { digitGroups } from './crypto.js';

export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing element #${id}`);
  return el;
}

export function show(el, visible = true) {
  el.hidden = !visible;
}

/** Writes a message into a live region (role=status or role=alert); '' clears it. */
export function say(el, text) {
  el.textContent = text ?? '';
}

/** Marks a form field invalid (or valid again) and links it to its message. */
export function markInvalid(input, invalid, messageId) {
  if (invalid) {
    input.setAttribute('aria-invalid', 'true');
    if (messageId) input.setAttribute('aria-errormessage', messageId);
  } else {
    input.removeAttribute('aria-invalid');
    input.removeAttribute('aria-errormessage');
  }
}

/** Puts a submit button into (or out of) its busy state. */
export function setBusy(button, busy, busyText) {
  if (!button.dataset.idleText) button.dataset.idleText = button.textContent;
  button.disabled = busy;
  button.setAttribute('aria-busy', busy ? 'true' : 'false');
  button.textContent = busy ? busyText : button.dataset.idleText;
}

/**
 * Renders digits (a fingerprint or safety number) as groups of 5. The whole string is kept in
 * data-digits, and the accessible label reads the groups one by one.
 */
export function renderDigits(container, digits) {
  container.replaceChildren();
  container.dataset.digits = digits;
  const groups = digitGroups(digits);
  container.setAttribute('aria-label', groups.join(' '));
  container.setAttribute('role', 'img');
  for (const group of groups) {
    const span = document.createElement('span');
    span.className = 'group';
    span.textContent = group;
    container.append(span);
  }
}

/** The text of a URL query flag such as ?expired=1 */
export function queryFlag(name) {
  return new URLSearchParams(location.search).has(name);
}

/** A form's failure reporter: shows `message` in `error`, clears `status`, and marks and
 * focuses the offending field, if any. */
export function formFailure(error, status) {
  return (message, field) => {
    say(error, message);
    say(status, '');
    if (field) {
      markInvalid(field, true, 'form-error');
      field.focus();
    }
  };
}

/** Shows the "already signed in as …" note when a session is stored. */
export function noteExistingSession(session) {
  if (session?.username) {
    $('signed-in-user').textContent = session.username;
    show($('signed-in-note'));
  }
}

/** Saves `blob` as a download named `name`, through a temporary object URL and link. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
