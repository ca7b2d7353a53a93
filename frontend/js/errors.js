// The sentences the client shows for an error code. Server error text is never shown: an error
// answer's `code` (REST, docs/PROTOCOL.md §10.1, or a WebSocket error frame, §10.3) picks one
// of the client's own sentences here; an unknown code gets a generic sentence that names the
// code (only if it looks like a code). Imports nothing, so every module may use it.

export const GENERIC = 'Something went wrong. Please try again.';

const TEXTS = {
  network: 'Could not reach the server. Check your connection and try again.',
  invalid_credentials: 'Wrong username or password',
  reauthentication_required: 'Enter your password to confirm this.',
  unauthorized: 'Your session has ended. Please sign in again.',
  username_taken: 'That username is taken',
  invalid_username: 'Usernames are 3 to 32 characters: letters a–z, digits, and . _ -',
  key_version_conflict: 'Your keys were changed meanwhile, from another session. Sign in again.',
  rate_limited: 'Too many attempts. Wait a moment and try again.',
  not_found: 'The server does not know that (it may have been removed).',
  payload_too_large: 'That is too large to send.',
  envelope_too_large: 'The message is too large to send',
  unknown_recipient: 'That user does not exist (any more).',
  sender_mismatch: 'The server refused the message: it is not from the signed-in user.',
  invalid_envelope: 'The server refused the message as malformed.',
  internal: 'The server had a problem. Please try again.',
  invalid_response: 'The server sent an answer this page cannot read.',
  // files (issue #14)
  files_not_allowed: 'You are not allowed to send files on this server.',
  file_too_large: 'That file is larger than this server accepts.',
  quota_exceeded: 'Your storage on this server is full. Delete or wait for older files to expire first.',
  too_many_uploads: 'Too many uploads at once. Wait for one to finish, then try again.',
  upload_expired: 'The upload took too long and expired on the server. Send the file again.',
  upload_finished: 'That upload is already complete.',
  offset_mismatch: 'The server holds a different part of the upload; resuming from there.',
  checksum_mismatch: 'Part of the upload arrived damaged; sending it again.',
  invalid_metadata: 'The server refused the upload’s description as malformed.',
  invalid_length: 'The server refused the upload’s length.',
  invalid_content_type: 'The server refused the upload’s format.',
  patch_too_large: 'The server refused a part of the upload as too large.',
  unsupported_tus_version: 'The server speaks another version of the upload protocol.',
  range_not_satisfiable: 'The server could not send that part of the file.',
  file_damaged: 'The server found this file damaged; it cannot be downloaded.',
  // admin console and accounts (issue #15)
  account_disabled: 'This account has been disabled by an administrator.',
  admin_required: 'Only administrators may do this.',
  cannot_disable_self: 'You cannot disable your own account.',
  job_not_failed: 'Only a failed job can be retried.',
  job_finished: 'That job has already finished.',
  feature_disabled: 'This feature is turned off on this server.',
  feature_not_compiled_in: 'This server was built without this feature.',
  invalid_request: 'The server refused the request as malformed.',
};

const CODE_RE = /^[a-z0-9_]{1,40}$/;

/** The client's sentence for an error code; unknown codes: a generic sentence with the code. */
export function codeText(code) {
  if (typeof code === 'string' && Object.hasOwn(TEXTS, code)) return TEXTS[code];
  const shown = typeof code === 'string' && CODE_RE.test(code) ? code : 'unknown';
  return `The server refused the request (error code ${shown}).`;
}

/** Errors whose message the client wrote itself (ApiError, SendError and AuthError build theirs here or in auth.js). */
const CLIENT_WORDED = new Set(['ApiError', 'SendError', 'AuthError']);

/** A sentence for any error a page catches: never the server's words, never a stack. */
export function describeError(err) {
  if (err && CLIENT_WORDED.has(err.name) && typeof err.message === 'string' && err.message) return err.message;
  return GENERIC;
}
