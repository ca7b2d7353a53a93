//! Owns `GET /api/conversations` and `GET /api/conversations/{peer}/messages`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::reply::{json, Response};
use warp::{Filter, Reply};

use super::Messages;
use crate::auth::routes::authenticated;
use crate::auth::{Auth, Principal};
use crate::http::reply;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/conversations"),
    ("GET", "/api/conversations/{peer}/messages"),
];

pub fn routes(messages: Messages, auth: Arc<Auth>) -> BoxedFilter<(Response,)> {
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
        .and(who)
        .and(warp::query::<HistoryQuery>())
        .and(with_messages)
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

    list.or(history).unify().boxed()
}
