//! Owns `GET /api/ws`: checks the upgrade request (WebSocket headers, an allowed Origin,
//! a valid unused ticket) before switching protocols, then hands the socket to `socket::run`
//! with a small read buffer.
//!
//! This runs beside warp, not inside it: warp's `ws()` gives every connection
//! tungstenite's default 128 KiB read buffer and no way to change it, which would cost
//! ~136 KB of RSS per idle connection.
//!
//! Invariants: nothing is upgraded without an allowed Origin (else 403) and a valid unused
//! ticket (else 401); the ticket (a query parameter) never reaches the log.

use std::sync::Arc;

use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::reply::Response;

use super::socket;
use super::tickets::{Holder, Tickets};
use super::Hub;
use crate::error::ApiError;
use crate::plugins::Plugins;
use securechat_plugin_api::{Admission, Verdict};

pub const PATH: &str = "/api/ws";

pub struct WsEndpoint {
    hub: Arc<Hub>,
    plugins: Arc<Plugins>,
    tickets: Arc<Tickets>,
    allowed_origins: Vec<String>,
    headers: HeaderMap,
    config: WebSocketConfig,
}

impl WsEndpoint {
    pub fn new(
        hub: Arc<Hub>,
        plugins: Arc<Plugins>,
        tickets: Arc<Tickets>,
        allowed_origins: Vec<String>,
        headers: HeaderMap,
    ) -> WsEndpoint {
        // The frame cap leaves room for the {"type":"send","envelope":...} wrapper.
        let max = hub.messages.max_envelope_bytes() + 1024;
        let config = WebSocketConfig::default()
            .read_buffer_size(hub.relay.read_buffer_bytes)
            // Frames queued with `feed` (a commit's acks, pushed frames) leave in one write
            // at the next flush; with 0 every frame was its own send(2): 33 -> 30 us of
            // server CPU per message (BENCHMARKS.md). The buffer keeps its capacity, so an
            // active connection holds up to ~16 KiB more; an idle one never grows it.
            .write_buffer_size(16 * 1024)
            .max_write_buffer_size(4 * 1024 * 1024)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        WsEndpoint {
            hub,
            plugins,
            tickets,
            allowed_origins,
            headers,
            config,
        }
    }

    pub fn handles<B>(&self, req: &Request<B>) -> bool {
        req.uri().path() == PATH
    }

    /// Answers the upgrade request: 101 and a spawned connection, or a JSON error.
    pub fn upgrade<B>(&self, mut req: Request<B>) -> Response {
        let (status, response) = match self.check(&req) {
            Ok((key, peer)) => {
                let on_upgrade = hyper::upgrade::on(&mut req);
                // Subscribed before the 101: the hub counts this socket from here on, so a
                // shutdown waits for it even if it has not started running yet.
                let shutdown = self.hub.shutdown_signal();
                let hub = self.hub.clone();
                let plugins = self.plugins.clone();
                let config = self.config;
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => {
                            let ws = WebSocketStream::from_raw_socket(
                                TokioIo::new(upgraded),
                                Role::Server,
                                Some(config),
                            )
                            .await;
                            socket::run(ws, hub, plugins, peer, shutdown).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                    }
                });
                let mut r = Response::new(Vec::<u8>::new().into());
                *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let h = r.headers_mut();
                h.insert(UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
                if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
                    h.insert(SEC_WEBSOCKET_ACCEPT, v);
                }
                (StatusCode::SWITCHING_PROTOCOLS, r)
            }
            Err(e) => (e.status, e.into_response()),
        };
        tracing::info!(
            target: "securechat::request",
            method = "GET",
            route = PATH,
            status = status.as_u16(),
            "request"
        );
        let mut response = response;
        response.headers_mut().extend(self.headers.clone());
        response
    }

    fn check<B>(&self, req: &Request<B>) -> Result<(String, Holder), ApiError> {
        if req.method() != Method::GET {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET to open a WebSocket",
            ));
        }
        let h = req.headers();
        let header_is = |name, want: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
        };
        let key = h
            .get(SEC_WEBSOCKET_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Some(key) = key.filter(|_| {
            header_is(UPGRADE, "websocket")
                && header_is(CONNECTION, "upgrade")
                && header_is(http::header::SEC_WEBSOCKET_VERSION, "13")
        }) else {
            return Err(ApiError::bad_request(
                "invalid_upgrade",
                "this endpoint speaks WebSocket (RFC 6455) only",
            ));
        };
        let origin = h.get(http::header::ORIGIN).and_then(|v| v.to_str().ok());
        if !origin.is_some_and(|o| self.allowed_origins.iter().any(|a| a == o)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "this Origin may not open a WebSocket here",
            ));
        }
        let ticket = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("ticket="))
            .unwrap_or("");
        let Some(holder) = self.tickets.redeem(ticket) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid, unused ticket from POST /api/ws-ticket is required",
            ));
        };
        if let Verdict::Refuse { retry_after_secs } = self.plugins.admit(&Admission::Connect {
            username: &holder.username,
        }) {
            return Err(ApiError::rate_limited(retry_after_secs));
        }
        Ok((key, holder))
    }
}
