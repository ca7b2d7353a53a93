//! The encrypted private-key bundle (docs/PROTOCOL.md §3): AES-256-GCM under the `kek`, plaintext
//! the compact JSON `{"enc":b64(PKCS#8 RSA),"sign":b64(PKCS#8 P-256)}` in that key order,
//! AAD `"securechat/v1/keys|" || username || "|" || key_version`.

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::{b64, Error, Identity, Result};

/// The wire form of a wrapped bundle: `{"iv","ct"}`, both b64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBundle {
    pub iv: String,
    pub ct: String,
}

/// The bundle plaintext; field order is the serialization order.
#[derive(Serialize, Deserialize)]
struct BundlePlain {
    enc: String,
    sign: String,
}

/// The AAD binding a bundle to its owner and key version (PROTOCOL.md §3.3).
pub fn bundle_aad(username: &str, key_version: u32) -> Vec<u8> {
    format!("securechat/v1/keys|{username}|{key_version}").into_bytes()
}

/// The exact plaintext bytes that get encrypted (PROTOCOL.md §3.2).
pub fn bundle_plaintext(identity: &Identity) -> Result<Vec<u8>> {
    let plain = BundlePlain {
        enc: b64::encode(identity.enc_pkcs8()?),
        sign: b64::encode(identity.sign_pkcs8()?),
    };
    Ok(serde_json::to_vec(&plain)?)
}

/// Wrap with a fresh random 12-byte IV.
pub fn wrap_bundle(
    kek: &[u8; 32],
    username: &str,
    key_version: u32,
    identity: &Identity,
) -> Result<KeyBundle> {
    let mut iv = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    wrap_bundle_with_iv(kek, username, key_version, identity, &iv)
}

/// Wrap with a given IV (deterministic; for test vectors only, never reuse an IV).
/// PROTOCOL.md §3.3.
pub fn wrap_bundle_with_iv(
    kek: &[u8; 32],
    username: &str,
    key_version: u32,
    identity: &Identity,
    iv: &[u8; 12],
) -> Result<KeyBundle> {
    let mut plain = bundle_plaintext(identity)?;
    let aad = bundle_aad(username, key_version);
    let cipher = Aes256Gcm::new(kek.into());
    let ct = cipher.encrypt(
        &Nonce::from(*iv),
        Payload {
            msg: &plain,
            aad: &aad,
        },
    );
    plain.fill(0);
    let ct = ct.map_err(|_| Error::Crypto("AES-GCM encrypt".into()))?;
    Ok(KeyBundle {
        iv: b64::encode(iv),
        ct: b64::encode(ct),
    })
}

/// Unwrap a bundle; fails on a wrong kek, user name or key version, or a tampered bundle.
/// PROTOCOL.md §3.4.
pub fn unwrap_bundle(
    kek: &[u8; 32],
    username: &str,
    key_version: u32,
    bundle: &KeyBundle,
) -> Result<Identity> {
    let iv: [u8; 12] = b64::decode_array(&bundle.iv)?;
    let ct = b64::decode(&bundle.ct)?;
    let aad = bundle_aad(username, key_version);
    let cipher = Aes256Gcm::new(kek.into());
    let mut plain = cipher
        .decrypt(
            &Nonce::from(iv),
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .map_err(|_| {
            Error::Crypto("key bundle does not decrypt (wrong password, user or version)".into())
        })?;
    let parsed: std::result::Result<BundlePlain, _> = serde_json::from_slice(&plain);
    plain.fill(0);
    let parsed = parsed?;
    Identity::from_pkcs8(&b64::decode(&parsed.enc)?, &b64::decode(&parsed.sign)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::test_identity;

    #[test]
    fn plaintext_is_compact_json_enc_then_sign() {
        let id = test_identity(1);
        let text = String::from_utf8(bundle_plaintext(&id).unwrap()).unwrap();
        let expected = format!(
            "{{\"enc\":\"{}\",\"sign\":\"{}\"}}",
            b64::encode(id.enc_pkcs8().unwrap()),
            b64::encode(id.sign_pkcs8().unwrap())
        );
        assert_eq!(text, expected);
        assert_eq!(bundle_aad("alice", 12), b"securechat/v1/keys|alice|12");
    }

    #[test]
    fn round_trip() {
        let id = test_identity(1);
        let kek = [9u8; 32];
        let bundle = wrap_bundle(&kek, "alice", 1, &id).unwrap();
        assert_eq!(b64::decode(&bundle.iv).unwrap().len(), 12);
        let back = unwrap_bundle(&kek, "alice", 1, &bundle).unwrap();
        assert_eq!(back.public_keys().unwrap(), id.public_keys().unwrap());
    }

    #[test]
    fn unwrap_fails_with_wrong_aad_or_key() {
        let id = test_identity(1);
        let kek = [9u8; 32];
        let bundle = wrap_bundle(&kek, "alice", 1, &id).unwrap();
        assert!(unwrap_bundle(&kek, "alicf", 1, &bundle).is_err());
        assert!(unwrap_bundle(&kek, "alice", 2, &bundle).is_err());
        assert!(unwrap_bundle(&kek, "Alice", 1, &bundle).is_err());
        assert!(unwrap_bundle(&[8u8; 32], "alice", 1, &bundle).is_err());
        let mut ct = b64::decode(&bundle.ct).unwrap();
        ct[0] ^= 1;
        let tampered = KeyBundle {
            iv: bundle.iv.clone(),
            ct: b64::encode(ct),
        };
        assert!(unwrap_bundle(&kek, "alice", 1, &tampered).is_err());
    }
}
