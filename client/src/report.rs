//! Abuse reports from the reader's side (docs/API-CONTRACT.md, "Report body"): opening a
//! received envelope as the reader would, then disclosing exactly that one message's key
//! `K` and its decrypted bytes, padding included, with a reason — nothing else of the
//! conversation and none of the reader's own keys. [`crate::Client::report`] posts it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{open_bytes, Envelope};
use crate::{b64, Identity, Result};

/// Why a message is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    Spam,
    Abuse,
    Illegal,
    Other,
}

/// The body of `POST /api/reports`. Its `Debug` leaves out the key and the plaintext.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// The envelope's `id`.
    pub message_id: String,
    /// b64 of the message's 32-byte AES key `K` (PROTOCOL.md §8.2).
    pub key: String,
    /// b64 of the exact bytes `ct` decrypted to.
    pub plaintext: String,
    pub reason: Reason,
}

impl fmt::Debug for ReportBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportBody")
            .field("message_id", &self.message_id)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

/// The answer to a report (201): the server's verdict on it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReportReceipt {
    /// The report's id, as the server writes it.
    pub id: Value,
    /// `verified` or `not_verifiable`.
    pub verdict: String,
    /// Which check failed (`bad_key`, `plaintext_mismatch`, `bad_signature`), if one did.
    pub detail: Option<String>,
}

/// Opens `envelope` as `me` (holding `identity`) with every check of [`crate::open`] —
/// the signature under the sender's pinned `sender_sign_spki` included — and returns the
/// report body disclosing its `K` and plaintext bytes. Only the recipient's report is
/// accepted by the server; this builds whatever `me` can open, so tests can try others.
pub fn disclose(
    envelope: &Envelope,
    me: &str,
    identity: &Identity,
    sender_sign_spki: &[u8],
    reason: Reason,
) -> Result<ReportBody> {
    let (mut key, plaintext) = open_bytes(envelope, me, identity, sender_sign_spki)?;
    let body = ReportBody {
        message_id: envelope.id.clone(),
        key: b64::encode(key),
        plaintext: b64::encode(plaintext),
        reason,
    };
    key.fill(0);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use aes_gcm::aead::{Aead as _, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};

    use super::*;
    use crate::envelope::seal_text;
    use crate::test_util::test_identity;

    #[test]
    fn the_recipient_discloses_the_key_that_opens_the_ciphertext_to_the_padded_plaintext() {
        let (alice, bob) = (test_identity(1), test_identity(2));
        let alice_sign = alice.sign_spki().unwrap();
        let env = seal_text("alice", &alice, "bob", &bob.enc.to_public_key(), "buy now").unwrap();
        let body = disclose(&env, "bob", &bob, &alice_sign, Reason::Spam).unwrap();
        assert_eq!(body.message_id, env.id);
        let key: [u8; 32] = b64::decode_array(&body.key).unwrap();
        let plaintext = b64::decode(&body.plaintext).unwrap();
        assert_eq!(plaintext.len(), 256, "padding is disclosed as decrypted");
        assert!(plaintext.starts_with(br#"{"text":"buy now"}"#));
        let iv: [u8; 12] = b64::decode_array(&env.iv).unwrap();
        let ct = b64::decode(&env.ct).unwrap();
        let opened = Aes256Gcm::new((&key).into())
            .decrypt(
                &Nonce::from(iv),
                Payload {
                    msg: &ct,
                    aad: &env.aad(),
                },
            )
            .unwrap();
        assert_eq!(opened, plaintext);
        // The body has the contract's four members and nothing else.
        let json = serde_json::to_value(&body).unwrap();
        let mut members: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["key", "message_id", "plaintext", "reason"]);
        assert_eq!(json["reason"], "spam");
        // Its Debug shows neither the key nor the plaintext.
        let shown = format!("{body:?}");
        assert!(
            !shown.contains(&body.key) && !shown.contains(&body.plaintext),
            "{shown}"
        );
    }

    #[test]
    fn a_message_that_does_not_open_cannot_be_disclosed() {
        let (alice, bob, carol) = (test_identity(1), test_identity(2), test_identity(3));
        let alice_sign = alice.sign_spki().unwrap();
        let env = seal_text("alice", &alice, "bob", &bob.enc.to_public_key(), "hi").unwrap();
        // Not addressed to carol.
        assert!(disclose(&env, "carol", &carol, &alice_sign, Reason::Abuse).is_err());
        // Not signed by the key bob pinned for the sender.
        let carol_sign = carol.sign_spki().unwrap();
        assert!(disclose(&env, "bob", &bob, &carol_sign, Reason::Abuse).is_err());
        // A tampered ciphertext.
        let mut bad = env.clone();
        bad.ct = b64::encode([0u8; 272]);
        assert!(disclose(&bad, "bob", &bob, &alice_sign, Reason::Abuse).is_err());
    }

    #[test]
    fn reasons_are_written_as_the_contract_names_them() {
        for (reason, name) in [
            (Reason::Spam, "spam"),
            (Reason::Abuse, "abuse"),
            (Reason::Illegal, "illegal"),
            (Reason::Other, "other"),
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), name);
        }
    }
}
