// Key pinning (docs/PROTOCOL.md §5.3): the first time you talk to someone their key version and
// keys are pinned; if the directory later publishes other keys, sending to them is blocked
// until you accept the change. Everything the client trusts comes from the pin: the keys it
// seals for, the keys it verifies with and the safety number it shows. The directory's
// answer is only ever compared with the pin, never shown or used in its place.
//
// DOM-free and storage-agnostic: `backing` is { get(peer), put(peer, record) } (IndexedDB
// in the page through store.recordStore, a Map in the unit tests).
//
// Pin record (public data only, base64url text):
//   { peer, key_version, fingerprint, enc_public_key, sign_public_key,
//     pinned_at (ms),
//     verified_at (ms when the user marked THIS key as verified after comparing the safety
//                  number; null: not verified — a first-use pin, or a key change accepted),
//     previous: [{ key_version, fingerprint, sign_public_key, until_seq }] earlier keys of
//               the peer, oldest first: a message signed by one of them is accepted only if
//               its seq is at most until_seq (the newest seq held when the change was accepted) }

import { decode as b64decode } from './b64.js';
import { fingerprint, safetyNumber, verifyPrevSig, verifySelfSig } from './crypto.js';

/** Directory entry of a user, checked here: self-signature and our own fingerprint computation. */
export async function fetchDirectoryKeys(api, username) {
  const dir = await api.get(`/api/users/${encodeURIComponent(username)}/keys`, { auth: true });
  const encSpki = b64decode(dir.enc_public_key);
  const signSpki = b64decode(dir.sign_public_key);
  const selfSigValid =
    dir.username === username &&
    Number.isSafeInteger(dir.key_version) &&
    (await verifySelfSig(signSpki, dir.self_sig, username, dir.key_version, encSpki, signSpki));
  const fp = await fingerprint(username, encSpki, signSpki);
  return {
    username,
    key_version: dir.key_version,
    enc_public_key: dir.enc_public_key,
    sign_public_key: dir.sign_public_key,
    fingerprint: fp,
    selfSigValid,
    serverFingerprintMatches: dir.fingerprint === fp,
  };
}

/**
 * The key-change log of a user (GET /api/users/{name}/key-changes), oldest first, for display:
 * version, fingerprint (computed here), time and whether the entry is self-signed (integrity
 * of the entry, not trust in it). Whether a change descends from the pinned key is
 * verifyChain's one verdict, not a per-entry note.
 */
export async function fetchKeyChanges(api, username) {
  const answer = await api.get(`/api/users/${encodeURIComponent(username)}/key-changes`, { auth: true });
  const changes = Array.isArray(answer?.changes) ? answer.changes : [];
  const out = [];
  for (const change of changes) {
    let fp = null;
    let selfSigValid = false;
    try {
      const encSpki = b64decode(change.enc_public_key);
      const signSpki = b64decode(change.sign_public_key);
      fp = await fingerprint(username, encSpki, signSpki);
      selfSigValid = await verifySelfSig(signSpki, change.self_sig, username, change.key_version, encSpki, signSpki);
    } catch {
      // shown as unverifiable
    }
    out.push({ key_version: change.key_version, fingerprint: fp, changed_at: change.changed_at, selfSigValid });
  }
  return out;
}

/** A pin for `current` (a fetchDirectoryKeys answer); the keys pinned before go to `previous`. */
export function pinFor(peer, current, previous = null, { untilSeq = 0, now = Date.now() } = {}) {
  const older = (previous?.previous ?? []).filter((p) => p.fingerprint !== current.fingerprint);
  if (previous && previous.fingerprint !== current.fingerprint) {
    older.push({
      key_version: previous.key_version,
      fingerprint: previous.fingerprint,
      sign_public_key: previous.sign_public_key,
      until_seq: Number.isSafeInteger(untilSeq) && untilSeq > 0 ? untilSeq : 0,
    });
  }
  return {
    peer,
    key_version: current.key_version,
    fingerprint: current.fingerprint,
    enc_public_key: current.enc_public_key,
    sign_public_key: current.sign_public_key,
    pinned_at: now,
    verified_at: null,
    previous: older,
  };
}

/** True when the directory's answer holds exactly the pinned keys. */
export function samePinnedKeys(pin, current) {
  return (
    pin.key_version === current.key_version &&
    pin.fingerprint === current.fingerprint &&
    pin.enc_public_key === current.enc_public_key &&
    pin.sign_public_key === current.sign_public_key
  );
}

/**
 * Compares the directory with the pin and pins on first use.
 * Returns { status, pin, current, chain } where status is
 *   'ok'      the directory shows the pinned keys;
 *   'pinned'  nothing was pinned: `current` is pinned now (first use, not verified);
 *   'changed' the directory shows other keys than the pinned ones: block sending; `chain`
 *             is verifyChain's verdict on the change;
 *   'invalid' the directory's keys carry no valid self-signature (or the server's fingerprint
 *             disagrees with ours): never pinned, block sending.
 */
export async function checkPeerKeys(api, backing, peer, { now = Date.now() } = {}) {
  const current = await fetchDirectoryKeys(api, peer);
  const pin = (await backing.get(peer)) ?? null;
  if (!current.selfSigValid || !current.serverFingerprintMatches) return { status: 'invalid', pin, current, chain: null };
  if (!pin) {
    const fresh = pinFor(peer, current, null, { now });
    await backing.put(peer, fresh);
    return { status: 'pinned', pin: fresh, current, chain: null };
  }
  if (samePinnedKeys(pin, current)) return { status: 'ok', pin, current, chain: null };
  const chain = await verifyChain(api, peer, pin, current).catch(() => ({
    verdict: 'unknown',
    reason: 'the key-change log could not be fetched',
  }));
  return { status: 'changed', pin, current, chain };
}

/**
 * Whether the directory's new keys descend from the PINNED keys: the server's key-change log
 * must hold the pinned version with exactly the pinned keys, then every later version up to
 * the current one (no gap), each self-signed and carrying a prev_sig by the version before it
 * — the first step checked with the pinned signing key, not the log's copy of it. Returns
 * { verdict: 'chained' | 'broken', reason }. 'chained' means the owner of the pinned key (or
 * whoever holds it) made the change; it does not mean the new key is safe to trust.
 */
export async function verifyChain(api, peer, pin, current) {
  const broken = (reason) => ({ verdict: 'broken', reason });
  if (!(current.key_version > pin.key_version)) {
    return broken(`the server shows version ${current.key_version} with other keys than the pinned version ${pin.key_version}`);
  }
  const answer = await api.get(`/api/users/${encodeURIComponent(peer)}/key-changes`, { auth: true });
  const changes = Array.isArray(answer?.changes) ? answer.changes : [];
  const byVersion = new Map();
  for (const change of changes) {
    if (!Number.isSafeInteger(change?.key_version) || byVersion.has(change.key_version)) return broken('the key-change log is malformed');
    byVersion.set(change.key_version, change);
  }
  const start = byVersion.get(pin.key_version);
  if (!start || start.enc_public_key !== pin.enc_public_key || start.sign_public_key !== pin.sign_public_key) {
    return broken(`the key-change log does not hold the key you pinned (version ${pin.key_version})`);
  }
  let signer = pin.sign_public_key;
  for (let version = pin.key_version + 1; version <= current.key_version; version++) {
    const change = byVersion.get(version);
    if (!change) return broken(`version ${version} is missing from the key-change log`);
    let encSpki;
    let signSpki;
    try {
      encSpki = b64decode(change.enc_public_key);
      signSpki = b64decode(change.sign_public_key);
    } catch {
      return broken(`version ${version} holds keys that do not decode`);
    }
    if (!(await verifySelfSig(signSpki, change.self_sig, peer, version, encSpki, signSpki))) {
      return broken(`version ${version} is not self-signed`);
    }
    if (typeof change.prev_sig !== 'string' || !(await verifyPrevSig(signer, change.prev_sig, peer, version, encSpki, signSpki))) {
      return broken(`version ${version} is not signed by version ${version - 1}`);
    }
    signer = change.sign_public_key;
  }
  const last = byVersion.get(current.key_version);
  if (last.enc_public_key !== current.enc_public_key || last.sign_public_key !== current.sign_public_key) {
    return broken('the key-change log ends in other keys than the directory shows');
  }
  return { verdict: 'chained', reason: `every version from ${pin.key_version} to ${current.key_version} is signed by the one before` };
}

/**
 * Accepts a key change: pins `current` (not verified: compare the new safety number, then
 * mark it verified). The pinned keys become `previous`, accepted for messages up to
 * `untilSeq` only.
 */
export async function acceptKeys(backing, peer, current, { untilSeq = 0, now = Date.now() } = {}) {
  if (!current?.selfSigValid || !current.serverFingerprintMatches) throw new Error('these keys are not valid and cannot be accepted');
  const previous = (await backing.get(peer)) ?? null;
  const pin = pinFor(peer, current, previous, { untilSeq, now });
  await backing.put(peer, pin);
  return pin;
}

/** Marks (or, with verified false, unmarks) the pinned key as verified by the user. */
export async function setVerified(backing, peer, fingerprint, verified, { now = Date.now() } = {}) {
  const pin = (await backing.get(peer)) ?? null;
  if (!pin || pin.fingerprint !== fingerprint) throw new Error('the pinned key changed meanwhile; compare the safety number again');
  const next = { ...pin, verified_at: verified ? now : null };
  await backing.put(peer, next);
  return next;
}

/**
 * The signing keys a message from the pinned user with sequence number `seq` may carry,
 * newest first: [{ sign_public_key, key_version, previous }]. The pinned key always; an
 * earlier key only when `seq` is at most the seq up to which it was accepted.
 */
export function acceptedSignKeys(pin, seq) {
  if (!pin) return [];
  const keys = [{ sign_public_key: pin.sign_public_key, key_version: pin.key_version, previous: false }];
  for (const p of [...(pin.previous ?? [])].reverse()) {
    if (Number.isSafeInteger(seq) && Number.isSafeInteger(p.until_seq) && seq <= p.until_seq) {
      keys.push({ sign_public_key: p.sign_public_key, key_version: p.key_version, previous: true });
    }
  }
  return keys;
}

/** The safety number of a conversation with `peer`, from the PINNED key only. */
export function pinnedSafetyNumber(me, peer, pin) {
  return safetyNumber(me, { username: peer, fingerprint: pin.fingerprint });
}

/** The old and new safety numbers of a changed key, for the warning. */
export function changedSafetyNumbers(me, peer, pin, current) {
  return {
    old: safetyNumber(me, { username: peer, fingerprint: pin.fingerprint }),
    new: safetyNumber(me, { username: peer, fingerprint: current.fingerprint }),
  };
}

/** A Map-backed pin store (tests, or a browser without IndexedDB). */
export function memoryBacking() {
  const map = new Map();
  return { map, get: async (k) => map.get(k), put: async (k, v) => void map.set(k, structuredClone(v)) };
}
