//! Owns the server's checks on a message envelope (docs/PROTOCOL.md §8.5): shape, sizes, that
//! `from` is the sender, that `keys` names exactly the readers. It never decrypts and
//! never re-encodes: the envelope is stored and relayed as the bytes the client sent.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::b64;

/// The fields of an envelope, borrowed from the frame's text where they hold no JSON
/// escapes (every well-formed envelope), so checking one allocates almost nothing.
/// Unknown fields are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<'a> {
    pub v: u32,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub from: Cow<'a, str>,
    #[serde(borrow)]
    pub to: Cow<'a, str>,
    pub sent_at: u64,
    #[serde(borrow)]
    pub iv: Cow<'a, str>,
    #[serde(borrow)]
    pub ct: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "unique_keys")]
    pub keys: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(borrow)]
    pub sig: Cow<'a, str>,
}

/// A JSON object read into a map, refusing a name that appears twice (which would make
/// the stored bytes mean different things to different JSON parsers).
fn unique_keys<'de, D>(d: D) -> Result<BTreeMap<Cow<'de, str>, Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = BTreeMap<Cow<'de, str>, Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of reader name to wrapped key")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = m.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "reader {k:?} appears twice in keys"
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Visitor)
}

/// Why an envelope was refused; `code` is the error frame's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Lower-case hyphenated UUID version 4 text (PROTOCOL.md §1.5).
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

/// Parses and checks `raw` as sent by `sender`. `max_bytes` bounds the JSON text.
/// The checks and their error codes: PROTOCOL.md §8.5.
pub fn check<'a>(raw: &'a str, sender: &str, max_bytes: usize) -> Result<Envelope<'a>, Refusal> {
    if raw.len() > max_bytes {
        return Err(refuse(
            "envelope_too_large",
            format!("an envelope may be at most {max_bytes} bytes"),
        ));
    }
    let e: Envelope = serde_json::from_str(raw)
        .map_err(|err| refuse("invalid_envelope", format!("malformed envelope: {err}")))?;
    if e.v != 1 {
        return Err(refuse("invalid_envelope", "unsupported envelope version"));
    }
    if !is_uuid_v4(&e.id) {
        return Err(refuse(
            "invalid_envelope",
            "id must be a lower-case UUID v4",
        ));
    }
    if e.from != sender {
        return Err(refuse(
            "sender_mismatch",
            "from must be the signed-in user of this connection",
        ));
    }
    if !crate::username::Username::is_valid(&e.to) {
        return Err(refuse("unknown_recipient", "no such recipient"));
    }
    if !b64::is_len(&e.iv, 12) {
        return Err(refuse("invalid_envelope", "iv must be 12 bytes, base64url"));
    }
    if !b64::is_valid(&e.ct) || b64::decoded_len(&e.ct) < 16 {
        return Err(refuse(
            "invalid_envelope",
            "ct must be base64url AES-GCM ciphertext",
        ));
    }
    if !b64::is_len(&e.sig, 64) {
        return Err(refuse(
            "invalid_envelope",
            "sig must be 64 bytes, base64url",
        ));
    }
    let readers_ok = if e.from == e.to {
        e.keys.len() == 1 && e.keys.contains_key(&e.from)
    } else {
        e.keys.len() == 2 && e.keys.contains_key(&e.from) && e.keys.contains_key(&e.to)
    };
    if !readers_ok {
        return Err(refuse(
            "invalid_envelope",
            "keys must hold exactly one entry for the sender and one for the recipient",
        ));
    }
    if e.keys.values().any(|k| !b64::is_len(k, 256)) {
        return Err(refuse(
            "invalid_envelope",
            "each wrapped key must be 256 bytes (RSA-2048), base64url",
        ));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> serde_json::Value {
        serde_json::json!({
            "v": 1, "id": "0b7d3a4e-5f60-4c1d-9e2f-3a4b5c6d7e8f", "from": "alice", "to": "bob",
            "sent_at": 1764100000000u64, "iv": b64::encode([1u8; 12]), "ct": b64::encode([2u8; 40]),
            "keys": { "alice": b64::encode([3u8; 256]), "bob": b64::encode([4u8; 256]) },
            "sig": b64::encode([5u8; 64])
        })
    }

    fn code(v: &serde_json::Value, sender: &str) -> Option<&'static str> {
        check(&v.to_string(), sender, 65536).err().map(|r| r.code)
    }

    #[test]
    fn a_well_formed_envelope_passes() {
        assert_eq!(code(&good(), "alice"), None);
    }

    #[test]
    fn an_envelope_written_with_json_escapes_is_read_the_same() {
        let text = good()
            .to_string()
            .replace("\"to\":\"bob\"", "\"to\":\"b\\u006fb\"")
            .replace("\"bob\":", "\"\\u0062ob\":");
        assert!(
            text.contains("\\u006f") && text.contains("\\u0062"),
            "{text}"
        );
        let e = check(&text, "alice", 65536).expect("passes");
        assert_eq!(e.to, "bob");
        assert!(e.keys.contains_key("bob"));
    }

    #[test]
    fn each_defect_is_refused_with_its_code() {
        let with = |k: &str, v: serde_json::Value| {
            let mut e = good();
            e[k] = v;
            e
        };
        assert_eq!(code(&good(), "mallory"), Some("sender_mismatch"));
        assert_eq!(
            code(&with("v", 2.into()), "alice"),
            Some("invalid_envelope")
        );
        assert_eq!(
            code(&with("id", "not-a-uuid".into()), "alice"),
            Some("invalid_envelope")
        );
        assert_eq!(
            code(
                &with("id", "0B7D3A4E-5F60-4C1D-9E2F-3A4B5C6D7E8F".into()),
                "alice"
            ),
            Some("invalid_envelope")
        );
        assert_eq!(
            code(&with("sent_at", (1.5).into()), "alice"),
            Some("invalid_envelope")
        );
        assert_eq!(
            code(&with("iv", b64::encode([1u8; 11]).into()), "alice"),
            Some("invalid_envelope")
        );
        assert_eq!(
            code(&with("sig", "AAAA=".into()), "alice"),
            Some("invalid_envelope")
        );
        assert_eq!(
            code(&with("extra", 1.into()), "alice"),
            Some("invalid_envelope")
        );
        assert_eq!(
            code(&with("to", "Bob!".into()), "alice"),
            Some("unknown_recipient")
        );
        let mut missing = good();
        missing["keys"].as_object_mut().map(|k| k.remove("bob"));
        assert_eq!(code(&missing, "alice"), Some("invalid_envelope"));
        let mut third = good();
        third["keys"]["carol"] = b64::encode([6u8; 256]).into();
        assert_eq!(code(&third, "alice"), Some("invalid_envelope"));
        let mut short = good();
        short["keys"]["bob"] = b64::encode([6u8; 128]).into();
        assert_eq!(code(&short, "alice"), Some("invalid_envelope"));
        let big = good().to_string();
        assert_eq!(
            check(&big, "alice", 100).err().map(|r| r.code),
            Some("envelope_too_large")
        );
    }

    #[test]
    fn a_reader_named_twice_is_refused() {
        let k = b64::encode([3u8; 256]);
        let raw = good().to_string().replace(
            &format!("\"bob\":\"{}\"", b64::encode([4u8; 256])),
            &format!("\"bob\":\"{k}\",\"bob\":\"{k}\""),
        );
        assert!(raw.matches("\"bob\":").count() == 2, "{raw}");
        assert_eq!(
            check(&raw, "alice", 65536).err().map(|r| r.code),
            Some("invalid_envelope")
        );
    }

    #[test]
    fn a_note_to_oneself_has_one_key() {
        let mut e = good();
        e["to"] = "alice".into();
        e["keys"].as_object_mut().map(|k| k.remove("bob"));
        assert_eq!(code(&e, "alice"), None);
    }
}
