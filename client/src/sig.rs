//! Key signatures, ECDSA-P256-SHA256 with raw 64-byte `r||s` (what Web Crypto produces):
//! the registration `self_sig` (docs/PROTOCOL.md §4.1) and the rotation `prev_sig` (§4.2).
//! Verification accepts both low-S and high-S signatures, as Web Crypto's do occur.

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

use crate::identity::parse_sign_spki;
use crate::{Error, Result};

/// `"securechat/v1/self|" || username || "|" || key_version || "|" || enc_spki || sign_spki`
/// (PROTOCOL.md §4.1).
pub fn self_sig_message(
    username: &str,
    key_version: u32,
    enc_spki: &[u8],
    sign_spki: &[u8],
) -> Vec<u8> {
    let mut m = format!("securechat/v1/self|{username}|{key_version}|").into_bytes();
    m.extend_from_slice(enc_spki);
    m.extend_from_slice(sign_spki);
    m
}

/// `"securechat/v1/rotate|" || username || "|" || new_version || "|" || new_enc_spki || new_sign_spki`
/// (PROTOCOL.md §4.2).
pub fn prev_sig_message(
    username: &str,
    new_version: u32,
    new_enc_spki: &[u8],
    new_sign_spki: &[u8],
) -> Vec<u8> {
    let mut m = format!("securechat/v1/rotate|{username}|{new_version}|").into_bytes();
    m.extend_from_slice(new_enc_spki);
    m.extend_from_slice(new_sign_spki);
    m
}

/// ECDSA-P256-SHA256 over `message`, raw `r||s`. Deterministic (RFC 6979).
pub fn sign_raw(key: &SigningKey, message: &[u8]) -> [u8; 64] {
    let sig: Signature = key.sign(message);
    sig.to_bytes().into()
}

/// Verify a raw `r||s` signature; high-S is accepted (PROTOCOL.md §1.6).
pub fn verify_raw(key: &VerifyingKey, message: &[u8], sig: &[u8]) -> Result<()> {
    let sig = Signature::from_slice(sig)
        .map_err(|_| Error::Verification("signature is not 64 bytes of valid r||s".into()))?;
    key.verify(message, &sig)
        .map_err(|_| Error::Verification("ECDSA signature does not verify".into()))
}

/// The registration self-signature, made with the signing key whose SPKI is `sign_spki`.
pub fn self_sig(
    sign: &SigningKey,
    username: &str,
    key_version: u32,
    enc_spki: &[u8],
    sign_spki: &[u8],
) -> [u8; 64] {
    sign_raw(
        sign,
        &self_sig_message(username, key_version, enc_spki, sign_spki),
    )
}

/// Check a self-signature with the signing key contained in `sign_spki` itself.
pub fn verify_self_sig(
    username: &str,
    key_version: u32,
    enc_spki: &[u8],
    sign_spki: &[u8],
    sig: &[u8],
) -> Result<()> {
    let key = parse_sign_spki(sign_spki)?;
    verify_raw(
        &key,
        &self_sig_message(username, key_version, enc_spki, sign_spki),
        sig,
    )
}

/// The rotation signature, made with the OLD signing key over the NEW public keys.
pub fn prev_sig(
    old_sign: &SigningKey,
    username: &str,
    new_version: u32,
    new_enc_spki: &[u8],
    new_sign_spki: &[u8],
) -> [u8; 64] {
    sign_raw(
        old_sign,
        &prev_sig_message(username, new_version, new_enc_spki, new_sign_spki),
    )
}

/// Check a rotation signature against the OLD signing key's SPKI.
pub fn verify_prev_sig(
    old_sign_spki: &[u8],
    username: &str,
    new_version: u32,
    new_enc_spki: &[u8],
    new_sign_spki: &[u8],
    sig: &[u8],
) -> Result<()> {
    let key = parse_sign_spki(old_sign_spki)?;
    verify_raw(
        &key,
        &prev_sig_message(username, new_version, new_enc_spki, new_sign_spki),
        sig,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::test_identity;

    fn flip_s(sig: &[u8; 64]) -> [u8; 64] {
        let s = Signature::from_slice(sig).unwrap();
        let (r, s) = s.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        high.to_bytes().into()
    }

    #[test]
    fn self_sig_verifies_and_binds_every_byte() {
        let id = test_identity(1);
        let pk = id.public_keys().unwrap();
        let sig = self_sig(&id.sign, "alice", 1, &pk.enc_spki, &pk.sign_spki);
        verify_self_sig("alice", 1, &pk.enc_spki, &pk.sign_spki, &sig).unwrap();
        assert!(verify_self_sig("alicf", 1, &pk.enc_spki, &pk.sign_spki, &sig).is_err());
        assert!(verify_self_sig("alice", 2, &pk.enc_spki, &pk.sign_spki, &sig).is_err());
        for i in 0..pk.enc_spki.len() {
            let mut enc = pk.enc_spki.clone();
            enc[i] ^= 0x01;
            let r = verify_self_sig("alice", 1, &enc, &pk.sign_spki, &sig);
            assert!(
                r.is_err(),
                "enc_spki byte {i} changed but self_sig verified"
            );
        }
        for i in 0..pk.sign_spki.len() {
            let mut sign = pk.sign_spki.clone();
            sign[i] ^= 0x01;
            let r = verify_self_sig("alice", 1, &pk.enc_spki, &sign, &sig);
            assert!(
                r.is_err(),
                "sign_spki byte {i} changed but self_sig verified"
            );
        }
        for i in 0..64 {
            let mut bad = sig;
            bad[i] ^= 0x01;
            assert!(verify_self_sig("alice", 1, &pk.enc_spki, &pk.sign_spki, &bad).is_err());
        }
        assert!(verify_self_sig("alice", 1, &pk.enc_spki, &pk.sign_spki, &sig[..63]).is_err());
    }

    #[test]
    fn high_s_and_low_s_both_verify() {
        let id = test_identity(1);
        let pk = id.public_keys().unwrap();
        let sig = self_sig(&id.sign, "alice", 1, &pk.enc_spki, &pk.sign_spki);
        let other = flip_s(&sig);
        assert_ne!(sig, other);
        verify_self_sig("alice", 1, &pk.enc_spki, &pk.sign_spki, &sig).unwrap();
        verify_self_sig("alice", 1, &pk.enc_spki, &pk.sign_spki, &other).unwrap();
        let parsed = Signature::from_slice(&sig).unwrap();
        let flipped = Signature::from_slice(&other).unwrap();
        // Exactly one of the two is high-S.
        assert!(parsed.normalize_s().is_some() != flipped.normalize_s().is_some());
    }

    #[test]
    fn prev_sig_is_checked_with_the_old_key() {
        let old = test_identity(1);
        let new = test_identity(2);
        let old_pk = old.public_keys().unwrap();
        let pk = new.public_keys().unwrap();
        let sig = prev_sig(&old.sign, "alice", 2, &pk.enc_spki, &pk.sign_spki);
        verify_prev_sig(
            &old_pk.sign_spki,
            "alice",
            2,
            &pk.enc_spki,
            &pk.sign_spki,
            &sig,
        )
        .unwrap();
        verify_prev_sig(
            &old_pk.sign_spki,
            "alice",
            2,
            &pk.enc_spki,
            &pk.sign_spki,
            &flip_s(&sig),
        )
        .unwrap();
        assert!(
            verify_prev_sig(&pk.sign_spki, "alice", 2, &pk.enc_spki, &pk.sign_spki, &sig).is_err()
        );
        assert!(verify_prev_sig(
            &old_pk.sign_spki,
            "alice",
            3,
            &pk.enc_spki,
            &pk.sign_spki,
            &sig
        )
        .is_err());
        // The rotate domain is not the self domain.
        let self_sig = self_sig(&old.sign, "alice", 2, &pk.enc_spki, &pk.sign_spki);
        assert!(verify_prev_sig(
            &old_pk.sign_spki,
            "alice",
            2,
            &pk.enc_spki,
            &pk.sign_spki,
            &self_sig
        )
        .is_err());
    }
}
