//! The real-time relay: tickets and the upgrade, store-then-ack, fan-out to every
//! connection, offline catch-up, resends, receipts, typing, presence, and bad input.

use std::time::Duration;

use securechat_client::envelope::{open, seal_text};
use securechat_client::ws::{ClientFrame, ServerFrame, WsClient, WsEvent};
use securechat_client::{b64, parse_enc_spki, Method, Session};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const WAIT: Duration = Duration::from_secs(5);

/// `from` seals `text` for `to`, using the directory's key for `to`.
pub(crate) async fn seal(
    app: &TestApp,
    from: &Session,
    to: &str,
    text: &str,
) -> securechat_client::envelope::Envelope {
    let keys = app.client.keys(&from.access_token, to).await.expect("keys");
    let enc = parse_enc_spki(&b64::decode(&keys.enc_public_key).expect("b64")).expect("rsa");
    seal_text(&from.username, &from.identity, to, &enc, text).expect("seal")
}

/// A server with alice and bob signed in and connected (alice's socket first).
async fn alice_and_bob_online() -> (TestApp, Session, Session, WsClient, WsClient) {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let a = connect(&app, &alice).await;
    let b = connect(&app, &bob).await;
    (app, alice, bob, a, b)
}

pub(crate) async fn connect(app: &TestApp, s: &Session) -> WsClient {
    app.client
        .connect_ws(&s.access_token)
        .await
        .expect("connect")
}

/// Receives frames until one satisfies `pick`, skipping presence and typing noise.
pub(crate) async fn next_matching<T>(
    ws: &mut WsClient,
    mut pick: impl FnMut(ServerFrame) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = ws
            .recv_timeout(left)
            .await
            .expect("a frame before the deadline");
        if let Some(t) = pick(frame) {
            return t;
        }
    }
}

/// Waits `period` and fails if a frame `forbidden` picks arrives meanwhile (presence
/// frames may come and go).
pub(crate) async fn none_of(
    ws: &mut WsClient,
    period: Duration,
    forbidden: impl Fn(&ServerFrame) -> bool,
) {
    let deadline = tokio::time::Instant::now() + period;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return;
        }
        match ws.recv_timeout(left).await {
            Ok(f) => assert!(!forbidden(&f), "unexpected frame {f:?}"),
            Err(_) => return,
        }
    }
}

/// Reads past whatever is still queued to the close frame; its code (None if the stream
/// just ended).
pub(crate) async fn close_code(ws: &mut WsClient) -> Option<u16> {
    for _ in 0..100 {
        match ws.recv_event(WAIT).await {
            Ok(WsEvent::Close { code, .. }) => return code,
            Ok(WsEvent::Ended) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
    None
}

/// Waits for the presence frame saying `user` is online.
async fn comes_online(ws: &mut WsClient, user: &str) {
    next_matching(ws, |f| match f {
        ServerFrame::Presence {
            user: u,
            online: true,
            ..
        } if u == user => Some(()),
        _ => None,
    })
    .await
}

pub(crate) async fn ack(ws: &mut WsClient) -> (String, u64) {
    next_matching(ws, |f| match f {
        ServerFrame::Ack { id, seq, .. } => Some((id, seq)),
        ServerFrame::Error { code, message, .. } => panic!("error frame {code}: {message}"),
        _ => None,
    })
    .await
}

async fn message(ws: &mut WsClient) -> (u64, String) {
    next_matching(ws, |f| match f {
        ServerFrame::Message { seq, envelope, .. } => Some((seq, envelope.get().to_owned())),
        _ => None,
    })
    .await
}

async fn error_code(ws: &mut WsClient) -> String {
    next_matching(ws, |f| match f {
        ServerFrame::Error { code, .. } => Some(code),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn two_users_exchange_signed_encrypted_messages_in_real_time_and_the_server_holds_no_plaintext(
) {
    let (app, alice, bob, mut a, mut b) = alice_and_bob_online().await;

    let secret = "meet me at the old mill at noon";
    let env = seal(&app, &alice, "bob", secret).await;
    let sent = a.send_envelope(&env).await.expect("send");
    let (id, seq) = ack(&mut a).await;
    assert_eq!(id, env.id);
    let (got_seq, raw) = message(&mut b).await;
    assert_eq!(got_seq, seq);
    assert_eq!(raw, sent.get(), "relayed byte for byte");
    let alice_keys = app
        .client
        .keys(&bob.access_token, "alice")
        .await
        .expect("keys");
    let opened = open(
        &securechat_client::envelope::Envelope::from_json(&raw).expect("parse"),
        "bob",
        &bob.identity,
        &b64::decode(&alice_keys.sign_public_key).expect("b64"),
    )
    .expect("bob opens it");
    assert_eq!(opened.text(), Some(secret));

    // History hands back the same bytes, too.
    let h = app
        .client
        .history(&bob.access_token, "alice", Some(0), None, None)
        .await
        .expect("history");
    assert_eq!(
        h.messages[0].envelope.get(),
        sent.get(),
        "history byte for byte"
    );

    // And back.
    let reply = seal(&app, &bob, "alice", "ok").await;
    b.send_envelope(&reply).await.expect("send");
    ack(&mut b).await;
    let (_, raw) = message(&mut a).await;
    assert!(raw.contains(&reply.id));

    drop((a, b));
    let db = std::fs::read(app.db_path()).unwrap_or_default();
    let wal = std::fs::read(app.db_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plaintext stored"
        );
    }
    assert_eq!(app.count("messages"), 2);
}

#[tokio::test]
async fn an_outsider_cannot_read_a_conversation_or_send_as_someone_else() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let carol = app.register_and_login("carol").await;
    let mut a = connect(&app, &alice).await;
    a.send_envelope(&seal(&app, &alice, "bob", "for bob only").await)
        .await
        .expect("send");
    ack(&mut a).await;

    // Carol has no conversation with either: 404, as for a peer that doesn't exist.
    for peer in ["alice", "bob", "nobody"] {
        let r = app
            .client
            .request(
                Method::GET,
                &format!("/api/conversations/{peer}/messages"),
                Some(&carol.access_token),
                None,
            )
            .await
            .expect("send");
        assert_eq!(r.status, 404, "carol reading {peer}");
        assert_eq!(r.error().expect("body").error.code, "not_found");
    }
    let history = app
        .client
        .history(&bob.access_token, "alice", None, None, None)
        .await
        .expect("bob reads");
    assert_eq!(history.messages.len(), 1);
    let anonymous = app
        .client
        .request(Method::GET, "/api/conversations/alice/messages", None, None)
        .await
        .expect("send");
    assert_eq!(anonymous.status, 401);

    // Carol signs an envelope claiming to be alice: refused, nothing stored.
    let mut c = connect(&app, &carol).await;
    let mut forged = seal(&app, &carol, "bob", "i am alice").await;
    forged.from = "alice".into();
    c.send(&ClientFrame::send(&forged).expect("frame"))
        .await
        .expect("send");
    assert_eq!(error_code(&mut c).await, "sender_mismatch");
    assert_eq!(app.count("messages"), 1);
}

#[tokio::test]
async fn offline_messages_arrive_in_order_from_history_and_live_ones_after_reconnect() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let mut a = connect(&app, &alice).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let env = seal(&app, &alice, "bob", &format!("offline {i}")).await;
        ids.push(env.id.clone());
        a.send_envelope(&env).await.expect("send");
    }
    let mut seqs = Vec::new();
    for _ in 0..5 {
        seqs.push(ack(&mut a).await);
    }
    assert_eq!(
        seqs.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        ids,
        "acks in send order"
    );
    assert!(seqs.windows(2).all(|w| w[0].1 < w[1].1), "seq increases");

    let convs = app
        .client
        .conversations(&bob.access_token)
        .await
        .expect("conversations");
    assert_eq!(convs.conversations.len(), 1);
    assert_eq!(convs.conversations[0].peer, "alice");
    assert_eq!(convs.conversations[0].unread, 5);

    let h = app
        .client
        .history(&bob.access_token, "alice", Some(0), None, None)
        .await
        .expect("history");
    let got: Vec<String> = h
        .messages
        .iter()
        .map(|m| m.envelope.parse().expect("envelope").id)
        .collect();
    assert_eq!(got, ids, "history in order");
    let last = h.messages.last().expect("last").seq;

    let mut b = connect(&app, &bob).await;
    let live = seal(&app, &alice, "bob", "live").await;
    a.send_envelope(&live).await.expect("send");
    ack(&mut a).await;
    let (seq, raw) = message(&mut b).await;
    assert!(raw.contains(&live.id));
    let after = app
        .client
        .history(&bob.access_token, "alice", Some(last), None, None)
        .await
        .expect("catch up");
    assert_eq!(after.messages.len(), 1);
    assert_eq!(after.messages[0].seq, seq);
    // Paging backwards: the last two before the live one.
    let page = app
        .client
        .history(&bob.access_token, "alice", None, Some(seq), Some(2))
        .await
        .expect("page");
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![seqs[3].1, seqs[4].1]
    );
}

#[tokio::test]
async fn every_connection_of_the_recipient_and_the_senders_other_tabs_receive() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let mut a1 = connect(&app, &alice).await;
    let mut a2 = connect(&app, &alice).await;
    let mut b1 = connect(&app, &bob).await;
    let mut b2 = connect(&app, &bob).await;
    let env = seal(&app, &alice, "bob", "to both tabs").await;
    a1.send_envelope(&env).await.expect("send");
    let (_, seq) = ack(&mut a1).await;
    for ws in [&mut b1, &mut b2, &mut a2] {
        let (got, raw) = message(ws).await;
        assert_eq!(got, seq);
        assert!(raw.contains(&env.id));
    }
    // The sending tab gets the ack, not a copy of its own message.
    none_of(&mut a1, Duration::from_millis(300), |f| {
        matches!(f, ServerFrame::Message { .. })
    })
    .await;
}

#[tokio::test]
async fn a_resent_id_is_acknowledged_with_the_original_seq_and_stored_once() {
    let (app, alice, bob, mut a, mut b) = alice_and_bob_online().await;
    let env = seal(&app, &alice, "bob", "once").await;
    a.send_envelope(&env).await.expect("send");
    let first = ack(&mut a).await;
    a.send_envelope(&env).await.expect("resend");
    let second = ack(&mut a).await;
    assert_eq!(first, second);
    message(&mut b).await;
    none_of(&mut b, Duration::from_millis(300), |f| {
        matches!(f, ServerFrame::Message { .. })
    })
    .await;
    assert_eq!(app.count("messages"), 1);

    // Another sender cannot reuse (or shadow) that id: refused, nothing stored.
    let keys = app
        .client
        .keys(&bob.access_token, "alice")
        .await
        .expect("keys");
    let alice_enc = parse_enc_spki(&b64::decode(&keys.enc_public_key).expect("b64")).expect("rsa");
    let bob_enc = bob.identity.enc.to_public_key();
    let mut inputs = securechat_client::envelope::SealInputs::fresh();
    inputs.id = env.id.clone();
    let readers = [
        securechat_client::envelope::Reader {
            name: "alice",
            enc: &alice_enc,
        },
        securechat_client::envelope::Reader {
            name: "bob",
            enc: &bob_enc,
        },
    ];
    let copycat = securechat_client::envelope::seal_with(
        &mut rand::rngs::OsRng,
        &inputs,
        "bob",
        &bob.identity.sign,
        "alice",
        &readers,
        br#"{"text":"same id"}"#,
    )
    .expect("seal");
    b.send_envelope(&copycat).await.expect("send");
    assert_eq!(error_code(&mut b).await, "invalid_envelope");
    assert_eq!(app.count("messages"), 1);
}

#[tokio::test]
async fn receipts_move_the_state_forward_and_reach_the_sender() {
    let (app, alice, bob, mut a, mut b) = alice_and_bob_online().await;
    let env = seal(&app, &alice, "bob", "did you get this?").await;
    a.send_envelope(&env).await.expect("send");
    ack(&mut a).await;
    message(&mut b).await;
    b.send(&ClientFrame::Delivered { id: env.id.clone() })
        .await
        .expect("delivered");
    let by = next_matching(&mut a, |f| match f {
        ServerFrame::Delivered { id, by, .. } if id == env.id => Some(by),
        _ => None,
    })
    .await;
    assert_eq!(by, "bob");
    b.send(&ClientFrame::Read { id: env.id.clone() })
        .await
        .expect("read");
    next_matching(&mut a, |f| {
        matches!(f, ServerFrame::Read { ref id, .. } if *id == env.id).then_some(())
    })
    .await;
    let h = app
        .client
        .history(&alice.access_token, "bob", None, None, None)
        .await
        .expect("history");
    assert_eq!(h.messages[0].state, "read");
    assert_eq!(
        app.client
            .conversations(&bob.access_token)
            .await
            .expect("c")
            .conversations[0]
            .unread,
        0
    );

    // Only the recipient can acknowledge: alice "reading" her own message to bob changes nothing.
    a.send(&ClientFrame::Read { id: env.id.clone() })
        .await
        .expect("read");
    assert_eq!(error_code(&mut a).await, "not_found");
}

#[tokio::test]
async fn typing_and_presence_reach_conversation_partners() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let mut a = connect(&app, &alice).await;
    a.send_envelope(&seal(&app, &alice, "bob", "hi").await)
        .await
        .expect("send");
    ack(&mut a).await;

    let mut b = connect(&app, &bob).await;
    comes_online(&mut a, "bob").await;
    comes_online(&mut b, "alice").await;
    // A second tab of alice learns at once that bob is online.
    let mut a2 = connect(&app, &alice).await;
    comes_online(&mut a2, "bob").await;
    drop(a2);
    b.send(&ClientFrame::Typing { to: "alice".into() })
        .await
        .expect("typing");
    let from = next_matching(&mut a, |f| match f {
        ServerFrame::Typing { from } => Some(from),
        _ => None,
    })
    .await;
    assert_eq!(from, "bob");
    b.close().await.expect("close");
    let last_seen = next_matching(&mut a, |f| match f {
        ServerFrame::Presence {
            user,
            online: false,
            last_seen,
        } if user == "bob" => Some(last_seen),
        _ => None,
    })
    .await;
    assert!(last_seen.is_some());
    // A connection opened later still learns when bob was last seen.
    let mut a3 = connect(&app, &alice).await;
    let seen_later = next_matching(&mut a3, |f| match f {
        ServerFrame::Presence {
            user,
            online: false,
            last_seen,
        } if user == "bob" => Some(last_seen),
        _ => None,
    })
    .await;
    assert_eq!(seen_later, last_seen);
    drop(a3);

    // A stranger's presence and typing never reach alice.
    let carol = app.register_and_login("carol").await;
    let mut c = connect(&app, &carol).await;
    c.send(&ClientFrame::Typing { to: "alice".into() })
        .await
        .expect("typing");
    none_of(&mut a, Duration::from_millis(300), |f| {
        matches!(f, ServerFrame::Typing { .. })
            || matches!(f, ServerFrame::Presence { user, .. } if user == "carol")
    })
    .await;
}

#[tokio::test]
async fn a_first_message_introduces_the_two_online_and_tells_the_sender_when_an_offline_one_was_seen(
) {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let carol = app.register_and_login("carol").await;
    // carol has been online once, so she has a last-seen time.
    let c = connect(&app, &carol).await;
    drop(c);
    let mut a = connect(&app, &alice).await;
    let mut b = connect(&app, &bob).await;

    // Both online, no conversation yet: the first message introduces each to the other.
    a.send_envelope(&seal(&app, &alice, "bob", "hi").await)
        .await
        .expect("send");
    ack(&mut a).await;
    comes_online(&mut a, "bob").await;
    comes_online(&mut b, "alice").await;

    // carol offline: alice learns when she was last seen.
    a.send_envelope(&seal(&app, &alice, "carol", "hi").await)
        .await
        .expect("send");
    ack(&mut a).await;
    let last_seen = next_matching(&mut a, |f| match f {
        ServerFrame::Presence {
            user,
            online: false,
            last_seen,
        } if user == "carol" => Some(last_seen),
        _ => None,
    })
    .await;
    assert!(last_seen.is_some(), "carol was online once");

    // Later messages to the same partners introduce nobody again.
    a.send_envelope(&seal(&app, &alice, "bob", "again").await)
        .await
        .expect("send");
    ack(&mut a).await;
    none_of(&mut a, Duration::from_millis(300), |f| {
        matches!(f, ServerFrame::Presence { .. })
    })
    .await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_a_flood_closes_the_socket_with_1008() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let mut b = connect(&app, &bob).await;
    let mut a = connect(&app, &alice).await;

    a.send_text("{not json").await.expect("send");
    assert_eq!(error_code(&mut a).await, "invalid_json");
    a.send_text(r#"{"type":"teleport"}"#).await.expect("send");
    assert_eq!(error_code(&mut a).await, "unknown_type");
    a.send_text(r#"{"type":"send"}"#).await.expect("send");
    assert_eq!(error_code(&mut a).await, "invalid_frame");
    let env = seal(&app, &alice, "bob", "x").await;
    let mut extra = serde_json::to_value(&env).expect("json");
    extra["note"] = json!("extra field");
    a.send_text(json!({"type": "send", "envelope": extra}).to_string())
        .await
        .expect("send");
    assert_eq!(error_code(&mut a).await, "invalid_envelope");
    let mut stranger = env.clone();
    stranger.to = "nobody".into();
    a.send_text(json!({"type": "send", "envelope": stranger}).to_string())
        .await
        .expect("send");
    assert!(["unknown_recipient", "invalid_envelope"].contains(&error_code(&mut a).await.as_str()));
    a.send_binary(vec![1, 2, 3]).await.expect("send");
    assert_eq!(error_code(&mut a).await, "invalid_frame");
    assert_eq!(app.count("messages"), 0, "no bad frame stored anything");

    // Keep going: the connection is closed with 1008.
    for _ in 0..20 {
        if a.send_text("garbage").await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut a).await, Some(1008));

    // Bob's session is unaffected.
    let mut a2 = connect(&app, &alice).await;
    a2.send_envelope(&seal(&app, &alice, "bob", "still here").await)
        .await
        .expect("send");
    ack(&mut a2).await;
    message(&mut b).await;
}

/// The next pong's id (an error frame first fails the test).
async fn pong(ws: &mut WsClient) -> Option<String> {
    next_matching(ws, |f| match f {
        ServerFrame::Pong { id } => Some(id),
        ServerFrame::Error { code, .. } => panic!("error frame {code}"),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_ping_is_answered_with_a_pong_carrying_its_id_and_a_bad_ping_with_an_error() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let mut a = connect(&app, &alice).await;
    a.send(&ClientFrame::Ping {
        id: Some("p-1_A".into()),
    })
    .await
    .expect("ping");
    assert_eq!(pong(&mut a).await.as_deref(), Some("p-1_A"));
    a.send(&ClientFrame::Ping { id: None }).await.expect("ping");
    assert_eq!(pong(&mut a).await, None);

    for bad in [
        json!({"type": "ping", "id": "has space"}),
        json!({"type": "ping", "id": ""}),
        json!({"type": "ping", "id": "x".repeat(65)}),
        json!({"type": "ping", "id": "<b>"}),
        json!({"type": "ping", "to": "bob"}),
    ] {
        a.send_text(bad.to_string()).await.expect("send");
        assert_eq!(error_code(&mut a).await, "invalid_frame", "{bad}");
    }
    // Still open and answering.
    a.send(&ClientFrame::Ping {
        id: Some("x".repeat(64)),
    })
    .await
    .expect("ping");
    assert_eq!(pong(&mut a).await, Some("x".repeat(64)));
    assert_eq!(app.count("messages"), 0);
}

#[tokio::test]
async fn an_oversized_frame_closes_the_socket_with_1009() {
    let app = spawn_app_with(|c| c.messages.max_envelope_bytes = 4096).await;
    let alice = app.register_and_login("alice").await;
    let mut a = connect(&app, &alice).await;
    a.send_text(format!(
        r#"{{"type":"send","envelope":"{}"}}"#,
        "A".repeat(20_000)
    ))
    .await
    .expect("send");
    assert_eq!(close_code(&mut a).await, Some(1009));
}

pub(crate) async fn upgrade_status(app: &TestApp, ticket: &str, origin: Option<&str>) -> u16 {
    let mut req = app
        .client
        .http()
        .get(format!("{}/api/ws?ticket={ticket}", app.client.base_url()))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.expect("send").status().as_u16()
}

#[tokio::test]
async fn the_upgrade_needs_an_unused_ticket_and_an_allowed_origin() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let own = app.client.origin();
    assert_eq!(upgrade_status(&app, "made-up", Some(&own)).await, 401);
    let t = app
        .client
        .ws_ticket(&alice.access_token)
        .await
        .expect("ticket");
    assert_eq!(t.expires_in, 30);
    assert_eq!(
        upgrade_status(&app, &t.ticket, Some("https://evil.example")).await,
        403
    );
    assert_eq!(upgrade_status(&app, &t.ticket, None).await, 403);
    assert_eq!(upgrade_status(&app, &t.ticket, Some(&own)).await, 101);
    assert_eq!(
        upgrade_status(&app, &t.ticket, Some(&own)).await,
        401,
        "single use"
    );
    let no_token = app
        .client
        .request(Method::POST, "/api/ws-ticket", None, None)
        .await
        .expect("send");
    assert_eq!(no_token.status, 401);
}

#[tokio::test]
async fn a_reader_too_slow_to_keep_up_is_disconnected_and_the_sender_is_not_slowed() {
    let app = spawn_app_with(|c| c.relay.outgoing_queue = 8).await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let mut a = connect(&app, &alice).await;
    let mut b = connect(&app, &bob).await; // never reads until the end
    let padding = "p".repeat(32 * 1024);
    let env = seal(&app, &alice, "bob", &padding).await;
    let keys = app
        .client
        .keys(&alice.access_token, "bob")
        .await
        .expect("keys");
    let enc = parse_enc_spki(&b64::decode(&keys.enc_public_key).expect("b64")).expect("rsa");
    let mut sent = 0;
    let started = std::time::Instant::now();
    while sent < 400 {
        let e = if sent == 0 {
            env.clone()
        } else {
            seal_text("alice", &alice.identity, "bob", &enc, &padding).expect("seal")
        };
        a.send_envelope(&e).await.expect("send");
        ack(&mut a).await;
        sent += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the sender was held up"
    );
    // Bob's socket was dropped by the server at some point: reading drains what the kernel
    // buffered, then the close (1013) or the end of the stream.
    let mut ended = false;
    for _ in 0..1000 {
        match b.recv_event(WAIT).await {
            Ok(WsEvent::Close { .. }) | Ok(WsEvent::Ended) | Err(_) => {
                ended = true;
                break;
            }
            Ok(_) => continue,
        }
    }
    assert!(ended, "the slow reader was not disconnected");
    // Everything is in history for when bob comes back.
    let h = app
        .client
        .history(&bob.access_token, "alice", Some(0), None, Some(200))
        .await
        .expect("history");
    assert_eq!(h.messages.len(), 200);
}
