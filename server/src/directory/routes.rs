//! Owns the HTTP routes of the key directory: `/api/users`, `/api/users/{name}/keys`,
//! `/api/users/{name}/key-changes` and `/api/keys/rotate`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::reply::{json, Response};
use warp::{Filter, Reply};

use super::{Directory, RotateRequest};
use crate::auth::routes::authenticated;
use crate::auth::{Auth, Principal};
use crate::http::{json_body, reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    query: String,
    cursor: Option<String>,
}

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/users"),
    ("GET", "/api/users/{name}/keys"),
    ("GET", "/api/users/{name}/key-changes"),
    ("POST", "/api/keys/rotate"),
];

pub fn routes(dir: Directory, auth: Arc<Auth>, body_limit: u64) -> BoxedFilter<(Response,)> {
    let with_dir = warp::any().map(move || dir.clone());
    let who = authenticated(auth);

    let list = warp::path!("api" / "users")
        .and(warp::get())
        .and(who.clone())
        .and(warp::query::<ListQuery>())
        .and(with_dir.clone())
        .and_then(|_: Principal, q: ListQuery, dir: Directory| async move {
            reply(
                dir.list(&q.query, q.cursor.filter(|c| !c.is_empty()))
                    .await
                    .map(|page| json(&page).into_response()),
            )
        });

    let keys = warp::path!("api" / "users" / String / "keys")
        .and(warp::get())
        .and(who.clone())
        .and(with_dir.clone())
        .and_then(|name: String, _: Principal, dir: Directory| async move {
            reply(dir.keys(&name).await.map(|k| json(&k).into_response()))
        });

    let changes = warp::path!("api" / "users" / String / "key-changes")
        .and(warp::get())
        .and(who.clone())
        .and(with_dir.clone())
        .and_then(|name: String, _: Principal, dir: Directory| async move {
            reply(dir.key_changes(&name).await.map(|changes| {
                json(&json!({ "username": name, "changes": changes })).into_response()
            }))
        });

    let rotate = warp::path!("api" / "keys" / "rotate")
        .and(warp::post())
        .and(who)
        .and(with_dir)
        .and(json_body::<RotateRequest>(body_limit))
        .and_then(
            |who: Principal, dir: Directory, req: RotateRequest| async move {
                reply(dir.rotate(&who, req).await.map(|v| {
                    json(&json!({ "username": who.username, "key_version": v })).into_response()
                }))
            },
        );

    list.or(keys)
        .unify()
        .or(changes)
        .unify()
        .or(rotate)
        .unify()
        .boxed()
}
