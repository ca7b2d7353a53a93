// base64url without padding (RFC 4648 §5), as every binary field of the
// securechat wire format (docs/PROTOCOL.md §1.1). Decoding is strict: it rejects padding,
// the standard alphabet ('+', '/'), whitespace, impossible lengths and
// non-canonical trailing bits, so that one value has exactly one encoding.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const LOOKUP = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

export class Base64Error extends Error {
  constructor(message) {
    super(message);
    this.name = 'Base64Error';
  }
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('b64.encode expects bytes (Uint8Array, ArrayBuffer or a typed-array view)');
}

/** Encodes bytes as base64url without padding. */
export function encode(data) {
  const bytes = toBytes(data);
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/** Decodes base64url without padding into a Uint8Array; throws Base64Error on anything else. */
export function decode(text) {
  if (typeof text !== 'string') throw new Base64Error('base64url value must be a string');
  if (text.length % 4 === 1) throw new Base64Error('invalid base64url length');
  const values = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? LOOKUP[c] : -1;
    if (v < 0) {
      const ch = text[i];
      if (ch === '=') throw new Base64Error('base64url must not be padded');
      if (ch === '+' || ch === '/') throw new Base64Error('standard base64 alphabet is not accepted, use base64url');
      throw new Base64Error(`invalid base64url character at position ${i}`);
    }
    values[i] = v;
  }
  const full = Math.floor(text.length / 4);
  const rest = text.length % 4;
  const out = new Uint8Array(full * 3 + (rest === 0 ? 0 : rest - 1));
  let o = 0;
  let i = 0;
  for (let g = 0; g < full; g++, i += 4) {
    const n = (values[i] << 18) | (values[i + 1] << 12) | (values[i + 2] << 6) | values[i + 3];
    out[o++] = (n >> 16) & 255;
    out[o++] = (n >> 8) & 255;
    out[o++] = n & 255;
  }
  if (rest === 2) {
    if (values[i + 1] & 15) throw new Base64Error('non-canonical base64url (trailing bits set)');
    out[o++] = (values[i] << 2) | (values[i + 1] >> 4);
  } else if (rest === 3) {
    if (values[i + 2] & 3) throw new Base64Error('non-canonical base64url (trailing bits set)');
    const n = (values[i] << 12) | (values[i + 1] << 6) | values[i + 2];
    out[o++] = (n >> 10) & 255;
    out[o++] = (n >> 2) & 255;
  }
  return out;
}
