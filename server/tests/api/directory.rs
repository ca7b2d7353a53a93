//! The key directory: listing, public keys and fingerprints, key history and rotation.

use securechat_client::{b64, fingerprint, Identity, Method, RegisterRequest, RotateRequest};
use serde_json::json;

use crate::helpers::{spawn_app, ITERATIONS, PASSWORD};

#[tokio::test]
async fn the_directory_serves_the_keys_and_fingerprint_the_client_computes() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register("bob.b").await;
    let keys = app
        .client
        .keys(&alice.access_token, "bob.b")
        .await
        .expect("keys");
    let pk = bob.identity.public_keys().expect("pk");
    assert_eq!(keys.enc_public_key, b64::encode(&pk.enc_spki));
    assert_eq!(keys.sign_public_key, b64::encode(&pk.sign_spki));
    assert_eq!(keys.key_version, 1);
    assert_eq!(
        keys.fingerprint,
        fingerprint("bob.b", &pk.enc_spki, &pk.sign_spki)
    );
    assert_eq!(keys.fingerprint.len(), 30);
    keys.verify().expect("self_sig verifies");

    let missing = app
        .client
        .request(
            Method::GET,
            "/api/users/nobody/keys",
            Some(&alice.access_token),
            None,
        )
        .await
        .expect("send");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error().expect("body").error.code, "not_found");
    let anonymous = app
        .client
        .request(Method::GET, "/api/users/bob.b/keys", None, None)
        .await
        .expect("send");
    assert_eq!(
        anonymous.status, 401,
        "the directory needs a signed-in caller"
    );
}

#[tokio::test]
async fn the_user_list_filters_by_prefix_and_pages_with_a_cursor() {
    let app = spawn_app().await;
    let me = app.register_and_login("zed").await;
    // Distinct names, one identity: keys may repeat, self-signatures cannot.
    let id = Identity::generate().expect("id");
    for i in 0..55 {
        let req = RegisterRequest::build(&format!("user_{i:02}"), PASSWORD, ITERATIONS, &id)
            .expect("req");
        app.client.register_request(&req).await.expect("register");
    }
    let req = RegisterRequest::build("userx", PASSWORD, ITERATIONS, &id).expect("req");
    app.client.register_request(&req).await.expect("register");

    let page1 = app
        .client
        .users(&me.access_token, "user_", None)
        .await
        .expect("page 1");
    assert_eq!(page1.users.len(), 50);
    assert_eq!(page1.users[0].username, "user_00");
    let cursor = page1.next_cursor.clone().expect("more pages");
    let page2 = app
        .client
        .users(&me.access_token, "user_", Some(&cursor))
        .await
        .expect("page 2");
    let names: Vec<_> = page2.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(
        names,
        ["user_50", "user_51", "user_52", "user_53", "user_54"]
    );
    assert!(page2.next_cursor.is_none());
    // `_` is literal, not a LIKE wildcard: "userx" is not under "user_".
    assert!(!page1
        .users
        .iter()
        .chain(&page2.users)
        .any(|u| u.username == "userx"));

    let bad = app
        .client
        .request(
            Method::GET,
            "/api/users?query=%27%3B--",
            Some(&me.access_token),
            None,
        )
        .await
        .expect("send");
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn rotating_keys_publishes_the_next_version_and_logs_the_change() {
    let app = spawn_app().await;
    let mut alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let v1 = app
        .client
        .keys(&bob.access_token, "alice")
        .await
        .expect("v1");
    let rotated = app
        .client
        .rotate_keys(&mut alice, PASSWORD)
        .await
        .expect("rotate");
    assert_eq!(rotated.key_version, 2);
    let v2 = app
        .client
        .keys(&bob.access_token, "alice")
        .await
        .expect("v2");
    assert_eq!(v2.key_version, 2);
    assert_ne!(v2.fingerprint, v1.fingerprint);
    v2.verify().expect("new self_sig verifies");

    let log = app
        .client
        .request(
            Method::GET,
            "/api/users/alice/key-changes",
            Some(&bob.access_token),
            None,
        )
        .await
        .expect("send")
        .json()
        .expect("json");
    let changes = log["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["key_version"], 1);
    assert!(changes[0]["prev_sig"].is_null());
    assert_eq!(changes[1]["key_version"], 2);
    assert_eq!(changes[1]["fingerprint"], json!(v2.fingerprint));
    assert!(changes[1]["prev_sig"].is_string());

    // Logging in again unwraps the version-2 bundle.
    let again = app.client.login("alice", PASSWORD).await.expect("login v2");
    assert_eq!(again.key_version, 2);
}

#[tokio::test]
async fn a_rotation_not_signed_by_the_previous_key_or_for_a_stale_version_is_refused() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let new = Identity::generate().expect("new");
    let stranger = Identity::generate().expect("stranger");
    let (auth_key, kek) = alice.derive(PASSWORD).expect("derive");

    // prev_sig made by a key that is not alice's current one.
    let forged = RotateRequest::build("alice", 2, &stranger, &new, &kek, &auth_key).expect("req");
    let r = app
        .post("/api/keys/rotate", Some(&alice.access_token), &forged)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().expect("body").error.code, "invalid_signature");

    // Skipping a version.
    let skip =
        RotateRequest::build("alice", 3, &alice.identity, &new, &kek, &auth_key).expect("req");
    let r = app
        .post("/api/keys/rotate", Some(&alice.access_token), &skip)
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error().expect("body").error.code, "key_version_conflict");

    assert_eq!(app.count("key_changes"), 1, "nothing recorded");
    let keys = app
        .client
        .keys(&alice.access_token, "alice")
        .await
        .expect("keys");
    assert_eq!(keys.key_version, 1);
}

/// What the server holds of alice's keys: the current version, the change log, the bundle.
fn stored_keys(app: &crate::helpers::TestApp) -> (i64, i64, String) {
    let version = app
        .sqlite()
        .query_row(
            "SELECT key_version, bundle_ct FROM users WHERE username = 'alice'",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .expect("alice");
    (version.0, app.count("key_changes"), version.1)
}

/// PROTOCOL.md §4.3: a token and the old signing key (all an injected script holds) are
/// not enough to rotate; the password, as `auth_key`, must come with the request.
#[tokio::test]
async fn a_rotation_without_the_password_or_with_a_wrong_one_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let new = Identity::generate().expect("new");
    let (auth_key, kek) = alice.derive(PASSWORD).expect("derive");
    let good =
        RotateRequest::build("alice", 2, &alice.identity, &new, &kek, &auth_key).expect("req");
    let before = stored_keys(&app);

    let mut missing = good.clone();
    missing.auth_key = None;
    let r = app
        .post("/api/keys/rotate", Some(&alice.access_token), &missing)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.error().expect("body").error.code,
        "reauthentication_required"
    );
    let mut null = serde_json::to_value(&missing).expect("json");
    null["auth_key"] = serde_json::Value::Null;
    let r = app
        .post("/api/keys/rotate", Some(&alice.access_token), &null)
        .await;
    assert_eq!(r.status, 401);

    // A wrong password: the very answer a failed login gets.
    let (wrong_key, _) = alice.derive("not the password").expect("derive");
    let mut wrong = good.clone();
    wrong.auth_key = Some(b64::encode(wrong_key));
    let r = app
        .post("/api/keys/rotate", Some(&alice.access_token), &wrong)
        .await;
    let failed_login = app
        .post(
            "/api/auth/login",
            None,
            &json!({ "username": "alice", "auth_key": b64::encode(wrong_key) }),
        )
        .await;
    assert_eq!((r.status, failed_login.status), (401, 401));
    assert_eq!(r.body, failed_login.body);
    assert_eq!(r.error().expect("body").error.code, "invalid_credentials");

    let mut malformed = good.clone();
    malformed.auth_key = Some("not-base64url!".into());
    let r = app
        .post("/api/keys/rotate", Some(&alice.access_token), &malformed)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().expect("body").error.code, "invalid_auth_key");

    assert_eq!(stored_keys(&app), before, "nothing written");

    // The same request with the right auth key goes through.
    let r = app
        .post("/api/keys/rotate", Some(&alice.access_token), &good)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stored_keys(&app).0, 2);
}
