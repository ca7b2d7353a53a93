//! The WebSocket client against a small tokio-tungstenite stand-in: the ticket travels in
//! the query, the Origin header is sent (the server's own by default), a refused upgrade
//! maps to the contract error, frames go both ways unchanged, raw frames and close codes
//! are visible to negative tests.

// The whole file is test code, its stand-in server included.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use securechat_client::envelope::seal_text;
use securechat_client::ws::{self, WsOptions};
use securechat_client::{ClientFrame, Error, ServerFrame, WsEvent};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Accepts `?ticket=good` from the server's own origin; echoes a `send` back as an `ack`
/// and a `message` (byte for byte), answers `{"type":"ping"}` text with an error frame,
/// and closes with 1008 on a binary frame.
async fn stand_in() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let own_origin = format!("http://{addr}");
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let own_origin = own_origin.clone();
            tokio::spawn(async move {
                // The error type is tungstenite's handshake callback contract.
                #[allow(clippy::result_large_err)]
                let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    let refuse = |status: u16, code: &str| {
                        let mut r = ErrorResponse::new(Some(format!(
                            r#"{{"error":{{"code":"{code}","message":"{code}"}}}}"#
                        )));
                        *r.status_mut() = status.try_into().unwrap();
                        r
                    };
                    if req.uri().path() != "/api/ws" || req.uri().query() != Some("ticket=good") {
                        return Err(refuse(401, "unauthorized"));
                    }
                    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
                    if origin != Some(own_origin.as_str()) {
                        return Err(refuse(403, "forbidden"));
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) => {
                            let v: serde_json::Value = match serde_json::from_str(t.as_str()) {
                                Ok(v) => v,
                                Err(_) => continue,
                            };
                            if v["type"] == "send" {
                                let raw = t
                                    .as_str()
                                    .strip_prefix(r#"{"type":"send","envelope":"#)
                                    .and_then(|r| r.strip_suffix('}'))
                                    .unwrap()
                                    .to_owned();
                                let id = v["envelope"]["id"].as_str().unwrap().to_owned();
                                let ack = format!(
                                    r#"{{"type":"ack","id":"{id}","seq":1,"server_ts":5}}"#
                                );
                                ws.send(Message::text(ack)).await.unwrap();
                                let m = format!(
                                    r#"{{"type":"message","seq":1,"server_ts":5,"envelope":{raw}}}"#
                                );
                                ws.send(Message::text(m)).await.unwrap();
                            } else {
                                let e = r#"{"type":"error","code":"invalid_frame","message":"no"}"#;
                                ws.send(Message::text(e)).await.unwrap();
                            }
                        }
                        Message::Binary(_) => {
                            let _ = ws
                                .close(Some(CloseFrame {
                                    code: CloseCode::Policy,
                                    reason: "binary".into(),
                                }))
                                .await;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn upgrade_needs_the_ticket_and_the_origin() {
    let base = stand_in().await;
    let e = ws::connect(&base, "bad", None).await.unwrap_err();
    assert!(e.is_api(401, "unauthorized"), "{e}");
    let e = ws::connect(&base, "good", Some("http://evil.example"))
        .await
        .unwrap_err();
    assert!(e.is_api(403, "forbidden"), "{e}");
    // No Origin header at all.
    let url = ws::ws_url(&base, "good").unwrap();
    let e = ws::connect_with(&url, &WsOptions::new(None))
        .await
        .unwrap_err();
    assert!(e.is_api(403, "forbidden"), "{e}");
    // The default origin is the server's own; small buffers work the same.
    let c = ws::connect(&base, "good", None).await.unwrap();
    c.close().await.unwrap();
    let opts = WsOptions::new(Some(ws::origin_of(&base))).small_buffers();
    let c = ws::connect_with(&url, &opts).await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn frames_round_trip_byte_for_byte() {
    let base = stand_in().await;
    let mut c = ws::connect(&base, "good", None).await.unwrap();
    let id = securechat_client::Identity::generate_with(
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5),
    )
    .unwrap();
    let env = seal_text("alice", &id, "alice", &id.enc.to_public_key(), "hi").unwrap();
    let sent = c.send_envelope(&env).await.unwrap();
    match c.recv().await.unwrap() {
        ServerFrame::Ack { id, seq, server_ts } => {
            assert_eq!(id, env.id);
            assert_eq!((seq, server_ts), (1, 5));
        }
        other => panic!("{other:?}"),
    }
    match c.recv().await.unwrap() {
        ServerFrame::Message { envelope, .. } => {
            assert_eq!(envelope, sent);
            assert_eq!(envelope.get(), env.to_json().unwrap());
            assert_eq!(envelope.parse().unwrap(), env);
        }
        other => panic!("{other:?}"),
    }
    // Typed non-send frames and a raw text frame get error frames here.
    c.send(&ClientFrame::Typing { to: "bob".into() })
        .await
        .unwrap();
    let f = c
        .recv_until(Duration::from_secs(2), |f| {
            matches!(f, ServerFrame::Error { .. })
        })
        .await
        .unwrap();
    assert_eq!(f.kind(), "error");
    c.send_text("not json at all").await.unwrap();
    c.send_text(r#"{"type":"ping"}"#).await.unwrap();
    match c.recv().await.unwrap() {
        ServerFrame::Error { code, id, .. } => {
            assert_eq!(code, "invalid_frame");
            assert_eq!(id, None);
        }
        other => panic!("{other:?}"),
    }
    c.expect_silence(Duration::from_millis(200)).await.unwrap();
    let e = c.recv_timeout(Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    // A binary frame: the stand-in closes with 1008, visible as a raw event.
    c.send_binary(vec![1, 2, 3]).await.unwrap();
    match c.recv_event(Duration::from_secs(2)).await.unwrap() {
        WsEvent::Close { code, reason } => {
            assert_eq!(code, Some(1008));
            assert_eq!(reason, "binary");
        }
        other => panic!("{other:?}"),
    }
}
