//! Owns accounts and sessions: prelogin, registration, login, refresh-token rotation,
//! logout, changing the password, listing and revoking one's sessions, deleting the
//! account, and turning a bearer token into a [`Principal`]. bcrypt runs on the blocking
//! pool behind a semaphore, so hashing never stalls the async workers.
//!
//! Invariants: the server stores only `bcrypt(auth_key)`, never anything it could unwrap
//! keys with; an unknown user and a wrong key are indistinguishable (same body, same bcrypt
//! work); a refresh token is single-use and its reuse kills its session; a session that
//! ends (logout, logout-all, reuse) is reported to [`LiveSessions`] after its revocation
//! commits, so its WebSockets close too.

mod jwt;
pub mod routes;
pub mod secrets;

use std::sync::Arc;

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use warp::http::StatusCode;

use crate::b64;
use crate::config::AuthConfig;
use crate::db::{admin, messages, now_ms, sessions, users, Db, DbError};
use crate::error::{ApiError, ApiResult};
use crate::keys::{self, KeyBundle};
use crate::live::{Ended, LiveSessions};
use crate::username::Username;

pub use jwt::Jwt;

pub const KDF_ALG: &str = "PBKDF2-SHA256";
/// What the browser client uses; also what prelogin answers for unknown users.
pub const DEFAULT_KDF_ITERATIONS: u32 = 600_000;

/// Who is making an authenticated request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    pub session_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    pub alg: String,
    pub iterations: u32,
    pub salt: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub username: String,
    pub auth_key: String,
    pub kdf: Kdf,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub key_bundle: KeyBundle,
    pub self_sig: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub auth_key: String,
}

#[derive(Debug, Serialize)]
pub struct LoginResponse {
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub key_version: i64,
    pub key_bundle: KeyBundle,
    pub kdf: Kdf,
}

/// `POST /api/auth/password`: the password proven now (`auth_key`), what the new password
/// derives (`new_auth_key`, `kdf` with a fresh salt, the bundle re-wrapped under the new
/// kek), and the caller's current refresh token (the session that stays).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub auth_key: String,
    pub new_auth_key: String,
    pub kdf: Kdf,
    pub key_bundle: KeyBundle,
    pub refresh_token: String,
}

/// One of the caller's live sessions, as `GET /api/sessions` lists it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub current: bool,
}

#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

/// The account service, shared by every request through `AppState`.
pub struct Auth {
    db: Db,
    config: AuthConfig,
    jwt: Jwt,
    prelogin_key: Vec<u8>,
    hash_slots: Semaphore,
    /// A bcrypt hash of nothing anyone knows, verified against when the user doesn't exist.
    dummy_hash: String,
    /// Told when sessions end, so their live connections close.
    live: Arc<dyn LiveSessions>,
}

fn parse_auth_key(text: &str) -> ApiResult<Vec<u8>> {
    b64::decode_len(text, 32).ok_or_else(|| {
        ApiError::bad_request("invalid_auth_key", "auth_key must be 32 bytes, base64url")
    })
}

fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_refresh_token() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    b64::encode(raw)
}

fn new_session_id() -> String {
    let mut raw = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

fn now_secs() -> u64 {
    (now_ms() / 1000) as u64
}

impl Auth {
    /// Builds the service; computes the dummy hash once (on the blocking pool).
    pub async fn new(
        db: Db,
        config: AuthConfig,
        jwt_secret: &[u8],
        prelogin_key: Vec<u8>,
        hash_concurrency: usize,
        live: Arc<dyn LiveSessions>,
    ) -> anyhow::Result<Arc<Auth>> {
        let cost = config.bcrypt_cost;
        let dummy_hash = tokio::task::spawn_blocking(move || {
            let mut raw = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            bcrypt::non_truncating_hash(b64::encode(raw), cost)
        })
        .await??;
        Ok(Arc::new(Auth {
            jwt: Jwt::new(jwt_secret, &config.issuer, config.access_ttl_secs),
            db,
            config,
            prelogin_key,
            hash_slots: Semaphore::new(hash_concurrency.max(1)),
            dummy_hash,
            live,
        }))
    }

    async fn bcrypt_hash(&self, auth_key: String) -> ApiResult<String> {
        let _slot = self
            .hash_slots
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        let cost = self.config.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::non_truncating_hash(auth_key, cost))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    async fn bcrypt_verify(&self, auth_key: String, hash: String) -> ApiResult<bool> {
        let _slot = self
            .hash_slots
            .acquire()
            .await
            .map_err(ApiError::internal)?;
        tokio::task::spawn_blocking(move || bcrypt::non_truncating_verify(auth_key, &hash))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// KDF parameters for `username`; for an unknown name, a deterministic look-alike.
    pub async fn prelogin(&self, username: &str) -> ApiResult<Kdf> {
        let name = Username::parse(username)?;
        let user = self
            .db
            .read(move |c| users::by_name(c, name.as_str()))
            .await?;
        Ok(match user {
            Some(u) => Kdf {
                alg: u.kdf_alg,
                iterations: u.kdf_iterations as u32,
                salt: u.kdf_salt,
            },
            None => self.fake_kdf(username),
        })
    }

    fn fake_kdf(&self, username: &str) -> Kdf {
        let salt = match Hmac::<Sha256>::new_from_slice(&self.prelogin_key) {
            Ok(mut mac) => {
                mac.update(b"securechat/v1/prelogin|");
                mac.update(username.as_bytes());
                mac.finalize().into_bytes()[..16].to_vec()
            }
            // HMAC accepts any key length; this arm cannot happen, but never panic.
            Err(_) => Sha256::digest(username.as_bytes())[..16].to_vec(),
        };
        Kdf {
            alg: KDF_ALG.into(),
            iterations: DEFAULT_KDF_ITERATIONS.max(self.config.min_kdf_iterations),
            salt: b64::encode(salt),
        }
    }

    fn check_kdf(&self, kdf: &Kdf) -> ApiResult<()> {
        if kdf.alg != KDF_ALG {
            return Err(ApiError::bad_request(
                "invalid_kdf",
                format!("kdf.alg must be {KDF_ALG}"),
            ));
        }
        if kdf.iterations < self.config.min_kdf_iterations {
            return Err(ApiError::bad_request(
                "weak_kdf",
                format!(
                    "kdf.iterations must be at least {}",
                    self.config.min_kdf_iterations
                ),
            ));
        }
        if kdf.iterations > self.config.max_kdf_iterations {
            return Err(ApiError::bad_request(
                "invalid_kdf",
                format!(
                    "kdf.iterations must be at most {}",
                    self.config.max_kdf_iterations
                ),
            ));
        }
        if !b64::is_len(&kdf.salt, 16) {
            return Err(ApiError::bad_request(
                "invalid_kdf",
                "kdf.salt must be 16 bytes, base64url",
            ));
        }
        Ok(())
    }

    /// Validates everything, hashes the auth key, and stores the account.
    pub async fn register(&self, req: RegisterRequest) -> ApiResult<(String, i64)> {
        Username::parse(&req.username)?;
        parse_auth_key(&req.auth_key)?;
        self.check_kdf(&req.kdf)?;
        req.key_bundle.check()?;
        let checked = keys::parse_keys(&req.enc_public_key, &req.sign_public_key)?;
        let key_version = 1;
        keys::verify_sig(
            &checked.sign_key,
            &keys::self_sig_message(&req.username, key_version, &checked),
            &req.self_sig,
            "self_sig",
        )?;
        let fingerprint = keys::fingerprint(&req.username, &checked.enc_spki, &checked.sign_spki);

        // Cheap early answer for the common case; the unique index decides races.
        let name = req.username.clone();
        if self
            .db
            .read(move |c| users::by_name(c, &name))
            .await?
            .is_some()
        {
            return Err(taken());
        }
        let auth_hash = self.bcrypt_hash(req.auth_key).await?;
        let new = users::NewUser {
            username: req.username.clone(),
            auth_hash,
            kdf_alg: req.kdf.alg,
            kdf_iterations: i64::from(req.kdf.iterations),
            kdf_salt: req.kdf.salt,
            keys: users::PublishedKeys {
                key_version,
                enc_public_key: req.enc_public_key,
                sign_public_key: req.sign_public_key,
                self_sig: req.self_sig,
                fingerprint,
            },
            bundle_iv: req.key_bundle.iv,
            bundle_ct: req.key_bundle.ct,
            created_at: now_ms(),
        };
        match self.db.write(move |c| users::insert(c, &new)).await {
            Ok(_) => Ok((req.username, key_version)),
            Err(e) if e.is_unique_violation() => Err(taken()),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks the auth key and opens a session.
    pub async fn login(&self, req: LoginRequest) -> ApiResult<LoginResponse> {
        Username::parse(&req.username)?;
        parse_auth_key(&req.auth_key)?;
        let name = req.username.clone();
        let user = self.db.read(move |c| users::by_name(c, &name)).await?;
        let user = self.check_auth_key(user, req.auth_key).await?;
        // Only after the key checked out, so a guesser learns nothing from it.
        let uid = user.id;
        if self.db.read(move |c| admin::is_disabled(c, uid)).await? {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "this account has been disabled by an admin",
            ));
        }
        let pair = self.open_session(user.id, &user.username).await?;
        Ok(LoginResponse {
            username: user.username,
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
            key_version: user.keys.key_version,
            key_bundle: KeyBundle {
                iv: user.bundle_iv,
                ct: user.bundle_ct,
            },
            kdf: Kdf {
                alg: user.kdf_alg,
                iterations: user.kdf_iterations as u32,
                salt: user.kdf_salt,
            },
        })
    }

    /// `user` if `auth_key` is theirs; else `invalid_credentials`, after the same bcrypt
    /// work whether or not the user exists.
    async fn check_auth_key(
        &self,
        user: Option<users::User>,
        auth_key: String,
    ) -> ApiResult<users::User> {
        let hash = user
            .as_ref()
            .map_or_else(|| self.dummy_hash.clone(), |u| u.auth_hash.clone());
        let matches = self.bcrypt_verify(auth_key, hash).await?;
        match user {
            Some(user) if matches => Ok(user),
            _ => Err(ApiError::invalid_credentials()),
        }
    }

    /// For a sensitive change (key rotation): the caller must prove that they know the
    /// password now, not merely hold a token, by sending `auth_key` as at login. This is
    /// the cheap half, checked before the rest of the request: missing is 401
    /// `reauthentication_required`, malformed 400 `invalid_auth_key`.
    pub fn fresh_auth_key(auth_key: Option<String>) -> ApiResult<String> {
        let auth_key = auth_key.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "reauthentication_required",
                "this change needs auth_key, derived from the password now",
            )
        })?;
        parse_auth_key(&auth_key)?;
        Ok(auth_key)
    }

    /// The bcrypt half: `auth_key` (from [`Auth::fresh_auth_key`]) must be the caller's,
    /// else 401 `invalid_credentials` after the same work as a failed login.
    pub async fn reauthenticate(&self, who: &Principal, auth_key: String) -> ApiResult<()> {
        let uid = who.user_id;
        let user = self.db.read(move |c| users::by_id(c, uid)).await?;
        self.check_auth_key(user, auth_key).await.map(|_| ())
    }

    async fn open_session(&self, user_id: i64, username: &str) -> ApiResult<TokenPair> {
        let sid = new_session_id();
        let refresh = new_refresh_token();
        let hash = hash_refresh_token(&refresh);
        let now = now_ms();
        let expires = now + (self.config.refresh_ttl_secs as i64) * 1000;
        let sid_w = sid.clone();
        self.db
            .write(move |c| {
                sessions::create(c, &sid_w, user_id, &hash, now, expires)?;
                users::touch_last_seen(c, user_id, now)
            })
            .await?;
        let access = self
            .jwt
            .issue(username, user_id, &sid, now_secs())
            .map_err(ApiError::internal)?;
        Ok(TokenPair {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: self.jwt.ttl_secs(),
        })
    }

    /// Trades a live refresh token for a new pair; a reused one revokes its session.
    pub async fn refresh(&self, token: &str) -> ApiResult<TokenPair> {
        if token.is_empty() || token.len() > 128 {
            return Err(ApiError::unauthorized());
        }
        let presented = hash_refresh_token(token);
        let next = new_refresh_token();
        let next_hash = hash_refresh_token(&next);
        let now = now_ms();
        let outcome = self
            .db
            .write(move |c| {
                let r = sessions::refresh(c, &presented, &next_hash, now)?;
                let user = match &r {
                    sessions::Refresh::Rotated(s) if admin::is_disabled(c, s.user_id)? => {
                        // Rolls the rotation back: a disabled account gets no new token.
                        return Err(DbError::Aborted("account disabled".into()));
                    }
                    sessions::Refresh::Rotated(s) => {
                        users::touch_last_seen(c, s.user_id, now)?;
                        users::by_id(c, s.user_id)?
                    }
                    _ => None,
                };
                Ok((r, user))
            })
            .await;
        let outcome = match outcome {
            Err(DbError::Aborted(_)) => return Err(ApiError::unauthorized()),
            other => other?,
        };
        match outcome {
            (sessions::Refresh::Rotated(session), Some(user)) => {
                let access = self
                    .jwt
                    .issue(&user.username, user.id, &session.id, now_secs())
                    .map_err(ApiError::internal)?;
                Ok(TokenPair {
                    access_token: access,
                    refresh_token: next,
                    token_type: "Bearer",
                    expires_in: self.jwt.ttl_secs(),
                })
            }
            (
                sessions::Refresh::Reused {
                    session_id,
                    user_id,
                },
                _,
            ) => {
                tracing::warn!("a superseded refresh token was presented; its session is revoked");
                self.live
                    .sessions_ended(user_id, Ended::Sessions(&[session_id]));
                Err(ApiError::unauthorized())
            }
            _ => Err(ApiError::unauthorized()),
        }
    }

    /// Ends the caller's session (and the session of `refresh_token`, if it is theirs).
    pub async fn logout(&self, who: &Principal, refresh_token: Option<String>) -> ApiResult<()> {
        let sid = who.session_id.clone();
        let uid = who.user_id;
        let token_hash = refresh_token.map(|t| hash_refresh_token(&t));
        let now = now_ms();
        let ended = self
            .db
            .write(move |c| {
                sessions::revoke(c, &sid, "logout", now)?;
                let mut ended = vec![sid.clone()];
                if let Some(h) = &token_hash {
                    if let Some(other) = sessions::session_of_token(c, h)? {
                        if sessions::get(c, &other)?.is_some_and(|s| s.user_id == uid) {
                            sessions::revoke(c, &other, "logout", now)?;
                            ended.push(other);
                        }
                    }
                }
                Ok(ended)
            })
            .await?;
        self.live.sessions_ended(uid, Ended::Sessions(&ended));
        Ok(())
    }

    /// Ends every session of the caller.
    pub async fn logout_all(&self, who: &Principal) -> ApiResult<usize> {
        let uid = who.user_id;
        let now = now_ms();
        let n = self
            .db
            .write(move |c| sessions::revoke_all(c, uid, "logout-all", now))
            .await?;
        self.live.sessions_ended(uid, Ended::All);
        Ok(n)
    }

    /// Changes the caller's password: checks the new parameters like registration, then
    /// the current auth key (401 `invalid_credentials` after the same work as a login),
    /// then in one transaction replaces the auth hash, the KDF and the wrapped bundle and
    /// revokes every other session of the user; their sockets close after the commit. The
    /// caller's session (the one `refresh_token` belongs to) stays, tokens and all.
    pub async fn change_password(&self, who: &Principal, req: PasswordChange) -> ApiResult<()> {
        parse_auth_key(&req.auth_key)?;
        parse_auth_key(&req.new_auth_key)?;
        self.check_kdf(&req.kdf)?;
        req.key_bundle.check()?;
        if req.refresh_token.is_empty() || req.refresh_token.len() > 128 {
            return Err(not_this_session());
        }
        let sid = who.session_id.clone();
        let token = hash_refresh_token(&req.refresh_token);
        if !self
            .db
            .read(move |c| sessions::is_current_token(c, &sid, &token))
            .await?
        {
            return Err(not_this_session());
        }
        self.reauthenticate(who, req.auth_key).await?;
        let auth_hash = self.bcrypt_hash(req.new_auth_key).await?;
        let (uid, keep) = (who.user_id, who.session_id.clone());
        let now = now_ms();
        let ended = self
            .db
            .write(move |c| {
                let kdf = (
                    req.kdf.alg.as_str(),
                    i64::from(req.kdf.iterations),
                    req.kdf.salt.as_str(),
                );
                if !users::set_password(
                    c,
                    uid,
                    &auth_hash,
                    kdf,
                    &req.key_bundle.iv,
                    &req.key_bundle.ct,
                )? {
                    return Err(DbError::Aborted("no such account".into()));
                }
                sessions::revoke_all_but(c, uid, &keep, "password changed", now)
            })
            .await;
        let ended = match ended {
            Err(DbError::Aborted(_)) => return Err(ApiError::unauthorized()),
            other => other?,
        };
        self.live.sessions_ended(uid, Ended::Sessions(&ended));
        Ok(())
    }

    /// The caller's live sessions, newest first; `current` marks the caller's own.
    pub async fn sessions(&self, who: &Principal) -> ApiResult<Vec<SessionView>> {
        let uid = who.user_id;
        let rows = self
            .db
            .read(move |c| sessions::live_of(c, uid, now_ms()))
            .await?;
        Ok(rows
            .into_iter()
            .map(|s| SessionView {
                current: s.id == who.session_id,
                id: s.id,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                expires_at: s.expires_at,
            })
            .collect())
    }

    /// Revokes the caller's session `id` (their current one included) and closes its
    /// sockets; 404 for an id that is not one of the caller's live sessions.
    pub async fn revoke_session(&self, who: &Principal, id: &str) -> ApiResult<()> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::not_found("session"));
        }
        let (uid, sid) = (who.user_id, id.to_owned());
        let now = now_ms();
        let revoked = self
            .db
            .write(move |c| match sessions::get(c, &sid)? {
                Some(s) if s.user_id == uid && s.is_live(now) => {
                    sessions::revoke(c, &sid, "revoked by owner", now)?;
                    Ok(true)
                }
                _ => Ok(false),
            })
            .await?;
        if !revoked {
            return Err(ApiError::not_found("session"));
        }
        self.live
            .sessions_ended(uid, Ended::Sessions(&[id.to_owned()]));
        Ok(())
    }

    /// Deletes the caller's account once `auth_key` proves the password (401
    /// `invalid_credentials` otherwise, nothing changed). In one transaction: the account
    /// becomes a tombstone (name reserved, keys, bundle, auth hash and key-change log
    /// gone), its sessions are deleted, and every undelivered message to or from it loses
    /// its ciphertext. Then its sockets close. Its uploads are the caller's to remove
    /// (`files`), after this returns.
    pub async fn delete_account(&self, who: &Principal, auth_key: &str) -> ApiResult<()> {
        parse_auth_key(auth_key)?;
        self.reauthenticate(who, auth_key.to_owned()).await?;
        let uid = who.user_id;
        let now = now_ms();
        let deleted = self
            .db
            .write(move |c| {
                if !users::delete_account(c, uid, now)? {
                    return Ok(false);
                }
                sessions::delete_all(c, uid)?;
                messages::delete_undelivered_of(c, uid, now)?;
                Ok(true)
            })
            .await?;
        if !deleted {
            return Err(ApiError::unauthorized());
        }
        self.live.account_deleted(uid, &who.username);
        Ok(())
    }

    /// Verifies a bearer token and that its session is still live.
    pub async fn authenticate(&self, token: &str) -> ApiResult<Principal> {
        let claims = self.jwt.verify(token).ok_or_else(ApiError::unauthorized)?;
        let sid = claims.sid.clone();
        let session = self.db.read(move |c| sessions::get(c, &sid)).await?;
        match session {
            Some(s) if s.is_live(now_ms()) && s.user_id == claims.uid => Ok(Principal {
                user_id: claims.uid,
                username: claims.sub,
                session_id: claims.sid,
            }),
            _ => Err(ApiError::unauthorized()),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn not_this_session() -> ApiError {
    ApiError::bad_request(
        "invalid_request",
        "refresh_token must be the current refresh token of this session",
    )
}

fn taken() -> ApiError {
    ApiError::conflict("username_taken", "that username is taken")
}
