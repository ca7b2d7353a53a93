//! Response bodies of the REST contract (docs/API-CONTRACT.md), and the checks a client
//! makes on directory answers (self-signature, key sizes, fingerprint).

use serde::{Deserialize, Serialize};

use crate::bundle::KeyBundle;
use crate::identity::{parse_enc_spki, PublicKeys};
use crate::requests::KdfParams;
use crate::sig::{verify_prev_sig, verify_self_sig};
use crate::{b64, fingerprint, Error, Result};

/// `POST /api/auth/prelogin` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreloginResponse {
    pub kdf: KdfParams,
}

/// `POST /api/auth/register` (201) and `POST /api/keys/rotate` (200) answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserVersion {
    pub username: String,
    pub key_version: u32,
}

/// `POST /api/auth/login` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub auth_key: String,
}

/// `POST /api/auth/login` answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub key_version: u32,
    pub key_bundle: KeyBundle,
    pub kdf: KdfParams,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("expires_in", &self.expires_in)
            .field("key_version", &self.key_version)
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

/// `POST /api/auth/refresh` answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// `GET /api/me` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub username: String,
    pub key_version: u32,
    pub is_admin: bool,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// One entry of `GET /api/users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub username: String,
    pub key_version: u32,
}

/// `GET /api/users?query=&cursor=` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserSummary>,
    pub next_cursor: Option<String>,
}

/// `GET /api/users/{name}/keys` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKeys {
    pub username: String,
    pub key_version: u32,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub self_sig: String,
    pub fingerprint: String,
}

impl UserKeys {
    /// Check the directory entry: keys parse (RSA-2048 e=65537, P-256), the self-signature
    /// verifies for this user and version, and the fingerprint is the one computed locally
    /// (PROTOCOL.md §3.1, §4.1, §5.1).
    pub fn verify(&self) -> Result<PublicKeys> {
        verify_entry(
            &self.username,
            self.key_version,
            &self.enc_public_key,
            &self.sign_public_key,
            &self.self_sig,
            &self.fingerprint,
        )
    }
}

/// One entry of `GET /api/users/{name}/key-changes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    pub key_version: u32,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub self_sig: String,
    pub fingerprint: String,
    pub changed_at: i64,
    /// The rotation signature by the previous key (absent or null for the first version;
    /// PROTOCOL.md §4.2); [`KeyChanges::verify_chain`] checks it when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_sig: Option<String>,
}

impl KeyChange {
    /// Same checks as [`UserKeys::verify`], for the owner `username`.
    pub fn verify(&self, username: &str) -> Result<PublicKeys> {
        verify_entry(
            username,
            self.key_version,
            &self.enc_public_key,
            &self.sign_public_key,
            &self.self_sig,
            &self.fingerprint,
        )
    }
}

/// `GET /api/users/{name}/key-changes` answer, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChanges {
    pub username: String,
    pub changes: Vec<KeyChange>,
}

impl KeyChanges {
    /// Check the whole log: every entry verifies ([`KeyChange::verify`]), versions
    /// increase by one, and each later entry carries a `prev_sig` that the previous
    /// entry's signing key made over the new keys (PROTOCOL.md §4.2). Returns the public
    /// keys, oldest first.
    pub fn verify_chain(&self) -> Result<Vec<PublicKeys>> {
        let mut out: Vec<PublicKeys> = Vec::with_capacity(self.changes.len());
        let mut prev_version: Option<u32> = None;
        for change in &self.changes {
            let keys = change.verify(&self.username)?;
            if let (Some(prev_version), Some(prev_keys)) = (prev_version, out.last()) {
                if Some(change.key_version) != prev_version.checked_add(1) {
                    return Err(Error::Verification(format!(
                        "key version {} follows {prev_version}",
                        change.key_version
                    )));
                }
                let sig = change.prev_sig.as_deref().ok_or_else(|| {
                    Error::Verification(format!(
                        "key version {} has no prev_sig",
                        change.key_version
                    ))
                })?;
                verify_prev_sig(
                    &prev_keys.sign_spki,
                    &self.username,
                    change.key_version,
                    &keys.enc_spki,
                    &keys.sign_spki,
                    &b64::decode(sig)?,
                )?;
            }
            prev_version = Some(change.key_version);
            out.push(keys);
        }
        Ok(out)
    }
}

fn verify_entry(
    username: &str,
    key_version: u32,
    enc_public_key: &str,
    sign_public_key: &str,
    self_sig: &str,
    claimed_fingerprint: &str,
) -> Result<PublicKeys> {
    let enc_spki = b64::decode(enc_public_key)?;
    let sign_spki = b64::decode(sign_public_key)?;
    parse_enc_spki(&enc_spki)?;
    verify_self_sig(
        username,
        key_version,
        &enc_spki,
        &sign_spki,
        &b64::decode(self_sig)?,
    )?;
    let fp = fingerprint(username, &enc_spki, &sign_spki);
    if fp != claimed_fingerprint {
        return Err(Error::Verification(format!(
            "directory fingerprint {claimed_fingerprint} for {username} v{key_version}, computed {fp}"
        )));
    }
    Ok(PublicKeys {
        enc_spki,
        sign_spki,
    })
}

/// The contract's error body `{"error":{"code","message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inner object of [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
