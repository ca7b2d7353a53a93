//! The admin console (the `admin-logs` plugin) seen from outside: who may call it, the
//! message log as metadata and fingerprints, stable paging, CSV export, disabling accounts,
//! revoking sessions, jobs, health, the audit chain (and `securechat audit verify` against a
//! tampered database), abuse reports, and the 404s of builds without or with the plugin off.

#[cfg(feature = "admin-logs")]
use securechat_client::report::{disclose, Reason};
#[cfg(feature = "admin-logs")]
use securechat_client::ws::{ClientFrame, WsClient};
use securechat_client::Method;
#[cfg(feature = "admin-logs")]
use securechat_client::{b64, Session};
use serde_json::Value;

#[cfg(feature = "admin-logs")]
use crate::helpers::{error_code, spawn_app, PASSWORD};
use crate::helpers::{spawn_app_with, TestApp};
#[cfg(feature = "admin-logs")]
use crate::rate_limit::{features, lists};
#[cfg(feature = "admin-logs")]
use crate::relay::{ack, connect, seal};
#[cfg(feature = "admin-logs")]
use crate::sessions::assert_session_ended;

/// Every admin route (method, path), with a path parameter filled in.
const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/admin/messages"),
    ("GET", "/api/admin/messages.csv"),
    ("GET", "/api/admin/files"),
    ("GET", "/api/admin/files.csv"),
    ("GET", "/api/admin/users"),
    ("POST", "/api/admin/users/bob/disable"),
    ("POST", "/api/admin/users/bob/enable"),
    ("POST", "/api/admin/users/bob/revoke-sessions"),
    ("GET", "/api/admin/jobs"),
    ("POST", "/api/admin/jobs/1/retry"),
    ("POST", "/api/admin/jobs/1/cancel"),
    ("GET", "/api/admin/health"),
    ("GET", "/api/admin/audit"),
    ("GET", "/api/admin/audit/verify"),
    ("GET", "/api/admin/reports"),
];

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let m = if method == "GET" {
        Method::GET
    } else {
        Method::POST
    };
    let r = app
        .client
        .request(m, path, token, None)
        .await
        .expect("send");
    (r.status, r.body)
}

async fn call_json(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, body) = call(app, method, path, token).await;
    (
        status,
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
    )
}

/// `call_json` with `root`'s token.
#[cfg(feature = "admin-logs")]
async fn as_root(app: &TestApp, root: &Session, method: &str, path: &str) -> (u16, Value) {
    call_json(app, method, path, Some(&root.access_token)).await
}

#[cfg(feature = "admin-logs")]
fn make_admin(app: &TestApp, name: &str) {
    let n = app
        .sqlite()
        .execute("UPDATE users SET is_admin = 1 WHERE username = ?1", [name])
        .expect("grant");
    assert_eq!(n, 1);
}

/// A server with `root` (an admin), alice and bob signed in.
#[cfg(feature = "admin-logs")]
async fn console() -> (TestApp, Session, Session, Session) {
    let app = spawn_app().await;
    let root = app.register_and_login("root").await;
    make_admin(&app, "root");
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    (app, root, alice, bob)
}

/// `from` sends `text` to `to` over `ws` and waits for the ack.
#[cfg(feature = "admin-logs")]
async fn send(
    app: &TestApp,
    ws: &mut WsClient,
    from: &Session,
    to: &str,
    text: &str,
) -> securechat_client::envelope::Envelope {
    let env = seal(app, from, to, text).await;
    ws.send(&ClientFrame::send(&env).expect("frame"))
        .await
        .expect("send");
    ack(ws).await;
    env
}

#[cfg(feature = "admin-logs")]
fn audit_count(app: &TestApp) -> i64 {
    app.count("audit_log")
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn every_admin_route_answers_401_without_a_token_and_403_to_a_signed_in_non_admin() {
    let (app, _root, alice, _bob) = console().await;
    for (method, path) in ADMIN_ROUTES {
        let (status, body) = call_json(&app, method, path, None).await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
        let (status, body) = call_json(&app, method, path, Some(&alice.access_token)).await;
        assert_eq!(status, 403, "{method} {path}");
        assert_eq!(body["error"]["code"], "admin_required", "{method} {path}");
    }
    assert_eq!(audit_count(&app), 0, "refused requests are not audited");
    let bob_enabled: bool = app
        .sqlite()
        .query_row(
            "SELECT disabled_at IS NULL FROM users WHERE username = 'bob'",
            [],
            |r| r.get(0),
        )
        .expect("bob");
    assert!(bob_enabled, "a non-admin's disable did nothing");
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn an_admin_filters_the_message_log_by_sender_and_sees_only_metadata_and_fingerprints() {
    let (app, root, alice, bob) = console().await;
    let mut a = connect(&app, &alice).await;
    let mut b = connect(&app, &bob).await;
    let from_alice = send(&app, &mut a, &alice, "bob", "hello bob").await;
    send(&app, &mut b, &bob, "alice", "hello alice").await;

    let (status, raw) = call(
        &app,
        "GET",
        "/api/admin/messages?sender=alice",
        Some(&root.access_token),
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(raw.clone()).expect("utf8");
    let body: Value = serde_json::from_slice(&raw).expect("json");
    let list = body["messages"].as_array().expect("list");
    assert_eq!(list.len(), 1, "{body}");
    let m = &list[0];
    assert_eq!(m["id"], from_alice.id.as_str());
    assert_eq!(m["sender"], "alice");
    assert_eq!(m["recipient"], "bob");
    assert_eq!(m["state"], "sent");
    assert_eq!(body["next_cursor"], Value::Null);
    let stored: String = app
        .sqlite()
        .query_row("SELECT envelope FROM messages WHERE sender_id = (SELECT id FROM users WHERE username = 'alice')", [], |r| r.get(0))
        .expect("envelope");
    let hash = fingerprint(stored.as_bytes());
    assert_eq!(m["fingerprint"], hash.as_str());
    assert_eq!(m["size"], stored.len());
    let mut members: Vec<&str> = m
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "fingerprint",
            "id",
            "recipient",
            "sender",
            "server_ts",
            "size",
            "state"
        ]
    );
    for secret in [&from_alice.ct, &from_alice.sig, &from_alice.iv] {
        assert!(
            !text.contains(secret.as_str()),
            "the body leaks envelope text"
        );
    }
    assert!(!text.contains("\"keys\""));

    let (status, body) = as_root(&app, &root, "GET", "/api/admin/messages?sender=mallory").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(body["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("sender"));
    let (status, body) = as_root(&app, &root, "GET", "/api/admin/messages?sendr=alice").await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("sendr"));
}

/// The contract's fingerprint, computed here on its own: BLAKE3's first 8 bytes, hex.
#[cfg(feature = "admin-logs")]
fn fingerprint(bytes: &[u8]) -> String {
    blake3::hash(bytes).as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn paging_the_message_log_stays_stable_while_messages_keep_arriving() {
    let (app, root, alice, _bob) = console().await;
    let mut a = connect(&app, &alice).await;
    for i in 0..5 {
        send(&app, &mut a, &alice, "bob", &format!("m{i}")).await;
    }
    let page = |cursor: Option<String>| {
        let path = match cursor {
            None => "/api/admin/messages?limit=2".to_owned(),
            Some(c) => format!("/api/admin/messages?limit=2&cursor={c}"),
        };
        let app = &app;
        let token = root.access_token.clone();
        async move { call_json(app, "GET", &path, Some(&token)).await.1 }
    };
    let first = page(None).await;
    let ids = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .expect("list")
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids(&first).len(), 2);
    // New messages arrive between pages.
    for i in 0..3 {
        send(&app, &mut a, &alice, "bob", &format!("late{i}")).await;
    }
    let second = page(first["next_cursor"].as_str().map(str::to_owned)).await;
    let third = page(second["next_cursor"].as_str().map(str::to_owned)).await;
    assert_eq!(third["next_cursor"], Value::Null);
    let mut seen = ids(&first);
    seen.extend(ids(&second));
    seen.extend(ids(&third));
    assert_eq!(
        seen.len(),
        5,
        "exactly the five older messages, once each: {seen:?}"
    );
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5);

    let (status, body) = as_root(&app, &root, "GET", "/api/admin/messages?cursor=xyz").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn the_csv_export_is_an_attachment_with_every_cell_quoted() {
    let (app, root, alice, _bob) = console().await;
    let mut a = connect(&app, &alice).await;
    let env = send(&app, &mut a, &alice, "bob", "x").await;
    let r = app
        .client
        .request(
            Method::GET,
            "/api/admin/messages.csv",
            Some(&root.access_token),
            None,
        )
        .await
        .expect("send");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    assert!(r
        .headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("attachment")));
    let text = String::from_utf8(r.body).expect("utf8");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("\"id\",\"sender\",\"recipient\",\"server_ts\",\"size\",\"fingerprint\",\"state\"")
    );
    let row = lines.next().expect("a row");
    assert!(
        row.starts_with(&format!("\"{}\",\"alice\",\"bob\",", env.id)),
        "{row}"
    );
    assert_eq!(lines.next(), None);
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn a_disabled_account_cannot_log_in_or_refresh_and_its_socket_closes_until_it_is_enabled() {
    let (app, root, alice, _bob) = console().await;
    let mut ws = connect(&app, &alice).await;
    let (status, body) = as_root(&app, &root, "POST", "/api/admin/users/alice/disable").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["disabled"], true);
    assert_eq!(body["sessions_revoked"], 1);
    assert_session_ended(&mut ws).await;
    app.assert_session_dead(&alice).await;
    let e = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect_err("disabled");
    assert!(e.is_api(403, "account_disabled"), "{e}");
    // A wrong password still says only invalid_credentials.
    let e = app
        .client
        .login("alice", "not the password")
        .await
        .expect_err("wrong password");
    assert!(e.is_api(401, "invalid_credentials"), "{e}");

    let (status, body) = as_root(&app, &root, "GET", "/api/admin/users?query=ali").await;
    assert_eq!(status, 200);
    assert_eq!(body["users"][0]["username"], "alice");
    assert_eq!(body["users"][0]["disabled"], true);

    let (status, body) = as_root(&app, &root, "POST", "/api/admin/users/alice/enable").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disabled"], false);
    app.client
        .login("alice", PASSWORD)
        .await
        .expect("login again");
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn an_admin_cannot_disable_themselves_and_an_unknown_user_is_404() {
    let (app, root, _alice, _bob) = console().await;
    let (status, body) = as_root(&app, &root, "POST", "/api/admin/users/root/disable").await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "cannot_disable_self");
    let (status, body) = as_root(&app, &root, "POST", "/api/admin/users/nobody/disable").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    app.client
        .me(&root.access_token)
        .await
        .expect("root still signed in");
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn revoking_a_users_sessions_closes_their_socket_and_kills_their_tokens() {
    let (app, root, alice, _bob) = console().await;
    let second = app.client.login("alice", PASSWORD).await.expect("login");
    let mut ws = connect(&app, &alice).await;
    let (status, body) = as_root(
        &app,
        &root,
        "POST",
        "/api/admin/users/alice/revoke-sessions",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions_revoked"], 2);
    assert_session_ended(&mut ws).await;
    app.assert_session_dead(&alice).await;
    app.assert_session_dead(&second).await;
    app.client
        .login("alice", PASSWORD)
        .await
        .expect("not disabled");
}

/// A failed job of a queue no worker serves, so a retried one stays available.
#[cfg(feature = "admin-logs")]
fn insert_failed_job(app: &TestApp) -> i64 {
    let c = app.sqlite();
    c.execute(
        "INSERT INTO jobs (queue, kind, payload, state, run_at, attempt, max_attempts, last_error, \
         created_at, finished_at) VALUES ('no_workers', 'test.never', '{\"secret\":\"payload\"}', 'failed', 0, 3, 3, 'boom', 0, 1)",
        [],
    )
    .expect("job");
    c.last_insert_rowid()
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn an_admin_sees_a_failed_job_without_its_payload_and_retries_or_cancels_it() {
    let (app, root, _alice, _bob) = console().await;
    let id = insert_failed_job(&app);
    let (status, raw) = call(&app, "GET", "/api/admin/jobs", Some(&root.access_token)).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(raw).expect("utf8");
    assert!(!text.contains("payload"), "{text}");
    let body: Value = serde_json::from_str(&text).expect("json");
    let failed = body["failed"].as_array().expect("failed");
    assert!(
        failed
            .iter()
            .any(|j| j["id"] == id && j["last_error"] == "boom"),
        "{body}"
    );
    assert!(body["queues"].is_array());

    let (status, body) =
        as_root(&app, &root, "POST", &format!("/api/admin/jobs/{id}/cancel")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "job_finished");
    let (status, body) = as_root(&app, &root, "POST", &format!("/api/admin/jobs/{id}/retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "available");
    let (status, body) = as_root(&app, &root, "POST", &format!("/api/admin/jobs/{id}/retry")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "job_not_failed");
    let (status, body) =
        as_root(&app, &root, "POST", &format!("/api/admin/jobs/{id}/cancel")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cancelled");
    let (status, body) = as_root(&app, &root, "POST", "/api/admin/jobs/999999/retry").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = as_root(&app, &root, "POST", "/api/admin/jobs/x/retry").await;
    assert_eq!(status, 400, "{body}");
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn health_counts_users_messages_and_connections() {
    let (app, root, alice, _bob) = console().await;
    let mut a = connect(&app, &alice).await;
    send(&app, &mut a, &alice, "bob", "x").await;
    let (status, body) = as_root(&app, &root, "GET", "/api/admin/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["users"], 3);
    assert_eq!(body["messages"], 1);
    assert_eq!(body["files"], 0);
    assert_eq!(body["connections"], 1);
    assert!(body["db_bytes"].as_u64().expect("db") > 0);
    assert!(body["disk_free_bytes"].as_u64().expect("disk") > 0);
    assert!(body["version"].is_string());
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn a_deleted_account_leaves_the_user_list_and_the_count_and_cannot_be_disabled() {
    let (app, root, alice, _bob) = console().await;
    let (status, body) = as_root(&app, &root, "GET", "/api/admin/users?query=ali").await;
    assert_eq!(status, 200);
    assert_eq!(body["users"][0]["username"], "alice", "{body}");
    app.delete_account(&alice).await;

    let (status, body) = as_root(&app, &root, "GET", "/api/admin/users").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["bob", "root"], "{body}");
    let (_, health) = as_root(&app, &root, "GET", "/api/admin/health").await;
    assert_eq!(health["users"], 2, "{health}");
    let (status, body) = as_root(&app, &root, "POST", "/api/admin/users/alice/disable").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
    // The tombstone is still there (it keeps the name) and was not touched.
    let disabled: bool = app
        .sqlite()
        .query_row(
            "SELECT disabled_at IS NOT NULL FROM users WHERE username = 'alice'",
            [],
            |r| r.get(0),
        )
        .expect("tombstone");
    assert!(!disabled);
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn every_admin_read_appends_a_chained_audit_entry_before_it_is_answered() {
    let (app, root, _alice, _bob) = console().await;
    let reads = [
        ("/api/admin/messages?sender=alice", "messages.list"),
        ("/api/admin/messages.csv", "messages.export"),
        ("/api/admin/files", "files.list"),
        ("/api/admin/files.csv", "files.export"),
        ("/api/admin/users", "users.list"),
        ("/api/admin/jobs", "jobs.view"),
        ("/api/admin/health", "health.view"),
        ("/api/admin/reports", "reports.view"),
        ("/api/admin/audit/verify", "audit.verify"),
    ];
    for (i, (path, action)) in reads.iter().enumerate() {
        let (status, _) = call(&app, "GET", path, Some(&root.access_token)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(audit_count(&app), i as i64 + 1, "{path}");
        let (actor, act): (String, String) = app
            .sqlite()
            .query_row(
                "SELECT actor, action FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("entry");
        assert_eq!((actor.as_str(), act.as_str()), ("root", *action));
    }
    let (_, body) = as_root(&app, &root, "GET", "/api/admin/audit?limit=3").await;
    let entries = body["entries"].as_array().expect("entries");
    assert_eq!(
        entries[0]["action"], "audit.view",
        "the view itself is the newest entry"
    );
    assert_eq!(entries[0]["prev_hash"], entries[1]["hash"]);
    assert_eq!(entries[0]["seq"], reads.len() + 1);
    let first: Value = as_root(&app, &root, "GET", "/api/admin/audit?cursor=2")
        .await
        .1;
    assert_eq!(first["entries"][0]["detail"], "{\"sender\":\"alice\"}");
    assert_eq!(first["entries"][0]["prev_hash"], "0".repeat(64));
    let (_, body) = as_root(&app, &root, "GET", "/api/admin/audit/verify").await;
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["entries"], reads.len() + 3);
}

fn audit_verify(app: &TestApp) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_securechat"))
        .args(["audit", "verify"])
        .env("SECURECHAT_STORAGE__DATA_DIR", &app.config.storage.data_dir)
        .env_remove("SECURECHAT_CONFIG")
        .current_dir(app.dir.path())
        .output()
        .expect("run securechat");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A server whose audit log holds five entries, stopped; its data dir stays.
#[cfg(feature = "admin-logs")]
async fn five_audited_reads() -> TestApp {
    let (app, root, _alice, _bob) = console().await;
    for _ in 0..5 {
        call(&app, "GET", "/api/admin/health", Some(&root.access_token)).await;
    }
    assert_eq!(audit_count(&app), 5);
    app.stop().await
}

/// Tampers with a stopped server's audit log by `sql`, then expects `securechat audit
/// verify` to exit 1 naming entry `seq`.
#[cfg(feature = "admin-logs")]
fn assert_verify_names(app: &TestApp, sql: &str, seq: i64) {
    app.sqlite().execute_batch(sql).expect("tamper");
    let (code, text) = audit_verify(app);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("entry {seq} ")), "{text}");
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn audit_verify_passes_an_untouched_log_and_names_an_edited_row() {
    let app = five_audited_reads().await;
    let (code, text) = audit_verify(&app);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("audit log ok: 5 entries"), "{text}");
    assert_verify_names(
        &app,
        "UPDATE audit_log SET actor = 'someone' WHERE seq = 3",
        3,
    );
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn audit_verify_names_a_deleted_row() {
    let app = five_audited_reads().await;
    assert_verify_names(&app, "DELETE FROM audit_log WHERE seq = 2", 2);
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn audit_verify_names_the_first_of_two_reordered_rows() {
    let app = five_audited_reads().await;
    // Swap rows 2 and 4 whole (every column but the key that orders them).
    assert_verify_names(
        &app,
        "UPDATE audit_log SET seq = -2 WHERE seq = 2;
         UPDATE audit_log SET seq = 2 WHERE seq = 4;
         UPDATE audit_log SET seq = 4 WHERE seq = -2;",
        2,
    );
}

#[cfg(feature = "admin-logs")]
async fn report(app: &TestApp, who: &Session, body: &impl serde::Serialize) -> (u16, Value) {
    let r = app
        .post("/api/reports", Some(&who.access_token), body)
        .await;
    (r.status, r.json().unwrap_or(Value::Null))
}

#[cfg(feature = "admin-logs")]
async fn alice_writes_bob() -> (
    TestApp,
    Session,
    Session,
    Session,
    securechat_client::report::ReportBody,
) {
    let (app, root, alice, bob) = console().await;
    let mut a = connect(&app, &alice).await;
    let env = send(&app, &mut a, &alice, "bob", "buy my stuff").await;
    let keys = app
        .client
        .keys(&bob.access_token, "alice")
        .await
        .expect("keys");
    let spki = b64::decode(&keys.sign_public_key).expect("b64");
    let body = disclose(&env, "bob", &bob.identity, &spki, Reason::Spam).expect("disclose");
    (app, root, alice, bob, body)
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn a_recipients_honest_report_is_verified_and_the_admin_reads_its_text() {
    let (app, root, _alice, bob, body) = alice_writes_bob().await;
    let (status, answer) = report(&app, &bob, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["verdict"], "verified");
    assert_eq!(answer["detail"], Value::Null);
    let (status, again) = report(&app, &bob, &body).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "already_reported");
    let (_, list) = as_root(&app, &root, "GET", "/api/admin/reports").await;
    let r = &list["reports"][0];
    assert_eq!(r["message_id"], body.message_id.as_str());
    assert_eq!(r["reporter"], "bob");
    assert_eq!(r["sender"], "alice");
    assert_eq!(r["reason"], "spam");
    assert_eq!(r["verdict"], "verified");
    assert_eq!(r["text"], "buy my stuff");
    assert_eq!(list["reports"].as_array().expect("list").len(), 1);
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn a_report_with_a_changed_plaintext_is_kept_as_not_verifiable() {
    let (app, root, _alice, bob, mut body) = alice_writes_bob().await;
    let mut plain = b64::decode(&body.plaintext).expect("b64");
    plain[10] ^= 1;
    body.plaintext = b64::encode(&plain);
    let (status, answer) = report(&app, &bob, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["verdict"], "not_verifiable");
    assert_eq!(answer["detail"], "plaintext_mismatch");
    let (_, list) = as_root(&app, &root, "GET", "/api/admin/reports").await;
    assert_eq!(list["reports"][0]["text"], Value::Null);
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn only_the_recipient_can_report_a_message_and_bad_bodies_are_refused() {
    let (app, _root, alice, bob, body) = alice_writes_bob().await;
    let (status, answer) = report(&app, &alice, &body).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");
    let mut bad = serde_json::to_value(&body).expect("json");
    bad["reason"] = "boring".into();
    let (status, answer) = report(&app, &bob, &bad).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_request");
    let r = app
        .client
        .request(
            Method::POST,
            "/api/reports",
            None,
            Some(&serde_json::to_value(&body).expect("json")),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 401);
    assert_eq!(app.count("abuse_reports"), 0);
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn with_the_plugin_disabled_the_admin_routes_answer_404_feature_disabled() {
    let app = spawn_app_with(|c| {
        let t: toml::Table = toml::from_str("enabled = false").expect("toml");
        c.plugins.0.insert("admin_logs".into(), t);
    })
    .await;
    for (method, path) in ADMIN_ROUTES.iter().chain(&[("POST", "/api/reports")]) {
        let (status, body) = call_json(&app, method, path, None).await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(body["error"]["code"], "feature_disabled", "{method} {path}");
    }
    assert!(lists(&features(&app).await, "admin_logs", false));
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn features_lists_the_admin_console_as_enabled_by_default() {
    let app = spawn_app().await;
    assert!(lists(&features(&app).await, "admin_logs", true));
}

#[cfg(not(feature = "admin-logs"))]
#[tokio::test]
async fn without_the_plugin_the_admin_routes_answer_404_feature_not_compiled_in() {
    let app = spawn_app_with(|_| {}).await;
    for (method, path) in ADMIN_ROUTES.iter().chain(&[("POST", "/api/reports")]) {
        let (status, body) = call_json(&app, method, path, None).await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(
            body["error"]["code"], "feature_not_compiled_in",
            "{method} {path}"
        );
    }
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn concurrent_admin_requests_append_one_unbroken_chain() {
    let (app, root, _alice, _bob) = console().await;
    let calls = (0..20).map(|_| call(&app, "GET", "/api/admin/health", Some(&root.access_token)));
    for (status, _) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    assert_eq!(audit_count(&app), 20);
    let app = app.stop().await;
    let (code, text) = audit_verify(&app);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("audit log ok: 20 entries"), "{text}");
}

#[cfg(not(feature = "admin-logs"))]
#[tokio::test]
async fn without_the_plugin_audit_verify_says_so_and_exits_2() {
    let app = spawn_app_with(|_| {}).await.stop().await;
    let (code, text) = audit_verify(&app);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not compiled"), "{text}");
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn the_users_view_counts_what_each_user_sent_and_received_across_their_conversations() {
    let (app, root, alice, bob) = console().await;
    let carol = app.register_and_login("carol").await;
    let mut a = connect(&app, &alice).await;
    let mut c = connect(&app, &carol).await;
    for text in ["one", "two", "three"] {
        send(&app, &mut a, &alice, "bob", text).await;
    }
    send(&app, &mut a, &alice, "carol", "hi carol").await;
    send(&app, &mut c, &carol, "alice", "hi alice").await;
    send(&app, &mut a, &alice, "alice", "a note to self").await;
    let _ = bob;
    let (status, body) = as_root(&app, &root, "GET", "/api/admin/users").await;
    assert_eq!(status, 200, "{body}");
    let counts = |name: &str| {
        let u = body["users"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["username"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))
            .clone();
        (u["messages_sent"].as_i64(), u["messages_received"].as_i64())
    };
    assert_eq!(
        counts("alice"),
        (Some(5), Some(2)),
        "the note to self counts both ways"
    );
    assert_eq!(counts("bob"), (Some(0), Some(3)));
    assert_eq!(counts("carol"), (Some(1), Some(1)));
    assert_eq!(counts("root"), (Some(0), Some(0)));
}
