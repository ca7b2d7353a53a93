//! Owns the listening socket and the connection loop: accept, set TCP_NODELAY, hand the
//! connection to hyper with warp's filter as the service, and on shutdown stop accepting and
//! give in-flight connections a grace period.
//!
//! warp's own `serve` never sets TCP_NODELAY (Nagle + delayed ACK put a 40 ms floor under
//! small responses), so the loop is ours; warp still does all routing.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::http::PeerAddr;
use crate::relay::upgrade::WsEndpoint;

/// Serves `filter` on `listener` until `shutdown` resolves, then drains for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    filter: BoxedFilter<(Response,)>,
    ws: Arc<WsEndpoint>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let service = warp::service(filter);
    let graceful = GracefulShutdown::new();
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
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let svc = service.clone();
        let ws = ws.clone();
        let hyper_service = hyper::service::service_fn(move |mut req: http::Request<_>| {
            let routed = if ws.handles(&req) {
                Err(ws.upgrade(req))
            } else {
                req.extensions_mut().insert(PeerAddr(peer));
                Ok(svc.clone().call(req))
            };
            async move {
                match routed {
                    Err(upgrade_response) => Ok::<_, Infallible>(upgrade_response),
                    Ok(filtered) => Ok(filtered.await.unwrap_or_else(|e| match e {})),
                }
            }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), hyper_service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("no longer accepting connections; draining");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections"),
    }
}
