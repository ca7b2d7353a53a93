//! Account settings seen from outside: changing the password (one request re-keys the
//! account and signs out every other session), listing and revoking one's sessions,
//! deleting the account (a tombstone keeps the name), and a directory that never lists
//! every user.

use securechat_client::ws::{ClientFrame, ServerFrame};
use securechat_client::{b64, derive_keys, wrap_bundle, Method, Session};
use serde_json::{json, Value};

use crate::helpers::{
    error_code as code, spawn_app, spawn_app_with, TestApp, ITERATIONS, PASSWORD,
};
use crate::relay::{ack, connect, next_matching, seal};
use crate::sessions::assert_session_ended;

const NEW_PASSWORD: &str = "a much better passphrase, really";

/// The body of a password change of `s` to `new_password` (fresh salt, the same keys
/// re-wrapped under the new kek), proving the current password with `current`.
fn password_change(s: &Session, current: &str, new_password: &str) -> Value {
    let salt: [u8; 16] = rand::random();
    let (new_auth, new_kek) = derive_keys(new_password, &salt, ITERATIONS);
    let (auth, _) = s.derive(current).expect("derive");
    let bundle = wrap_bundle(&new_kek, &s.username, s.key_version, &s.identity).expect("wrap");
    json!({
        "auth_key": b64::encode(auth),
        "new_auth_key": b64::encode(new_auth),
        "kdf": {"alg": "PBKDF2-SHA256", "iterations": ITERATIONS, "salt": b64::encode(salt)},
        "key_bundle": {"iv": bundle.iv, "ct": bundle.ct},
        "refresh_token": s.refresh_token,
    })
}

/// (auth_hash, kdf_salt, bundle_ct) of `name`, read from the file.
fn secrets_of(app: &TestApp, name: &str) -> (String, String, String) {
    app.sqlite()
        .query_row(
            "SELECT auth_hash, kdf_salt, bundle_ct FROM users WHERE username = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("row")
}

#[tokio::test]
async fn a_password_change_rekeys_the_account_and_signs_out_every_other_session() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let other = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect("second device");
    let mut other_ws = connect(&app, &other).await;
    let mut my_ws = connect(&app, &alice).await;

    let (status, body) = app
        .call(
            Method::POST,
            "/api/auth/password",
            &alice.access_token,
            Some(password_change(&alice, PASSWORD, NEW_PASSWORD)),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({ "ok": true })));

    // The other session is over, sockets and tokens; this one goes on.
    assert_session_ended(&mut other_ws).await;
    app.assert_session_dead(&other).await;
    app.client
        .me(&alice.access_token)
        .await
        .expect("my token still works");
    let env = seal(&app, &alice, "alice", "still connected").await;
    my_ws.send_envelope(&env).await.expect("send");
    assert_eq!(ack(&mut my_ws).await.0, env.id);
    let mut mine = alice.clone();
    app.client
        .refresh_session(&mut mine)
        .await
        .expect("my refresh token still works");

    // The old password is dead, the new one signs in and unwraps the same keys.
    let e = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect_err("old password");
    assert!(e.is_api(401, "invalid_credentials"), "{e}");
    let again = app
        .client
        .login("alice", NEW_PASSWORD)
        .await
        .expect("new password");
    assert_eq!(again.key_version, alice.key_version);
    assert_eq!(
        again.identity.public_keys().expect("keys"),
        alice.identity.public_keys().expect("keys"),
        "the same keys, re-wrapped"
    );
    assert_ne!(again.kdf.salt, alice.kdf.salt, "the new salt is served");
}

#[tokio::test]
async fn a_wrong_current_password_or_a_bad_body_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let other = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect("second device");
    let before = secrets_of(&app, "alice");

    let wrong = password_change(&alice, "not the password", NEW_PASSWORD);
    let (status, body) = app
        .call(
            Method::POST,
            "/api/auth/password",
            &alice.access_token,
            Some(wrong),
        )
        .await;
    assert_eq!((status, code(&body)), (401, "invalid_credentials"));

    let good = password_change(&alice, PASSWORD, NEW_PASSWORD);
    let with = |path: &str, value: Value| {
        let mut b = good.clone();
        let mut at = &mut b;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            at = &mut at[*p];
        }
        at[parts[parts.len() - 1]] = value;
        b
    };
    for (body, expected) in [
        (with("auth_key", json!("short")), "invalid_auth_key"),
        (
            with("new_auth_key", json!(b64::encode([1u8; 31]))),
            "invalid_auth_key",
        ),
        (with("kdf.alg", json!("scrypt")), "invalid_kdf"),
        (with("kdf.iterations", json!(ITERATIONS - 1)), "weak_kdf"),
        (
            with("kdf.salt", json!(b64::encode([1u8; 8]))),
            "invalid_kdf",
        ),
        (with("key_bundle.iv", json!("AAAA")), "invalid_key_bundle"),
        (
            with("refresh_token", json!(other.refresh_token)),
            "invalid_request",
        ),
        (with("refresh_token", json!("")), "invalid_request"),
        (with("extra", json!(1)), "invalid_request"),
    ] {
        let (status, v) = app
            .call(
                Method::POST,
                "/api/auth/password",
                &alice.access_token,
                Some(body.clone()),
            )
            .await;
        assert_eq!((status, code(&v)), (400, expected), "{body}");
    }
    assert_eq!(secrets_of(&app, "alice"), before, "nothing changed");
    app.client
        .me(&other.access_token)
        .await
        .expect("the other session lives");
    app.client
        .login("alice", PASSWORD)
        .await
        .expect("the old password still works");
}

#[tokio::test]
async fn the_session_list_shows_my_live_sessions_and_revoking_one_ends_it() {
    let app = spawn_app().await;
    let first = app.register_and_login("alice").await;
    let second = app.client.login("alice", PASSWORD).await.expect("second");
    let gone = app.client.login("alice", PASSWORD).await.expect("third");
    app.client
        .logout(&gone.access_token, None)
        .await
        .expect("logout");
    let bob = app.register_and_login("bob").await;

    let (status, list) = app
        .call(Method::GET, "/api/sessions", &second.access_token, None)
        .await;
    assert_eq!(status, 200);
    let sessions = list["sessions"].as_array().expect("sessions").clone();
    assert_eq!(
        sessions.len(),
        2,
        "the logged-out one is not listed: {list}"
    );
    assert_eq!(sessions[0]["current"], true, "newest first, and it is mine");
    assert_eq!(sessions[1]["current"], false);
    for s in &sessions {
        for k in ["created_at", "last_used_at", "expires_at"] {
            assert!(s[k].as_i64().is_some(), "{k}");
        }
    }
    let first_id = sessions[1]["id"].as_str().expect("id").to_owned();

    // Not bob's to revoke, and unknown ids look the same.
    for id in [
        first_id.as_str(),
        "00000000000000000000000000000000",
        "nope",
    ] {
        let (status, v) = app
            .call(
                Method::DELETE,
                &format!("/api/sessions/{id}"),
                &bob.access_token,
                None,
            )
            .await;
        assert_eq!((status, code(&v)), (404, "not_found"), "{id}");
    }
    app.client
        .me(&first.access_token)
        .await
        .expect("still alive");

    let mut ws = connect(&app, &first).await;
    let revoke = format!("/api/sessions/{first_id}");
    let (status, _) = app
        .call(Method::DELETE, &revoke, &second.access_token, None)
        .await;
    assert_eq!(status, 204);
    assert_session_ended(&mut ws).await;
    app.assert_session_dead(&first).await;
    let (status, _) = app
        .call(Method::DELETE, &revoke, &second.access_token, None)
        .await;
    assert_eq!(status, 404, "already revoked");
    let (_, list) = app
        .call(Method::GET, "/api/sessions", &second.access_token, None)
        .await;
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn deleting_the_account_removes_keys_sessions_and_undelivered_messages_and_keeps_the_name() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let mut a = connect(&app, &alice).await;
    // Delivered history: bob read it online. Undelivered: sent while bob was away.
    let mut b = connect(&app, &bob).await;
    let kept = seal(&app, &alice, "bob", "bob got this").await;
    a.send_envelope(&kept).await.expect("send");
    ack(&mut a).await;
    next_matching(&mut b, |f| {
        matches!(f, ServerFrame::Message { .. }).then_some(())
    })
    .await;
    b.send(&ClientFrame::Delivered {
        id: kept.id.clone(),
    })
    .await
    .expect("receipt");
    next_matching(&mut a, |f| {
        matches!(f, ServerFrame::Delivered { .. }).then_some(())
    })
    .await;
    drop(b);
    let pending = seal(&app, &alice, "bob", "never delivered").await;
    a.send_envelope(&pending).await.expect("send");
    ack(&mut a).await;

    // The wrong password deletes nothing.
    let (wrong, _) = derive_keys(
        "wrong",
        &b64::decode(&alice.kdf.salt).expect("salt"),
        ITERATIONS,
    );
    let (status, v) = app
        .call(
            Method::DELETE,
            "/api/me",
            &alice.access_token,
            Some(json!({ "auth_key": b64::encode(wrong) })),
        )
        .await;
    assert_eq!((status, code(&v)), (401, "invalid_credentials"));
    let (status, v) = app
        .call(
            Method::DELETE,
            "/api/me",
            &alice.access_token,
            Some(json!({})),
        )
        .await;
    assert_eq!((status, code(&v)), (400, "invalid_request"));
    app.client
        .keys(&bob.access_token, "alice")
        .await
        .expect("keys still there");

    app.delete_account(&alice).await;
    assert_session_ended(&mut a).await;
    app.assert_session_dead(&alice).await;

    let e = app
        .client
        .keys(&bob.access_token, "alice")
        .await
        .expect_err("keys gone");
    assert!(e.is_api(404, "not_found"), "{e}");
    let e = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect_err("login");
    assert!(e.is_api(401, "invalid_credentials"), "{e}");
    let listed = app
        .client
        .users(&bob.access_token, "ali", None)
        .await
        .expect("search");
    assert!(listed.users.is_empty());
    let e = app
        .client
        .register("alice", PASSWORD, ITERATIONS)
        .await
        .expect_err("name kept");
    assert!(e.is_api(409, "username_taken"), "{e}");

    let c = app.sqlite();
    let (hash, bundle, keys): (String, String, String) = c
        .query_row(
            "SELECT auth_hash, bundle_ct, enc_public_key || sign_public_key FROM users WHERE username = 'alice'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("tombstone");
    assert_eq!(
        (hash.as_str(), bundle.as_str(), keys.as_str()),
        ("", "", "")
    );
    let n = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).expect("count") };
    let alice_id = "(SELECT id FROM users WHERE username = 'alice')";
    assert_eq!(
        n(&format!(
            "SELECT count(*) FROM key_changes WHERE user_id = {alice_id}"
        )),
        0
    );
    assert_eq!(
        n(&format!(
            "SELECT count(*) FROM sessions WHERE user_id = {alice_id}"
        )),
        0
    );
    assert_eq!(
        n("SELECT count(*) FROM messages WHERE envelope <> ''"),
        1,
        "only the delivered one"
    );

    // bob keeps his copy of what was delivered, and can send alice nothing.
    let h = app
        .client
        .history(&bob.access_token, "alice", Some(0), None, None)
        .await
        .expect("history");
    assert_eq!(h.messages.len(), 1);
    assert_eq!(h.messages[0].envelope.parse().expect("env").id, kept.id);
    let e = app
        .client
        .keys(&bob.access_token, "alice")
        .await
        .expect_err("no keys to seal to");
    assert!(e.is_api(404, "not_found"));
}

#[tokio::test]
async fn a_short_search_finds_only_an_exact_name_and_never_lists_everyone() {
    let app = spawn_app_with(|c| c.directory.min_query_chars = 5).await;
    let me = app.register_and_login("zed").await;
    for name in ["bob", "bobby", "bobcat", "alice"] {
        app.register(name).await;
    }
    let search = |q: &'static str| {
        let app = &app;
        let token = me.access_token.clone();
        async move {
            app.call(Method::GET, &format!("/api/users?query={q}"), &token, None)
                .await
        }
    };
    for q in ["", "b", "bo", "bobx", "%20"] {
        let (status, v) = search(q).await;
        assert_eq!((status, code(&v)), (400, "query_too_short"), "{q:?}");
    }
    let (status, v) = search("bob").await;
    assert_eq!(status, 200);
    assert_eq!(
        v["users"].as_array().map(Vec::len),
        Some(1),
        "only bob, not bobby: {v}"
    );
    assert_eq!(v["users"][0]["username"], "bob");
    assert_eq!(v["next_cursor"], Value::Null);
    let (status, v) = search("BOB").await;
    assert_eq!(
        (status, v["users"][0]["username"].as_str()),
        (200, Some("bob")),
        "lower-cased"
    );
    let (status, v) = search("bobby").await;
    assert_eq!(status, 200);
    assert_eq!(v["users"].as_array().map(Vec::len), Some(1));
    let (status, v) = search("bobc").await;
    assert_eq!((status, code(&v)), (400, "query_too_short"));
    // The default minimum is three characters.
    let app = spawn_app().await;
    let me = app.register_and_login("zed").await;
    app.register("alice").await;
    for (q, expected) in [
        ("", "query_too_short"),
        ("al", "query_too_short"),
        ("ali", ""),
    ] {
        let path = format!("/api/users?query={q}");
        let (status, v) = app.call(Method::GET, &path, &me.access_token, None).await;
        assert_eq!(code(&v), expected, "{q:?}");
        if expected.is_empty() {
            assert_eq!(
                (status, v["users"][0]["username"].as_str()),
                (200, Some("alice"))
            );
        }
    }
}

#[tokio::test]
async fn a_deleted_accounts_files_and_unfinished_uploads_are_removed_with_their_blobs() {
    use crate::files::{blob_path, body, wait_for_state, Tus};
    let app = spawn_app_with(|c| c.files.cleanup_interval_secs = 1).await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let tus = Tus { app: &app };
    let ready = tus.create(&alice, "bob", 1000).await;
    let r = tus
        .patch(&alice.access_token, &ready, 0, body(1000, 4), None)
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&app, &ready, "ready").await;
    let unfinished = tus.create(&alice, "bob", 2080).await;
    let r = tus
        .patch(&alice.access_token, &unfinished, 0, body(1040, 5), None)
        .await;
    assert_eq!(r.status(), 204);
    // bob's own upload to alice is his, and stays.
    let his = tus.create(&bob, "alice", 1000).await;
    let blobs = [blob_path(&app, &ready), blob_path(&app, &unfinished)];
    assert!(blobs.iter().all(|b| b.exists()));
    assert_eq!(app.count("files"), 3);

    app.delete_account(&alice).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.count("files") > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not removed within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(blobs.iter().all(|b| !b.exists()), "the blobs are gone");
    let left: String = app
        .sqlite()
        .query_row("SELECT id FROM files", [], |r| r.get(0))
        .expect("row");
    assert_eq!(left, crate::files::file_id_of(&his));
}
