//! Owns the listening socket and the connection loop: accept (within
//! `server.max_connections`, see `connections`), set TCP_NODELAY, serve HTTP/1.1 with hyper
//! and warp's filter as the service, under the edge's timeouts, and on shutdown stop
//! accepting and give in-flight connections a grace period.
//!
//! warp's own `serve` never sets TCP_NODELAY (Nagle + delayed ACK put a 40 ms floor under
//! small responses), so the loop is ours; warp still does all routing. The server speaks
//! HTTP/1.1 only (a TLS proxy in front speaks HTTP/2 or 3 to browsers): hyper's http1
//! builder, not hyper-util's auto builder, whose HTTP/2 sniffing reads the first bytes
//! before any header timer runs.
//!
//! Timeouts (Invariants, also in ARCHITECTURE.md): a request head must be complete within
//! `header_read_timeout_secs` of accept or of the previous response's end (hyper's timer);
//! a connection with no request in flight that receives no byte for `keepalive_idle_secs`
//! is dropped; request bodies are under `request_timeout_secs` (`bodies`); nothing here
//! limits a response body or an upgraded WebSocket.

pub mod bodies;
pub mod connections;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use self::bodies::{BodyClock, TimedBody, Tracked, Watched};
use self::connections::{Connections, Dropped};
use crate::config::ServerConfig;
use crate::http::PeerAddr;
use crate::relay::upgrade::WsEndpoint;

/// The edge's timeouts, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub keepalive_idle: Duration,
    pub request: Duration,
    /// How long in-flight connections get after shutdown begins.
    pub grace: Duration,
}

impl Timeouts {
    pub fn from_config(c: &ServerConfig) -> Timeouts {
        Timeouts {
            header_read: Duration::from_secs(c.header_read_timeout_secs),
            keepalive_idle: Duration::from_secs(c.keepalive_idle_secs),
            request: Duration::from_secs(c.request_timeout_secs),
            grace: Duration::from_secs(c.shutdown_grace_secs),
        }
    }
}

/// Serves `filter` on `listener` until `shutdown` resolves, then drains for at most
/// `timeouts.grace`.
pub async fn serve(
    listener: TcpListener,
    filter: BoxedFilter<(Response,)>,
    ws: Arc<WsEndpoint>,
    connections: Arc<Connections>,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let service = warp::service(filter);
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = &mut shutdown => break,
        };
        // At the limit with every connection busy: closed at once (dropped).
        let Some(registration) = connections.admit() else {
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let conn = registration.conn.clone();
        let svc = service.clone();
        let ws = ws.clone();
        let counted = connections.clone();
        let hyper_service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let busy = conn.begin();
            // HEAD is GET without the body wherever GET is answered (RFC 9110 §9.3.2):
            // the filters see GET, and hyper, which saw HEAD, sends the head only.
            if req.method() == http::Method::HEAD
                && !crate::files::routes::answers_head_itself(req.uri().path())
            {
                *req.method_mut() = http::Method::GET;
            }
            let routed = if ws.handles(&req) {
                Err(ws.upgrade(req))
            } else {
                req.extensions_mut().insert(PeerAddr(peer));
                let clock =
                    if crate::files::routes::streams_upload_body(req.method(), req.uri().path()) {
                        BodyClock::Progress(timeouts.request)
                    } else {
                        BodyClock::Whole(timeouts.request)
                    };
                let counted = counted.clone();
                Ok(svc
                    .clone()
                    .call(req.map(|body| TimedBody::new(body, clock, counted))))
            };
            async move {
                let response = match routed {
                    Err(upgrade_response) => upgrade_response,
                    Ok(filtered) => filtered.await.unwrap_or_else(|e| match e {}),
                };
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, busy)))
            }
        });
        let io = TokioIo::new(Watched::new(stream, registration.conn.clone()));
        let connection = h1.serve_connection(io, hyper_service).with_upgrades();
        let mut stopping = stopping.clone();
        let counted = connections.clone();
        tasks.spawn(async move {
            let slot = registration;
            let mut connection = std::pin::pin!(connection);
            let mut draining = false;
            loop {
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(e) = ended {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    dropped = slot.conn.until_dropped(timeouts.keepalive_idle) => {
                        if dropped == Dropped::Idle {
                            counted.counters().idle_closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        // No request in flight: dropping the connection closes it.
                        return;
                    }
                    _ = stopping.wait_for(|s| *s), if !draining => {
                        connection.as_mut().graceful_shutdown();
                        draining = true;
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("no longer accepting connections; draining");
    stop.send_replace(true);
    let drained = tokio::time::timeout(timeouts.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(
                grace_secs = timeouts.grace.as_secs(),
                "grace period over; closing remaining connections"
            );
            tasks.shutdown().await;
        }
    }
}
