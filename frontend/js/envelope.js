// Message envelopes (docs/PROTOCOL.md §8), byte for byte as the Rust client builds them
// (client/src/envelope.rs); testdata/crypto-vectors.json "message" pins both.
//
//   aad  = "securechat/v1/msg|" || id || "|" || from || "|" || to || "|" || sent_at
//   ct   = AES-256-GCM(K, iv, plaintext = JSON {"text": ...}, aad)      (fresh 32-byte K, 12-byte iv)
//   (the plaintext's kinds — text, reply, edit, delete, react, timer — are built and read by
//   kindPlaintext / readPlaintext below, PROTOCOL.md §8.9)
//   keys = { reader: b64(RSA-OAEP-SHA256(enc_public_key(reader), K)) }  (from and to; one entry for a note to oneself)
//   sig  = ECDSA-P256-SHA256(sign_private(from), aad || 0x00 || iv || ct || 0x00 || K_list), raw r||s
//   K_list = for each reader in byte order of names: name "=" keys[name] ";"
//
// Envelope fields are always written in the order v, id, from, to, sent_at, iv, ct, keys, sig.
// Runs unchanged in the browser and in Node >= 20.

import { decode as b64decode, encode as b64encode } from './b64.js';
import { compareUsernames, concatBytes, randomBytes, utf8 } from './crypto.js';

const subtle = globalThis.crypto.subtle;

export const ENVELOPE_VERSION = 1;
export const AAD_PREFIX = 'securechat/v1/msg|';
export const KEY_BYTES = 32;
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const WRAPPED_KEY_BYTES = 256;
export const SIG_BYTES = 64;
/** The longest message text this client sends, in UTF-8 bytes (the envelope cap is 64 KiB). */
export const MAX_TEXT_BYTES = 16 * 1024;

/**
 * Size buckets of the padded plaintext (PROTOCOL.md §8.2): the JSON text is followed by
 * spaces (0x20, which JSON allows after a value) up to the first bucket it fits, so a
 * ciphertext tells the server which bucket a message is in, not its length. Above the
 * largest bucket, the next multiple of PAD_STEP.
 */
export const PAD_BUCKETS = [256, 1024, 4096, 8192, 16384, 32768];
export const PAD_STEP = 4096;

/** The padded length of a plaintext of `n` bytes. */
export function paddedLength(n) {
  for (const bucket of PAD_BUCKETS) if (n <= bucket) return bucket;
  return Math.ceil(n / PAD_STEP) * PAD_STEP;
}

/** `body` followed by spaces up to paddedLength(body.length) (a new array). */
export function pad(body) {
  const out = new Uint8Array(paddedLength(body.length)).fill(0x20);
  out.set(body);
  return out;
}

const FIELDS = ['v', 'id', 'from', 'to', 'sent_at', 'iv', 'ct', 'keys', 'sig'];
const USERNAME_RE = /^[a-z0-9_.-]{3,32}$/;
const UUID_V4_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const RSA_ALG = { name: 'RSA-OAEP', hash: 'SHA-256' };
const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256' };
const ECDSA_SIGN = { name: 'ECDSA', hash: 'SHA-256' };

/**
 * Why an envelope was refused. `code` is one of: invalid_envelope (shape), not_for_me,
 * bad_signature (does not verify against the key given), no_key (no wrapped key for me),
 * undecryptable (K or ct does not decrypt), invalid_plaintext (not a JSON object), replayed.
 */
export class EnvelopeError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'EnvelopeError';
    this.code = code;
  }
}

const refuse = (code, message) => new EnvelopeError(code, message);

export function isUuidV4(id) {
  return typeof id === 'string' && UUID_V4_RE.test(id);
}

export function isUsername(name) {
  return typeof name === 'string' && USERNAME_RE.test(name);
}

/** A fresh lower-case hyphenated UUID v4 (crypto.randomUUID). */
export function newMessageId() {
  return globalThis.crypto.randomUUID();
}

/** The AAD: "securechat/v1/msg|" || id || "|" || from || "|" || to || "|" || sent_at (decimal). PROTOCOL.md §8.2 */
export function messageAad(id, from, to, sentAt) {
  if (!Number.isSafeInteger(sentAt) || sentAt < 0) throw new TypeError('sent_at must be a non-negative integer');
  return utf8(`${AAD_PREFIX}${id}|${from}|${to}|${String(sentAt)}`);
}

/** K_list text: for each reader in byte order of names, name "=" keys[name] ";". PROTOCOL.md §8.4 */
export function kList(keys) {
  return Object.keys(keys)
    .sort(compareUsernames)
    .map((name) => `${name}=${keys[name]};`)
    .join('');
}

/** The exact bytes sig signs: aad || 0x00 || iv || ct || 0x00 || K_list (iv and ct raw). PROTOCOL.md §8.4 */
export function signedBytes(envelope) {
  const aad = messageAad(envelope.id, envelope.from, envelope.to, envelope.sent_at);
  const zero = new Uint8Array(1);
  return concatBytes(aad, zero, b64decode(envelope.iv), b64decode(envelope.ct), zero, utf8(kList(envelope.keys)));
}

/** The readers a 1:1 envelope must name: from and to, once each, in byte order. PROTOCOL.md §8.3 */
export function expectedReaders(from, to) {
  return from === to ? [from] : [from, to].sort(compareUsernames);
}

function decodeExact(value, length, field) {
  let bytes;
  try {
    bytes = b64decode(value);
  } catch {
    throw refuse('invalid_envelope', `${field} is not base64url`);
  }
  if (length !== undefined && bytes.length !== length) throw refuse('invalid_envelope', `${field} must be ${length} bytes`);
  return bytes;
}

/**
 * Checks every field of a parsed envelope against PROTOCOL.md §8.5–§8.6 for a 1:1 message (as the
 * server and the Rust client do): exactly the nine fields, version 1, a UUID v4 id, user
 * names, an integer sent_at, a 12-byte iv, a ct of at least one tag, keys for exactly
 * from and to (256 bytes each), a 64-byte sig. Throws EnvelopeError('invalid_envelope').
 */
export function checkShape(envelope) {
  if (!envelope || typeof envelope !== 'object' || Array.isArray(envelope)) throw refuse('invalid_envelope', 'not an object');
  const fields = Object.keys(envelope);
  const extra = fields.filter((f) => !FIELDS.includes(f));
  if (extra.length) throw refuse('invalid_envelope', `unknown field ${extra[0]}`);
  const missing = FIELDS.filter((f) => !(f in envelope));
  if (missing.length) throw refuse('invalid_envelope', `missing field ${missing[0]}`);
  if (envelope.v !== ENVELOPE_VERSION) throw refuse('invalid_envelope', 'unsupported envelope version');
  if (!isUuidV4(envelope.id)) throw refuse('invalid_envelope', 'id is not a lower-case UUID v4');
  if (!isUsername(envelope.from) || !isUsername(envelope.to)) throw refuse('invalid_envelope', 'from/to are not user names');
  if (!Number.isSafeInteger(envelope.sent_at) || envelope.sent_at < 0) throw refuse('invalid_envelope', 'sent_at is not an integer');
  for (const f of ['iv', 'ct', 'sig']) {
    if (typeof envelope[f] !== 'string') throw refuse('invalid_envelope', `${f} is not a string`);
  }
  decodeExact(envelope.iv, IV_BYTES, 'iv');
  if (decodeExact(envelope.ct, undefined, 'ct').length < TAG_BYTES) throw refuse('invalid_envelope', 'ct is shorter than a tag');
  decodeExact(envelope.sig, SIG_BYTES, 'sig');
  const keys = envelope.keys;
  if (!keys || typeof keys !== 'object' || Array.isArray(keys)) throw refuse('invalid_envelope', 'keys is not an object');
  const names = Object.keys(keys).sort(compareUsernames);
  const expected = expectedReaders(envelope.from, envelope.to);
  if (names.length !== expected.length || names.some((n, i) => n !== expected[i])) {
    throw refuse('invalid_envelope', `keys must name exactly ${expected.join(' and ')}`);
  }
  for (const name of names) {
    if (typeof keys[name] !== 'string') throw refuse('invalid_envelope', `keys[${name}] is not a string`);
    decodeExact(keys[name], WRAPPED_KEY_BYTES, `keys[${name}]`);
  }
  return envelope;
}

function importEnc(key) {
  if (key instanceof CryptoKey) return key;
  const spki = typeof key === 'string' ? b64decode(key) : key;
  return subtle.importKey('spki', spki, RSA_ALG, false, ['encrypt']);
}

function importSign(key) {
  if (key instanceof CryptoKey) return key;
  const spki = typeof key === 'string' ? b64decode(key) : key;
  return subtle.importKey('spki', spki, EC_ALG, false, ['verify']);
}

/** The envelope with its fields in the documented order (and keys in byte order of names). */
export function ordered(envelope) {
  const keys = {};
  for (const name of Object.keys(envelope.keys).sort(compareUsernames)) keys[name] = envelope.keys[name];
  const out = {};
  for (const f of FIELDS) out[f] = f === 'keys' ? keys : envelope[f];
  return out;
}

/** Compact JSON of an envelope, fields in the order v, id, from, to, sent_at, iv, ct, keys, sig. */
export function envelopeJson(envelope) {
  return JSON.stringify(ordered(envelope));
}

/** The plaintext of a text message: compact JSON {"text": text}. */
export function textPlaintext(text) {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  return { text };
}

// ---------------------------------------------------------------- plaintext kinds (PROTOCOL.md §8.9)

/** The disappearing-timer bounds in seconds (0 = off), as the server accepts them. */
export const TIMER_MIN_SECS = 5;
export const TIMER_MAX_SECS = 31536000;
/** The longest reaction, in UTF-8 bytes (one emoji with its modifiers fits easily). */
export const MAX_EMOJI_BYTES = 32;

/** Whether `secs` is a timer value: 0 (off) or TIMER_MIN_SECS..TIMER_MAX_SECS. */
export function isTimerSecs(secs) {
  return Number.isSafeInteger(secs) && (secs === 0 || (secs >= TIMER_MIN_SECS && secs <= TIMER_MAX_SECS));
}

const withExpire = (body, expire) => {
  if (expire === undefined || expire === null || expire === 0) return body;
  if (!isTimerSecs(expire)) throw new TypeError('expire must be a timer value in seconds');
  return { ...body, expire };
};

/**
 * Builds the plaintext object of one kind (PROTOCOL.md §8.9), members in this order:
 *   text:   {"text", "reply_to"?:{"id"}, "expire"?}
 *   edit:   {"edit":{"id"}, "text", "expire"?}
 *   delete: {"delete":{"id"}, "expire"?}
 *   react:  {"react":{"id","emoji"}, "expire"?}     (emoji "" removes my reaction)
 *   timer:  {"timer":{"secs"}}                      (never expires itself)
 */
export function kindPlaintext(kind, o = {}) {
  const idOf = (id) => {
    if (!isUuidV4(id)) throw new TypeError('the target must be a message id');
    return { id };
  };
  switch (kind) {
    case 'text': {
      if (typeof o.text !== 'string') throw new TypeError('text must be a string');
      const body = { text: o.text };
      if (o.replyTo) body.reply_to = idOf(o.replyTo);
      return withExpire(body, o.expire);
    }
    case 'edit':
      if (typeof o.text !== 'string') throw new TypeError('text must be a string');
      return withExpire({ edit: idOf(o.id), text: o.text }, o.expire);
    case 'delete':
      return withExpire({ delete: idOf(o.id) }, o.expire);
    case 'react':
      if (typeof o.emoji !== 'string' || utf8(o.emoji).length > MAX_EMOJI_BYTES) throw new TypeError('emoji must be a short string');
      return withExpire({ react: { ...idOf(o.id), emoji: o.emoji } }, o.expire);
    case 'timer':
      if (!isTimerSecs(o.secs)) throw new TypeError('secs must be 0 or 5..31536000');
      return { timer: { secs: o.secs } };
    default:
      throw new TypeError(`unknown kind ${kind}`);
  }
}

const target = (v) => (v && typeof v === 'object' && !Array.isArray(v) && isUuidV4(v.id) ? v.id : null);

/**
 * Reads an opened plaintext object into { kind, ... } (PROTOCOL.md §8.9). The first of
 * edit, delete, react, timer that is present decides the kind; a plaintext with none of
 * them and a string `text` is a text message; anything else is kind 'unknown' (shown as a
 * message this client cannot display). A malformed action is 'unknown' too, never applied.
 * `expire` is kept only when it is a valid timer value above 0.
 *   text   -> { kind, text, replyTo (id|null), expire }
 *   edit   -> { kind, target, text, expire }
 *   delete -> { kind, target, expire }
 *   react  -> { kind, target, emoji, expire }
 *   timer  -> { kind, secs }
 */
export function readPlaintext(p) {
  const expire = Number.isSafeInteger(p?.expire) && p.expire > 0 && isTimerSecs(p.expire) ? p.expire : null;
  const unknown = { kind: 'unknown', expire };
  if (!p || typeof p !== 'object' || Array.isArray(p)) return unknown;
  if ('edit' in p) {
    const id = target(p.edit);
    return id && typeof p.text === 'string' ? { kind: 'edit', target: id, text: p.text, expire } : unknown;
  }
  if ('delete' in p) {
    const id = target(p.delete);
    return id ? { kind: 'delete', target: id, expire } : unknown;
  }
  if ('react' in p) {
    const id = target(p.react);
    const emoji = p.react?.emoji;
    return id && typeof emoji === 'string' && utf8(emoji).length <= MAX_EMOJI_BYTES ? { kind: 'react', target: id, emoji, expire } : unknown;
  }
  if ('timer' in p) {
    const secs = p.timer?.secs;
    return p.timer && typeof p.timer === 'object' && isTimerSecs(secs) ? { kind: 'timer', secs } : unknown;
  }
  if (typeof p.text === 'string') return { kind: 'text', text: p.text, replyTo: target(p.reply_to), expire };
  return unknown;
}

/**
 * Seals a message.
 * @param {object} p
 * @param {string} p.from  the sender (me)
 * @param {string} p.to    the recipient (may be `from`: a note to oneself)
 * @param {object} p.plaintext  a JSON object, e.g. {text}
 * @param {CryptoKey} p.signKey  my ECDSA P-256 private key
 * @param {object} p.readers  { name: RSA-OAEP public CryptoKey or SPKI (bytes / b64) } for `from` and `to`
 * @param {string} [p.id] [p.sentAt] [p.key] [p.iv]  fixed values for tests; fresh otherwise
 * @param {boolean} [p.padding]  pad the plaintext to its size bucket (default; false only to
 *        reproduce the unpadded test vectors)
 * Returns the envelope object (fields in order). PROTOCOL.md §8.1–§8.4.
 */
export async function seal({ from, to, plaintext, signKey, readers, id = newMessageId(), sentAt = Date.now(), key, iv, padding = true }) {
  if (!isUsername(from) || !isUsername(to)) throw new TypeError('from and to must be user names');
  if (!isUuidV4(id)) throw new TypeError('id must be a lower-case UUID v4');
  if (!plaintext || typeof plaintext !== 'object' || Array.isArray(plaintext)) {
    throw new TypeError('the plaintext must be a JSON object');
  }
  const names = expectedReaders(from, to);
  for (const name of names) if (!readers?.[name]) throw new TypeError(`no public key for reader ${name}`);
  const k = key ?? randomBytes(KEY_BYTES);
  const nonce = iv ?? randomBytes(IV_BYTES);
  if (k.length !== KEY_BYTES || nonce.length !== IV_BYTES) throw new TypeError('K must be 32 bytes and iv 12 bytes');
  const aad = messageAad(id, from, to, sentAt);
  const json = utf8(JSON.stringify(plaintext));
  const body = padding ? pad(json) : json;
  if (padding) json.fill(0);
  const aesKey = await subtle.importKey('raw', k, 'AES-GCM', false, ['encrypt']);
  const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 }, aesKey, body));
  body.fill(0);
  const keys = {};
  for (const name of names) {
    const pub = await importEnc(readers[name]);
    keys[name] = b64encode(new Uint8Array(await subtle.encrypt(RSA_ALG, pub, k)));
  }
  if (!key) k.fill(0);
  const envelope = { v: ENVELOPE_VERSION, id, from, to, sent_at: sentAt, iv: b64encode(nonce), ct: b64encode(ct), keys, sig: '' };
  const sig = new Uint8Array(await subtle.sign(ECDSA_SIGN, signKey, signedBytes(envelope)));
  envelope.sig = b64encode(sig);
  return ordered(envelope);
}

/** True when the envelope is well formed and its signature verifies under `signPublicKey` (CryptoKey or SPKI). PROTOCOL.md §8.4 */
export async function verifyEnvelope(envelope, signPublicKey) {
  try {
    checkShape(envelope);
    const key = await importSign(signPublicKey);
    return await subtle.verify(ECDSA_SIGN, key, b64decode(envelope.sig), signedBytes(envelope));
  } catch {
    return false;
  }
}

/**
 * Opens an envelope as `me`.
 * @param {object} envelope  the parsed envelope
 * @param {object} p
 * @param {string} p.me
 * @param {CryptoKey} p.encPrivateKey  my RSA-OAEP private key (non-extractable is fine)
 * @param {CryptoKey|Uint8Array|string|Array} p.senderSignKeys  the sender's PINNED signing key(s)
 *        (my own key for my own copies); the signature must verify under one of them
 * Checks, in order: shape; `to` is me (or `from` is me: my own copy); the signature; my
 * wrapped K; decryption; a JSON-object plaintext. Returns { envelope, plaintext, text, signKeyIndex }.
 * Throws EnvelopeError. PROTOCOL.md §8.6.
 */
export async function open(envelope, opts) {
  const { k, body, signKeyIndex } = await openBytes(envelope, opts);
  k.fill(0);
  let plaintext;
  try {
    plaintext = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    throw refuse('invalid_plaintext', 'the message is not JSON');
  } finally {
    body.fill(0);
  }
  if (!plaintext || typeof plaintext !== 'object' || Array.isArray(plaintext)) {
    throw refuse('invalid_plaintext', 'the message is not a JSON object');
  }
  return { envelope, plaintext, text: typeof plaintext.text === 'string' ? plaintext.text : null, content: readPlaintext(plaintext), signKeyIndex };
}

/**
 * What reporting a received message discloses (docs/API-CONTRACT.md, "Report body"): the
 * envelope is opened again with every check of open() (same options), and the answer holds
 * that one message's key K and its exact decrypted bytes, padding included, both b64 —
 * nothing else. K exists as raw bytes only while this runs and is zeroed before it returns.
 * Returns { message_id, key, plaintext }. Throws EnvelopeError.
 */
export async function disclose(envelope, opts) {
  const { k, body } = await openBytes(envelope, opts);
  try {
    return { message_id: envelope.id, key: b64encode(k), plaintext: b64encode(body) };
  } finally {
    k.fill(0);
    body.fill(0);
  }
}

/** open()'s checks up to decryption: { k, body, signKeyIndex }; the caller zeroes k and body. */
async function openBytes(envelope, { me, encPrivateKey, senderSignKeys }) {
  checkShape(envelope);
  if (envelope.to !== me && envelope.from !== me) {
    throw refuse('not_for_me', `a message from ${envelope.from} to ${envelope.to} is not for ${me}`);
  }
  const candidates = Array.isArray(senderSignKeys) ? senderSignKeys : [senderSignKeys];
  const signed = signedBytes(envelope);
  const sig = b64decode(envelope.sig);
  let signKeyIndex = -1;
  for (let i = 0; i < candidates.length && signKeyIndex < 0; i++) {
    if (!candidates[i]) continue;
    try {
      if (await subtle.verify(ECDSA_SIGN, await importSign(candidates[i]), sig, signed)) signKeyIndex = i;
    } catch {
      // a key that does not import does not verify
    }
  }
  if (signKeyIndex < 0) throw refuse('bad_signature', `the signature does not verify with ${envelope.from}'s pinned key`);
  const wrapped = envelope.keys[me];
  if (!wrapped) throw refuse('no_key', 'the message carries no key for me');
  let k;
  try {
    k = new Uint8Array(await subtle.decrypt(RSA_ALG, encPrivateKey, b64decode(wrapped)));
  } catch {
    throw refuse('undecryptable', 'the message key does not decrypt with my key');
  }
  if (k.length !== KEY_BYTES) {
    k.fill(0);
    throw refuse('undecryptable', 'the message key is not 32 bytes');
  }
  try {
    const aesKey = await subtle.importKey('raw', k, 'AES-GCM', false, ['decrypt']);
    const body = new Uint8Array(
      await subtle.decrypt(
        { name: 'AES-GCM', iv: b64decode(envelope.iv), additionalData: messageAad(envelope.id, envelope.from, envelope.to, envelope.sent_at), tagLength: 128 },
        aesKey,
        b64decode(envelope.ct),
      ),
    );
    return { k, body, signKeyIndex };
  } catch {
    k.fill(0);
    throw refuse('undecryptable', 'the message does not decrypt');
  }
}

/**
 * Remembers (from, id) of opened messages, with the seq the server gave them, and refuses a
 * second copy under another seq (a replay). The same seq again is the same stored message
 * arriving twice (live and from history) and is reported as a duplicate, not a replay. A
 * message without an integer seq has no place in the conversation and is refused
 * ('no_seq'): every id is remembered with its seq, so the guard holds across reloads when
 * `backing` persists it: { get(key) -> seq|undefined, put(key, seq) } (async).
 * PROTOCOL.md §8.6 step 7.
 */
export class ReplayGuard {
  constructor({ capacity = 10000, backing = null } = {}) {
    this.capacity = capacity;
    this.backing = backing;
    this.seen = new Map();
  }

  static key(from, id) {
    return `${from}\n${id}`;
  }

  async lookup(from, id) {
    const key = ReplayGuard.key(from, id);
    if (this.seen.has(key)) return this.seen.get(key);
    if (this.backing) {
      const seq = await this.backing.get(key).catch(() => undefined);
      if (Number.isSafeInteger(seq)) this.remember(key, seq);
      return Number.isSafeInteger(seq) ? seq : undefined;
    }
    return undefined;
  }

  /** 'new', 'duplicate' (same seq seen before), 'replayed' (the id came before under another seq) or 'no_seq'. */
  async check(from, id, seq) {
    if (!Number.isSafeInteger(seq)) return 'no_seq';
    const known = await this.lookup(from, id);
    if (known === undefined) return 'new';
    return known === seq ? 'duplicate' : 'replayed';
  }

  remember(key, seq) {
    this.seen.delete(key);
    this.seen.set(key, seq);
    while (this.seen.size > this.capacity) this.seen.delete(this.seen.keys().next().value);
  }

  /** Records an opened message with its seq (only ever call this after open() succeeded). */
  async record(from, id, seq) {
    if (!Number.isSafeInteger(seq)) throw refuse('no_seq', `message ${id} from ${from} has no seq`);
    const key = ReplayGuard.key(from, id);
    const known = await this.lookup(from, id);
    if (known !== undefined && known !== seq) {
      throw refuse('replayed', `message ${id} from ${from} was already delivered as #${known}`);
    }
    this.remember(key, seq);
    if (this.backing && known !== seq) await this.backing.put(key, seq);
  }
}
