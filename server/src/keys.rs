//! Owns the key formats an account publishes and the server checks (docs/PROTOCOL.md §3.1,
//! §4): that the encryption key is an RSA-OAEP-2048 SPKI with e = 65537, that the signing
//! key is a P-256 SPKI, that the self-signature (and on rotation the signature by the
//! previous key) verifies, the 30-digit fingerprint, and the shape of the wrapped
//! private-key bundle (which the server stores and returns, never opens). Registration (`auth`) and key rotation (`directory`)
//! both use it; it depends on nothing else in the crate but `b64`.
//!
//! Invariant: the server only ever parses public keys; it never makes or sees a private one.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use sha2::{Digest, Sha512};

use serde::{Deserialize, Serialize};

use crate::b64;

/// Why a set of keys was refused; each maps to a stable error code.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    /// A key is not valid base64url, or does not parse as the right kind.
    InvalidKey(&'static str),
    /// A signature is malformed or does not verify.
    InvalidSignature(&'static str),
    /// The wrapped private-key bundle is not the shape a client makes.
    InvalidBundle(&'static str),
}

/// The private keys wrapped under the key-encryption key, as the client uploads them:
/// opaque to the server, which checks sizes only and returns them byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBundle {
    pub iv: String,
    pub ct: String,
}

impl KeyBundle {
    /// A 12-byte nonce and an AES-GCM ciphertext (tag included) of at most 16 KiB.
    pub fn check(&self) -> Result<(), KeyError> {
        if !b64::is_len(&self.iv, 12) {
            return Err(KeyError::InvalidBundle(
                "key_bundle.iv must be 12 bytes, base64url",
            ));
        }
        match b64::decode(&self.ct) {
            Some(ct) if (17..=16 * 1024).contains(&ct.len()) => Ok(()),
            _ => Err(KeyError::InvalidBundle(
                "key_bundle.ct must be base64url AES-GCM ciphertext of at most 16 KiB",
            )),
        }
    }
}

/// Public keys that parsed, with their raw SPKI bytes.
pub struct CheckedKeys {
    pub enc_spki: Vec<u8>,
    pub sign_spki: Vec<u8>,
    pub sign_key: VerifyingKey,
}

pub fn parse_keys(enc_b64: &str, sign_b64: &str) -> Result<CheckedKeys, KeyError> {
    let enc_spki =
        b64::decode(enc_b64).ok_or(KeyError::InvalidKey("enc_public_key is not base64url"))?;
    let sign_spki =
        b64::decode(sign_b64).ok_or(KeyError::InvalidKey("sign_public_key is not base64url"))?;
    let rsa = RsaPublicKey::from_public_key_der(&enc_spki)
        .map_err(|_| KeyError::InvalidKey("enc_public_key is not an RSA SPKI"))?;
    if rsa.n().bits() != 2048 {
        return Err(KeyError::InvalidKey(
            "enc_public_key must be a 2048-bit RSA key",
        ));
    }
    if rsa.e() != &BigUint::from(65537u32) {
        return Err(KeyError::InvalidKey("enc_public_key must have e = 65537"));
    }
    let sign_key = VerifyingKey::from_public_key_der(&sign_spki)
        .map_err(|_| KeyError::InvalidKey("sign_public_key is not a P-256 SPKI"))?;
    Ok(CheckedKeys {
        enc_spki,
        sign_spki,
        sign_key,
    })
}

/// `"securechat/v1/self|" || username || "|" || key_version || "|" || enc_spki || sign_spki`
/// (PROTOCOL.md §4.1)
pub fn self_sig_message(username: &str, key_version: i64, k: &CheckedKeys) -> Vec<u8> {
    let mut m = format!("securechat/v1/self|{username}|{key_version}|").into_bytes();
    m.extend_from_slice(&k.enc_spki);
    m.extend_from_slice(&k.sign_spki);
    m
}

/// `"securechat/v1/rotate|" || username || "|" || new_version || "|" || enc_spki || sign_spki`
/// (PROTOCOL.md §4.2)
pub fn rotate_sig_message(username: &str, new_version: i64, k: &CheckedKeys) -> Vec<u8> {
    let mut m = format!("securechat/v1/rotate|{username}|{new_version}|").into_bytes();
    m.extend_from_slice(&k.enc_spki);
    m.extend_from_slice(&k.sign_spki);
    m
}

/// Verifies a raw r||s ECDSA-P256-SHA256 signature; high-S and low-S both accepted
/// (PROTOCOL.md §1.6).
pub fn verify_sig(
    key: &VerifyingKey,
    message: &[u8],
    sig_b64: &str,
    what: &'static str,
) -> Result<(), KeyError> {
    let raw = b64::decode_len(sig_b64, 64).ok_or(KeyError::InvalidSignature(what))?;
    let sig = Signature::from_slice(&raw).map_err(|_| KeyError::InvalidSignature(what))?;
    let sig = sig.normalize_s().unwrap_or(sig);
    key.verify(message, &sig)
        .map_err(|_| KeyError::InvalidSignature(what))
}

/// The 30-digit fingerprint of one user's keys (PROTOCOL.md §5.1).
pub fn fingerprint(username: &str, enc_spki: &[u8], sign_spki: &[u8]) -> String {
    let mut d = format!("securechat/v1/fp|{username}|").into_bytes();
    d.extend_from_slice(enc_spki);
    d.extend_from_slice(sign_spki);
    let mut h = Sha512::digest(&d);
    for _ in 0..5199 {
        let mut hasher = Sha512::new();
        hasher.update(h);
        hasher.update(enc_spki);
        hasher.update(sign_spki);
        h = hasher.finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in h[..30].chunks(5) {
        let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", n % 100_000));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_keys_are_refused_with_a_reason() {
        assert!(matches!(
            parse_keys("AAAA", "AAAA"),
            Err(KeyError::InvalidKey(_))
        ));
        assert!(matches!(
            parse_keys("not base64!", "AAAA"),
            Err(KeyError::InvalidKey(_))
        ));
    }

    #[test]
    fn a_fingerprint_is_thirty_digits_and_depends_on_the_name() {
        let a = fingerprint("alice", b"enc", b"sign");
        assert_eq!(a.len(), 30);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(a, fingerprint("bob", b"enc", b"sign"));
        assert_eq!(a, fingerprint("alice", b"enc", b"sign"));
    }
}
