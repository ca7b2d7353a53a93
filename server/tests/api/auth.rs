//! Accounts and sessions: register, prelogin, login, refresh, logout — and every way to get
//! them wrong.

use std::sync::OnceLock;

use securechat_client::{b64, Identity, Method, RegisterRequest};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, ITERATIONS, PASSWORD, TEST_JWT_SECRET};

/// One identity shared by tests that need a valid body but not distinct keys (RSA keygen is slow).
fn shared_identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| Identity::generate().expect("identity"))
}

fn valid_body(username: &str) -> Value {
    let req =
        RegisterRequest::build(username, PASSWORD, ITERATIONS, shared_identity()).expect("request");
    serde_json::to_value(req).expect("json")
}

#[tokio::test]
async fn a_user_registers_logs_in_and_unwraps_their_keys() {
    let app = spawn_app().await;
    let reg = app.register("alice").await;
    assert_eq!(reg.key_version, 1);
    // login() prelogins, derives, unwraps and checks the directory's keys and self_sig.
    let session = app.client.login("alice", PASSWORD).await.expect("login");
    assert_eq!(session.username, "alice");
    assert_eq!(
        session.identity.public_keys().expect("pk"),
        reg.identity.public_keys().expect("pk")
    );
    let me = app.client.me(&session.access_token).await.expect("me");
    assert_eq!(me.username, "alice");
    assert!(!me.is_admin);
}

#[tokio::test]
async fn the_server_stores_a_bcrypt_hash_and_never_the_auth_key() {
    let app = spawn_app().await;
    let body = valid_body("alice");
    let r = app
        .client
        .request(Method::POST, "/api/auth/register", None, Some(&body))
        .await
        .expect("send");
    assert_eq!(r.status, 201, "{}", r.text());
    let (hash, ct): (String, String) = app
        .sqlite()
        .query_row(
            "SELECT auth_hash, bundle_ct FROM users WHERE username='alice'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert!(hash.starts_with("$2b$04$"), "{hash}");
    let auth_key = body["auth_key"].as_str().expect("auth_key");
    let db_bytes = std::fs::read(app.db_path()).unwrap_or_default();
    let wal = std::fs::read(app.db_path().with_extension("db-wal")).unwrap_or_default();
    for haystack in [&db_bytes, &wal] {
        assert!(
            !haystack
                .windows(auth_key.len())
                .any(|w| w == auth_key.as_bytes()),
            "auth_key stored in clear"
        );
    }
    assert_eq!(
        ct,
        body["key_bundle"]["ct"].as_str().expect("ct"),
        "bundle kept byte for byte"
    );
}

#[tokio::test]
async fn registering_a_taken_name_gives_409_and_keeps_the_first_account() {
    let app = spawn_app().await;
    app.register("alice").await;
    let err = app
        .client
        .register("alice", "another password entirely", ITERATIONS)
        .await
        .expect_err("must be refused");
    assert!(err.is_api(409, "username_taken"), "{err}");
    assert_eq!(app.count("users"), 1);
    app.client
        .login("alice", PASSWORD)
        .await
        .expect("first account still logs in");
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_name_give_one_201_and_409s() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let body = valid_body("racer");
        tasks.push(tokio::spawn(async move {
            client
                .request(Method::POST, "/api/auth/register", None, Some(&body))
                .await
                .expect("send")
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let r = t.await.expect("join");
        if r.status == 409 {
            assert_eq!(r.error().expect("error body").error.code, "username_taken");
        }
        statuses.push(r.status);
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(app.count("users"), 1);
    assert_eq!(app.count("key_changes"), 1);
}

#[tokio::test]
async fn a_wrong_auth_key_and_an_unknown_user_get_the_same_401_body() {
    let app = spawn_app().await;
    app.register("alice").await;
    let wrong = app
        .post(
            "/api/auth/login",
            None,
            &json!({"username": "alice", "auth_key": b64::encode([7u8; 32])}),
        )
        .await;
    let unknown = app
        .post(
            "/api/auth/login",
            None,
            &json!({"username": "nobody", "auth_key": b64::encode([7u8; 32])}),
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(
        wrong.error().expect("body").error.code,
        "invalid_credentials"
    );
    let err = app
        .client
        .login("alice", "not the password at all")
        .await
        .expect_err("wrong password");
    assert!(err.is_api(401, "invalid_credentials"), "{err}");
    assert_eq!(app.count("sessions"), 0, "no session for failed logins");
}

#[tokio::test]
async fn prelogin_for_an_unknown_user_is_deterministic_and_looks_like_a_real_answer() {
    let app = spawn_app().await;
    app.register("alice").await;
    let real = app.client.prelogin("alice").await.expect("real");
    let fake1 = app.client.prelogin("nobody").await.expect("fake");
    let fake2 = app.client.prelogin("nobody").await.expect("fake");
    let other = app.client.prelogin("someone").await.expect("fake");
    assert_eq!(fake1, fake2, "deterministic");
    assert_ne!(fake1.salt, other.salt, "per name");
    assert_eq!(fake1.alg, real.alg);
    assert_eq!(b64::decode(&fake1.salt).expect("b64").len(), 16);
    assert_eq!(real.iterations, ITERATIONS);
    assert_eq!(fake1.iterations, 600_000, "the browser default");
    // And it survives a restart (the HMAC key is kept in the data dir).
    let app = app.restart().await;
    assert_eq!(app.client.prelogin("nobody").await.expect("fake"), fake1);
}

async fn post(app: &crate::helpers::TestApp, path: &str, body: &Value) -> (u16, String) {
    let r = app.post(path, None, body).await;
    let code = r.error().map(|e| e.error.code).unwrap_or_default();
    (r.status, code)
}

#[tokio::test]
async fn registration_refuses_bad_input_with_a_clear_code_and_writes_nothing() {
    let app = spawn_app().await;
    let good = valid_body("alice");
    let mut cases: Vec<(Value, u16, &str, &str)> = Vec::new();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    for bad in [
        "al",
        "Alice",
        "alice!",
        "a b c",
        &"x".repeat(33),
        "ålice",
        "",
    ] {
        cases.push((
            with(&|v| v["username"] = json!(bad)),
            400,
            "invalid_username",
            "bad name",
        ));
    }
    for len in [0usize, 16, 31, 33, 64] {
        cases.push((
            with(&|v| v["auth_key"] = json!(b64::encode(vec![1u8; len]))),
            400,
            "invalid_auth_key",
            "auth_key length",
        ));
    }
    cases.push((
        with(&|v| v["auth_key"] = json!("AAAA=")),
        400,
        "invalid_auth_key",
        "padded b64",
    ));
    cases.push((
        with(&|v| v["kdf"]["iterations"] = json!(ITERATIONS - 1)),
        400,
        "weak_kdf",
        "kdf below floor",
    ));
    cases.push((
        with(&|v| v["kdf"]["alg"] = json!("MD5")),
        400,
        "invalid_kdf",
        "kdf alg",
    ));
    cases.push((
        with(&|v| v["kdf"]["salt"] = json!(b64::encode([0u8; 8]))),
        400,
        "invalid_kdf",
        "short salt",
    ));
    cases.push((
        with(&|v| v["enc_public_key"] = json!(b64::encode(b"not a key"))),
        400,
        "invalid_key",
        "enc key garbage",
    ));
    cases.push((
        with(&|v| v["enc_public_key"] = v["sign_public_key"].clone()),
        400,
        "invalid_key",
        "P-256 key as the RSA key",
    ));
    cases.push((
        with(&|v| v["sign_public_key"] = v["enc_public_key"].clone()),
        400,
        "invalid_key",
        "RSA key as the signing key",
    ));
    cases.push((
        with(&|v| v["self_sig"] = json!(b64::encode([0u8; 64]))),
        400,
        "invalid_signature",
        "zero signature",
    ));
    // A valid signature by alice over her keys does not cover another name.
    let bob_sig = valid_body("bobby")["self_sig"].clone();
    cases.push((
        with(&|v| v["self_sig"] = bob_sig.clone()),
        400,
        "invalid_signature",
        "sig for another name",
    ));
    cases.push((
        with(&|v| v["key_bundle"]["iv"] = json!(b64::encode([0u8; 8]))),
        400,
        "invalid_key_bundle",
        "short iv",
    ));
    cases.push((
        with(&|v| v["extra"] = json!(1)),
        400,
        "invalid_request",
        "unknown field",
    ));
    cases.push((
        with(&|v| {
            v.as_object_mut().expect("obj").remove("self_sig");
        }),
        400,
        "invalid_request",
        "missing field",
    ));
    for (body, status, code, what) in cases {
        let (got_status, got_code) = post(&app, "/api/auth/register", &body).await;
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "case: {what}"
        );
    }

    // A 1024-bit RSA key, correctly self-signed, is still refused.
    let mut weak = shared_identity().clone();
    weak.enc = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).expect("rsa");
    let weak_body = serde_json::to_value(
        RegisterRequest::build("weakling", PASSWORD, ITERATIONS, &weak).expect("req"),
    )
    .expect("json");
    assert_eq!(
        post(&app, "/api/auth/register", &weak_body).await,
        (400, "invalid_key".into())
    );

    let raw = app
        .client
        .request_bytes(
            Method::POST,
            "/api/auth/register",
            None,
            Some("application/json"),
            Some(b"{\"username\": \"alice\",".to_vec()),
        )
        .await
        .expect("send");
    assert_eq!(raw.status, 400);
    assert_eq!(raw.error().expect("body").error.code, "invalid_json");

    assert_eq!(app.count("users"), 0, "no row written by any bad request");
    assert_eq!(app.count("key_changes"), 0);
}

#[tokio::test]
async fn refresh_rotates_the_token_and_a_reused_one_revokes_the_session() {
    let app = spawn_app().await;
    let mut s = app.register_and_login("alice").await;
    let first_refresh = s.refresh_token.clone();
    app.client.refresh_session(&mut s).await.expect("refresh");
    assert_ne!(s.refresh_token, first_refresh);
    app.client
        .me(&s.access_token)
        .await
        .expect("new access token works");

    // The old refresh token is dead, and presenting it kills the session it belonged to.
    let err = app.client.refresh(&first_refresh).await.expect_err("reuse");
    assert!(err.is_api(401, "unauthorized"), "{err}");
    let err = app
        .client
        .refresh(&s.refresh_token)
        .await
        .expect_err("session revoked");
    assert!(err.is_api(401, "unauthorized"), "{err}");
    let err = app
        .client
        .me(&s.access_token)
        .await
        .expect_err("access dead too");
    assert!(err.is_api(401, "unauthorized"), "{err}");

    let err = app
        .client
        .refresh("garbage")
        .await
        .expect_err("unknown token");
    assert!(err.is_api(401, "unauthorized"), "{err}");
}

#[tokio::test]
async fn logout_kills_that_sessions_access_and_refresh_tokens_only() {
    let app = spawn_app().await;
    let a = app.register_and_login("alice").await;
    let b = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect("second device");
    app.client
        .logout(&a.access_token, Some(&a.refresh_token))
        .await
        .expect("logout");
    app.assert_session_dead(&a).await;
    app.client
        .me(&b.access_token)
        .await
        .expect("other device unaffected");
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let app = spawn_app().await;
    let a = app.register_and_login("alice").await;
    let b = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect("second device");
    app.client
        .logout_all(&a.access_token)
        .await
        .expect("logout-all");
    app.assert_session_dead(&a).await;
    app.assert_session_dead(&b).await;
}

fn forge(claims: &Value, secret: &[u8], alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("encode")
}

#[tokio::test]
async fn missing_expired_and_forged_tokens_get_401() {
    let app = spawn_app().await;
    let s = app.register_and_login("alice").await;
    let parts: Vec<&str> = s.access_token.split('.').collect();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .expect("b64"),
    )
    .expect("json");
    let secret = TEST_JWT_SECRET.as_bytes();
    let hs256 = jsonwebtoken::Algorithm::HS256;
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let none_header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"alg":"none","typ":"JWT"}"#,
    );
    let edited = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&with("sub", json!("mallory"))).expect("json"),
    );
    let now = claims["iat"].as_u64().expect("iat");
    let tokens = vec![
        ("alg none", format!("{none_header}.{}.", parts[1])),
        (
            "edited payload",
            format!("{}.{edited}.{}", parts[0], parts[2]),
        ),
        (
            "wrong aud",
            forge(&with("aud", json!("other")), secret, hs256),
        ),
        (
            "wrong iss",
            forge(&with("iss", json!("other")), secret, hs256),
        ),
        (
            "wrong typ",
            forge(&with("typ", json!("refresh")), secret, hs256),
        ),
        (
            "expired",
            forge(&with("exp", json!(now - 120)), secret, hs256),
        ),
        (
            "other secret",
            forge(&claims, b"a-completely-different-secret-0123456789", hs256),
        ),
        (
            "HS512",
            forge(&claims, secret, jsonwebtoken::Algorithm::HS512),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    // Sanity: re-signing the genuine claims with the real secret works, so each refusal
    // above is down to the one thing changed.
    app.client
        .me(&forge(&claims, secret, hs256))
        .await
        .expect("genuine claims re-signed are accepted");
    for (what, token) in tokens {
        let err = app.client.me(&token).await.expect_err(what);
        assert!(err.is_api(401, "unauthorized"), "{what}: {err}");
    }
    let r = app
        .client
        .request(Method::GET, "/api/me", None, None)
        .await
        .expect("send");
    assert_eq!(r.status, 401, "no token at all");
}

/// The answer to a logout tells the browser to drop this origin's cache and storage;
/// other answers do not.
#[tokio::test]
async fn logout_and_logout_all_answers_clear_the_site_data() {
    let app = spawn_app().await;
    let a = app.register_and_login("alice").await;
    let b = app.client.login("alice", PASSWORD).await.expect("second");
    let c = app.client.login("alice", PASSWORD).await.expect("third");
    let me = app
        .client
        .request(Method::GET, "/api/me", Some(&c.access_token), None)
        .await
        .expect("send");
    assert_eq!(me.status, 200);
    assert_eq!(me.header("clear-site-data"), None);

    for (path, s) in [("/api/auth/logout", &a), ("/api/auth/logout-all", &b)] {
        let r = app
            .client
            .request(Method::POST, path, Some(&s.access_token), None)
            .await
            .expect("send");
        assert_eq!(r.status, 204, "{path}");
        assert_eq!(r.header("clear-site-data"), Some("\"cache\""), "{path}");
    }
}
