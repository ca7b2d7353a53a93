//! Owns the HTTP routes of `/api/auth/*` and `/api/me`: parse, call [`Auth`], reply.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{json, with_status, Response};
use warp::{Filter, Reply};

use super::{db_error, Auth, LoginRequest, Principal, RegisterRequest};
use crate::db::users;
use crate::error::{ApiError, ApiResult};
use crate::http::{authenticated, json_body, optional_json_body};
use crate::plugins::Plugins;
use securechat_plugin_api::Event;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreloginRequest {
    username: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    refresh_token: Option<String>,
}

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/auth/prelogin"),
    ("POST", "/api/auth/register"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/logout-all"),
    ("GET", "/api/me"),
];

fn reply(result: ApiResult<Response>) -> Result<Response, warp::Rejection> {
    Ok(result.unwrap_or_else(|e| e.into_response()))
}

pub fn routes(auth: Arc<Auth>, plugins: Arc<Plugins>, body_limit: u64) -> BoxedFilter<(Response,)> {
    let with_auth = {
        let auth = auth.clone();
        warp::any().map(move || auth.clone())
    };
    let with_plugins = warp::any().map(move || plugins.clone());
    let base = warp::path("api").and(warp::path("auth"));

    let prelogin = base
        .and(warp::path!("prelogin"))
        .and(warp::post())
        .and(with_auth.clone())
        .and(json_body::<PreloginRequest>(body_limit))
        .and_then(|auth: Arc<Auth>, req: PreloginRequest| async move {
            reply(
                auth.prelogin(&req.username)
                    .await
                    .map(|kdf| json(&json!({ "kdf": kdf })).into_response()),
            )
        });

    let register = base
        .and(warp::path!("register"))
        .and(warp::post())
        .and(with_auth.clone())
        .and(with_plugins.clone())
        .and(json_body::<RegisterRequest>(body_limit))
        .and_then(
            |auth: Arc<Auth>, plugins: Arc<Plugins>, req: RegisterRequest| async move {
                reply(auth.register(req).await.map(|(username, key_version)| {
                    plugins.emit(&Event::UserRegistered {
                        username: username.clone(),
                    });
                    with_status(
                        json(&json!({ "username": username, "key_version": key_version })),
                        StatusCode::CREATED,
                    )
                    .into_response()
                }))
            },
        );

    let login = base
        .and(warp::path!("login"))
        .and(warp::post())
        .and(with_auth.clone())
        .and(with_plugins.clone())
        .and(json_body::<LoginRequest>(body_limit))
        .and_then(
            |auth: Arc<Auth>, plugins: Arc<Plugins>, req: LoginRequest| async move {
                let username = req.username.clone();
                let result = auth.login(req).await;
                plugins.emit(&match &result {
                    Ok(_) => Event::LoginSucceeded { username },
                    Err(_) => Event::LoginFailed { username },
                });
                reply(result.map(|r| json(&r).into_response()))
            },
        );

    let refresh = base
        .and(warp::path!("refresh"))
        .and(warp::post())
        .and(with_auth.clone())
        .and(json_body::<RefreshRequest>(body_limit))
        .and_then(|auth: Arc<Auth>, req: RefreshRequest| async move {
            reply(
                auth.refresh(&req.refresh_token)
                    .await
                    .map(|pair| json(&pair).into_response()),
            )
        });

    let logout = base
        .and(warp::path!("logout"))
        .and(warp::post())
        .and(with_auth.clone())
        .and(authenticated(auth.clone()))
        .and(optional_json_body::<LogoutRequest>(body_limit))
        .and_then(
            |auth: Arc<Auth>, who: Principal, req: Option<LogoutRequest>| async move {
                let token = req.and_then(|r| r.refresh_token);
                reply(
                    auth.logout(&who, token)
                        .await
                        .map(|()| StatusCode::NO_CONTENT.into_response()),
                )
            },
        );

    let logout_all = base
        .and(warp::path!("logout-all"))
        .and(warp::post())
        .and(with_auth.clone())
        .and(authenticated(auth.clone()))
        .and_then(|auth: Arc<Auth>, who: Principal| async move {
            reply(
                auth.logout_all(&who)
                    .await
                    .map(|_| StatusCode::NO_CONTENT.into_response()),
            )
        });

    let me = warp::path!("api" / "me")
        .and(warp::get())
        .and(with_auth.clone())
        .and(authenticated(auth))
        .and_then(
            |auth: Arc<Auth>, who: Principal| async move { reply(describe_me(&auth, who).await) },
        );

    prelogin
        .or(register)
        .unify()
        .or(login)
        .unify()
        .or(refresh)
        .unify()
        .or(logout)
        .unify()
        .or(logout_all)
        .unify()
        .or(me)
        .unify()
        .boxed()
}

async fn describe_me(auth: &Auth, who: Principal) -> ApiResult<Response> {
    let user = auth
        .db()
        .read(move |c| users::by_id(c, who.user_id))
        .await
        .map_err(db_error)?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(json(&json!({
        "username": user.username,
        "key_version": user.keys.key_version,
        "is_admin": user.is_admin,
        "created_at": user.created_at,
    }))
    .into_response())
}
