//! Owns `GET /metrics`: the server's metrics (writer transactions and operations, open
//! WebSockets, the HTTP edge's connections and timeouts) and the job queue's (`jobs::metrics`), gathered into one `prometheus-client`
//! registry per scrape and encoded in the OpenMetrics text format, which Prometheus reads.
//!
//! HELP texts carry no final period: the encoder adds one.
//!
//! Invariant: no metric text is written by hand; names, types, HELP lines, units and
//! histogram series come from `prometheus-client`, so the exposition is valid by
//! construction (a test parses it with an independent OpenMetrics/Prometheus parser).

use std::sync::atomic::Ordering;

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::reply::Response;
use warp::Filter;

use crate::AppState;

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[("GET", "/metrics")];

/// What Prometheus is told the body is.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the server, read now: the server's own counters at once, the job
/// queue's after one database read (left out, with a warning, if that read fails).
pub async fn render(state: &AppState) -> String {
    let mut registry = Registry::with_prefix("securechat");
    let w = state.db.writer().stats();
    registry.register(
        "db_write_transactions",
        "Transactions committed (or attempted) by the single writer",
        ConstCounter::new(w.transactions),
    );
    registry.register(
        "db_write_operations",
        "Write operations folded into those transactions (group commit)",
        ConstCounter::new(w.operations),
    );
    registry.register(
        "db_write_reruns",
        "Batches re-run with a savepoint per operation after one failed having written",
        ConstCounter::new(w.reruns),
    );
    registry.register(
        "websocket_connections",
        "Open WebSocket connections",
        ConstGauge::<i64>::new(i64::try_from(state.hub.connection_count()).unwrap_or(i64::MAX)),
    );
    let edge = state.connections.counters();
    registry.register(
        "http_connections",
        "Open HTTP connections (upgraded WebSockets not counted; server.max_connections bounds them)",
        ConstGauge::<i64>::new(i64::try_from(state.connections.open_count()).unwrap_or(i64::MAX)),
    );
    registry.register(
        "http_connections_evicted",
        "Idle HTTP connections closed to make room for a new one at server.max_connections",
        ConstCounter::new(edge.evicted.load(Ordering::Relaxed)),
    );
    registry.register(
        "http_connections_refused",
        "New HTTP connections closed at once at server.max_connections, every open one being busy",
        ConstCounter::new(edge.refused.load(Ordering::Relaxed)),
    );
    registry.register(
        "http_connections_idle_closed",
        "HTTP connections closed after server.keepalive_idle_secs without a request",
        ConstCounter::new(edge.idle_closed.load(Ordering::Relaxed)),
    );
    registry.register(
        "http_request_body_timeouts",
        "Request bodies cut by server.request_timeout_secs (stalled, or an upload that stopped moving)",
        ConstCounter::new(edge.body_timeouts.load(Ordering::Relaxed)),
    );
    let files = state.files.counters();
    registry.register(
        "files_received_bytes",
        "Upload bytes received and committed (PATCH bodies kept)",
        ConstCounter::new(files.received_bytes.load(Ordering::Relaxed)),
    );
    registry.register(
        "files_uploads_finished",
        "Uploads finalized into ready files",
        ConstCounter::new(files.uploads_finished.load(Ordering::Relaxed)),
    );
    registry.register(
        "files_damaged",
        "Stored files found damaged (BLAKE3 mismatch at finalize, download or scrub)",
        ConstCounter::new(files.damaged.load(Ordering::Relaxed)),
    );
    if let Err(e) = crate::jobs::metrics::register(&state.jobs, &mut registry).await {
        tracing::warn!(error = %e, "job metrics unavailable");
    }
    let mut out = String::with_capacity(8192);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

pub fn route(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .then(|state: AppState| async move {
            let mut r = Response::new(render(&state).await.into());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
            );
            r
        })
        .boxed()
}
