//! The message envelope of docs/PROTOCOL.md §8, byte for byte as the browser builds it:
//! sealing (fresh 32-byte `K`, 12-byte `iv`, AES-256-GCM over the plaintext JSON with the
//! canonical header as AAD, `K` wrapped with RSA-OAEP-SHA256 for every reader, an
//! ECDSA-P256-SHA256 signature over `aad || 0x00 || iv || ct || 0x00 || K_list`), opening
//! (addressee check, signature, unwrap, decrypt), and a [`ReplayGuard`] for seen ids.
//!
//! [`Envelope`] serializes its fields in the documented order
//! `{v,id,from,to,sent_at,iv,ct,keys,sig}`; [`ReaderKeys`] keeps the `keys` members in the
//! order they were received (a sealed envelope has them in byte order of names) and
//! refuses duplicate names. The JSON member order of `keys` is not signed: `K_list` is
//! always built in byte order of names, whatever order the object came in.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use p256::ecdsa::SigningKey;
use rand::{CryptoRng, RngCore};
use rsa::{Oaep, RsaPublicKey};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::identity::{parse_sign_spki, rsa_oaep_decrypt};
use crate::sig::{sign_raw, verify_raw};
use crate::{b64, Error, Identity, Result};

/// The envelope format version (PROTOCOL.md §8.1).
pub const ENVELOPE_VERSION: u32 = 1;
/// Domain prefix of the message AAD.
pub const AAD_PREFIX: &str = "securechat/v1/msg|";
/// AES-GCM nonce length.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length (the minimum `ct` length).
pub const TAG_LEN: usize = 16;
/// RSA-OAEP-2048 ciphertext length of a wrapped `K`.
pub const WRAPPED_KEY_LEN: usize = 256;
/// Raw `r||s` signature length.
pub const SIG_LEN: usize = 64;

/// A message envelope; the field order is the serialization order of PROTOCOL.md §8.1.
/// Deserializing refuses unknown fields, as the server does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub v: u32,
    pub id: String,
    pub from: String,
    pub to: String,
    pub sent_at: u64,
    pub iv: String,
    pub ct: String,
    pub keys: ReaderKeys,
    pub sig: String,
}

impl Envelope {
    /// Compact JSON, fields in the documented order.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parse envelope JSON strictly (unknown fields and duplicate reader names refused).
    /// The shape of the values is checked by [`Envelope::check_shape`].
    pub fn from_json(text: &str) -> Result<Envelope> {
        Ok(serde_json::from_str(text)?)
    }

    /// The canonical header the AES-GCM AAD and the signature start with (PROTOCOL.md §8.2).
    pub fn aad(&self) -> Vec<u8> {
        message_aad(&self.id, &self.from, &self.to, self.sent_at)
    }

    /// The exact bytes `sig` signs: `aad || 0x00 || iv || ct || 0x00 || K_list`
    /// (PROTOCOL.md §8.4).
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        let iv = b64::decode(&self.iv)?;
        let ct = b64::decode(&self.ct)?;
        Ok(signed_bytes(&self.aad(), &iv, &ct, &self.keys))
    }

    /// Check every field against PROTOCOL.md §8.5–§8.6 for a 1:1 message: version 1, a lower-case
    /// hyphenated UUID v4 id, valid user names, a 12-byte iv, a ct of at least one tag,
    /// `keys` holding exactly `from` and `to` (one entry when they are equal) with
    /// 256-byte values, a 64-byte signature, every binary value strict b64.
    pub fn check_shape(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Decode(format!("envelope: {what}")));
        if self.v != ENVELOPE_VERSION {
            return bad(format!("unsupported version {}", self.v));
        }
        if !is_uuid_v4(&self.id) {
            return bad(format!("id {:?} is not a lower-case UUID v4", self.id));
        }
        for (field, name) in [("from", &self.from), ("to", &self.to)] {
            if !is_username(name) {
                return bad(format!("{field} {name:?} is not a user name"));
            }
        }
        if b64::decode(&self.iv)?.len() != IV_LEN {
            return bad(format!("iv is not {IV_LEN} bytes"));
        }
        if b64::decode(&self.ct)?.len() < TAG_LEN {
            return bad("ct is shorter than a GCM tag".into());
        }
        let mut expected = vec![self.from.as_str(), self.to.as_str()];
        expected.sort_unstable();
        expected.dedup();
        let mut names: Vec<&str> = self.keys.names().collect();
        names.sort_unstable();
        if names != expected {
            return bad(format!(
                "keys are for {names:?}, a 1:1 message has exactly {expected:?}"
            ));
        }
        for (name, wrapped) in self.keys.iter() {
            if b64::decode(wrapped)?.len() != WRAPPED_KEY_LEN {
                return bad(format!("keys[{name:?}] is not {WRAPPED_KEY_LEN} bytes"));
            }
        }
        if b64::decode(&self.sig)?.len() != SIG_LEN {
            return bad(format!("sig is not {SIG_LEN} bytes"));
        }
        Ok(())
    }

    /// Check the shape and the signature against the sender's signing key (P-256 SPKI);
    /// PROTOCOL.md §8.4, §8.6 step 3.
    pub fn verify(&self, sender_sign_spki: &[u8]) -> Result<()> {
        self.check_shape()?;
        let key = parse_sign_spki(sender_sign_spki)?;
        let sig = b64::decode(&self.sig)?;
        verify_raw(&key, &self.signed_bytes()?, &sig)
            .map_err(|_| Error::Verification("envelope signature does not verify".into()))
    }
}

/// `"securechat/v1/msg|" || id || "|" || from || "|" || to || "|" || sent_at` (PROTOCOL.md §8.2).
pub fn message_aad(id: &str, from: &str, to: &str, sent_at: u64) -> Vec<u8> {
    format!("{AAD_PREFIX}{id}|{from}|{to}|{sent_at}").into_bytes()
}

/// `aad || 0x00 || iv || ct || 0x00 || K_list` (iv and ct raw; PROTOCOL.md §8.4).
pub fn signed_bytes(aad: &[u8], iv: &[u8], ct: &[u8], keys: &ReaderKeys) -> Vec<u8> {
    let k_list = keys.k_list();
    let mut m = Vec::with_capacity(aad.len() + iv.len() + ct.len() + k_list.len() + 2);
    m.extend_from_slice(aad);
    m.push(0);
    m.extend_from_slice(iv);
    m.extend_from_slice(ct);
    m.push(0);
    m.extend_from_slice(&k_list);
    m
}

/// The `keys` object: reader name -> b64 of RSA-OAEP(K), in the order received (byte
/// order of names when sealed here). Duplicate names are refused when parsing.
/// PROTOCOL.md §8.3.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderKeys(Vec<(String, String)>);

impl ReaderKeys {
    /// Keys in the given order; duplicate names are an error.
    pub fn from_entries(entries: Vec<(String, String)>) -> Result<ReaderKeys> {
        let mut seen = HashSet::new();
        for (name, _) in &entries {
            if !seen.insert(name.as_str()) {
                return Err(Error::Decode(format!("keys: duplicate reader {name:?}")));
            }
        }
        Ok(ReaderKeys(entries))
    }

    /// The wrapped key of `name` (b64 text).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.as_str())
    }

    /// Reader names in stored order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    /// `(name, b64 wrapped key)` in stored order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, k)| (n.as_str(), k.as_str()))
    }

    /// Number of readers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no reader.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, mutable (for tests that doctor an envelope).
    pub fn entries_mut(&mut self) -> &mut Vec<(String, String)> {
        &mut self.0
    }

    /// `K_list`: for each reader in byte order of names, `name "=" b64 ";"` (PROTOCOL.md §8.4).
    pub fn k_list(&self) -> Vec<u8> {
        let mut sorted: Vec<&(String, String)> = self.0.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut out = Vec::new();
        for (name, key) in sorted {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(key.as_bytes());
            out.push(b';');
        }
        out
    }
}

impl Serialize for ReaderKeys {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, key) in &self.0 {
            map.serialize_entry(name, key)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ReaderKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = ReaderKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of reader name to wrapped key")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<ReaderKeys, A::Error> {
                let mut entries: Vec<(String, String)> = Vec::new();
                while let Some((name, key)) = map.next_entry::<String, String>()? {
                    if entries.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate reader {name:?} in keys"
                        )));
                    }
                    entries.push((name, key));
                }
                Ok(ReaderKeys(entries))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// The per-message values a sealer picks: normally fresh ([`SealInputs::fresh`]); fixed
/// for test vectors. Never reuse a `key`/`iv` pair.
#[derive(Clone)]
pub struct SealInputs {
    pub id: String,
    pub sent_at: u64,
    pub key: [u8; 32],
    pub iv: [u8; 12],
}

impl fmt::Debug for SealInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealInputs")
            .field("id", &self.id)
            .field("sent_at", &self.sent_at)
            .finish_non_exhaustive()
    }
}

impl SealInputs {
    /// A fresh UUID v4, the current time in ms, a random `K` and `iv`.
    pub fn fresh() -> SealInputs {
        Self::fresh_with(&mut rand::rngs::OsRng, now_ms())
    }

    /// Fresh values from a given random source and clock reading.
    pub fn fresh_with<R: RngCore + CryptoRng>(rng: &mut R, sent_at: u64) -> SealInputs {
        let mut key = [0u8; 32];
        let mut iv = [0u8; 12];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut iv);
        SealInputs {
            id: new_message_id(rng),
            sent_at,
            key,
            iv,
        }
    }
}

impl Drop for SealInputs {
    fn drop(&mut self) {
        self.key.fill(0);
    }
}

/// A lower-case hyphenated UUID v4 from `rng`.
pub fn new_message_id<R: RngCore + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Milliseconds since the Unix epoch (`sent_at`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One reader of a message: a user name and its RSA-OAEP public key.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    pub name: &'a str,
    pub enc: &'a RsaPublicKey,
}

/// Seal `plaintext` (a JSON object such as `{"text": ...}`) from `from` (holding
/// `identity`) to `to`, whose RSA key is `to_enc`; `keys` gets `from` and `to` (one entry
/// for a note to oneself, when `to_enc` is ignored). Fresh id, time, `K` and `iv`.
/// PROTOCOL.md §8.2–§8.4.
pub fn seal(
    from: &str,
    identity: &Identity,
    to: &str,
    to_enc: &RsaPublicKey,
    plaintext: &Value,
) -> Result<Envelope> {
    let own = identity.enc.to_public_key();
    let mut readers = vec![Reader {
        name: from,
        enc: &own,
    }];
    if to != from {
        readers.push(Reader {
            name: to,
            enc: to_enc,
        });
    }
    let plain = pad(plaintext_bytes(plaintext)?);
    seal_with(
        &mut rand::rngs::OsRng,
        &SealInputs::fresh(),
        from,
        &identity.sign,
        to,
        &readers,
        &plain,
    )
}

/// [`seal`] of `{"text": text}`.
pub fn seal_text(
    from: &str,
    identity: &Identity,
    to: &str,
    to_enc: &RsaPublicKey,
    text: &str,
) -> Result<Envelope> {
    seal(
        from,
        identity,
        to,
        to_enc,
        &serde_json::json!({ "text": text }),
    )
}

/// The plaintext bytes of a message: compact JSON of an object (what `JSON.stringify`
/// makes of it).
pub fn plaintext_bytes(plaintext: &Value) -> Result<Vec<u8>> {
    if !plaintext.is_object() {
        return Err(Error::Decode(
            "message plaintext must be a JSON object".into(),
        ));
    }
    Ok(serde_json::to_vec(plaintext)?)
}

/// Size buckets of a padded plaintext, in bytes (PROTOCOL.md §8.2); above the last one, the
/// next multiple of [`PAD_STEP`].
pub const PAD_BUCKETS: [usize; 6] = [256, 1024, 4096, 8192, 16384, 32768];
/// The rounding step above the largest bucket.
pub const PAD_STEP: usize = 4096;

/// The padded length of a plaintext of `n` bytes.
pub fn padded_length(n: usize) -> usize {
    PAD_BUCKETS
        .iter()
        .copied()
        .find(|&bucket| n <= bucket)
        .unwrap_or_else(|| n.div_ceil(PAD_STEP) * PAD_STEP)
}

/// `body` followed by spaces (0x20, JSON whitespace) up to [`padded_length`], so that the
/// ciphertext tells its size bucket, not the message's length. Readers parse the padded
/// text as JSON unchanged: trailing whitespace is allowed after a JSON value.
pub fn pad(mut body: Vec<u8>) -> Vec<u8> {
    let len = padded_length(body.len());
    body.resize(len, b' ');
    body
}

/// The sealing step with everything given: `inputs` (id, sent_at, K, iv), the sender's
/// signing key, the readers (must be exactly `from` and `to`, once each), the plaintext
/// bytes. `rng` feeds the OAEP padding only (ECDSA is RFC 6979 deterministic), so a
/// seeded `rng` makes the whole envelope reproducible. PROTOCOL.md §8.2–§8.4.
pub fn seal_with<R: RngCore + CryptoRng>(
    rng: &mut R,
    inputs: &SealInputs,
    from: &str,
    sign: &SigningKey,
    to: &str,
    readers: &[Reader<'_>],
    plaintext: &[u8],
) -> Result<Envelope> {
    let mut sorted: Vec<&Reader<'_>> = readers.iter().collect();
    sorted.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut entries = Vec::with_capacity(sorted.len());
    for r in sorted {
        let wrapped = r
            .enc
            .encrypt(rng, Oaep::new::<Sha256>(), &inputs.key)
            .map_err(|e| Error::Crypto(format!("RSA-OAEP encrypt: {e}")))?;
        entries.push((r.name.to_owned(), b64::encode(wrapped)));
    }
    let keys = ReaderKeys::from_entries(entries)?;
    let aad = message_aad(&inputs.id, from, to, inputs.sent_at);
    let cipher = Aes256Gcm::new((&inputs.key).into());
    let ct = cipher
        .encrypt(
            &Nonce::from(inputs.iv),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Crypto("AES-GCM encrypt".into()))?;
    let sig = sign_raw(sign, &signed_bytes(&aad, &inputs.iv, &ct, &keys));
    let envelope = Envelope {
        v: ENVELOPE_VERSION,
        id: inputs.id.clone(),
        from: from.to_owned(),
        to: to.to_owned(),
        sent_at: inputs.sent_at,
        iv: b64::encode(inputs.iv),
        ct: b64::encode(ct),
        keys,
        sig: b64::encode(sig),
    };
    envelope.check_shape()?;
    Ok(envelope)
}

/// An opened message: the envelope and its decrypted plaintext JSON object.
#[derive(Clone, Debug, PartialEq)]
pub struct Opened {
    pub envelope: Envelope,
    pub plaintext: Map<String, Value>,
}

impl Opened {
    /// The `text` member, when it is a string.
    pub fn text(&self) -> Option<&str> {
        self.plaintext.get("text").and_then(Value::as_str)
    }
}

/// Open an envelope as `me` (holding `identity`): `to` must be `me`, or `from` must be
/// `me` (a copy of my own sent message); the signature must verify with the sender's
/// signing key `sender_sign_spki` (P-256 SPKI: pinned, or my own for my sent copies);
/// then my `K` is unwrapped and `ct` decrypted to a JSON object. Replays are the
/// caller's business ([`ReplayGuard::open`]). PROTOCOL.md §8.6.
pub fn open(
    envelope: &Envelope,
    me: &str,
    identity: &Identity,
    sender_sign_spki: &[u8],
) -> Result<Opened> {
    let (mut key, plain) = open_bytes(envelope, me, identity, sender_sign_spki)?;
    key.fill(0);
    let plaintext: Value = serde_json::from_slice(&plain)?;
    match plaintext {
        Value::Object(plaintext) => Ok(Opened {
            envelope: envelope.clone(),
            plaintext,
        }),
        _ => Err(Error::Decode(
            "message plaintext is not a JSON object".into(),
        )),
    }
}

/// [`open`]'s checks up to decryption (PROTOCOL.md §8.6 steps 2–5): `K` and the exact
/// decrypted bytes, padding included. The caller zeroes `K` when done with it.
pub(crate) fn open_bytes(
    envelope: &Envelope,
    me: &str,
    identity: &Identity,
    sender_sign_spki: &[u8],
) -> Result<([u8; 32], Vec<u8>)> {
    if envelope.to != me && envelope.from != me {
        return Err(Error::Verification(format!(
            "envelope is from {:?} to {:?}, not for {me:?}",
            envelope.from, envelope.to
        )));
    }
    envelope.verify(sender_sign_spki)?;
    let wrapped = envelope
        .keys
        .get(me)
        .ok_or_else(|| Error::Verification(format!("no key for {me:?} in the envelope")))?;
    let mut key = rsa_oaep_decrypt(&identity.enc, &b64::decode(wrapped)?)?;
    let iv: [u8; IV_LEN] = b64::decode_array(&envelope.iv)?;
    let ct = b64::decode(&envelope.ct)?;
    let aad = envelope.aad();
    let plain = Aes256Gcm::new((&key).into()).decrypt(
        &Nonce::from(iv),
        Payload {
            msg: &ct,
            aad: &aad,
        },
    );
    match plain {
        Ok(plain) => Ok((key, plain)),
        Err(_) => {
            key.fill(0);
            Err(Error::Crypto("message does not decrypt".into()))
        }
    }
}

/// Remembers `(from, id)` of opened messages and refuses to open one twice. Bounded
/// guards forget the oldest ids first. PROTOCOL.md §8.6 step 7.
#[derive(Clone, Debug, Default)]
pub struct ReplayGuard {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
    capacity: Option<usize>,
}

impl ReplayGuard {
    /// A guard that never forgets.
    pub fn new() -> ReplayGuard {
        ReplayGuard::default()
    }

    /// A guard that remembers the last `capacity` ids.
    pub fn bounded(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            capacity: Some(capacity.max(1)),
            ..ReplayGuard::default()
        }
    }

    /// True when `(from, id)` was seen.
    pub fn seen(&self, from: &str, id: &str) -> bool {
        self.seen.contains(&(from.to_owned(), id.to_owned()))
    }

    /// Record `(from, id)`; an error if it was already seen.
    pub fn record(&mut self, from: &str, id: &str) -> Result<()> {
        let entry = (from.to_owned(), id.to_owned());
        if !self.seen.insert(entry.clone()) {
            return Err(Error::Verification(format!(
                "replayed message id {id} from {from}"
            )));
        }
        if let Some(cap) = self.capacity {
            self.order.push_back(entry);
            while self.order.len() > cap {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
        Ok(())
    }

    /// [`open`], then refuse a replay. Only an envelope that opened is recorded, so a
    /// forgery reusing a real id cannot make the real message look replayed.
    pub fn open(
        &mut self,
        envelope: &Envelope,
        me: &str,
        identity: &Identity,
        sender_sign_spki: &[u8],
    ) -> Result<Opened> {
        if self.seen(&envelope.from, &envelope.id) {
            return Err(Error::Verification(format!(
                "replayed message id {} from {}",
                envelope.id, envelope.from
            )));
        }
        let opened = open(envelope, me, identity, sender_sign_spki)?;
        self.record(&envelope.from, &envelope.id)?;
        Ok(opened)
    }
}

/// `[a-z0-9_.-]{3,32}` (PROTOCOL.md §1.4).
pub fn is_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

/// Lower-case hyphenated UUID v4 text (version nibble 4, RFC 4122 variant; PROTOCOL.md §1.5).
pub fn is_uuid_v4(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::test_identity;
    use serde_json::json;

    struct Pair {
        alice: Identity,
        bob: Identity,
        alice_sign: Vec<u8>,
        bob_sign: Vec<u8>,
    }

    fn pair() -> Pair {
        let alice = test_identity(1);
        let bob = test_identity(2);
        Pair {
            alice_sign: alice.sign_spki().unwrap(),
            bob_sign: bob.sign_spki().unwrap(),
            alice,
            bob,
        }
    }

    fn sealed(p: &Pair) -> Envelope {
        seal_text(
            "alice",
            &p.alice,
            "bob",
            &p.bob.enc.to_public_key(),
            "hi bob",
        )
        .unwrap()
    }

    /// Re-sign a doctored envelope with alice's key, so that only the check under test
    /// can reject it.
    fn resign(p: &Pair, env: &mut Envelope) {
        env.sig = b64::encode(sign_raw(&p.alice.sign, &env.signed_bytes().unwrap()));
    }

    #[test]
    fn round_trip_for_both_readers() {
        let p = pair();
        let env = sealed(&p);
        let opened = open(&env, "bob", &p.bob, &p.alice_sign).unwrap();
        assert_eq!(opened.text(), Some("hi bob"));
        assert_eq!(
            opened.plaintext,
            json!({"text": "hi bob"}).as_object().unwrap().clone()
        );
        // The sender opens its own copy (e.g. from history or another device).
        let own = open(&env, "alice", &p.alice, &p.alice_sign).unwrap();
        assert_eq!(own.text(), Some("hi bob"));
        // Through JSON and back.
        let text = env.to_json().unwrap();
        let back = Envelope::from_json(&text).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.to_json().unwrap(), text);
        assert_eq!(
            open(&back, "bob", &p.bob, &p.alice_sign).unwrap().text(),
            Some("hi bob")
        );
    }

    #[test]
    fn serialization_order_and_shape() {
        let p = pair();
        let env = sealed(&p);
        let text = env.to_json().unwrap();
        let fields = [
            "\"v\":1,",
            "\"id\":",
            "\"from\":",
            "\"to\":",
            "\"sent_at\":",
            "\"iv\":",
            "\"ct\":",
            "\"keys\":",
            "\"sig\":",
        ];
        let mut at = 0;
        for f in fields {
            let pos = text[at..]
                .find(f)
                .unwrap_or_else(|| panic!("{f} out of order in {text}"));
            at += pos + f.len();
        }
        assert!(text.starts_with("{\"v\":1,\"id\":\""));
        assert!(is_uuid_v4(&env.id));
        assert_eq!(b64::decode(&env.iv).unwrap().len(), 12);
        // {"text":"hi bob"} is 17 bytes, padded to the first bucket (256), plus the tag.
        assert_eq!(b64::decode(&env.ct).unwrap().len(), 256 + 16);
        assert_eq!(env.keys.names().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(b64::decode(&env.sig).unwrap().len(), 64);
        assert_eq!(
            env.aad(),
            format!("securechat/v1/msg|{}|alice|bob|{}", env.id, env.sent_at).into_bytes()
        );
        let k_list = String::from_utf8(env.keys.k_list()).unwrap();
        assert_eq!(
            k_list,
            format!(
                "alice={};bob={};",
                env.keys.get("alice").unwrap(),
                env.keys.get("bob").unwrap()
            )
        );
        let mut expected = env.aad();
        expected.push(0);
        expected.extend(b64::decode(&env.iv).unwrap());
        expected.extend(b64::decode(&env.ct).unwrap());
        expected.push(0);
        expected.extend(k_list.as_bytes());
        assert_eq!(env.signed_bytes().unwrap(), expected);
    }

    #[test]
    fn keys_are_sorted_by_name_bytes_whoever_sends() {
        let p = pair();
        // "bob" < "bob_" < "boba": underscore (0x5f) sorts before lower-case letters.
        let env = seal_text("boba", &p.bob, "bob_", &p.alice.enc.to_public_key(), "x").unwrap();
        assert_eq!(env.keys.names().collect::<Vec<_>>(), ["bob_", "boba"]);
        let opened = open(&env, "bob_", &p.alice, &p.bob_sign).unwrap();
        assert_eq!(opened.text(), Some("x"));
    }

    #[test]
    fn self_note_has_one_key() {
        let p = pair();
        // to_enc is ignored for a note to oneself.
        let env = seal_text(
            "alice",
            &p.alice,
            "alice",
            &p.bob.enc.to_public_key(),
            "note",
        )
        .unwrap();
        assert_eq!(env.keys.len(), 1);
        assert_eq!(env.keys.names().collect::<Vec<_>>(), ["alice"]);
        assert!(env
            .aad()
            .ends_with(format!("|alice|alice|{}", env.sent_at).as_bytes()));
        let opened = open(&env, "alice", &p.alice, &p.alice_sign).unwrap();
        assert_eq!(opened.text(), Some("note"));
        // A second entry for the same reader is not a self-note any more.
        let mut two = env.clone();
        let k = two.keys.get("alice").unwrap().to_owned();
        two.keys.entries_mut().push(("bob".into(), k));
        resign(&p, &mut two);
        assert!(open(&two, "alice", &p.alice, &p.alice_sign).is_err());
    }

    #[test]
    fn open_checks_the_addressee() {
        let p = pair();
        let env = sealed(&p);
        let carol = test_identity(3);
        let e = open(&env, "carol", &carol, &p.alice_sign).unwrap_err();
        assert!(matches!(e, Error::Verification(_)), "{e}");
        // Bob's keys under another name do not help either.
        assert!(open(&env, "carol", &p.bob, &p.alice_sign).is_err());
        // Wrong sender key: bob's key does not verify alice's signature.
        assert!(open(&env, "bob", &p.bob, &p.bob_sign).is_err());
        // Right name, wrong private key.
        assert!(open(&env, "bob", &carol, &p.alice_sign).is_err());
    }

    fn flip(text: &str, byte: usize) -> String {
        let mut raw = b64::decode(text).unwrap();
        raw[byte] ^= 0x01;
        b64::encode(raw)
    }

    #[test]
    fn every_tampering_fails() {
        let p = pair();
        let env = sealed(&p);
        let other_id = new_message_id(&mut rand::rngs::OsRng);
        type Doctor = Box<dyn Fn(&mut Envelope)>;
        let cases: Vec<(&str, Doctor)> = vec![
            ("v", Box::new(|e| e.v = 2)),
            ("id", Box::new(move |e| e.id = other_id.clone())),
            ("id upper-case", Box::new(|e| e.id = e.id.to_uppercase())),
            ("from", Box::new(|e| e.from = "carol".into())),
            ("to", Box::new(|e| e.to = "carol".into())),
            ("sent_at", Box::new(|e| e.sent_at += 1)),
            ("iv", Box::new(|e| e.iv = flip(&e.iv, 0))),
            ("ct first byte", Box::new(|e| e.ct = flip(&e.ct, 0))),
            (
                "ct tag",
                Box::new(|e| {
                    let n = b64::decode(&e.ct).unwrap().len();
                    e.ct = flip(&e.ct, n - 1);
                }),
            ),
            (
                "ct truncated",
                Box::new(|e| {
                    let raw = b64::decode(&e.ct).unwrap();
                    e.ct = b64::encode(&raw[..raw.len() - 1]);
                }),
            ),
            (
                "keys[alice]",
                Box::new(|e| {
                    e.keys.entries_mut()[0].1 = flip(&e.keys.entries_mut()[0].1, 10);
                }),
            ),
            (
                "keys[bob]",
                Box::new(|e| {
                    e.keys.entries_mut()[1].1 = flip(&e.keys.entries_mut()[1].1, 10);
                }),
            ),
            (
                "keys values swapped",
                Box::new(|e| {
                    let entries = e.keys.entries_mut();
                    let a = entries[0].1.clone();
                    entries[0].1 = entries[1].1.clone();
                    entries[1].1 = a;
                }),
            ),
            (
                "keys entry renamed",
                Box::new(|e| e.keys.entries_mut()[1].0 = "carol".into()),
            ),
            (
                "keys entry dropped",
                Box::new(|e| {
                    e.keys.entries_mut().remove(0);
                }),
            ),
            (
                "keys entry added",
                Box::new(|e| {
                    let k = e.keys.get("bob").unwrap().to_owned();
                    e.keys.entries_mut().push(("carol".into(), k));
                }),
            ),
            ("sig", Box::new(|e| e.sig = flip(&e.sig, 5))),
            ("sig s", Box::new(|e| e.sig = flip(&e.sig, 40))),
            ("sig padded", Box::new(|e| e.sig = format!("{}=", e.sig))),
        ];
        for (what, doctor) in &cases {
            let mut bad = env.clone();
            doctor(&mut bad);
            assert_ne!(bad, env, "{what}: the doctored envelope is unchanged");
            let bob = open(&bad, "bob", &p.bob, &p.alice_sign);
            assert!(bob.is_err(), "{what}: bob opened a tampered envelope");
            let alice = open(&bad, "alice", &p.alice, &p.alice_sign);
            assert!(alice.is_err(), "{what}: alice opened a tampered envelope");
        }
    }

    #[test]
    fn a_different_to_fails_even_when_re_signed_by_the_sender() {
        // A sender cannot re-address bob's ciphertext to carol: the AAD binds `to`.
        let p = pair();
        let env = sealed(&p);
        let mut moved = env.clone();
        moved.to = "carol".into();
        moved.keys.entries_mut()[1].0 = "carol".into();
        resign(&p, &mut moved);
        moved.verify(&p.alice_sign).unwrap();
        let e = open(&moved, "carol", &p.bob, &p.alice_sign).unwrap_err();
        assert!(matches!(e, Error::Crypto(_)), "{e}");
    }

    #[test]
    fn k_list_must_be_in_byte_order() {
        // A signature over K_list in any other order (here: reversed) does not verify.
        let p = pair();
        let mut env = sealed(&p);
        let iv = b64::decode(&env.iv).unwrap();
        let ct = b64::decode(&env.ct).unwrap();
        let mut m = env.aad();
        m.push(0);
        m.extend(&iv);
        m.extend(&ct);
        m.push(0);
        for (name, key) in env.keys.iter().collect::<Vec<_>>().into_iter().rev() {
            m.extend(format!("{name}={key};").as_bytes());
        }
        env.sig = b64::encode(sign_raw(&p.alice.sign, &m));
        assert!(env.verify(&p.alice_sign).is_err());
        assert!(open(&env, "bob", &p.bob, &p.alice_sign).is_err());
    }

    #[test]
    fn keys_member_order_in_json_is_not_signed() {
        // PROTOCOL.md §8.4 signs K_list in byte order of names, so an object written in another
        // member order (as a browser may) is the same signed message; it re-serializes in
        // the order it came, so a relay can be checked byte for byte.
        let p = pair();
        let env = sealed(&p);
        let mut reordered = env.clone();
        reordered.keys.entries_mut().reverse();
        let text = reordered.to_json().unwrap();
        assert!(text.find("\"bob\":").unwrap() < text.find("\"alice\":").unwrap());
        let back = Envelope::from_json(&text).unwrap();
        assert_eq!(back.to_json().unwrap(), text);
        assert_eq!(back.keys.k_list(), env.keys.k_list());
        assert_eq!(
            open(&back, "bob", &p.bob, &p.alice_sign).unwrap().text(),
            Some("hi bob")
        );
    }

    #[test]
    fn strict_parsing() {
        let p = pair();
        let env = sealed(&p);
        let mut v: Value = serde_json::to_value(&env).unwrap();
        v["extra"] = json!(1);
        assert!(
            Envelope::from_json(&v.to_string()).is_err(),
            "unknown field"
        );
        let text = env.to_json().unwrap();
        let alice_key = env.keys.get("alice").unwrap();
        let dup = text.replacen(
            "\"keys\":{",
            &format!("\"keys\":{{\"alice\":\"{alice_key}\","),
            1,
        );
        assert!(Envelope::from_json(&dup).is_err(), "duplicate reader");
        let float = text.replacen(
            &format!("\"sent_at\":{}", env.sent_at),
            "\"sent_at\":1.5",
            1,
        );
        assert!(Envelope::from_json(&float).is_err(), "float sent_at");
        let neg = text.replacen(&format!("\"sent_at\":{}", env.sent_at), "\"sent_at\":-1", 1);
        assert!(Envelope::from_json(&neg).is_err(), "negative sent_at");
        let stringy = text.replacen(
            &format!("\"sent_at\":{}", env.sent_at),
            &format!("\"sent_at\":\"{}\"", env.sent_at),
            1,
        );
        assert!(Envelope::from_json(&stringy).is_err(), "string sent_at");
        let mut standard = env.clone();
        standard.ct = standard.ct.replace('-', "+").replace('_', "/");
        if standard.ct != env.ct {
            assert!(open(&standard, "bob", &p.bob, &p.alice_sign).is_err());
        }
    }

    // PROTOCOL.md §8.2 (padding)
    #[test]
    fn plaintexts_are_padded_to_their_size_bucket_and_open_unchanged() {
        let cases = [
            (1, 256),
            (256, 256),
            (257, 1024),
            (4097, 8192),
            (32769, 36864),
            (40000, 40960),
        ];
        for (n, padded) in cases {
            assert_eq!(padded_length(n), padded, "{n}");
        }
        let p = pair();
        let bob = p.bob.enc.to_public_key();
        let mut sizes = std::collections::BTreeSet::new();
        for text in ["hi", "a few more words than that", &"x".repeat(200)] {
            let env = seal_text("alice", &p.alice, "bob", &bob, text).unwrap();
            sizes.insert(b64::decode(&env.ct).unwrap().len());
            assert_eq!(
                open(&env, "bob", &p.bob, &p.alice_sign).unwrap().text(),
                Some(text)
            );
        }
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), vec![256 + 16]);
        let long = seal_text("alice", &p.alice, "bob", &bob, &"y".repeat(300)).unwrap();
        assert_eq!(b64::decode(&long.ct).unwrap().len(), 1024 + 16);
    }

    #[test]
    fn plaintext_must_be_an_object() {
        let p = pair();
        let bob = p.bob.enc.to_public_key();
        assert!(seal("alice", &p.alice, "bob", &bob, &json!("text")).is_err());
        let env = seal(
            "alice",
            &p.alice,
            "bob",
            &bob,
            &json!({"text": "é", "reply_to": 3}),
        )
        .unwrap();
        let opened = open(&env, "bob", &p.bob, &p.alice_sign).unwrap();
        assert_eq!(opened.plaintext["reply_to"], json!(3));
        assert_eq!(opened.text(), Some("é"));
        // A valid signature over a ct that is not an object is refused after decryption.
        let inputs = SealInputs::fresh();
        let readers = [
            Reader {
                name: "alice",
                enc: &p.alice.enc.to_public_key(),
            },
            Reader {
                name: "bob",
                enc: &bob,
            },
        ];
        let env = seal_with(
            &mut rand::rngs::OsRng,
            &inputs,
            "alice",
            &p.alice.sign,
            "bob",
            &readers,
            b"[1]",
        )
        .unwrap();
        assert!(matches!(
            open(&env, "bob", &p.bob, &p.alice_sign),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn seal_with_is_deterministic_under_a_seeded_rng() {
        use rand::SeedableRng as _;
        let p = pair();
        let bob = p.bob.enc.to_public_key();
        let alice = p.alice.enc.to_public_key();
        let make = || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let inputs = SealInputs::fresh_with(&mut rng, 1_764_100_000_000);
            let readers = [
                Reader {
                    name: "bob",
                    enc: &bob,
                },
                Reader {
                    name: "alice",
                    enc: &alice,
                },
            ];
            seal_with(
                &mut rng,
                &inputs,
                "alice",
                &p.alice.sign,
                "bob",
                &readers,
                br#"{"text":"x"}"#,
            )
            .unwrap()
        };
        let a = make();
        assert_eq!(a, make());
        assert_eq!(a.sent_at, 1_764_100_000_000);
        assert_eq!(a.keys.names().collect::<Vec<_>>(), ["alice", "bob"]);
    }

    #[test]
    fn replay_guard_drops_a_second_copy() {
        let p = pair();
        let env = sealed(&p);
        let mut guard = ReplayGuard::new();
        guard.open(&env, "bob", &p.bob, &p.alice_sign).unwrap();
        let e = guard.open(&env, "bob", &p.bob, &p.alice_sign).unwrap_err();
        assert!(e.to_string().contains("replayed"), "{e}");
        // A forgery with a fresh, unseen id does not poison the guard for the real one.
        let env2 = sealed(&p);
        let mut forged = env2.clone();
        forged.ct = flip(&forged.ct, 0);
        assert!(guard.open(&forged, "bob", &p.bob, &p.alice_sign).is_err());
        guard.open(&env2, "bob", &p.bob, &p.alice_sign).unwrap();
        // The same id from another sender is another message.
        assert!(!guard.seen("carol", &env.id));
        guard.record("carol", &env.id).unwrap();
        // Bounded guards forget the oldest.
        let mut small = ReplayGuard::bounded(2);
        small.record("a", "1").unwrap();
        small.record("a", "2").unwrap();
        assert!(small.record("a", "2").is_err());
        small.record("a", "3").unwrap();
        assert!(!small.seen("a", "1"));
        assert!(small.seen("a", "3"));
    }

    #[test]
    fn names_and_ids() {
        assert!(is_username("bob"));
        assert!(is_username("a.b-c_9"));
        assert!(!is_username("Bob"));
        assert!(!is_username("bo"));
        assert!(!is_username(&"a".repeat(33)));
        assert!(!is_username("bo b"));
        let id = new_message_id(&mut rand::rngs::OsRng);
        assert!(is_uuid_v4(&id), "{id}");
        assert!(!is_uuid_v4(&id.to_uppercase()));
        assert!(!is_uuid_v4(&id.replace('-', "")));
        assert!(!is_uuid_v4("00000000-0000-1000-8000-000000000000"));
        assert!(!is_uuid_v4("00000000-0000-4000-c000-000000000000"));
        assert!(is_uuid_v4("00000000-0000-4000-8000-000000000000"));
    }
}
