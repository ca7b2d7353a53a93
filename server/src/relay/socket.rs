//! Owns one WebSocket connection's life: reading client frames, pipelining envelope
//! stores through the writer, acknowledging after commit, fanning out, receipts, typing,
//! keepalive, and closing on abuse, slowness or shutdown.
//!
//! Invariants: the user and session are the ticket's, never a field of a frame; an `ack` is
//! sent only after the envelope's transaction committed; acks and fan-out follow the order
//! the sends arrived in; a bad frame gets an `error` frame and changes nothing.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::tickets::Holder;
use super::{Hub, Introduction, Registration, SESSION_ENDED};
use crate::db::{now_ms, DbResult};
use crate::messages::{envelope, MessageState, StoreOutcome, Stored};
use crate::plugins::Plugins;
use securechat_plugin_api::{Admission, Verdict};

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After its close frame the server reads on, dropping what arrives, until the client's
/// close frame or this long: a socket shut with unread bytes is reset, and a reset can
/// reach the client before our close frame does.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A client frame, parsed flat so the envelope can stay raw (byte for byte).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    envelope: Option<&'a RawValue>,
    id: Option<String>,
    to: Option<String>,
}

/// What a pipelined write turns into once committed.
enum Done {
    Stored {
        id: String,
        recipient_id: i64,
        /// The recipient's name, kept only while this connection has not yet introduced
        /// the two (see `Hub::introduce`).
        new_partner: Option<String>,
        envelope: Arc<str>,
        result: DbResult<StoreOutcome>,
    },
    Marked {
        id: String,
        read: bool,
        at: i64,
        result: DbResult<Option<i64>>,
    },
}

type DoneFuture = Pin<Box<dyn std::future::Future<Output = Done> + Send>>;

/// One connection's state, owned by its task.
struct Socket<S> {
    ws: WebSocketStream<S>,
    hub: Arc<Hub>,
    plugins: Arc<Plugins>,
    peer: Holder,
    conn_id: u64,
    pending: FuturesOrdered<DoneFuture>,
    bad: Vec<Instant>,
    partners: HashSet<i64>,
    last_heard: Instant,
}

/// Why the loop ended; decides the close frame.
enum End {
    Gone,
    Close(CloseCode, &'static str),
}

/// Runs the connection until the peer leaves, misbehaves, is too slow, its session ends,
/// or shutdown.
pub async fn run<S>(
    ws: WebSocketStream<S>,
    hub: Arc<Hub>,
    plugins: Arc<Plugins>,
    peer: Holder,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (
        Registration {
            conn_id,
            mut rx,
            kick,
            ended,
        },
        first,
    ) = hub.register(peer.user_id, &peer.session_id);
    // Registered first, then checked: a session that ends from now on finds this
    // connection in the hub; one that ended since the ticket was issued is caught here.
    let presence = match hub.session_is_live(&peer.session_id).await {
        Ok(true) => match hub
            .presence_on_connect(peer.user_id, &peer.username, first)
            .await
        {
            Ok(frames) => frames,
            Err(e) => {
                tracing::warn!(error = %e, "presence lookup failed");
                Vec::new()
            }
        },
        Ok(false) => {
            ended.notify_one();
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "session lookup failed");
            kick.notify_one();
            Vec::new()
        }
    };
    let mut conn = Socket {
        ws,
        hub: hub.clone(),
        plugins,
        peer,
        conn_id,
        pending: FuturesOrdered::new(),
        bad: Vec::new(),
        partners: HashSet::new(),
        last_heard: Instant::now(),
    };
    for frame in presence {
        if conn.send(Message::Text(frame)).await.is_err() {
            break;
        }
    }
    let ping_every = Duration::from_secs(hub.relay.ping_interval_secs);
    let idle = Duration::from_secs(hub.relay.idle_timeout_secs);
    let max_in_flight = hub.relay.max_in_flight;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let end = loop {
        let step = tokio::select! {
            biased;
            () = async { let _ = shutdown.wait_for(|stopping| *stopping).await; } => Err(End::Close(CloseCode::Away, "server shutting down")),
            () = ended.notified() => Err(End::Close(CloseCode::from(SESSION_ENDED), "session ended")),
            () = kick.notified() => Err(End::Close(CloseCode::Again, "too slow; reconnect and catch up from history")),
            Some(done) = conn.pending.next(), if !conn.pending.is_empty() => conn.finish_ready(done).await,
            out = rx.recv() => match out {
                Some(f) => conn.forward(f, &mut rx).await,
                None => Err(End::Close(CloseCode::Again, "dropped by the server")),
            },
            msg = conn.ws.next(), if conn.pending.len() < max_in_flight => conn.receive(msg).await,
            _ = ping.tick() => {
                if conn.last_heard.elapsed() > idle {
                    Err(End::Close(CloseCode::Normal, "idle timeout"))
                } else {
                    conn.send(Message::Ping(Default::default())).await
                }
            }
        };
        if let Err(end) = step {
            break end;
        }
    };
    // Sends already queued still get their answer if the peer is listening.
    while let Some(done) = conn.pending.next().await {
        if conn.finish_ready(done).await.is_err() {
            break;
        }
    }
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        if in_time(conn.ws.close(Some(frame))).await.is_ok() {
            let drain = async { while let Some(Ok(_)) = conn.ws.next().await {} };
            let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
        }
    }
    let Socket { peer, .. } = conn;
    // A kicked connection was already unregistered; either way, offline is announced when
    // the user has no connection left.
    hub.unregister(peer.user_id, conn_id);
    if !hub.is_online(peer.user_id) {
        if let Err(e) = hub.announce_offline(peer.user_id, &peer.username).await {
            tracing::warn!(error = %e, "presence announcement failed");
        }
    }
}

/// A write to the socket that must finish within `WRITE_TIMEOUT`; else the peer is gone.
async fn in_time(write: impl std::future::Future<Output = Result<(), WsError>>) -> Result<(), End> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(End::Gone),
    }
}

/// A ping's id: what the page needs to match its pong, and nothing that needs escaping.
fn valid_ping_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn error_frame(code: &str, message: &str, id: Option<&str>) -> Message {
    let mut v = json!({ "type": "error", "code": code, "message": message });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    Message::Text(v.to_string().into())
}

impl<S> Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn send(&mut self, m: Message) -> Result<(), End> {
        in_time(self.ws.send(m)).await
    }

    /// Queues a frame behind those already queued, without flushing (see `finish_ready`).
    async fn feed(&mut self, m: Message) -> Result<(), End> {
        in_time(self.ws.feed(m)).await
    }

    /// Writes a pushed frame, and whatever else is queued, with one flush.
    async fn forward(
        &mut self,
        first: Utf8Bytes,
        rx: &mut tokio::sync::mpsc::Receiver<Utf8Bytes>,
    ) -> Result<(), End> {
        let work = async {
            self.ws.feed(Message::Text(first)).await?;
            for _ in 0..64 {
                match rx.try_recv() {
                    Ok(f) => self.ws.feed(Message::Text(f)).await?,
                    Err(_) => break,
                }
            }
            self.ws.flush().await
        };
        in_time(work).await
    }

    async fn receive(&mut self, msg: Option<Result<Message, WsError>>) -> Result<(), End> {
        self.last_heard = Instant::now();
        match msg {
            None | Some(Ok(Message::Close(_))) => Err(End::Gone),
            Some(Err(WsError::Capacity(_))) => Err(End::Close(CloseCode::Size, "frame too large")),
            Some(Err(WsError::Protocol(_))) => {
                Err(End::Close(CloseCode::Protocol, "protocol error"))
            }
            Some(Err(_)) => Err(End::Gone),
            Some(Ok(Message::Text(text))) => match self.plugins.admit(&Admission::Frame {
                connection: self.conn_id,
                username: &self.peer.username,
            }) {
                Verdict::Allow => self.handle_text(&text).await,
                Verdict::Refuse { retry_after_secs } => {
                    let mut v = json!({
                        "type": "error",
                        "code": "rate_limited",
                        "message": format!("too many frames; retry in {retry_after_secs} s"),
                        "retry_after_secs": retry_after_secs,
                    });
                    if let Ok(f) = serde_json::from_str::<ClientFrame<'_>>(&text) {
                        if let Some(id) = f.id {
                            v["id"] = json!(id);
                        }
                    }
                    self.strike(Message::Text(v.to_string().into())).await
                }
            },
            Some(Ok(Message::Binary(_))) => {
                self.bad_frame("invalid_frame", "binary frames are not accepted", None)
                    .await
            }
            // tungstenite queued the pong; flush it out.
            Some(Ok(Message::Ping(_))) => match self.ws.flush().await {
                Ok(()) => Ok(()),
                Err(_) => Err(End::Gone),
            },
            Some(Ok(_)) => Ok(()),
        }
    }

    /// Answers a bad frame with an error frame; too many in a minute closes with 1008.
    async fn bad_frame(&mut self, code: &str, message: &str, id: Option<&str>) -> Result<(), End> {
        self.strike(error_frame(code, message, id)).await
    }

    /// Sends `error`, counting it against the connection: more than
    /// `max_bad_frames_per_minute` bad or refused (rate-limited) frames close it with 1008.
    async fn strike(&mut self, error: Message) -> Result<(), End> {
        let now = Instant::now();
        self.bad
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        self.bad.push(now);
        self.send(error).await?;
        if self.bad.len() > self.hub.relay.max_bad_frames_per_minute as usize {
            tracing::info!(user = %self.peer.username, "closing a connection that keeps sending bad or too many frames");
            return Err(End::Close(CloseCode::Policy, "too many bad frames"));
        }
        Ok(())
    }

    async fn handle_text(&mut self, text: &str) -> Result<(), End> {
        let frame: ClientFrame<'_> = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) if e.is_data() => {
                return self
                    .bad_frame("invalid_frame", "unexpected or missing fields", None)
                    .await
            }
            Err(_) => {
                return self
                    .bad_frame("invalid_json", "frame is not JSON", None)
                    .await
            }
        };
        match (frame.kind, frame.envelope, &frame.id, &frame.to) {
            ("send", Some(raw), None, None) => self.handle_send(raw.get()).await,
            ("delivered", None, Some(id), None) => self.handle_receipt(id.clone(), false).await,
            ("read", None, Some(id), None) => self.handle_receipt(id.clone(), true).await,
            ("typing", None, None, Some(to)) => self.handle_typing(to.clone()).await,
            ("ping", None, id, None) => self.handle_ping(id.as_deref()).await,
            ("send" | "delivered" | "read" | "typing" | "ping", ..) => {
                self.bad_frame("invalid_frame", "unexpected or missing fields", None)
                    .await
            }
            _ => {
                self.bad_frame("unknown_type", "unknown frame type", None)
                    .await
            }
        }
    }

    async fn handle_send(&mut self, raw: &str) -> Result<(), End> {
        let env = match self.hub.messages.check(raw, &self.peer.username) {
            Ok(e) => e,
            Err(r) => {
                let id = serde_json::from_str::<serde_json::Value>(raw)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned));
                return self.bad_frame(r.code, &r.message, id.as_deref()).await;
            }
        };
        let recipient_id = match self.hub.user_id(&env.to).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return self
                    .bad_frame("unknown_recipient", "no such recipient", Some(&env.id))
                    .await
            }
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                return self
                    .send(error_frame("internal", "try again", Some(&env.id)))
                    .await;
            }
        };
        let id = env.id.into_owned();
        let new_partner = (recipient_id != self.peer.user_id
            && !self.partners.contains(&recipient_id))
        .then(|| env.to.into_owned());
        // One copy of the envelope, shared by the write and the fan-out.
        let envelope: Arc<str> = Arc::from(raw);
        let pending = self
            .hub
            .messages
            .store(
                self.peer.user_id,
                recipient_id,
                id.clone(),
                envelope.clone(),
            )
            .await;
        match pending {
            Ok(p) => {
                self.pending.push_back(Box::pin(async move {
                    Done::Stored {
                        id,
                        recipient_id,
                        new_partner,
                        envelope,
                        result: p.await,
                    }
                }));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot queue a message write");
                self.send(error_frame("internal", "try again", Some(&id)))
                    .await
            }
        }
    }

    async fn handle_receipt(&mut self, id: String, read: bool) -> Result<(), End> {
        if !envelope::is_uuid_v4(&id) {
            return self
                .bad_frame("invalid_frame", "id must be a lower-case UUID v4", None)
                .await;
        }
        let at = now_ms();
        let state = if read {
            MessageState::Read
        } else {
            MessageState::Delivered
        };
        match self
            .hub
            .messages
            .mark(self.peer.user_id, id.clone(), state, at)
            .await
        {
            Ok(p) => {
                self.pending.push_back(Box::pin(async move {
                    Done::Marked {
                        id,
                        read,
                        at,
                        result: p.await,
                    }
                }));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot queue a receipt");
                self.send(error_frame("internal", "try again", Some(&id)))
                    .await
            }
        }
    }

    /// Answers an application-level ping with a pong carrying the same id. A browser cannot
    /// send WebSocket ping frames, so this is how a page learns, while idle, that its socket
    /// still reaches the server (a cut network leaves a socket "open" for minutes).
    async fn handle_ping(&mut self, id: Option<&str>) -> Result<(), End> {
        let pong = match id {
            None => Utf8Bytes::from_static(r#"{"type":"pong"}"#),
            Some(id) if valid_ping_id(id) => {
                Utf8Bytes::from(json!({ "type": "pong", "id": id }).to_string())
            }
            Some(_) => {
                return self
                    .bad_frame(
                        "invalid_frame",
                        "a ping id is 1 to 64 letters, digits, '-' or '_'",
                        None,
                    )
                    .await
            }
        };
        self.send(Message::Text(pong)).await
    }

    async fn handle_typing(&mut self, to: String) -> Result<(), End> {
        let Ok(Some(to_id)) = self.hub.user_id(&to).await else {
            return self
                .bad_frame("unknown_recipient", "no such recipient", None)
                .await;
        };
        if to_id == self.peer.user_id || !self.hub.is_online(to_id) {
            return Ok(());
        }
        if !self.partners.contains(&to_id) {
            let me = self.peer.user_id;
            let shared = self
                .hub
                .messages
                .share_conversation(me, to_id)
                .await
                .unwrap_or(false);
            if !shared {
                // Typing goes only to people one already talks with; silently dropped.
                return Ok(());
            }
            self.partners.insert(to_id);
        }
        let frame =
            Utf8Bytes::from(json!({ "type": "typing", "from": self.peer.username }).to_string());
        self.hub.push(to_id, &frame, None);
        Ok(())
    }

    /// Answers `first` and every other pipelined write whose batch has already committed,
    /// then flushes once: one commit usually answers several of a connection's sends, and
    /// their acks leave in one write instead of one each.
    async fn finish_ready(&mut self, first: Done) -> Result<(), End> {
        self.finish(first).await?;
        // Polled without a waker of its own: the loop's `select!` polls `pending` again
        // (with the task's waker) before it sleeps, so nothing that becomes ready is missed.
        while let Some(Some(done)) = self.pending.next().now_or_never() {
            self.finish(done).await?;
        }
        in_time(self.ws.flush()).await
    }

    /// A first message to `partner` on this connection (possibly a new conversation): both
    /// sides learn the other's presence. The ack queued before this leaves first.
    async fn introduce(&mut self, partner: i64, name: &str) -> Result<(), End> {
        match self.hub.introduce(&self.peer.username, partner, name) {
            Introduction::Now(frame) => self.feed(Message::Text(frame)).await,
            Introduction::Offline => {
                // The ack leaves now, not after the lookup.
                in_time(self.ws.flush()).await?;
                match self.hub.offline_presence(partner, name).await {
                    Some(frame) => self.send(Message::Text(frame)).await,
                    None => Ok(()),
                }
            }
        }
    }

    /// A pipelined write committed (or failed): answer and fan out. The ack is queued, not
    /// flushed; anything else sent here flushes it along.
    async fn finish(&mut self, done: Done) -> Result<(), End> {
        match done {
            Done::Stored {
                id,
                recipient_id,
                new_partner,
                envelope,
                result,
            } => match result {
                Ok(StoreOutcome::IdTaken) => {
                    self.bad_frame(
                        "invalid_envelope",
                        "that id is already used by another message; use a fresh uuid",
                        Some(&id),
                    )
                    .await
                }
                Ok(StoreOutcome::Stored(stored)) => {
                    // `id` passed envelope::check (a lower-case UUID): nothing to escape.
                    let ack = format!(
                        "{{\"type\":\"ack\",\"id\":\"{id}\",\"seq\":{},\"server_ts\":{}}}",
                        stored.seq, stored.server_ts
                    );
                    // The ack is queued before anyone else hears of the message, and this
                    // connection writes nothing ahead of it, so a receipt can never reach
                    // the sender ahead of its own ack.
                    self.feed(Message::Text(ack.into())).await?;
                    if stored.new {
                        let frame = Utf8Bytes::from(message_frame(stored, &envelope));
                        if recipient_id != self.peer.user_id {
                            self.hub.push(recipient_id, &frame, None);
                        }
                        // The sender's other tabs and devices see what it sent.
                        self.hub.push(self.peer.user_id, &frame, Some(self.conn_id));
                        if let Some(name) = new_partner {
                            if self.partners.insert(recipient_id) {
                                self.introduce(recipient_id, &name).await?;
                            }
                        }
                    }
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(error = %e, "storing a message failed");
                    self.send(error_frame(
                        "internal",
                        "the message was not stored; send it again",
                        Some(&id),
                    ))
                    .await
                }
            },
            Done::Marked {
                id,
                read,
                at,
                result,
            } => match result {
                Ok(Some(sender_id)) => {
                    let frame = Utf8Bytes::from(
                        json!({ "type": if read { "read" } else { "delivered" }, "id": id, "by": self.peer.username, "at": at })
                            .to_string(),
                    );
                    self.hub.push(sender_id, &frame, None);
                    self.hub.push(self.peer.user_id, &frame, Some(self.conn_id));
                    Ok(())
                }
                Ok(None) => {
                    self.bad_frame("not_found", "no such message sent to you", Some(&id))
                        .await
                }
                Err(e) => {
                    tracing::error!(error = %e, "storing a receipt failed");
                    self.send(error_frame("internal", "try again", Some(&id)))
                        .await
                }
            },
        }
    }
}

/// `{"type":"message","seq":…,"server_ts":…,"envelope":…}` in one allocation of the right
/// size (`format!` grows its string by doubling, copying a large envelope several times).
fn message_frame(stored: Stored, envelope: &str) -> String {
    use std::fmt::Write as _;
    let mut f = String::with_capacity(envelope.len() + 80);
    // Writing to a String cannot fail.
    let _ = write!(
        f,
        "{{\"type\":\"message\",\"seq\":{},\"server_ts\":{},\"envelope\":",
        stored.seq, stored.server_ts
    );
    f.push_str(envelope);
    f.push('}');
    f
}
