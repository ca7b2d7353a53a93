//! Owns `POST /api/ws-ticket`: trades an access token for a single-use WebSocket ticket
//! bound to the token's session.

use std::sync::Arc;

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::reply::{json, Response};
use warp::{Filter, Reply};

use super::tickets::{Holder, Tickets};
use crate::auth::routes::authenticated;
use crate::auth::{Auth, Principal};

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/api/ws-ticket"), ("GET", "/api/ws")];

pub fn routes(tickets: Arc<Tickets>, auth: Arc<Auth>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "ws-ticket")
        .and(warp::post())
        .and(authenticated(auth))
        .map(move |who: Principal| {
            let ticket = tickets.issue(Holder {
                user_id: who.user_id,
                username: who.username,
                session_id: who.session_id,
            });
            json(&json!({ "ticket": ticket, "expires_in": tickets.ttl().as_secs() }))
                .into_response()
        })
        .boxed()
}
