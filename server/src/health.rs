//! Owns `/healthz` (the process answers) and `/readyz` (the database answers a read and the
//! writer commits).

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{json, with_status, Response};
use warp::{Filter, Reply};

use crate::db::Db;

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[("GET", "/healthz"), ("GET", "/readyz")];

pub fn routes(db: Db) -> BoxedFilter<(Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json(&json!({ "status": "ok" })).into_response());
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(warp::any().map(move || db.clone()))
        .then(|db: Db| async move {
            match check(&db).await {
                Ok(()) => json(&json!({ "status": "ok" })).into_response(),
                Err(e) => {
                    tracing::warn!(error = %e, "readiness check failed");
                    with_status(
                        json(&json!({ "status": "unavailable" })),
                        StatusCode::SERVICE_UNAVAILABLE,
                    )
                    .into_response()
                }
            }
        });
    healthz.or(readyz).unify().boxed()
}

async fn check(db: &Db) -> Result<(), crate::db::DbError> {
    db.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
        .await?;
    db.write(|_| Ok(())).await
}
