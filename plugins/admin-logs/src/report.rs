//! Checks an abuse report: the disclosed message key opens the stored ciphertext to the
//! reported plaintext, and the stored envelope's signature verifies under the sender's key.
//!
//! The reporter discloses one message's `K` and its exact plaintext bytes; the stored
//! envelope (docs/PROTOCOL.md §8.1) supplies `iv`, `ct`, the AAD fields (§8.2) and `sig`
//! over §8.4's signed bytes. The checks run in a fixed order — key, plaintext, signature —
//! and the first that fails names the verdict. Nothing here is logged: the key and the
//! plaintext are the reporter's to disclose, not the log's.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// What a report's check concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The key opens the stored ciphertext to exactly the reported plaintext, and the
    /// sender's signature over the envelope holds.
    Verified,
    /// The report is kept, but one of the checks failed.
    NotVerifiable(Failure),
}

/// The first check a report failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The key is not 32 bytes, or AES-256-GCM under it does not open the ciphertext.
    BadKey,
    /// The ciphertext opens, but not to the reported bytes.
    PlaintextMismatch,
    /// The envelope's signature does not verify under the sender's signing key (or that
    /// key is not a P-256 SPKI).
    BadSignature,
}

impl Failure {
    /// The stable code reported as `detail` (docs/API-CONTRACT.md, "Report body").
    pub fn code(&self) -> &'static str {
        match self {
            Failure::BadKey => "bad_key",
            Failure::PlaintextMismatch => "plaintext_mismatch",
            Failure::BadSignature => "bad_signature",
        }
    }
}

/// The stored text is not a §8.1 envelope; says which part is wrong (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a message envelope: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// Checks a report of the message stored as `envelope`, sent by the holder of
/// `sender_sign_public_key` (b64url of a P-256 SPKI DER), with the disclosed message key
/// `key` and the plaintext bytes `plaintext` the reporter says it decrypted.
pub fn verify(
    envelope: &str,
    sender_sign_public_key: &str,
    key: &[u8],
    plaintext: &[u8],
) -> Result<Verdict, Malformed> {
    let env = Envelope::parse(envelope)?;
    let failure = match env.decrypt(key) {
        None => Some(Failure::BadKey),
        Some(opened) if opened != plaintext => Some(Failure::PlaintextMismatch),
        Some(_) if !env.signature_holds(sender_sign_public_key) => Some(Failure::BadSignature),
        Some(_) => None,
    };
    Ok(failure.map_or(Verdict::Verified, Verdict::NotVerifiable))
}

/// The members of §8.1 as they are stored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    v: u32,
    id: String,
    from: String,
    to: String,
    sent_at: u64,
    iv: String,
    ct: String,
    keys: Readers,
    sig: String,
}

/// `keys`, in byte order of names (`BTreeMap<String, _>` orders by bytes), no name twice.
struct Readers(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Readers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReadersVisitor;
        impl<'de> Visitor<'de> for ReadersVisitor {
            type Value = Readers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of reader name to wrapped key")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Readers, A::Error> {
                let mut readers = BTreeMap::new();
                while let Some((name, wrapped)) = map.next_entry::<String, String>()? {
                    if readers.insert(name, wrapped).is_some() {
                        return Err(serde::de::Error::custom("a reader is named twice in keys"));
                    }
                }
                Ok(Readers(readers))
            }
        }
        deserializer.deserialize_map(ReadersVisitor)
    }
}

/// An envelope whose shape has been checked, binary members decoded.
struct Envelope {
    aad: Vec<u8>,
    iv: [u8; 12],
    ct: Vec<u8>,
    k_list: Vec<u8>,
    sig: Vec<u8>,
}

impl Envelope {
    fn parse(text: &str) -> Result<Envelope, Malformed> {
        let bad = |why: &str| Malformed(why.to_owned());
        // Serde would also take a nine-element array for a struct; an envelope is an object.
        if !text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return Err(bad("not a JSON object"));
        }
        let f: Fields = serde_json::from_str(text).map_err(|e| Malformed(e.to_string()))?;
        if f.v != 1 {
            return Err(bad("v is not 1"));
        }
        let iv = decode(&f.iv)
            .and_then(|iv| <[u8; 12]>::try_from(iv).ok())
            .ok_or_else(|| bad("iv is not b64 of 12 bytes"))?;
        let ct = decode(&f.ct)
            .filter(|ct| ct.len() >= 16)
            .ok_or_else(|| bad("ct is not b64 of at least 16 bytes"))?;
        let sig = decode(&f.sig)
            .filter(|sig| sig.len() == 64)
            .ok_or_else(|| bad("sig is not b64 of 64 bytes"))?;
        let names_ok = f.keys.0.contains_key(&f.from)
            && f.keys.0.contains_key(&f.to)
            && f.keys.0.len() == if f.from == f.to { 1 } else { 2 };
        if !names_ok {
            return Err(bad("keys does not name exactly from and to"));
        }
        let mut k_list = Vec::new();
        for (name, wrapped) in &f.keys.0 {
            if decode(wrapped).is_none_or(|w| w.len() != 256) {
                return Err(bad("a keys value is not b64 of 256 bytes"));
            }
            k_list.extend_from_slice(format!("{name}={wrapped};").as_bytes());
        }
        let aad = format!(
            "securechat/v1/msg|{}|{}|{}|{}",
            f.id, f.from, f.to, f.sent_at
        );
        Ok(Envelope {
            aad: aad.into_bytes(),
            iv,
            ct,
            k_list,
            sig,
        })
    }

    /// The plaintext under `key`, or `None` when the key is not 32 bytes or does not open
    /// `ct` (§8.2).
    fn decrypt(&self, key: &[u8]) -> Option<Vec<u8>> {
        let cipher = Aes256Gcm::new_from_slice(key).ok()?;
        let payload = Payload {
            msg: &self.ct,
            aad: &self.aad,
        };
        cipher.decrypt(&Nonce::from(self.iv), payload).ok()
    }

    /// Whether `sig` verifies over `aad || 0x00 || iv || ct || 0x00 || K_list` (§8.4) under
    /// the b64 SPKI `public_key`; both S forms are accepted (§1.6).
    fn signature_holds(&self, public_key: &str) -> bool {
        let Some(key) =
            decode(public_key).and_then(|der| VerifyingKey::from_public_key_der(&der).ok())
        else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&self.sig) else {
            return false;
        };
        let mut signed = self.aad.clone();
        signed.push(0);
        signed.extend_from_slice(&self.iv);
        signed.extend_from_slice(&self.ct);
        signed.push(0);
        signed.extend_from_slice(&self.k_list);
        key.verify(&signed, &sig).is_ok()
    }
}

/// Strict b64 (§1.1): base64url, no padding, canonical trailing bits.
fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    //! The message vectors of testdata/crypto-vectors.json (docs/PROTOCOL.md §8.7, §11.2):
    //! `message` is bob → carol, signed by bob (`peer.sign_spki`); `message.note` is carol
    //! → carol, signed by carol (`sign_spki`). Both carry `K` and the exact plaintext.

    use super::*;
    use serde_json::Value;

    struct Case {
        envelope: String,
        key: Vec<u8>,
        plaintext: Vec<u8>,
        signer: String,
    }

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../../testdata/crypto-vectors.json")).unwrap()
    }

    fn case(entry: &Value, signer: &Value) -> Case {
        Case {
            envelope: entry["envelope"].to_string(),
            key: decode(entry["key"].as_str().unwrap()).unwrap(),
            plaintext: entry["plaintext"].as_str().unwrap().as_bytes().to_vec(),
            signer: signer.as_str().unwrap().to_owned(),
        }
    }

    /// bob → carol.
    fn message() -> Case {
        let v = vectors();
        case(&v["message"], &v["peer"]["sign_spki"])
    }

    /// carol → carol.
    fn note() -> Case {
        let v = vectors();
        case(&v["message"]["note"], &v["sign_spki"])
    }

    fn check(c: &Case) -> Result<Verdict, Malformed> {
        verify(&c.envelope, &c.signer, &c.key, &c.plaintext)
    }

    /// The envelope with member `name` replaced by `value`.
    fn with(c: &Case, name: &str, value: Value) -> String {
        let mut env: Value = serde_json::from_str(&c.envelope).unwrap();
        env[name] = value;
        env.to_string()
    }

    /// The text of the string member `name` of the envelope.
    fn member(c: &Case, name: &str) -> String {
        let env: Value = serde_json::from_str(&c.envelope).unwrap();
        env[name].as_str().unwrap().to_owned()
    }

    fn flip_b64(text: &str, byte: usize) -> String {
        let mut raw = decode(text).unwrap();
        raw[byte] ^= 0x01;
        URL_SAFE_NO_PAD.encode(raw)
    }

    #[test]
    fn a_report_with_the_right_key_and_plaintext_of_a_signed_message_is_verified() {
        assert_eq!(check(&message()), Ok(Verdict::Verified));
        assert_eq!(check(&note()), Ok(Verdict::Verified));
    }

    #[test]
    fn a_key_that_does_not_open_the_ciphertext_is_bad_key() {
        let mut c = message();
        c.key[0] ^= 0x01;
        assert_eq!(check(&c), Ok(Verdict::NotVerifiable(Failure::BadKey)));
        // Another message's key does not open this one either.
        c.key = note().key;
        assert_eq!(check(&c), Ok(Verdict::NotVerifiable(Failure::BadKey)));
    }

    #[test]
    fn a_key_that_is_not_32_bytes_is_bad_key() {
        let mut c = message();
        for len in [0, 16, 31, 33] {
            let mut key = c.key.clone();
            key.resize(len, 0);
            c.key = key;
            assert_eq!(
                check(&c),
                Ok(Verdict::NotVerifiable(Failure::BadKey)),
                "{len}"
            );
            c.key = message().key;
        }
    }

    #[test]
    fn a_plaintext_other_than_the_decrypted_bytes_is_a_plaintext_mismatch() {
        let good = message();
        let mut altered = good.plaintext.clone();
        altered[10] ^= 0x01;
        let mut padded = good.plaintext.clone();
        padded.push(b' ');
        let shorter = good.plaintext[..good.plaintext.len() - 1].to_vec();
        for (what, plaintext) in [
            ("one byte changed", altered),
            ("one space more", padded),
            ("one byte less", shorter),
            ("empty", Vec::new()),
        ] {
            let c = Case {
                plaintext,
                ..message()
            };
            assert_eq!(
                check(&c),
                Ok(Verdict::NotVerifiable(Failure::PlaintextMismatch)),
                "{what}"
            );
        }
    }

    #[test]
    fn one_flipped_byte_of_the_signature_is_bad_signature() {
        let c = message();
        let sig = member(&c, "sig");
        for byte in [0, 31, 32, 63] {
            let doctored = Case {
                envelope: with(&c, "sig", Value::from(flip_b64(&sig, byte))),
                ..message()
            };
            assert_eq!(
                check(&doctored),
                Ok(Verdict::NotVerifiable(Failure::BadSignature)),
                "byte {byte}"
            );
        }
    }

    #[test]
    fn the_other_s_form_of_the_signature_is_verified_too() {
        // PROTOCOL.md §1.6: Web Crypto does not normalise s, so both forms must verify.
        let c = message();
        let sig = Signature::from_slice(&decode(&member(&c, "sig")).unwrap()).unwrap();
        let (r, s) = sig.split_scalars();
        let other = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert_ne!(other, sig);
        let doctored = Case {
            envelope: with(
                &c,
                "sig",
                Value::from(URL_SAFE_NO_PAD.encode(other.to_bytes())),
            ),
            ..message()
        };
        assert_eq!(check(&doctored), Ok(Verdict::Verified));
    }

    #[test]
    fn an_envelope_checked_under_a_key_that_did_not_sign_it_is_bad_signature() {
        // bob signed `message`, carol signed `note`: swap the signers.
        let v = vectors();
        let mut c = message();
        c.signer = v["sign_spki"].as_str().unwrap().to_owned();
        assert_eq!(check(&c), Ok(Verdict::NotVerifiable(Failure::BadSignature)));
        let mut c = note();
        c.signer = v["peer"]["sign_spki"].as_str().unwrap().to_owned();
        assert_eq!(check(&c), Ok(Verdict::NotVerifiable(Failure::BadSignature)));
        // A signing key that is not a P-256 SPKI verifies nothing.
        let mut c = message();
        c.signer = v["enc_spki"].as_str().unwrap().to_owned();
        assert_eq!(check(&c), Ok(Verdict::NotVerifiable(Failure::BadSignature)));
        c.signer = "not b64!".to_owned();
        assert_eq!(check(&c), Ok(Verdict::NotVerifiable(Failure::BadSignature)));
    }

    #[test]
    fn a_signed_field_changed_after_signing_is_bad_signature_when_the_key_still_opens_it() {
        // `keys` is signed but not authenticated by AES-GCM: the key and plaintext still
        // check out, only the signature catches it.
        let c = message();
        let mut keys: Value = serde_json::from_str::<Value>(&c.envelope).unwrap()["keys"].clone();
        let bob = keys["bob"].as_str().unwrap().to_owned();
        keys["bob"] = Value::from(flip_b64(&bob, 7));
        let doctored = Case {
            envelope: with(&c, "keys", keys),
            ..message()
        };
        assert_eq!(
            check(&doctored),
            Ok(Verdict::NotVerifiable(Failure::BadSignature))
        );
    }

    #[test]
    fn the_checks_run_in_the_order_key_plaintext_signature() {
        let v = vectors();
        let carol = v["sign_spki"].as_str().unwrap().to_owned();
        let mut c = message();
        c.signer = carol.clone();
        c.plaintext.push(b'!');
        c.key[0] ^= 0x01;
        assert_eq!(check(&c), Ok(Verdict::NotVerifiable(Failure::BadKey)));
        let c = Case {
            signer: carol,
            plaintext: b"{}".to_vec(),
            ..message()
        };
        assert_eq!(
            check(&c),
            Ok(Verdict::NotVerifiable(Failure::PlaintextMismatch))
        );
    }

    #[test]
    fn a_text_that_is_not_an_envelope_is_malformed_and_says_why() {
        let c = message();
        let env: Value = serde_json::from_str(&c.envelope).unwrap();
        let iv = env["iv"].as_str().unwrap();
        let sig = env["sig"].as_str().unwrap();
        let mut extra = env.clone();
        extra["extra"] = Value::from(1);
        let mut missing = env.clone();
        missing.as_object_mut().unwrap().remove("sig");
        let mut third_reader = env["keys"].clone();
        third_reader["dave"] = env["keys"]["bob"].clone();
        let mut no_to = env["keys"].clone();
        no_to.as_object_mut().unwrap().remove("carol");
        let duplicate = c.envelope.replacen(
            "\"keys\":{",
            &format!("\"keys\":{{\"carol\":{},", env["keys"]["carol"]),
            1,
        );
        let members = [
            "v", "id", "from", "to", "sent_at", "iv", "ct", "keys", "sig",
        ];
        let as_array = Value::from(members.map(|m| env[m].clone()).to_vec()).to_string();
        let cases = [
            ("not JSON", "{\"v\":1".to_owned(), "EOF"),
            ("not an object", "[1]".to_owned(), "object"),
            ("the nine values as an array", as_array, "object"),
            ("unknown member", extra.to_string(), "unknown field"),
            ("missing member", missing.to_string(), "missing field"),
            ("v 2", with(&c, "v", Value::from(2)), "v is not 1"),
            (
                "float sent_at",
                with(&c, "sent_at", Value::from(1.5)),
                "invalid type",
            ),
            (
                "iv 11 bytes",
                with(&c, "iv", Value::from(URL_SAFE_NO_PAD.encode([0u8; 11]))),
                "iv",
            ),
            (
                "iv padded",
                with(&c, "iv", Value::from(format!("{iv}="))),
                "iv",
            ),
            (
                "ct 15 bytes",
                with(&c, "ct", Value::from(URL_SAFE_NO_PAD.encode([0u8; 15]))),
                "ct",
            ),
            (
                "sig 63 bytes",
                with(&c, "sig", Value::from(sig[..84].to_owned())),
                "sig",
            ),
            (
                "sig standard alphabet",
                with(
                    &c,
                    "sig",
                    Value::from(sig.replace('-', "+").replace('_', "/")),
                ),
                "sig",
            ),
            ("a third reader", with(&c, "keys", third_reader), "keys"),
            ("no key for to", with(&c, "keys", no_to), "keys"),
            ("a reader twice", duplicate, "twice"),
            (
                "wrapped key short",
                with(
                    &c,
                    "keys",
                    serde_json::json!({"bob": "AAAA", "carol": env["keys"]["carol"]}),
                ),
                "256",
            ),
        ];
        for (what, text, why) in cases {
            assert_ne!(text, c.envelope, "{what}: unchanged");
            let e = verify(&text, &c.signer, &c.key, &c.plaintext).unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.starts_with("not a message envelope: "),
                "{what}: {shown}"
            );
            assert!(shown.contains(why), "{what}: {shown}");
        }
    }

    #[test]
    fn failures_have_the_codes_of_the_contract() {
        assert_eq!(Failure::BadKey.code(), "bad_key");
        assert_eq!(Failure::PlaintextMismatch.code(), "plaintext_mismatch");
        assert_eq!(Failure::BadSignature.code(), "bad_signature");
    }
}
