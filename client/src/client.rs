//! The async HTTP client of the REST contract (reqwest; `http://`, or `https://` with the
//! [`Trust`] it was made with): typed calls that check the promised status codes, the
//! logged-in [`Session`], key rotation, and a raw [`Client::request`] for negative tests.

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use rustls::ClientConfig;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{
    ErrorBody, KeyChanges, LoginRequest, LoginResponse, Me, PreloginResponse, Tokens, UserKeys,
    UserList, UserVersion,
};
use crate::bundle::unwrap_bundle;
use crate::kdf::{derive_keys, MIN_ITERATIONS};
use crate::report::{ReportBody, ReportReceipt};
use crate::requests::{KdfParams, RegisterRequest, RotateRequest};
use crate::tls::Trust;
use crate::{b64, Error, Identity, Result};

/// How long an idle HTTP connection is kept for reuse: under the server's default
/// keep-alive idle timeout (5 s).
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(4);

/// A securechat server at a base URL such as `http://127.0.0.1:8080`.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Server certificates accepted over `https://` and `wss://`.
    trust: Trust,
    base: String,
    /// The fewest KDF iterations a prelogin answer may ask for (see [`KdfParams::check`]).
    min_kdf_iterations: u32,
}

/// An answer as it came, whatever its status.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The contract error body, when the body is one.
    pub fn error(&self) -> Option<ErrorBody> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Parse the body as `T` if the status is `expected`; otherwise the matching error.
    pub fn expect<T: DeserializeOwned>(&self, expected: u16) -> Result<T> {
        self.expect_status(expected)?;
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Decode(format!(
                "HTTP {} body does not have the expected shape ({e}): {}",
                self.status,
                truncate(&self.text())
            ))
        })
    }

    /// Ok if the status is `expected`; otherwise [`Error::Api`] for a contract error body,
    /// [`Error::UnexpectedStatus`] for anything else.
    pub fn expect_status(&self, expected: u16) -> Result<()> {
        if self.status == expected {
            return Ok(());
        }
        if !(200..300).contains(&self.status) {
            if let Some(ErrorBody { error }) = self.error() {
                return Err(Error::Api {
                    status: self.status,
                    code: error.code,
                    message: error.message,
                });
            }
        }
        Err(Error::UnexpectedStatus {
            status: self.status,
            expected,
            body: truncate(&self.text()),
        })
    }
}

fn truncate(text: &str) -> String {
    const MAX: usize = 2000;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Percent-encode one path segment (everything but RFC 3986 unreserved characters).
pub fn path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A user just registered, with the keys that were uploaded.
#[derive(Clone, Debug)]
pub struct Registered {
    pub username: String,
    pub key_version: u32,
    pub identity: Identity,
}

/// A logged-in user: tokens, the unwrapped keys, and the kek (needed to rotate keys).
#[derive(Clone)]
pub struct Session {
    pub username: String,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub key_version: u32,
    pub identity: Identity,
    pub kek: [u8; 32],
    pub kdf: KdfParams,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("username", &self.username)
            .field("key_version", &self.key_version)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Take the tokens of a refresh.
    pub fn apply_tokens(&mut self, tokens: Tokens) {
        self.access_token = tokens.access_token;
        self.refresh_token = tokens.refresh_token;
        self.expires_in = tokens.expires_in;
    }

    /// The fingerprint of the session's keys, computed locally.
    pub fn fingerprint(&self) -> Result<String> {
        self.identity.fingerprint(&self.username)
    }

    /// `(auth_key, kek)` derived from `password` now, with the KDF parameters of the login
    /// (a rotation proves the password with the auth key, PROTOCOL.md §4.3).
    pub fn derive(&self, password: &str) -> Result<([u8; 32], [u8; 32])> {
        let salt = b64::decode(&self.kdf.salt)?;
        Ok(derive_keys(password, &salt, self.kdf.iterations))
    }
}

impl Client {
    /// A client for the server at `base_url` (`http://host:port` or `https://name`,
    /// optional trailing `/`), trusting the public web PKI over TLS.
    pub fn new(base_url: &str) -> Result<Client> {
        Self::with_trust(base_url, Trust::public_roots()?)
    }

    /// A client for the server at `base_url` accepting the server certificates `trust`
    /// accepts, over HTTPS and over the WebSocket alike.
    pub fn with_trust(base_url: &str, trust: Trust) -> Result<Client> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Drop idle pooled connections before the server does (its
            // `server.keepalive_idle_secs` is 5 s by default): a request written onto a
            // connection the server is closing at that instant fails with a connection
            // error. Caddy's upstream keep-alive is 4 s for the same reason.
            .pool_idle_timeout(POOL_IDLE)
            .use_preconfigured_tls(ClientConfig::clone(&trust.config()))
            .build()?;
        Ok(Client {
            http,
            trust,
            base: base_url.trim_end_matches('/').to_owned(),
            min_kdf_iterations: MIN_ITERATIONS,
        })
    }

    /// The same client accepting prelogin answers with as few as `n` KDF iterations (the
    /// default is the browser's floor, [`MIN_ITERATIONS`]); for test servers that
    /// register cheap accounts.
    pub fn with_min_kdf_iterations(mut self, n: u32) -> Client {
        self.min_kdf_iterations = n;
        self
    }

    /// The server certificates this client accepts.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The underlying reqwest client, for requests this crate does not model.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Any request with an optional Bearer token and optional JSON body; never turns a
    /// status into an error (only transport failures are errors).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        json: Option<&Value>,
    ) -> Result<RawResponse> {
        let body = match json {
            Some(v) => Some(serde_json::to_vec(v)?),
            None => None,
        };
        let content_type = body.as_ref().map(|_| "application/json");
        self.request_bytes(method, path, token, content_type, body)
            .await
    }

    /// Like [`Client::request`] with arbitrary body bytes and Content-Type (malformed JSON,
    /// oversize bodies, wrong media types).
    pub async fn request_bytes(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: &impl serde::Serialize,
        expected: u16,
    ) -> Result<T> {
        let body = serde_json::to_value(body)?;
        self.request(Method::POST, path, token, Some(&body))
            .await?
            .expect(expected)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, token: &str) -> Result<T> {
        self.request(Method::GET, path, Some(token), None)
            .await?
            .expect(200)
    }

    /// `POST /api/auth/prelogin`: the KDF parameters for `username`.
    pub async fn prelogin(&self, username: &str) -> Result<KdfParams> {
        let resp: PreloginResponse = self
            .post(
                "/api/auth/prelogin",
                None,
                &serde_json::json!({ "username": username }),
                200,
            )
            .await?;
        Ok(resp.kdf)
    }

    /// Generate an identity, derive, wrap, sign and `POST /api/auth/register` (201).
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        iterations: u32,
    ) -> Result<Registered> {
        let identity = Identity::generate()?;
        let req = RegisterRequest::build(username, password, iterations, &identity)?;
        let resp = self.register_request(&req).await?;
        if resp.username != username || resp.key_version != 1 {
            return Err(Error::Decode(format!(
                "register answered {resp:?}, expected {username} v1"
            )));
        }
        Ok(Registered {
            username: resp.username,
            key_version: resp.key_version,
            identity,
        })
    }

    /// `POST /api/auth/register` with a prepared (possibly doctored) body.
    pub async fn register_request(&self, req: &RegisterRequest) -> Result<UserVersion> {
        self.post("/api/auth/register", None, req, 201).await
    }

    /// `POST /api/auth/login` with a raw auth key; no unwrapping or checks.
    pub async fn login_with_auth_key(
        &self,
        username: &str,
        auth_key: &[u8],
    ) -> Result<LoginResponse> {
        let body = LoginRequest {
            username: username.to_owned(),
            auth_key: b64::encode(auth_key),
        };
        self.post("/api/auth/login", None, &body, 200).await
    }

    /// Prelogin, check the KDF parameters ([`KdfParams::check`]: refused with
    /// [`Error::Kdf`] before deriving anything), derive, login, unwrap the bundle, and
    /// check the unwrapped keys against the directory (`GET /api/users/{name}/keys`: same
    /// SPKIs, same version, valid self-signature, fingerprint as computed here).
    pub async fn login(&self, username: &str, password: &str) -> Result<Session> {
        let kdf = self.prelogin(username).await?;
        let salt = kdf.check(self.min_kdf_iterations)?;
        let (auth_key, kek) = derive_keys(password, &salt, kdf.iterations);
        let resp = self.login_with_auth_key(username, &auth_key).await?;
        let identity = unwrap_bundle(&kek, username, resp.key_version, &resp.key_bundle)?;
        let session = Session {
            username: username.to_owned(),
            access_token: resp.access_token,
            refresh_token: resp.refresh_token,
            expires_in: resp.expires_in,
            key_version: resp.key_version,
            identity,
            kek,
            kdf,
        };
        self.check_directory(&session).await?;
        Ok(session)
    }

    /// Check that the directory publishes exactly the session's public keys.
    pub async fn check_directory(&self, session: &Session) -> Result<()> {
        let entry = self.keys(&session.access_token, &session.username).await?;
        if entry.username != session.username {
            return Err(Error::Verification(format!(
                "directory answered for {:?}, asked for {:?}",
                entry.username, session.username
            )));
        }
        if entry.key_version != session.key_version {
            return Err(Error::Verification(format!(
                "directory has key version {}, the bundle is version {}",
                entry.key_version, session.key_version
            )));
        }
        let published = entry.verify()?;
        if published != session.identity.public_keys()? {
            return Err(Error::Verification(
                "the directory's public keys are not those of the unwrapped private keys".into(),
            ));
        }
        Ok(())
    }

    /// `POST /api/auth/refresh`: new tokens; the old refresh token is dead.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        self.post(
            "/api/auth/refresh",
            None,
            &serde_json::json!({ "refresh_token": refresh_token }),
            200,
        )
        .await
    }

    /// Refresh and store the new tokens in the session.
    pub async fn refresh_session(&self, session: &mut Session) -> Result<()> {
        let tokens = self.refresh(&session.refresh_token).await?;
        session.apply_tokens(tokens);
        Ok(())
    }

    /// `POST /api/auth/logout` (204), revoking this access token and, if given, the
    /// refresh token.
    pub async fn logout(&self, access_token: &str, refresh_token: Option<&str>) -> Result<()> {
        let body = refresh_token.map(|t| serde_json::json!({ "refresh_token": t }));
        self.request(
            Method::POST,
            "/api/auth/logout",
            Some(access_token),
            body.as_ref(),
        )
        .await?
        .expect_status(204)
    }

    /// `POST /api/auth/logout-all` (204): every session of the user is dead.
    pub async fn logout_all(&self, access_token: &str) -> Result<()> {
        self.request(
            Method::POST,
            "/api/auth/logout-all",
            Some(access_token),
            None,
        )
        .await?
        .expect_status(204)
    }

    /// `POST /api/reports` (201): report a received message, disclosing its key and
    /// plaintext (build the body with [`crate::report::disclose`]).
    pub async fn report(&self, access_token: &str, body: &ReportBody) -> Result<ReportReceipt> {
        self.post("/api/reports", Some(access_token), body, 201)
            .await
    }

    /// `GET /api/me`.
    pub async fn me(&self, access_token: &str) -> Result<Me> {
        self.get("/api/me", access_token).await
    }

    /// `GET /api/users?query=&cursor=`.
    pub async fn users(
        &self,
        access_token: &str,
        query: &str,
        cursor: Option<&str>,
    ) -> Result<UserList> {
        let mut path = format!("/api/users?query={}", path_segment(query));
        if let Some(c) = cursor {
            path.push_str(&format!("&cursor={}", path_segment(c)));
        }
        self.get(&path, access_token).await
    }

    /// `GET /api/users/{name}/keys` (not verified; see [`UserKeys::verify`]).
    pub async fn keys(&self, access_token: &str, name: &str) -> Result<UserKeys> {
        self.get(
            &format!("/api/users/{}/keys", path_segment(name)),
            access_token,
        )
        .await
    }

    /// `GET /api/users/{name}/key-changes`.
    pub async fn key_changes(&self, access_token: &str, name: &str) -> Result<KeyChanges> {
        self.get(
            &format!("/api/users/{}/key-changes", path_segment(name)),
            access_token,
        )
        .await
    }

    /// Generate new keys and `POST /api/keys/rotate` (version + 1, `prev_sig` by the old
    /// key, the password proven by the auth key derived from `password` now, the bundle
    /// wrapped under the kek derived with it); on success the session holds the new keys
    /// and version.
    pub async fn rotate_keys(&self, session: &mut Session, password: &str) -> Result<UserVersion> {
        let new = Identity::generate()?;
        let new_version = session
            .key_version
            .checked_add(1)
            .ok_or_else(|| Error::Decode("key version overflow".into()))?;
        let (auth_key, kek) = session.derive(password)?;
        let req = RotateRequest::build(
            &session.username,
            new_version,
            &session.identity,
            &new,
            &kek,
            &auth_key,
        )?;
        let resp = self.rotate_request(&session.access_token, &req).await?;
        if resp.key_version != new_version {
            return Err(Error::Decode(format!(
                "rotate answered version {}, expected {new_version}",
                resp.key_version
            )));
        }
        session.identity = new;
        session.key_version = new_version;
        session.kek = kek;
        Ok(resp)
    }

    /// `POST /api/keys/rotate` with a prepared (possibly doctored) body.
    pub async fn rotate_request(
        &self,
        access_token: &str,
        req: &RotateRequest,
    ) -> Result<UserVersion> {
        self.post("/api/keys/rotate", Some(access_token), req, 200)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("alice_1.x-y~"), "alice_1.x-y~");
        assert_eq!(path_segment("a/b?c d%"), "a%2Fb%3Fc%20d%25");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_map_to_errors() {
        let e = raw(
            409,
            r#"{"error":{"code":"username_taken","message":"taken"}}"#,
        )
        .expect::<Value>(201)
        .unwrap_err();
        assert!(e.is_api(409, "username_taken"), "{e}");
        let e = raw(502, "bad gateway").expect::<Value>(200).unwrap_err();
        assert!(matches!(e, Error::UnexpectedStatus { status: 502, .. }));
        assert_eq!(e.code(), None);
        let e = raw(200, "{}").expect::<Value>(201).unwrap_err();
        assert!(matches!(
            e,
            Error::UnexpectedStatus {
                status: 200,
                expected: 201,
                ..
            }
        ));
        let e = raw(200, "{}").expect::<Me>(200).unwrap_err();
        assert!(matches!(e, Error::Decode(_)));
        assert!(raw(204, "").expect_status(204).is_ok());
    }
}
