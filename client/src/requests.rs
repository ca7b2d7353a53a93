//! Request bodies the client builds: the registration body of `POST /api/auth/register`
//! (docs/PROTOCOL.md §6.1, fields in the documented order) and the key-rotation body of
//! `POST /api/keys/rotate` (PROTOCOL.md §4.2).

use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::bundle::{wrap_bundle_with_iv, KeyBundle};
use crate::kdf::{derive_keys, KDF_ALG, MAX_ITERATIONS, SALT_BYTES};
use crate::sig::{prev_sig, self_sig};
use crate::{b64, Error, Identity, Result};

/// `{"alg","iterations","salt"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub alg: String,
    pub iterations: u32,
    pub salt: String,
}

impl KdfParams {
    /// The salt, if these parameters are safe to derive with (PROTOCOL.md §2.4, the
    /// browser's `checkKdfParams`): `PBKDF2-SHA256`, `min_iterations` to
    /// [`MAX_ITERATIONS`] iterations, a 16-byte salt. Checked before any CPU is spent.
    pub fn check(&self, min_iterations: u32) -> Result<Vec<u8>> {
        if self.alg != KDF_ALG {
            return Err(Error::Kdf(format!(
                "unsupported KDF algorithm {:?}",
                self.alg
            )));
        }
        if !(min_iterations..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(Error::Kdf(format!(
                "the server asked for {} KDF iterations, outside [{min_iterations}, {MAX_ITERATIONS}]",
                self.iterations
            )));
        }
        let salt = b64::decode(&self.salt)
            .map_err(|e| Error::Kdf(format!("the KDF salt is not base64url: {e}")))?;
        if salt.len() != SALT_BYTES {
            return Err(Error::Kdf(format!(
                "the KDF salt must be {SALT_BYTES} bytes, not {}",
                salt.len()
            )));
        }
        Ok(salt)
    }
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
    /// The auth key derived from the password now (PROTOCOL.md §4.3); `None` only to test
    /// the server's refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_key: Option<String>,
}

impl RotateRequest {
    /// Rotate `username` from `old` to `new` at `new_version`, wrapping under the same kek
    /// and proving the password with `auth_key`.
    pub fn build(
        username: &str,
        new_version: u32,
        old: &Identity,
        new: &Identity,
        kek: &[u8; 32],
        auth_key: &[u8; 32],
    ) -> Result<RotateRequest> {
        let mut iv = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let mut req = Self::build_with_iv(username, new_version, old, new, kek, &iv)?;
        req.auth_key = Some(b64::encode(auth_key));
        Ok(req)
    }

    /// Deterministic form of [`RotateRequest::build`], without `auth_key`.
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
            auth_key: None,
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
        let req = RotateRequest::build("alice", 2, &old, &new, &kek, &[4u8; 32]).unwrap();
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
        assert_eq!(v["auth_key"], b64::encode([4u8; 32]));
        // Without it, the member is absent (not null).
        let mut bare = req.clone();
        bare.auth_key = None;
        assert!(serde_json::to_value(&bare)
            .unwrap()
            .get("auth_key")
            .is_none());
    }

    fn kdf(alg: &str, iterations: u32, salt_bytes: usize) -> KdfParams {
        KdfParams {
            alg: alg.into(),
            iterations,
            salt: b64::encode(vec![7u8; salt_bytes]),
        }
    }

    #[test]
    fn kdf_parameters_below_the_browsers_floor_are_refused() {
        use crate::kdf::{MAX_ITERATIONS, MIN_ITERATIONS};
        use crate::Error;
        assert_eq!(
            kdf(KDF_ALG, MIN_ITERATIONS, 16)
                .check(MIN_ITERATIONS)
                .unwrap(),
            vec![7u8; 16]
        );
        assert!(kdf(KDF_ALG, MAX_ITERATIONS, 16)
            .check(MIN_ITERATIONS)
            .is_ok());
        for bad in [
            kdf(KDF_ALG, MIN_ITERATIONS - 1, 16),
            kdf(KDF_ALG, 1000, 16),
            kdf(KDF_ALG, MAX_ITERATIONS + 1, 16),
            kdf("PBKDF2-SHA1", MIN_ITERATIONS, 16),
            kdf(KDF_ALG, MIN_ITERATIONS, 15),
            kdf(KDF_ALG, MIN_ITERATIONS, 17),
        ] {
            let e = bad.check(MIN_ITERATIONS).unwrap_err();
            assert!(matches!(e, Error::Kdf(_)), "{bad:?}: {e}");
        }
        // A test server's floor can be lowered explicitly, as the browser's can.
        assert!(kdf(KDF_ALG, 1000, 16).check(1000).is_ok());
    }
}
