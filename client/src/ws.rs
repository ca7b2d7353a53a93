//! The WebSocket side of docs/PROTOCOL.md §7: `POST /api/ws-ticket`, the upgrade to
//! `/api/ws?ticket=...` with an `Origin` header, the typed frames in both directions
//! ([`ServerFrame`], [`ClientFrame`]), receiving with timeouts, and raw frames (any text,
//! binary, ping or close) for negative tests. Envelopes in frames stay raw JSON
//! ([`RawEnvelope`]) so that a byte-for-byte relay can be asserted.

use std::borrow::Cow;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::client::{path_segment, RawResponse};
use crate::envelope::Envelope;
use crate::tls::Trust;
use crate::{Client, Error, Method, Result};

/// How long [`WsClient::recv`] waits by default.
pub const DEFAULT_RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// The socket type of a client connection.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// `POST /api/ws-ticket` answer: a single-use ticket for one upgrade.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub ticket: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// An envelope as raw JSON text, exactly as received or to be sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawEnvelope(Box<RawValue>);

impl RawEnvelope {
    /// The JSON text, byte for byte.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parse strictly into an [`Envelope`] (no unknown fields).
    pub fn parse(&self) -> Result<Envelope> {
        Envelope::from_json(self.get())
    }

    /// The compact serialization of an envelope.
    pub fn from_envelope(envelope: &Envelope) -> Result<RawEnvelope> {
        Self::from_text(envelope.to_json()?)
    }

    /// Any JSON text (checked to be JSON, not to be an envelope: for negative tests).
    pub fn from_text(text: impl Into<String>) -> Result<RawEnvelope> {
        Ok(RawEnvelope(RawValue::from_string(text.into())?))
    }
}

impl PartialEq for RawEnvelope {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawEnvelope {}

/// A frame from the server (PROTOCOL.md §7.4). Unknown members are ignored.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerFrame {
    /// `{"type":"ack","id","seq","server_ts"}`: the envelope `id` is durable.
    Ack {
        id: String,
        seq: u64,
        server_ts: u64,
    },
    /// `{"type":"message","seq","server_ts","envelope"}`.
    Message {
        seq: u64,
        server_ts: u64,
        envelope: RawEnvelope,
    },
    /// `{"type":"delivered","id","by","at"}`.
    Delivered { id: String, by: String, at: u64 },
    /// `{"type":"read","id","by","at"}`.
    Read { id: String, by: String, at: u64 },
    /// `{"type":"typing","from"}`.
    Typing { from: String },
    /// `{"type":"presence","user","online","last_seen"}` (`last_seen` may be null).
    Presence {
        user: String,
        online: bool,
        last_seen: Option<u64>,
    },
    /// `{"type":"file_ready","file":{...}}`.
    FileReady { file: serde_json::Value },
    /// `{"type":"file_damaged","id","file_id"}`: the server found the stored file corrupt.
    FileDamaged { id: String, file_id: String },
    /// `{"type":"keys_changed","key_version"}`: the user published that key version.
    KeysChanged { key_version: u32 },
    /// `{"type":"error","code","message","id"?}`.
    Error {
        code: String,
        message: String,
        id: Option<String>,
    },
    /// `{"type":"pong","id"?}`: the answer to a `ping`, with its id.
    Pong { id: Option<String> },
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct AckF {
    id: String,
    seq: u64,
    server_ts: u64,
}

#[derive(Deserialize)]
struct MessageF {
    seq: u64,
    server_ts: u64,
    envelope: RawEnvelope,
}

#[derive(Deserialize)]
struct ReceiptF {
    id: String,
    by: String,
    at: u64,
}

#[derive(Deserialize)]
struct TypingF {
    from: String,
}

#[derive(Deserialize)]
struct PresenceF {
    user: String,
    online: bool,
    last_seen: Option<u64>,
}

#[derive(Deserialize)]
struct KeysChangedF {
    key_version: u32,
}

#[derive(Deserialize)]
struct FileReadyF {
    file: serde_json::Value,
}

#[derive(Deserialize)]
struct FileDamagedF {
    id: String,
    file_id: String,
}

#[derive(Deserialize)]
struct PongF {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorF {
    code: String,
    message: String,
    #[serde(default)]
    id: Option<String>,
}

impl ServerFrame {
    /// Parse the text of a server frame.
    pub fn parse(text: &str) -> Result<ServerFrame> {
        let tag: Tag<'_> = serde_json::from_str(text)
            .map_err(|e| Error::Decode(format!("server frame without a type ({e}): {text}")))?;
        let frame = match tag.kind.as_ref() {
            "ack" => {
                let f: AckF = serde_json::from_str(text)?;
                ServerFrame::Ack {
                    id: f.id,
                    seq: f.seq,
                    server_ts: f.server_ts,
                }
            }
            "message" => {
                let f: MessageF = serde_json::from_str(text)?;
                ServerFrame::Message {
                    seq: f.seq,
                    server_ts: f.server_ts,
                    envelope: f.envelope,
                }
            }
            "delivered" | "read" => {
                let f: ReceiptF = serde_json::from_str(text)?;
                if tag.kind == "read" {
                    ServerFrame::Read {
                        id: f.id,
                        by: f.by,
                        at: f.at,
                    }
                } else {
                    ServerFrame::Delivered {
                        id: f.id,
                        by: f.by,
                        at: f.at,
                    }
                }
            }
            "typing" => {
                let f: TypingF = serde_json::from_str(text)?;
                ServerFrame::Typing { from: f.from }
            }
            "presence" => {
                let f: PresenceF = serde_json::from_str(text)?;
                ServerFrame::Presence {
                    user: f.user,
                    online: f.online,
                    last_seen: f.last_seen,
                }
            }
            "file_ready" => {
                let f: FileReadyF = serde_json::from_str(text)?;
                ServerFrame::FileReady { file: f.file }
            }
            "file_damaged" => {
                let f: FileDamagedF = serde_json::from_str(text)?;
                ServerFrame::FileDamaged {
                    id: f.id,
                    file_id: f.file_id,
                }
            }
            "keys_changed" => {
                let f: KeysChangedF = serde_json::from_str(text)?;
                ServerFrame::KeysChanged {
                    key_version: f.key_version,
                }
            }
            "error" => {
                let f: ErrorF = serde_json::from_str(text)?;
                ServerFrame::Error {
                    code: f.code,
                    message: f.message,
                    id: f.id,
                }
            }
            "pong" => {
                let f: PongF = serde_json::from_str(text)?;
                ServerFrame::Pong { id: f.id }
            }
            other => {
                return Err(Error::Decode(format!(
                    "unknown server frame type {other:?}: {text}"
                )))
            }
        };
        Ok(frame)
    }

    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerFrame::Ack { .. } => "ack",
            ServerFrame::Message { .. } => "message",
            ServerFrame::Delivered { .. } => "delivered",
            ServerFrame::Read { .. } => "read",
            ServerFrame::Typing { .. } => "typing",
            ServerFrame::Presence { .. } => "presence",
            ServerFrame::FileReady { .. } => "file_ready",
            ServerFrame::FileDamaged { .. } => "file_damaged",
            ServerFrame::KeysChanged { .. } => "keys_changed",
            ServerFrame::Error { .. } => "error",
            ServerFrame::Pong { .. } => "pong",
        }
    }
}

/// A frame to the server (PROTOCOL.md §7.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    /// `{"type":"send","envelope":{...}}`.
    Send { envelope: RawEnvelope },
    /// `{"type":"delivered","id"}`.
    Delivered { id: String },
    /// `{"type":"read","id"}`.
    Read { id: String },
    /// `{"type":"typing","to"}`.
    Typing { to: String },
    /// `{"type":"ping","id"?}`: asks for a `pong` (a liveness check a page can send).
    Ping { id: Option<String> },
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

impl ClientFrame {
    /// A `send` frame carrying the envelope's compact serialization.
    pub fn send(envelope: &Envelope) -> Result<ClientFrame> {
        Ok(ClientFrame::Send {
            envelope: RawEnvelope::from_envelope(envelope)?,
        })
    }

    /// The frame's JSON text, `type` first; a `send` embeds the envelope text unchanged.
    pub fn to_text(&self) -> String {
        match self {
            ClientFrame::Send { envelope } => {
                format!("{{\"type\":\"send\",\"envelope\":{}}}", envelope.get())
            }
            ClientFrame::Delivered { id } => {
                format!("{{\"type\":\"delivered\",\"id\":{}}}", json_string(id))
            }
            ClientFrame::Read { id } => {
                format!("{{\"type\":\"read\",\"id\":{}}}", json_string(id))
            }
            ClientFrame::Typing { to } => {
                format!("{{\"type\":\"typing\",\"to\":{}}}", json_string(to))
            }
            ClientFrame::Ping { id: None } => "{\"type\":\"ping\"}".to_owned(),
            ClientFrame::Ping { id: Some(id) } => {
                format!("{{\"type\":\"ping\",\"id\":{}}}", json_string(id))
            }
        }
    }
}

/// What arrived on a socket, unparsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame (code and reason; no code when the frame had none).
    Close {
        code: Option<u16>,
        reason: String,
    },
    /// The stream ended without a close frame.
    Ended,
}

/// How to connect: the `Origin` header (None: send none) and the socket configuration.
#[derive(Clone, Debug)]
pub struct WsOptions {
    pub origin: Option<String>,
    pub config: WebSocketConfig,
}

impl WsOptions {
    /// An `Origin` and tungstenite's default buffers.
    pub fn new(origin: Option<String>) -> WsOptions {
        WsOptions {
            origin,
            config: WebSocketConfig::default(),
        }
    }

    /// Small buffers (4 KiB read buffer, eager writes) for many connections in one
    /// process.
    pub fn small_buffers(mut self) -> WsOptions {
        self.config = small_config(self.config);
        self
    }
}

/// A socket configuration for many connections: 4 KiB read buffer, writes go out as
/// soon as they are made.
pub fn small_config(config: WebSocketConfig) -> WebSocketConfig {
    config.read_buffer_size(4 * 1024).write_buffer_size(0)
}

/// `ws://HOST:PORT/api/ws?ticket=...` for a server at `http://HOST:PORT`
/// (`https` becomes `wss`).
pub fn ws_url(base_url: &str, ticket: &str) -> Result<String> {
    let base = base_url.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        return Err(Error::Decode(format!(
            "base URL {base_url:?} is not http(s)"
        )));
    };
    Ok(format!("{rest}/api/ws?ticket={}", path_segment(ticket)))
}

/// The server's own origin for a base URL (`scheme://host:port`, no path).
pub fn origin_of(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let start = base.find("://").map_or(0, |i| i + 3);
    match base[start..].find('/') {
        Some(i) => base[..start + i].to_owned(),
        None => base.to_owned(),
    }
}

/// Open `/api/ws?ticket=...` on the server at `base_url` with `Origin: origin` (default:
/// the server's own origin, e.g. `http://127.0.0.1:PORT`).
pub async fn connect(base_url: &str, ticket: &str, origin: Option<&str>) -> Result<WsClient> {
    let origin = origin.map_or_else(|| origin_of(base_url), str::to_owned);
    connect_with(&ws_url(base_url, ticket)?, &WsOptions::new(Some(origin))).await
}

/// Open a full `ws://` or `wss://` URL with the given options (over TLS: the public web
/// PKI). An HTTP answer instead of the upgrade becomes [`Error::Api`] (contract error
/// body) or [`Error::UnexpectedStatus`].
pub async fn connect_with(url: &str, options: &WsOptions) -> Result<WsClient> {
    connect_trusting(url, options, None).await
}

/// [`connect_with`], accepting over `wss://` the server certificates `trust` accepts.
pub async fn connect_trusting(
    url: &str,
    options: &WsOptions,
    trust: Option<&Trust>,
) -> Result<WsClient> {
    let connector = if url.starts_with("wss://") {
        let trust = match trust {
            Some(t) => t.clone(),
            None => Trust::public_roots()?,
        };
        Some(Connector::Rustls(trust.config()))
    } else {
        None
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| Error::WebSocket(format!("bad URL: {e}")))?;
    if let Some(origin) = &options.origin {
        let value = HeaderValue::from_str(origin)
            .map_err(|_| Error::Decode(format!("bad Origin {origin:?}")))?;
        request.headers_mut().insert("origin", value);
    }
    match tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(options.config),
        true,
        connector,
    )
    .await
    {
        Ok((stream, _)) => Ok(WsClient { stream }),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let raw = RawResponse {
                status: resp.status().as_u16(),
                headers: reqwest::header::HeaderMap::new(),
                body: resp.body().clone().unwrap_or_default(),
            };
            match raw.expect_status(101) {
                Err(e) => Err(e),
                Ok(()) => Err(Error::WebSocket("upgrade answered 101 but failed".into())),
            }
        }
        Err(e) => Err(ws_error(e)),
    }
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> Error {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::ConnectionClosed | E::AlreadyClosed => Error::Closed {
            code: None,
            reason: e.to_string(),
        },
        other => Error::WebSocket(other.to_string()),
    }
}

fn event_of(msg: Message) -> Option<WsEvent> {
    match msg {
        Message::Text(t) => Some(WsEvent::Text(t.as_str().to_owned())),
        Message::Binary(b) => Some(WsEvent::Binary(b.to_vec())),
        Message::Close(frame) => Some(match frame {
            Some(f) => WsEvent::Close {
                code: Some(u16::from(f.code)),
                reason: f.reason.as_str().to_owned(),
            },
            None => WsEvent::Close {
                code: None,
                reason: String::new(),
            },
        }),
        // Pings are answered by tungstenite; pongs and raw frames carry nothing for us.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
    }
}

/// An open WebSocket to the server.
#[derive(Debug)]
pub struct WsClient {
    stream: WsStream,
}

impl WsClient {
    /// Send a typed frame.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<()> {
        self.send_text(frame.to_text()).await
    }

    /// Send `{"type":"send","envelope":...}`; returns the envelope text that went out.
    pub async fn send_envelope(&mut self, envelope: &Envelope) -> Result<RawEnvelope> {
        let frame = ClientFrame::send(envelope)?;
        self.send(&frame).await?;
        match frame {
            ClientFrame::Send { envelope } => Ok(envelope),
            _ => Err(Error::Decode("not a send frame".into())),
        }
    }

    /// Send any text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        self.send_raw(Message::text(text.into())).await
    }

    /// Send any binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.send_raw(Message::binary(bytes)).await
    }

    /// Send any message (ping, pong, close included).
    pub async fn send_raw(&mut self, msg: Message) -> Result<()> {
        self.stream.send(msg).await.map_err(ws_error)
    }

    /// The next text, binary or close event within `timeout` (pings and pongs skipped).
    pub async fn recv_event(&mut self, timeout: Duration) -> Result<WsEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .map_err(|_| Error::Timeout(format!("no frame within {timeout:?}")))?;
            match next {
                None => return Ok(WsEvent::Ended),
                Some(Err(e)) => match ws_error(e) {
                    Error::Closed { .. } => return Ok(WsEvent::Ended),
                    other => return Err(other),
                },
                Some(Ok(msg)) => {
                    if let Some(ev) = event_of(msg) {
                        return Ok(ev);
                    }
                }
            }
        }
    }

    /// The next server frame within [`DEFAULT_RECV_TIMEOUT`].
    pub async fn recv(&mut self) -> Result<ServerFrame> {
        self.recv_timeout(DEFAULT_RECV_TIMEOUT).await
    }

    /// The next server frame within `timeout`; a close is [`Error::Closed`], a binary
    /// frame or unparsable text is [`Error::Decode`].
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<ServerFrame> {
        match self.recv_event(timeout).await? {
            WsEvent::Text(text) => ServerFrame::parse(&text),
            WsEvent::Binary(b) => Err(Error::Decode(format!(
                "binary frame of {} bytes from the server",
                b.len()
            ))),
            WsEvent::Close { code, reason } => Err(Error::Closed { code, reason }),
            WsEvent::Ended => Err(Error::Closed {
                code: None,
                reason: "stream ended".into(),
            }),
        }
    }

    /// The first frame within `timeout` for which `pred` holds, skipping others (e.g.
    /// presence frames while waiting for an ack).
    pub async fn recv_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ServerFrame) -> bool,
    ) -> Result<ServerFrame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.recv_timeout(left).await?;
            if pred(&frame) {
                return Ok(frame);
            }
        }
    }

    /// Ok if no text, binary or close event arrives within `period`.
    pub async fn expect_silence(&mut self, period: Duration) -> Result<()> {
        match self.recv_event(period).await {
            Err(Error::Timeout(_)) => Ok(()),
            Err(e) => Err(e),
            Ok(ev) => Err(Error::Decode(format!("expected silence, got {ev:?}"))),
        }
    }

    /// Send a close frame (1000) and wait briefly for the server's.
    pub async fn close(mut self) -> Result<()> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        self.stream
            .close(Some(frame))
            .await
            .map_err(ws_error)
            .or_else(|e| match e {
                Error::Closed { .. } => Ok(()),
                other => Err(other),
            })?;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
        Ok(())
    }

    /// The underlying tokio-tungstenite stream (e.g. to split it).
    pub fn into_inner(self) -> WsStream {
        self.stream
    }
}

impl Client {
    /// `POST /api/ws-ticket` (Bearer): a single-use ticket for one upgrade.
    pub async fn ws_ticket(&self, access_token: &str) -> Result<Ticket> {
        self.request(Method::POST, "/api/ws-ticket", Some(access_token), None)
            .await?
            .expect(200)
    }

    /// The server's own origin (`http://127.0.0.1:PORT`), the default `Origin`.
    pub fn origin(&self) -> String {
        origin_of(self.base_url())
    }

    /// Fetch a ticket and connect with the server's own origin.
    pub async fn connect_ws(&self, access_token: &str) -> Result<WsClient> {
        self.connect_ws_with(access_token, &WsOptions::new(Some(self.origin())))
            .await
    }

    /// Fetch a ticket and connect with the given options.
    pub async fn connect_ws_with(
        &self,
        access_token: &str,
        options: &WsOptions,
    ) -> Result<WsClient> {
        let ticket = self.ws_ticket(access_token).await?;
        connect_trusting(
            &ws_url(self.base_url(), &ticket.ticket)?,
            options,
            Some(self.trust()),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_origins() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080/", "a b+c").unwrap(),
            "ws://127.0.0.1:8080/api/ws?ticket=a%20b%2Bc"
        );
        assert_eq!(
            ws_url("https://chat.example", "t").unwrap(),
            "wss://chat.example/api/ws?ticket=t"
        );
        assert!(ws_url("ftp://x", "t").is_err());
        assert_eq!(origin_of("http://127.0.0.1:8080/"), "http://127.0.0.1:8080");
        assert_eq!(
            origin_of("http://127.0.0.1:8080/x/y"),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn server_frames_parse() {
        let env = r#"{"v":1,"id":"x","keys":{"b":"1","a":"2"},  "sig":"s"}"#;
        let text = format!(r#"{{"type":"message","seq":7,"server_ts":12,"envelope":{env}}}"#);
        match ServerFrame::parse(&text).unwrap() {
            ServerFrame::Message {
                seq,
                server_ts,
                envelope,
            } => {
                assert_eq!((seq, server_ts), (7, 12));
                // Byte for byte, spacing and member order included.
                assert_eq!(envelope.get(), env);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ServerFrame::parse(r#"{"type":"ack","id":"i","seq":1,"server_ts":2}"#).unwrap(),
            ServerFrame::Ack {
                id: "i".into(),
                seq: 1,
                server_ts: 2
            }
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"read","id":"i","by":"bob","at":3}"#).unwrap(),
            ServerFrame::Read {
                id: "i".into(),
                by: "bob".into(),
                at: 3
            }
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"delivered","id":"i","by":"bob","at":3}"#)
                .unwrap()
                .kind(),
            "delivered"
        );
        assert_eq!(
            ServerFrame::parse(
                r#"{"type":"presence","user":"bob","online":false,"last_seen":null}"#
            )
            .unwrap(),
            ServerFrame::Presence {
                user: "bob".into(),
                online: false,
                last_seen: None
            }
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"typing","from":"bob"}"#).unwrap(),
            ServerFrame::Typing { from: "bob".into() }
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"error","code":"invalid_envelope","message":"m"}"#)
                .unwrap(),
            ServerFrame::Error {
                code: "invalid_envelope".into(),
                message: "m".into(),
                id: None
            }
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"file_ready","file":{"id":"f"}}"#)
                .unwrap()
                .kind(),
            "file_ready"
        );
        assert_eq!(
            ServerFrame::parse(r#"{"type":"file_damaged","id":"a","file_id":"b"}"#).unwrap(),
            ServerFrame::FileDamaged {
                id: "a".into(),
                file_id: "b".into()
            }
        );
        assert!(ServerFrame::parse(r#"{"type":"file_damaged","id":"a"}"#).is_err());
        assert_eq!(
            ServerFrame::parse(r#"{"type":"keys_changed","key_version":3}"#).unwrap(),
            ServerFrame::KeysChanged { key_version: 3 }
        );
        assert!(ServerFrame::parse(r#"{"type":"bogus"}"#).is_err());
        assert!(ServerFrame::parse(r#"{"seq":1}"#).is_err());
        assert!(ServerFrame::parse(r#"{"type":"ack","id":"i","seq":-1,"server_ts":2}"#).is_err());
    }

    #[test]
    fn client_frames_serialize() {
        let raw = RawEnvelope::from_text(r#"{"b":1, "a":2}"#).unwrap();
        assert_eq!(
            ClientFrame::Send { envelope: raw }.to_text(),
            r#"{"type":"send","envelope":{"b":1, "a":2}}"#
        );
        assert_eq!(
            ClientFrame::Delivered { id: "x\"y".into() }.to_text(),
            r#"{"type":"delivered","id":"x\"y"}"#
        );
        assert_eq!(
            ClientFrame::Read { id: "i".into() }.to_text(),
            r#"{"type":"read","id":"i"}"#
        );
        assert_eq!(
            ClientFrame::Typing { to: "bob".into() }.to_text(),
            r#"{"type":"typing","to":"bob"}"#
        );
        assert!(RawEnvelope::from_text("{").is_err());
    }
}
