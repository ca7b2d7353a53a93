//! Sessions end everywhere: logout, logout-all and a reused refresh token close that
//! session's WebSockets (close code 4401) within a second and leave other sessions' open;
//! a revoked session's token and tickets open nothing; a key rotation tells every socket
//! of the user (`keys_changed`).

use std::time::{Duration, Instant};

use securechat_client::ws::{self, ServerFrame, WsClient, WsEvent};
use securechat_client::{Method, Session};

use crate::helpers::{spawn_app, TestApp, PASSWORD};
use crate::relay::{ack, connect, next_matching, none_of, seal};

/// PROTOCOL.md §10.4: the code a client must not reconnect after.
const SESSION_ENDED: u16 = 4401;
const WITHIN: Duration = Duration::from_secs(1);

/// The close frame's code and reason if it arrives within a second (skipping frames
/// queued before it); panics otherwise.
async fn closed_within_a_second(ws: &mut WsClient) -> (Option<u16>, String) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.recv_event(left).await {
            Ok(WsEvent::Close { code, reason }) => return (code, reason),
            Ok(WsEvent::Ended) => panic!("the stream ended without a close frame"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame within {WITHIN:?}: {e}"),
        }
    }
}

pub(crate) async fn assert_session_ended(ws: &mut WsClient) {
    let (code, reason) = closed_within_a_second(ws).await;
    assert_eq!(code, Some(SESSION_ENDED));
    assert_eq!(reason, "session ended");
}

/// The socket still works: a note to oneself is acknowledged.
async fn assert_open(app: &TestApp, s: &Session, ws: &mut WsClient) {
    let env = seal(app, s, &s.username, "still here").await;
    ws.send_envelope(&env).await.expect("send");
    let (id, _) = ack(ws).await;
    assert_eq!(id, env.id);
}

async fn second_session(app: &TestApp, name: &str) -> Session {
    app.client
        .login(name, PASSWORD)
        .await
        .expect("second device")
}

/// A server with alice signed in on two devices (two sessions).
async fn alice_twice() -> (TestApp, Session, Session) {
    let app = spawn_app().await;
    let a = app.register_and_login("alice").await;
    let b = second_session(&app, "alice").await;
    (app, a, b)
}

/// Alice on two devices (one socket in session `a`, two in `b`) and bob with one socket.
struct Crowd {
    app: TestApp,
    a: Session,
    b: Session,
    bob: Session,
    sockets: [WsClient; 4],
}

async fn crowd() -> Crowd {
    let (app, a, b) = alice_twice().await;
    let bob = app.register_and_login("bob").await;
    let sockets = [
        connect(&app, &a).await,
        connect(&app, &b).await,
        connect(&app, &b).await,
        connect(&app, &bob).await,
    ];
    Crowd {
        app,
        a,
        b,
        bob,
        sockets,
    }
}

#[tokio::test]
async fn logout_closes_that_sessions_sockets_within_a_second_and_no_other() {
    let (app, a, b) = alice_twice().await;
    let mut a1 = connect(&app, &a).await;
    let mut a2 = connect(&app, &a).await;
    let mut b1 = connect(&app, &b).await;

    app.client
        .logout(&a.access_token, None)
        .await
        .expect("logout");
    assert_session_ended(&mut a1).await;
    assert_session_ended(&mut a2).await;
    assert_open(&app, &b, &mut b1).await;
}

#[tokio::test]
async fn logout_with_the_refresh_token_of_another_session_closes_that_one_too() {
    let (app, a, b) = alice_twice().await;
    let c = second_session(&app, "alice").await;
    let mut b1 = connect(&app, &b).await;
    let mut c1 = connect(&app, &c).await;
    app.client
        .logout(&a.access_token, Some(&b.refresh_token))
        .await
        .expect("logout");
    assert_session_ended(&mut b1).await;
    assert_open(&app, &c, &mut c1).await;
}

#[tokio::test]
async fn logout_all_closes_every_socket_of_the_user_within_a_second() {
    let Crowd {
        app,
        a,
        bob,
        sockets: [mut a1, mut b1, mut b2, mut bob1],
        ..
    } = crowd().await;
    app.client
        .logout_all(&a.access_token)
        .await
        .expect("logout-all");
    for ws in [&mut a1, &mut b1, &mut b2] {
        assert_session_ended(ws).await;
    }
    assert_open(&app, &bob, &mut bob1).await;
}

#[tokio::test]
async fn a_reused_refresh_token_closes_the_sockets_of_the_session_it_revokes() {
    let (app, mut a, b) = alice_twice().await;
    let mut a1 = connect(&app, &a).await;
    let mut b1 = connect(&app, &b).await;
    let stolen = a.refresh_token.clone();
    app.client.refresh_session(&mut a).await.expect("refresh");
    let e = app.client.refresh(&stolen).await.expect_err("reuse");
    assert!(e.is_api(401, "unauthorized"), "{e}");
    assert_session_ended(&mut a1).await;
    assert_open(&app, &b, &mut b1).await;
}

#[tokio::test]
async fn a_revoked_session_gets_no_ticket_and_its_unused_ticket_opens_nothing() {
    let app = spawn_app().await;
    let a = app.register_and_login("alice").await;
    let early = app
        .client
        .ws_ticket(&a.access_token)
        .await
        .expect("ticket before logout");
    app.client
        .logout(&a.access_token, None)
        .await
        .expect("logout");

    // The access token has not expired, but its session is over.
    let r = app
        .client
        .request(Method::POST, "/api/ws-ticket", Some(&a.access_token), None)
        .await
        .expect("send");
    assert_eq!(r.status, 401);
    assert_eq!(r.error().expect("body").error.code, "unauthorized");
    for path in ["/api/me", "/api/users", "/api/conversations"] {
        let r = app
            .client
            .request(Method::GET, path, Some(&a.access_token), None)
            .await
            .expect("send");
        assert_eq!(r.status, 401, "{path}");
    }

    // A ticket issued before the logout opens a socket that is closed at once.
    let origin = app.client.origin();
    let mut ws = ws::connect(app.client.base_url(), &early.ticket, Some(&origin))
        .await
        .expect("upgrade");
    assert_session_ended(&mut ws).await;
}

#[tokio::test]
async fn a_rotation_tells_every_socket_of_the_user_and_nobody_else() {
    let Crowd {
        app,
        mut a,
        b,
        sockets: [mut a1, mut b1, mut b2, mut bob1],
        ..
    } = crowd().await;
    app.client
        .rotate_keys(&mut a, PASSWORD)
        .await
        .expect("rotate");
    for ws in [&mut b1, &mut b2, &mut a1] {
        let v = next_matching(ws, |f| match f {
            ServerFrame::KeysChanged { key_version } => Some(key_version),
            _ => None,
        })
        .await;
        assert_eq!(v, 2);
    }
    none_of(&mut bob1, Duration::from_millis(300), |f| {
        matches!(f, ServerFrame::KeysChanged { .. })
    })
    .await;
    // The other session's sockets stay open: the client decides what to do.
    assert_open(&app, &b, &mut b1).await;
}
