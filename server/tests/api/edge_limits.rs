//! The HTTP edge under abuse: a slow head (slowloris), a stalled body, a slow but moving
//! upload, idle keep-alive connections, a flood of idle connections beyond
//! `server.max_connections`, and WebSockets told 1001 at shutdown. Raw TCP clients, so
//! that the bytes on the wire are exactly the ones each case needs.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::files::{body as upload_bytes, two_users, Tus};
use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::relay::{ack, close_code, connect, next_matching, seal};

fn host(app: &TestApp) -> String {
    app.client
        .base_url()
        .trim_start_matches("http://")
        .to_string()
}

/// Reads until the server closes the connection (EOF or reset), at most `within`; what
/// arrived and when the connection ended, counted from `since`.
async fn until_closed(s: &mut TcpStream, since: Instant, within: Duration) -> (String, Duration) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), since.elapsed())
}

/// GET /healthz on a new connection; true if it answered 200.
async fn healthz(app: &TestApp) -> bool {
    let Ok(mut s) = TcpStream::connect(host(app)).await else {
        return false;
    };
    let req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    matches!(read, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200")
}

/// The value of one sample of /metrics (`name` as exposed, e.g. with `_total`).
async fn metric(app: &TestApp, name: &str) -> u64 {
    let r = app
        .client
        .request(securechat_client::Method::GET, "/metrics", None, None)
        .await
        .expect("metrics");
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn a_slowloris_client_is_closed_within_the_header_timeout_while_healthz_keeps_answering() {
    let app = spawn_app_with(|c| {
        c.server.header_read_timeout_secs = 3;
        // Shorter than the header timer: a connection that is sending bytes is not idle,
        // so a close before ~3 s would be the wrong timer.
        c.server.keepalive_idle_secs = 1;
    })
    .await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(host(&app)).await.expect("connect");
    let (mut rd, mut wr) = slow.split();
    // One byte of a head every 2 s: it would take a minute to finish.
    let dribble = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: slowloris.example\r\n\r\n" {
            if wr.write_all(&[*b]).await.is_err() {
                // Closed by the server: `closed` below reports when.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let meanwhile = async {
        let mut answered = 0;
        while started.elapsed() < Duration::from_secs(3) {
            assert!(
                healthz(&app).await,
                "/healthz must answer beside the slow client"
            );
            answered += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        answered
    };
    let (closed_after, answered) = tokio::select! {
        () = dribble => panic!("the slow head was never cut off"),
        both = async { tokio::join!(closed, meanwhile) } => both,
    };
    assert!(answered >= 3, "/healthz answered {answered} times");
    assert!(
        closed_after >= Duration::from_millis(2500) && closed_after < Duration::from_secs(8),
        "closed after {closed_after:?}; the header timeout is 3 s"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|c| {
        c.server.header_read_timeout_secs = 20;
        c.server.keepalive_idle_secs = 1;
    })
    .await;
    let before = metric(&app, "securechat_http_connections_idle_closed_total").await;
    let mut s = TcpStream::connect(host(&app)).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.expect("response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // Kept alive after the answer, then closed once idle for 1 s (well before the 20 s
    // header timer would).
    let answered = Instant::now();
    let (rest, after) = until_closed(&mut s, answered, Duration::from_secs(10)).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(6),
        "closed after {after:?}"
    );
    // A connection that never sends a byte is closed the same way.
    let silent_since = Instant::now();
    let mut silent = TcpStream::connect(host(&app)).await.expect("connect");
    let (_, after) = until_closed(&mut silent, silent_since, Duration::from_secs(10)).await;
    assert!(after < Duration::from_secs(6), "closed after {after:?}");
    let after_count = metric(&app, "securechat_http_connections_idle_closed_total").await;
    assert!(after_count >= before + 2, "{before} -> {after_count}");
}

#[tokio::test]
async fn a_stalled_json_body_is_cut_after_the_request_timeout_with_408() {
    let app = spawn_app_with(|c| c.server.request_timeout_secs = 2).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(host(&app)).await.expect("connect");
    s.write_all(
        b"POST /api/auth/prelogin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"username\":",
    )
    .await
    .expect("write");
    let (answer, after) = until_closed(&mut s, started, Duration::from_secs(15)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(10),
        "answered after {after:?}"
    );
    assert!(metric(&app, "securechat_http_request_body_timeouts_total").await >= 1);
    // A body that arrives in time is served as always.
    assert!(healthz(&app).await);
}

/// Sends a PATCH that declares `declared` bytes and sends `pieces`, `gap` apart (less than
/// declared: the body stalls after the last piece); the answer.
async fn paced_patch(
    app: &TestApp,
    token: &str,
    loc: &str,
    declared: usize,
    pieces: &[&[u8]],
    gap: Duration,
) -> String {
    let mut s = TcpStream::connect(host(app)).await.expect("connect");
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {declared}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        s.write_all(piece).await.expect("write");
    }
    let (answer, _) = until_closed(&mut s, Instant::now(), Duration::from_secs(20)).await;
    answer
}

#[tokio::test]
async fn a_slow_upload_patch_that_keeps_moving_outlives_the_request_timeout_and_a_stalled_one_is_cut(
) {
    let app = spawn_app_with(|c| c.server.request_timeout_secs = 2).await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    // Ten records, one every 0.5 s: 4.5 s in all, more than twice the timeout.
    let data = upload_bytes(10 * 1040, 7);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let started = Instant::now();
    let records: Vec<&[u8]> = data.chunks(1040).collect();
    let answer = paced_patch(
        &app,
        &alice.access_token,
        &loc,
        data.len(),
        &records,
        Duration::from_millis(500),
    )
    .await;
    assert!(started.elapsed() > Duration::from_secs(4));
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert_eq!(
        tus.offset(&alice.access_token, &loc).await,
        data.len() as u64
    );
    // Two records, then nothing: cut after the timeout, the whole records kept.
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let started = Instant::now();
    let answer = paced_patch(
        &app,
        &alice.access_token,
        &loc,
        data.len(),
        &[&data[..2 * 1040]],
        Duration::ZERO,
    )
    .await;
    let after = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(15),
        "cut after {after:?}"
    );
    assert_eq!(tus.offset(&alice.access_token, &loc).await, 2 * 1040);
}

/// The limit is 200; 10,000 raw connections that never send a byte arrive. Each new one
/// closes the oldest idle one, so the flood cycles through 200 slots while a signed-in
/// user's WebSocket (not an HTTP connection any more) keeps its messages flowing, and a
/// new client's /healthz is answered.
#[tokio::test]
async fn ten_thousand_idle_connections_beyond_the_limit_are_closed_while_a_signed_in_user_keeps_chatting(
) {
    const FLOOD: usize = 10_000;
    let nofile = rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE");
    assert!(
        nofile >= FLOOD as u64 + 2_000,
        "this test needs {} file descriptors; the hard limit is {nofile}",
        FLOOD + 2_000
    );
    let app = spawn_app_with(|c| {
        c.server.max_connections = 200;
        // Only the limit closes connections here, not the timers.
        c.server.header_read_timeout_secs = 600;
        c.server.keepalive_idle_secs = 600;
    })
    .await;
    let (alice, bob) = two_users(&app).await;
    let mut a = connect(&app, &alice).await;
    let mut b = connect(&app, &bob).await;
    let envelope = seal(&app, &alice, "bob", "still here").await;
    let before = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(TcpStream::connect(host(&app)).await.expect("connect"));
    }
    let flooded_in = before.elapsed();

    let sent = Instant::now();
    a.send_envelope(&envelope).await.expect("send");
    ack(&mut a).await;
    next_matching(&mut b, |f| match f {
        securechat_client::ws::ServerFrame::Message { .. } => Some(()),
        _ => None,
    })
    .await;
    let round_trip = sent.elapsed();
    assert!(
        round_trip < Duration::from_secs(2),
        "message round trip {round_trip:?} under the flood"
    );
    assert!(healthz(&app).await, "a new client is served at the limit");

    let open = metric(&app, "securechat_http_connections").await;
    assert!(
        open <= 200,
        "{open} HTTP connections open; the limit is 200"
    );
    let evicted = metric(&app, "securechat_http_connections_evicted_total").await;
    let refused = metric(&app, "securechat_http_connections_refused_total").await;
    assert!(
        evicted + refused >= (FLOOD - 200) as u64,
        "evicted {evicted} + refused {refused}; flood of {FLOOD} took {flooded_in:?}"
    );
    // The server closed them: all but the last ~200 read EOF at once.
    let mut closed = 0;
    for s in flood.iter_mut().take(FLOOD - 400) {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), s.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        FLOOD - 400,
        "early flood connections closed by the server"
    );
    drop(flood);
}

#[tokio::test]
async fn a_websocket_is_told_1001_when_the_server_shuts_down() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let mut ws = connect(&app, &alice).await;
    let _stopped = app.stop().await;
    assert_eq!(close_code(&mut ws).await, Some(1001));
}
