//! `echo-relay`: the ceiling the real relay is compared with. A minimal tokio-tungstenite
//! relay that stores nothing and checks nothing: a connection names its user in the
//! `?user=NAME` query parameter (or, without one, in a first text frame
//! `{"type":"hello","user":"NAME"}`); a `send` frame's envelope is forwarded unchanged
//! (not re-encoded) inside a `message` frame to every connection of the envelope's `to`
//! (and the sender's other connections, as the real relay does), and the sender gets an
//! `ack`. Nothing is written anywhere, so it measures the cost of sockets, framing and
//! fan-out alone.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Outbox = mpsc::UnboundedSender<Message>;

#[derive(Default)]
struct Hub {
    /// user -> (connection id, outbox) of each open connection.
    conns: Mutex<HashMap<String, Vec<(u64, Outbox)>>>,
    next_conn: AtomicU64,
    seq: AtomicU64,
}

impl Hub {
    fn join(&self, user: &str, outbox: Outbox) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut conns) = self.conns.lock() {
            conns.entry(user.to_owned()).or_default().push((id, outbox));
        }
        id
    }

    fn leave(&self, user: &str, id: u64) {
        if let Ok(mut conns) = self.conns.lock() {
            if let Some(list) = conns.get_mut(user) {
                list.retain(|(c, _)| *c != id);
                if list.is_empty() {
                    conns.remove(user);
                }
            }
        }
    }

    /// Push `frame` to every connection of `user` except `skip`.
    fn push(&self, user: &str, skip: Option<u64>, frame: &Utf8Bytes) {
        if let Ok(conns) = self.conns.lock() {
            if let Some(list) = conns.get(user) {
                for (c, outbox) in list {
                    if Some(*c) != skip {
                        let _ = outbox.send(Message::Text(frame.clone()));
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    envelope: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Route<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    to: Cow<'a, str>,
}

fn now_ms() -> u64 {
    securechat_client::envelope::now_ms()
}

fn error_frame(code: &str, message: &str) -> Message {
    Message::text(
        serde_json::json!({"type": "error", "code": code, "message": message}).to_string(),
    )
}

fn user_from_query(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| {
        kv.strip_prefix("user=")
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    })
}

async fn serve_conn(hub: Arc<Hub>, tcp: TcpStream, config: WebSocketConfig) {
    let _ = tcp.set_nodelay(true);
    let mut user: Option<String> = None;
    // The error type is tungstenite's handshake callback contract, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        user = user_from_query(req.uri().query());
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let user = match user {
        Some(u) => u,
        None => {
            // No query parameter: the first text frame says who this is.
            let named = match stream.next().await {
                Some(Ok(Message::Text(t))) => serde_json::from_str::<Incoming<'_>>(t.as_str())
                    .ok()
                    .filter(|i| i.kind == "hello")
                    .and_then(|i| i.user.map(Cow::into_owned)),
                _ => None,
            };
            match named {
                Some(u) => u,
                None => {
                    let _ = sink
                        .send(error_frame("hello_required", "say who you are first"))
                        .await;
                    return;
                }
            }
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let conn = hub.join(&user, tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            Message::Binary(_) => {
                let _ = tx.send(error_frame(
                    "invalid_frame",
                    "binary frames are not accepted",
                ));
                continue;
            }
            _ => continue,
        };
        let incoming = match serde_json::from_str::<Incoming<'_>>(text.as_str()) {
            Ok(i) => i,
            Err(_) => {
                let _ = tx.send(error_frame("invalid_frame", "not a frame"));
                continue;
            }
        };
        if incoming.kind != "send" {
            continue;
        }
        let Some(envelope) = incoming.envelope else {
            let _ = tx.send(error_frame("invalid_frame", "send without envelope"));
            continue;
        };
        let Ok(route) = serde_json::from_str::<Route<'_>>(envelope.get()) else {
            let _ = tx.send(error_frame("invalid_envelope", "no id or to"));
            continue;
        };
        let seq = hub.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let ts = now_ms();
        let frame = Utf8Bytes::from(format!(
            "{{\"type\":\"message\",\"seq\":{seq},\"server_ts\":{ts},\"envelope\":{}}}",
            envelope.get()
        ));
        hub.push(&route.to, None, &frame);
        if route.to != user {
            hub.push(&user, Some(conn), &frame);
        }
        let ack = format!(
            "{{\"type\":\"ack\",\"id\":{},\"seq\":{seq},\"server_ts\":{ts}}}",
            serde_json::Value::String(route.id.into_owned())
        );
        let _ = tx.send(Message::text(ack));
    }
    hub.leave(&user, conn);
    drop(tx);
    let _ = writer.await;
}

/// Listen on 127.0.0.1:`port` (0: any free port), print
/// `echo-relay listening on ws://127.0.0.1:PORT` as the first stdout line, serve forever.
pub async fn run(port: u16, read_buffer: usize) -> anyhow::Result<()> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "echo-relay listening on ws://{addr}")?;
        out.flush()?;
    }
    let hub = Arc::new(Hub::default());
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(x) => x,
            // Out of file descriptors and the like: wait and go on.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(serve_conn(hub.clone(), tcp, config));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_user() {
        assert_eq!(user_from_query(Some("user=bob")), Some("bob".into()));
        assert_eq!(user_from_query(Some("a=1&user=bob")), Some("bob".into()));
        assert_eq!(user_from_query(Some("user=")), None);
        assert_eq!(user_from_query(None), None);
    }
}
