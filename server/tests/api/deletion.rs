//! Deleting for everyone (`DELETE /api/messages/{id}`, by the sender) and disappearing
//! messages (`/api/conversations/{peer}/timer` and the periodic `expire_messages` job):
//! the ciphertext leaves the database, history stops returning it, the id stays spent.

use std::time::Duration;

use securechat_client::ws::ServerFrame;
use securechat_client::{Method, Session};
use serde_json::{json, Value};

use crate::helpers::{error_code as code, spawn_app, spawn_app_with, TestApp};
use crate::relay::{ack, connect, next_matching, none_of, seal};

/// The stored envelope text and `deleted_at` of the message `id`, read from the file.
fn stored(app: &TestApp, id: &str) -> (String, Option<i64>) {
    let bytes = uuid::Uuid::parse_str(id).expect("uuid").as_bytes().to_vec();
    app.sqlite()
        .query_row(
            "SELECT envelope, deleted_at FROM messages WHERE msg_id = ?1",
            [bytes],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the row is there")
}

async fn call(
    app: &TestApp,
    m: Method,
    path: &str,
    s: &Session,
    body: Option<Value>,
) -> (u16, Value) {
    app.call(m, path, &s.access_token, body).await
}

/// Whether the database file holds `needle`, after the WAL was checkpointed into it and
/// truncated (so the file is all there is).
fn file_holds(app: &TestApp, needle: &str) -> bool {
    let c = app.sqlite();
    for _ in 0..50 {
        let busy: i64 = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .expect("checkpoint");
        if busy == 0 {
            let bytes = std::fs::read(app.db_path()).expect("db file");
            return bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the WAL could not be checkpointed");
}

/// `s` deletes message `id`: the status and answer.
async fn delete(app: &TestApp, s: &Session, id: &str) -> (u16, Value) {
    call(app, Method::DELETE, &format!("/api/messages/{id}"), s, None).await
}

/// alice sends `texts` to bob over her WebSocket; their ids and seqs, in order.
async fn send_all(app: &TestApp, alice: &Session, texts: &[&str]) -> Vec<(String, u64)> {
    let mut a = connect(app, alice).await;
    let mut out = Vec::new();
    for t in texts {
        let env = seal(app, alice, "bob", t).await;
        a.send_envelope(&env).await.expect("send");
        out.push(ack(&mut a).await);
    }
    out
}

async fn history_ids(app: &TestApp, s: &Session, peer: &str) -> Vec<String> {
    app.client
        .history(&s.access_token, peer, Some(0), None, None)
        .await
        .expect("history")
        .messages
        .iter()
        .map(|m| m.envelope.parse().expect("envelope").id)
        .collect()
}

#[tokio::test]
async fn the_sender_deletes_a_message_and_its_ciphertext_leaves_the_database_and_history() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let sent = send_all(&app, &alice, &["keep", "delete me", "keep too"]).await;
    let gone = &sent[1].0;
    assert!(stored(&app, gone).0.len() > 100, "stored before");

    let (status, _) = delete(&app, &alice, gone).await;
    assert_eq!(status, 204);
    let (envelope, deleted_at) = stored(&app, gone);
    assert_eq!(envelope, "", "the ciphertext is gone from the row");
    assert!(deleted_at.is_some());

    for s in [&bob, &alice] {
        let peer = if s.username == "bob" { "alice" } else { "bob" };
        assert_eq!(
            history_ids(&app, s, peer).await,
            vec![sent[0].0.clone(), sent[2].0.clone()],
            "{}'s history skips it",
            s.username
        );
    }
    // Paging by seq still works across the gap.
    let page = app
        .client
        .history(&bob.access_token, "alice", None, Some(sent[2].1), Some(1))
        .await
        .expect("page");
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![sent[0].1]
    );
    let convs = app
        .client
        .conversations(&bob.access_token)
        .await
        .expect("convs");
    assert_eq!(
        convs.conversations[0].unread, 2,
        "a deleted message is not unread"
    );

    // Idempotent for its sender.
    let (status, _) = delete(&app, &alice, gone).await;
    assert_eq!(status, 204);
}

/// A server where alice sent bob one message: alice, its id, and the first 16 characters
/// of each binary member of its stored envelope. The start of each (a new cell may
/// overwrite the end of the old one, so a member at the end could vanish while most of the
/// envelope stays).
async fn one_stored_message() -> (TestApp, Session, String, Vec<String>) {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    app.register_and_login("bob").await;
    let sent = send_all(&app, &alice, &["the only message on its page"]).await;
    let id = sent[0].0.clone();
    let envelope: Value = serde_json::from_str(&stored(&app, &id).0).expect("stored");
    let needles = ["iv", "ct", "sig"]
        .iter()
        .map(|k| envelope[k].as_str().expect("member")[..16].to_owned())
        .collect();
    (app, alice, id, needles)
}

#[tokio::test]
async fn a_deleted_ciphertext_is_not_left_in_the_free_space_of_the_database_file() {
    let (app, alice, id, needles) = one_stored_message().await;
    let id = &id;
    for needle in &needles {
        assert!(file_holds(&app, needle), "{needle} is in the file before");
    }
    let (status, _) = delete(&app, &alice, id).await;
    assert_eq!(status, 204);
    for needle in &needles {
        assert!(!file_holds(&app, needle), "no trace of {needle} after");
    }
}

/// Whether the file at `path` holds `needle`, read as it is (nothing checkpointed first).
/// The WAL is preallocated to ~280 MB: memchr's search keeps a look well under a second.
fn raw_holds(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    memchr::memmem::find(&bytes, needle.as_bytes()).is_some()
}

#[tokio::test]
async fn a_deleted_ciphertext_leaves_the_wal_file_once_the_server_is_idle() {
    let (app, alice, id, needles) = one_stored_message().await;
    let id = &id;
    let mut wal = app.db_path().into_os_string();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    assert!(
        needles.iter().all(|n| raw_holds(&wal, n)),
        "the page image written when it was stored is in the WAL"
    );

    let (status, _) = delete(&app, &alice, id).await;
    assert_eq!(status, 204);
    // Nothing here checkpoints: the server does, after a quiet second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<&String> = needles
            .iter()
            .filter(|n| raw_holds(&wal, n) || raw_holds(&app.db_path(), n))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still in the WAL ({}) or the database file ({}) after 10 s: {left:?}",
            left.iter().any(|n| raw_holds(&wal, n)),
            left.iter().any(|n| raw_holds(&app.db_path(), n))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server goes on writing and reading as before.
    send_all(&app, &alice, &["after the scrub"]).await;
    assert_eq!(history_ids(&app, &alice, "bob").await.len(), 1);
}

#[tokio::test]
async fn only_the_sender_may_delete_and_everyone_else_gets_the_same_404() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let carol = app.register_and_login("carol").await;
    let sent = send_all(&app, &alice, &["mine"]).await;
    let id = &sent[0].0;
    let before = stored(&app, id);

    let unknown = uuid::Uuid::new_v4().to_string();
    for (who, path) in [
        (&bob, format!("/api/messages/{id}")),
        (&carol, format!("/api/messages/{id}")),
        (&alice, format!("/api/messages/{unknown}")),
    ] {
        let (status, body) = call(&app, Method::DELETE, &path, who, None).await;
        assert_eq!(
            (status, code(&body)),
            (404, "not_found"),
            "{} {path}",
            who.username
        );
        assert_eq!(
            body["error"]["message"], "message not found",
            "one answer for all"
        );
    }
    for bad in [
        "not-a-uuid",
        "0D6F8A52-1C1E-4C5E-9B7A-2F7D0C1E9A01",
        "0d6f8a52-1c1e-1c5e-9b7a-2f7d0c1e9a01",
    ] {
        let (status, body) = delete(&app, &alice, bad).await;
        assert_eq!((status, code(&body)), (400, "invalid_request"), "{bad}");
    }
    let r = app
        .client
        .request(Method::DELETE, &format!("/api/messages/{id}"), None, None)
        .await
        .expect("send");
    assert_eq!(r.status, 401);
    assert_eq!(stored(&app, id), before, "nothing changed");
    assert_eq!(history_ids(&app, &bob, "alice").await, vec![id.clone()]);
}

#[tokio::test]
async fn a_deleted_id_stays_spent_a_resend_stores_nothing_and_reaches_nobody() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let mut a = connect(&app, &alice).await;
    let mut b = connect(&app, &bob).await;
    let env = seal(&app, &alice, "bob", "soon gone").await;
    a.send_envelope(&env).await.expect("send");
    let first = ack(&mut a).await;
    next_matching(&mut b, |f| {
        matches!(f, ServerFrame::Message { .. }).then_some(())
    })
    .await;
    let (status, _) = delete(&app, &alice, &env.id).await;
    assert_eq!(status, 204);

    // The same envelope again: answered as a resend of the original, not stored again.
    a.send_envelope(&env).await.expect("resend");
    assert_eq!(ack(&mut a).await, first);
    none_of(&mut b, Duration::from_millis(300), |f| {
        matches!(f, ServerFrame::Message { .. })
    })
    .await;
    assert_eq!(stored(&app, &env.id).0, "");
    assert_eq!(app.count("messages"), 1);
    assert!(history_ids(&app, &bob, "alice").await.is_empty());

    // And after a restart (the id index reloaded from disk), still spent.
    drop((a, b));
    let app = app.restart().await;
    let alice = app
        .client
        .login("alice", crate::helpers::PASSWORD)
        .await
        .expect("login");
    let mut a = connect(&app, &alice).await;
    a.send_envelope(&env).await.expect("resend");
    assert_eq!(ack(&mut a).await, first);
    assert_eq!(app.count("messages"), 1);
    assert_eq!(stored(&app, &env.id).0, "");
}

#[cfg(feature = "admin-logs")]
#[tokio::test]
async fn the_admin_log_does_not_list_a_deleted_message() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    app.register_and_login("bob").await;
    let sent = send_all(&app, &alice, &["one", "two"]).await;
    app.register("root").await;
    app.sqlite()
        .execute("UPDATE users SET is_admin = 1 WHERE username = 'root'", [])
        .expect("grant");
    let admin = app
        .client
        .login("root", crate::helpers::PASSWORD)
        .await
        .expect("login");
    let listed = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (status, before) = call(&app, Method::GET, "/api/admin/messages", &admin, None).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(listed(&before).len(), 2);
    delete(&app, &alice, &sent[0].0).await;
    let (_, after) = call(&app, Method::GET, "/api/admin/messages", &admin, None).await;
    assert_eq!(listed(&after), vec![sent[1].0.clone()]);
}

#[tokio::test]
async fn a_conversation_timer_deletes_newer_messages_after_it_runs_out_and_keeps_older_ones() {
    let app = spawn_app_with(|c| c.messages.expiry_sweep_secs = 1).await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let before = send_all(&app, &alice, &["sent before the timer"]).await;

    let (status, never) = call(
        &app,
        Method::GET,
        "/api/conversations/alice/timer",
        &bob,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(never["secs"], 0);
    let (status, set) = call(
        &app,
        Method::PUT,
        "/api/conversations/alice/timer",
        &bob,
        Some(json!({ "secs": 5 })),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["secs"], 5);
    assert_eq!(set["from_seq"], before[0].1);
    assert!(set["set_at"].as_i64().is_some());
    let (_, seen) = call(
        &app,
        Method::GET,
        "/api/conversations/bob/timer",
        &alice,
        None,
    )
    .await;
    assert_eq!(seen, set, "both parties see the same setting");

    let after = send_all(&app, &alice, &["disappears"]).await;
    let id = &after[0].0;
    assert_ne!(stored(&app, id).0, "");
    assert_eq!(history_ids(&app, &bob, "alice").await.len(), 2);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    while !stored(&app, id).0.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not swept within 12 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(stored(&app, id).1.is_some());
    assert_eq!(
        history_ids(&app, &bob, "alice").await,
        vec![before[0].0.clone()],
        "the older message is kept"
    );
    assert_ne!(stored(&app, &before[0].0).0, "");

    // Turning it off: a message sent afterwards stays.
    let (status, off) = call(
        &app,
        Method::PUT,
        "/api/conversations/bob/timer",
        &alice,
        Some(json!({ "secs": 0 })),
    )
    .await;
    assert_eq!((status, off["secs"].as_i64()), (200, Some(0)));
    let kept = send_all(&app, &alice, &["stays"]).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_ne!(stored(&app, &kept[0].0).0, "", "no timer: kept");
}

#[tokio::test]
async fn a_timer_out_of_range_or_for_a_stranger_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let carol = app.register_and_login("carol").await;
    send_all(&app, &alice, &["hi"]).await;
    for body in [
        json!({ "secs": 4 }),
        json!({ "secs": -1 }),
        json!({ "secs": 31_536_001 }),
        json!({ "secs": "5" }),
        json!({}),
        json!({ "secs": 5, "extra": 1 }),
    ] {
        let (status, v) = call(
            &app,
            Method::PUT,
            "/api/conversations/alice/timer",
            &bob,
            Some(body.clone()),
        )
        .await;
        assert_eq!((status, code(&v)), (400, "invalid_request"), "{body}");
    }
    for (who, peer) in [
        (&carol, "alice"),
        (&alice, "carol"),
        (&alice, "nobody"),
        (&alice, "NOT%20A%20NAME"),
    ] {
        let path = format!("/api/conversations/{peer}/timer");
        let (status, v) = call(&app, Method::PUT, &path, who, Some(json!({ "secs": 60 }))).await;
        assert_eq!(
            (status, code(&v)),
            (404, "not_found"),
            "{} -> {peer}",
            who.username
        );
        let (status, v) = call(&app, Method::GET, &path, who, None).await;
        assert_eq!(
            (status, code(&v)),
            (404, "not_found"),
            "{} -> {peer}",
            who.username
        );
    }
    assert_eq!(app.count("conversation_timers"), 0);
    let (status, ok) = call(
        &app,
        Method::PUT,
        "/api/conversations/alice/timer",
        &bob,
        Some(json!({ "secs": 31_536_000 })),
    )
    .await;
    assert_eq!((status, ok["secs"].as_i64()), (200, Some(31_536_000)));
}
