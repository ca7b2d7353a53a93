//! Owns the key directory: searching users (a prefix of at least `min_query_chars`, or an
//! exact name however short, so the whole list is never handed out), publishing each user's current public keys with
//! their fingerprint, the key-change log, and owner key rotation.
//!
//! Invariants: a key version only moves forward by one, and only with a signature by the
//! previous signing key over the new keys, so the chain of versions is verifiable by anyone;
//! a rotation also needs the password now (`auth_key`, checked by [`Auth`]), and after it
//! commits every live connection of the user hears `keys_changed`.

pub mod routes;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::auth::{Auth, Principal};
use crate::db::{now_ms, users, Db};
use crate::error::{ApiError, ApiResult};
use crate::keys::{self, KeyBundle};
use crate::live::LiveSessions;
use crate::username::Username;

pub const PAGE_SIZE: u32 = 50;

#[derive(Debug, Serialize)]
pub struct PublicKeys {
    pub username: String,
    pub key_version: i64,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub self_sig: String,
    pub fingerprint: String,
}

#[derive(Debug, Serialize)]
pub struct UserSummary {
    pub username: String,
    pub key_version: i64,
}

#[derive(Debug, Serialize)]
pub struct UserPage {
    pub users: Vec<UserSummary>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct KeyChangeView {
    pub key_version: i64,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub self_sig: String,
    pub prev_sig: Option<String>,
    pub fingerprint: String,
    pub changed_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    pub key_version: i64,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub key_bundle: KeyBundle,
    pub self_sig: String,
    pub prev_sig: String,
    /// As at login (§2.3): the password, proven now. Optional here only so that its
    /// absence gets its own answer (401 `reauthentication_required`).
    pub auth_key: Option<String>,
}

/// The directory service.
#[derive(Clone)]
pub struct Directory {
    db: Db,
    auth: Arc<Auth>,
    live: Arc<dyn LiveSessions>,
    min_query_chars: usize,
}

impl Directory {
    pub fn new(
        db: Db,
        auth: Arc<Auth>,
        live: Arc<dyn LiveSessions>,
        min_query_chars: usize,
    ) -> Directory {
        Directory {
            db,
            auth,
            live,
            min_query_chars,
        }
    }

    pub async fn list(&self, query: &str, cursor: Option<String>) -> ApiResult<UserPage> {
        let query = query.trim().to_ascii_lowercase();
        if query.len() > Username::MAX_LEN || !query.bytes().all(Username::is_name_byte) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "query must be at most 32 characters of a-z, 0-9, '_', '.' and '-'",
            ));
        }
        if cursor.as_deref().is_some_and(|c| !Username::is_valid(c)) {
            return Err(ApiError::bad_request("invalid_request", "malformed cursor"));
        }
        if query.len() < self.min_query_chars {
            return self.exactly(query, cursor).await;
        }
        let mut rows = self
            .db
            .read(move |c| users::list(c, &query, cursor.as_deref(), PAGE_SIZE + 1))
            .await?;
        let more = rows.len() > PAGE_SIZE as usize;
        rows.truncate(PAGE_SIZE as usize);
        let next_cursor = if more {
            rows.last().map(|r| r.0.clone())
        } else {
            None
        };
        Ok(UserPage {
            users: rows
                .into_iter()
                .map(|(username, key_version)| UserSummary {
                    username,
                    key_version,
                })
                .collect(),
            next_cursor,
        })
    }

    /// A query shorter than the minimum: the user of exactly that name (one page, no
    /// cursor), or 400 `query_too_short`.
    async fn exactly(&self, query: String, cursor: Option<String>) -> ApiResult<UserPage> {
        let too_short = || {
            ApiError::bad_request(
                "query_too_short",
                format!(
                    "a search needs at least {} characters, or a complete user name",
                    self.min_query_chars
                ),
            )
        };
        if !Username::is_valid(&query) {
            return Err(too_short());
        }
        let user = self
            .db
            .read(move |c| users::by_name(c, &query))
            .await?
            .ok_or_else(too_short)?;
        let after = cursor.is_some_and(|c| c.as_str() >= user.username.as_str());
        Ok(UserPage {
            users: if after {
                Vec::new()
            } else {
                vec![UserSummary {
                    username: user.username,
                    key_version: user.keys.key_version,
                }]
            },
            next_cursor: None,
        })
    }

    pub async fn keys(&self, username: &str) -> ApiResult<PublicKeys> {
        let user = self.user(username).await?;
        Ok(PublicKeys {
            username: user.username,
            key_version: user.keys.key_version,
            enc_public_key: user.keys.enc_public_key,
            sign_public_key: user.keys.sign_public_key,
            self_sig: user.keys.self_sig,
            fingerprint: user.keys.fingerprint,
        })
    }

    pub async fn key_changes(&self, username: &str) -> ApiResult<Vec<KeyChangeView>> {
        let user = self.user(username).await?;
        let rows = self
            .db
            .read(move |c| users::key_changes(c, user.id))
            .await?;
        Ok(rows
            .into_iter()
            .map(|k| KeyChangeView {
                key_version: k.keys.key_version,
                enc_public_key: k.keys.enc_public_key,
                sign_public_key: k.keys.sign_public_key,
                self_sig: k.keys.self_sig,
                prev_sig: k.prev_sig,
                fingerprint: k.keys.fingerprint,
                changed_at: k.changed_at,
            })
            .collect())
    }

    async fn user(&self, username: &str) -> ApiResult<users::User> {
        let name = Username::parse(username).map_err(|_| ApiError::not_found("user"))?;
        self.db
            .read(move |c| users::by_name(c, name.as_str()))
            .await?
            .ok_or_else(|| ApiError::not_found("user"))
    }

    /// Publishes the caller's next key version, signed by the new and the previous key,
    /// once the caller has proven the password; then tells their live connections.
    pub async fn rotate(&self, who: &Principal, req: RotateRequest) -> ApiResult<i64> {
        let auth_key = Auth::fresh_auth_key(req.auth_key)?;
        let current = self.user(&who.username).await?;
        if req.key_version != current.keys.key_version + 1 {
            return Err(ApiError::conflict(
                "key_version_conflict",
                format!(
                    "key_version must be {} (the current version plus one)",
                    current.keys.key_version + 1
                ),
            ));
        }
        req.key_bundle.check()?;
        let new = keys::parse_keys(&req.enc_public_key, &req.sign_public_key)?;
        keys::verify_sig(
            &new.sign_key,
            &keys::self_sig_message(&who.username, req.key_version, &new),
            &req.self_sig,
            "self_sig",
        )?;
        let old = keys::parse_keys(&current.keys.enc_public_key, &current.keys.sign_public_key)
            .map_err(|_| ApiError::internal("stored keys no longer parse"))?;
        keys::verify_sig(
            &old.sign_key,
            &keys::rotate_sig_message(&who.username, req.key_version, &new),
            &req.prev_sig,
            "prev_sig",
        )?;
        // bcrypt last: the checks above are cheap and need no secret.
        self.auth.reauthenticate(who, auth_key).await?;
        let published = users::PublishedKeys {
            key_version: req.key_version,
            fingerprint: keys::fingerprint(&who.username, &new.enc_spki, &new.sign_spki),
            enc_public_key: req.enc_public_key,
            sign_public_key: req.sign_public_key,
            self_sig: req.self_sig,
        };
        let user_id = current.id;
        let version = published.key_version;
        let moved = self
            .db
            .write(move |c| {
                users::rotate_keys(
                    c,
                    user_id,
                    &published,
                    &req.key_bundle.iv,
                    &req.key_bundle.ct,
                    &req.prev_sig,
                    now_ms(),
                )
            })
            .await?;
        if !moved {
            return Err(ApiError::conflict(
                "key_version_conflict",
                "the key version changed meanwhile; fetch it and try again",
            ));
        }
        self.live.keys_changed(user_id, version);
        Ok(version)
    }
}
