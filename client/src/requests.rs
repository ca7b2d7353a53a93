//! Request bodies the client builds: the registration body of `POST /api/auth/register`
//! (docs/PROTOCOL.md §6.1, fields in the documented order) and the key-rotation body of
//! `POST /api/keys/rotate` (PROTOCOL.md §4.2).

use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::bundle::{wrap_bundle_with_iv, KeyBundle};
use crate::kdf::{derive_keys, KDF_ALG};
use crate::sig::{prev_sig, self_sig};
use crate::{b64, Identity, Result};

/// `{"alg","iterations","salt"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub alg: String,
    pub iterations: u32,
    pub salt: String,
}

/// The body of `POST /api/auth/register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub username: String,
    pub auth_key: String,
    pub kdf: KdfParams,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub key_bundle: KeyBundle,
    pub self_sig: String,
}

impl RegisterRequest {
    /// Build a registration for `identity` with a fresh 16-byte salt and 12-byte IV.
    pub fn build(
        username: &str,
        password: &str,
        iterations: u32,
        identity: &Identity,
    ) -> Result<RegisterRequest> {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut iv);
        Self::build_with(username, password, iterations, identity, &salt, &iv)
    }

    /// Deterministic form of [`RegisterRequest::build`] (test vectors).
    pub fn build_with(
        username: &str,
        password: &str,
        iterations: u32,
        identity: &Identity,
        salt: &[u8],
        iv: &[u8; 12],
    ) -> Result<RegisterRequest> {
        let (auth_key, kek) = derive_keys(password, salt, iterations);
        let key_version = 1;
        let pk = identity.public_keys()?;
        let key_bundle = wrap_bundle_with_iv(&kek, username, key_version, identity, iv)?;
        let sig = self_sig(
            &identity.sign,
            username,
            key_version,
            &pk.enc_spki,
            &pk.sign_spki,
        );
        Ok(RegisterRequest {
            username: username.to_owned(),
            auth_key: b64::encode(auth_key),
            kdf: KdfParams {
                alg: KDF_ALG.to_owned(),
                iterations,
                salt: b64::encode(salt),
            },
            enc_public_key: b64::encode(&pk.enc_spki),
            sign_public_key: b64::encode(&pk.sign_spki),
            key_bundle,
            self_sig: b64::encode(sig),
        })
    }

    /// The exact (compact) JSON body.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// The body of `POST /api/keys/rotate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateRequest {
    pub key_version: u32,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub key_bundle: KeyBundle,
    pub self_sig: String,
    pub prev_sig: String,
}

impl RotateRequest {
    /// Rotate `username` from `old` to `new` at `new_version`, wrapping under the same kek.
    pub fn build(
        username: &str,
        new_version: u32,
        old: &Identity,
        new: &Identity,
        kek: &[u8; 32],
    ) -> Result<RotateRequest> {
        let mut iv = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        Self::build_with_iv(username, new_version, old, new, kek, &iv)
    }

    /// Deterministic form of [`RotateRequest::build`].
    pub fn build_with_iv(
        username: &str,
        new_version: u32,
        old: &Identity,
        new: &Identity,
        kek: &[u8; 32],
        iv: &[u8; 12],
    ) -> Result<RotateRequest> {
        let pk = new.public_keys()?;
        let key_bundle = wrap_bundle_with_iv(kek, username, new_version, new, iv)?;
        let self_sig = self_sig(
            &new.sign,
            username,
            new_version,
            &pk.enc_spki,
            &pk.sign_spki,
        );
        let prev_sig = prev_sig(
            &old.sign,
            username,
            new_version,
            &pk.enc_spki,
            &pk.sign_spki,
        );
        Ok(RotateRequest {
            key_version: new_version,
            enc_public_key: b64::encode(&pk.enc_spki),
            sign_public_key: b64::encode(&pk.sign_spki),
            key_bundle,
            self_sig: b64::encode(self_sig),
            prev_sig: b64::encode(prev_sig),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::test_identity;

    #[test]
    fn register_body_has_the_documented_shape() {
        let id = test_identity(1);
        let req = RegisterRequest::build("alice", "pw", 1000, &id).unwrap();
        let json = req.to_json().unwrap();
        let prefix = format!(
            "{{\"username\":\"alice\",\"auth_key\":\"{}\",\"kdf\":{{\"alg\":\"PBKDF2-SHA256\",\"iterations\":1000,\"salt\":\"{}\"}},\"enc_public_key\":\"",
            req.auth_key, req.kdf.salt
        );
        assert!(json.starts_with(&prefix), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "username",
            "auth_key",
            "kdf",
            "enc_public_key",
            "sign_public_key",
            "key_bundle",
            "self_sig",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(b64::decode(&req.auth_key).unwrap().len(), 32);
        assert_eq!(b64::decode(&req.kdf.salt).unwrap().len(), 16);
        assert_eq!(b64::decode(&req.key_bundle.iv).unwrap().len(), 12);
        assert_eq!(b64::decode(&req.self_sig).unwrap().len(), 64);
        crate::sig::verify_self_sig(
            "alice",
            1,
            &b64::decode(&req.enc_public_key).unwrap(),
            &b64::decode(&req.sign_public_key).unwrap(),
            &b64::decode(&req.self_sig).unwrap(),
        )
        .unwrap();
        let (_, kek) = derive_keys("pw", &b64::decode(&req.kdf.salt).unwrap(), 1000);
        let back = crate::bundle::unwrap_bundle(&kek, "alice", 1, &req.key_bundle).unwrap();
        assert_eq!(back.public_keys().unwrap(), id.public_keys().unwrap());
    }

    #[test]
    fn rotate_body_chains_to_the_old_key() {
        let old = test_identity(1);
        let new = test_identity(2);
        let kek = [3u8; 32];
        let req = RotateRequest::build("alice", 2, &old, &new, &kek).unwrap();
        let enc = b64::decode(&req.enc_public_key).unwrap();
        let sign = b64::decode(&req.sign_public_key).unwrap();
        crate::sig::verify_self_sig(
            "alice",
            2,
            &enc,
            &sign,
            &b64::decode(&req.self_sig).unwrap(),
        )
        .unwrap();
        crate::sig::verify_prev_sig(
            &old.sign_spki().unwrap(),
            "alice",
            2,
            &enc,
            &sign,
            &b64::decode(&req.prev_sig).unwrap(),
        )
        .unwrap();
        let back = crate::bundle::unwrap_bundle(&kek, "alice", 2, &req.key_bundle).unwrap();
        assert_eq!(back.public_keys().unwrap(), new.public_keys().unwrap());
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["key_version"], 2);
    }
}
