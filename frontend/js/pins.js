// Key pinning (docs/PROTOCOL.md §5.3): the first time you talk to someone their key version and
// fingerprint are pinned; if the directory later publishes a different fingerprint, sending
// to them is blocked until you compare the new safety number and say so. Messages are only
// ever verified with keys you accepted (the pinned key and the ones pinned before it).
//
// DOM-free and storage-agnostic: `backing` is { get(peer), put(peer, record) } (IndexedDB
// in the page through store.recordStore, a Map in the unit tests).
//
// Pin record (public data only, base64url text):
//   { peer, key_version, fingerprint, enc_public_key, sign_public_key, pinned_at,
//     verified_at (ms, when the user confirmed a changed number; null for first use),
//     accepted: [{ key_version, fingerprint, sign_public_key }] every key accepted, oldest first }

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
 * The key-change log of a user (GET /api/users/{name}/key-changes), oldest first, each entry
 * checked: its self-signature, and for every version after the first whether `prev_sig`
 * verifies with the previous entry's signing key (the chain the server keeps).
 */
export async function fetchKeyChanges(api, username) {
  const answer = await api.get(`/api/users/${encodeURIComponent(username)}/key-changes`, { auth: true });
  const changes = Array.isArray(answer?.changes) ? answer.changes : [];
  const out = [];
  let previous = null;
  for (const change of changes) {
    let encSpki;
    let signSpki;
    let fp = null;
    let selfSigValid = false;
    try {
      encSpki = b64decode(change.enc_public_key);
      signSpki = b64decode(change.sign_public_key);
      fp = await fingerprint(username, encSpki, signSpki);
      selfSigValid = await verifySelfSig(signSpki, change.self_sig, username, change.key_version, encSpki, signSpki);
    } catch {
      // shown as unverifiable
    }
    let chained = null; // the first version has nothing to chain to
    if (previous) {
      chained =
        typeof change.prev_sig === 'string' && encSpki && signSpki
          ? await verifyPrevSig(previous.sign_public_key, change.prev_sig, username, change.key_version, encSpki, signSpki)
          : false;
    }
    out.push({
      key_version: change.key_version,
      fingerprint: fp,
      changed_at: change.changed_at,
      selfSigValid,
      chained,
      sign_public_key: change.sign_public_key,
    });
    previous = change;
  }
  return out;
}

/** A pin for `current` (a fetchDirectoryKeys answer), keeping the keys accepted before. */
export function pinFor(peer, current, previous = null, { verified = false, now = Date.now() } = {}) {
  const accepted = (previous?.accepted ?? []).filter((a) => a.fingerprint !== current.fingerprint);
  accepted.push({ key_version: current.key_version, fingerprint: current.fingerprint, sign_public_key: current.sign_public_key });
  return {
    peer,
    key_version: current.key_version,
    fingerprint: current.fingerprint,
    enc_public_key: current.enc_public_key,
    sign_public_key: current.sign_public_key,
    pinned_at: now,
    verified_at: verified ? now : (previous?.verified_at ?? null),
    accepted,
  };
}

/**
 * Compares the directory with the pin and pins on first use.
 * Returns { status, pin, current } where status is
 *   'ok'      the directory shows the pinned keys;
 *   'pinned'  nothing was pinned: `current` is pinned now (first use);
 *   'changed' the directory shows another fingerprint than the pinned one: block sending;
 *   'invalid' the directory's keys carry no valid self-signature (or the server's fingerprint
 *             disagrees with ours): never pinned, block sending.
 */
export async function checkPeerKeys(api, backing, peer, { now = Date.now() } = {}) {
  const current = await fetchDirectoryKeys(api, peer);
  const pin = (await backing.get(peer)) ?? null;
  if (!current.selfSigValid || !current.serverFingerprintMatches) return { status: 'invalid', pin, current };
  if (!pin) {
    const fresh = pinFor(peer, current, null, { now });
    await backing.put(peer, fresh);
    return { status: 'pinned', pin: fresh, current };
  }
  if (pin.fingerprint === current.fingerprint && pin.enc_public_key === current.enc_public_key && pin.sign_public_key === current.sign_public_key) {
    return { status: 'ok', pin, current };
  }
  return { status: 'changed', pin, current };
}

/** "I have verified the new safety number": pins `current`, keeping the old keys as accepted. */
export async function acceptKeys(backing, peer, current, { now = Date.now() } = {}) {
  if (!current?.selfSigValid || !current.serverFingerprintMatches) throw new Error('these keys are not valid and cannot be accepted');
  const previous = (await backing.get(peer)) ?? null;
  const pin = pinFor(peer, current, previous, { verified: true, now });
  await backing.put(peer, pin);
  return pin;
}

/** The signing keys (SPKI text) a message from the pinned user may carry, newest first. */
export function acceptedSignKeys(pin) {
  if (!pin) return [];
  const keys = [pin.sign_public_key, ...[...(pin.accepted ?? [])].reverse().map((a) => a.sign_public_key)];
  return [...new Set(keys)];
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
