//! Owns `GET /metrics`: Prometheus text exposition of the server's counters (writer
//! transactions and operations, open WebSockets) followed by the job queue's
//! (`jobs::metrics`).

use std::fmt::Write;

use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::reply::Response;
use warp::Filter;

use crate::AppState;

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[("GET", "/metrics")];

/// One metric family in Prometheus text format.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

pub fn render(state: &AppState) -> String {
    let mut out = String::new();
    let w = state.db.writer().stats();
    family(
        &mut out,
        "securechat_db_write_transactions_total",
        "counter",
        "Transactions committed (or attempted) by the single writer.",
        &[("", w.transactions as f64)],
    );
    family(
        &mut out,
        "securechat_db_write_operations_total",
        "counter",
        "Write operations folded into those transactions (group commit).",
        &[("", w.operations as f64)],
    );
    family(
        &mut out,
        "securechat_websocket_connections",
        "gauge",
        "Open WebSocket connections.",
        &[("", state.hub.connection_count() as f64)],
    );
    out
}

pub fn route(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .and(warp::any().map(move || state.clone()))
        .then(|state: AppState| async move {
            let mut text = render(&state);
            match crate::jobs::metrics::render_prometheus(&state.jobs).await {
                Ok(jobs) => text.push_str(&jobs),
                Err(e) => tracing::warn!(error = %e, "job metrics unavailable"),
            }
            let mut r = Response::new(text.into());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        })
        .boxed()
}
