//! Owns `GET /api/conversations`, `GET /api/conversations/{peer}/messages`, the
//! conversation's disappearing-messages timer (`GET`/`PUT /api/conversations/{peer}/timer`)
//! and `DELETE /api/messages/{id}` (delete for everyone, by the sender).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{json, Response};
use warp::{Filter, Rejection, Reply};

use super::Messages;
use crate::auth::routes::authenticated;
use crate::auth::{Auth, Principal};
use crate::http::{json_body, reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerRequest {
    secs: i64,
}

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/conversations"),
    ("GET", "/api/conversations/{peer}/messages"),
    ("GET", "/api/conversations/{peer}/timer"),
    ("PUT", "/api/conversations/{peer}/timer"),
    ("DELETE", "/api/messages/{id}"),
];

pub fn routes(messages: Messages, auth: Arc<Auth>, body_limit: u64) -> BoxedFilter<(Response,)> {
    let with_messages = warp::any().map(move || messages.clone());
    let who = authenticated(auth);

    let list = warp::path!("api" / "conversations")
        .and(warp::get())
        .and(who.clone())
        .and(with_messages.clone())
        .and_then(|who: Principal, m: Messages| async move {
            reply(
                m.conversations(&who)
                    .await
                    .map(|c| json(&json!({ "conversations": c })).into_response()),
            )
        });

    let history = warp::path!("api" / "conversations" / String / "messages")
        .and(warp::get())
        .and(who.clone())
        .and(warp::query::<HistoryQuery>())
        .and(with_messages.clone())
        .and_then(
            |peer: String, who: Principal, q: HistoryQuery, m: Messages| async move {
                reply(
                    m.history(&who, &peer, q.after, q.before, q.limit)
                        .await
                        // Serialized as a struct, never through serde_json::Value, so each
                        // stored envelope goes out byte for byte.
                        .map(|messages| json(&super::HistoryPage { messages }).into_response()),
                )
            },
        );

    let timer = warp::path!("api" / "conversations" / String / "timer")
        .and(warp::get())
        .and(who.clone())
        .and(with_messages.clone())
        .and_then(describe_timer);

    let set_timer = warp::path!("api" / "conversations" / String / "timer")
        .and(warp::put())
        .and(who.clone())
        .and(with_messages.clone())
        .and(json_body::<TimerRequest>(body_limit))
        .and_then(set_timer);

    let delete = warp::path!("api" / "messages" / String)
        .and(warp::delete())
        .and(who)
        .and(with_messages)
        .and_then(delete_message);

    list.or(history)
        .unify()
        .or(timer)
        .unify()
        .or(set_timer)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

async fn describe_timer(peer: String, who: Principal, m: Messages) -> Result<Response, Rejection> {
    reply(m.timer(&who, &peer).await.map(|t| json(&t).into_response()))
}

async fn set_timer(
    peer: String,
    who: Principal,
    m: Messages,
    req: TimerRequest,
) -> Result<Response, Rejection> {
    reply(
        m.set_timer(&who, &peer, req.secs)
            .await
            .map(|t| json(&t).into_response()),
    )
}

async fn delete_message(id: String, who: Principal, m: Messages) -> Result<Response, Rejection> {
    reply(
        m.delete(&who, &id)
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response()),
    )
}
