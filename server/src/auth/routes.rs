//! Owns the HTTP routes of `/api/auth/*`, `/api/me` (read, delete) and `/api/sessions`
//! (list, revoke one): parse, call [`Auth`], reply.
//! Filters are nouns (what a request is), handlers are verbs (what answering it does).
//! A successful logout or logout-all answer carries `Clear-Site-Data: "cache"` (not
//! `"storage"`: see [`signed_out`]).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderName, HeaderValue};
use warp::http::StatusCode;
use warp::reply::{json, with_status, Response};
use warp::{Filter, Rejection, Reply};

use super::{Auth, LoginRequest, PasswordChange, Principal, RegisterRequest};
use crate::db::users;
use crate::error::{ApiError, ApiResult};
use crate::http::{caller, json_body, optional_json_body, reply, Caller};
use crate::plugins::Plugins;
use securechat_plugin_api::{Admission, AuthStep, Verdict};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteAccountRequest {
    auth_key: String,
}

/// The caller, from `Authorization: Bearer <access token>`; 401 otherwise.
pub fn authenticated(
    auth: Arc<Auth>,
) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let auth = auth.clone();
        async move {
            let token = header
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| warp::reject::custom(ApiError::unauthorized()))?;
            auth.authenticate(token).await.map_err(warp::reject::custom)
        }
    })
}

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/auth/prelogin"),
    ("POST", "/api/auth/register"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/logout-all"),
    ("POST", "/api/auth/password"),
    ("GET", "/api/me"),
    ("DELETE", "/api/me"),
    ("GET", "/api/sessions"),
    ("DELETE", "/api/sessions/{id}"),
];

pub fn routes(auth: Arc<Auth>, plugins: Arc<Plugins>, body_limit: u64) -> BoxedFilter<(Response,)> {
    let with_auth = {
        let auth = auth.clone();
        warp::any().map(move || auth.clone())
    };
    let with_plugins = warp::any().map(move || plugins.clone());
    let post = |name: &'static str| {
        warp::path("api")
            .and(warp::path("auth"))
            .and(warp::path(name))
            .and(warp::path::end())
            .and(warp::post())
    };

    let prelogin = post("prelogin")
        .and(with_auth.clone())
        .and(with_plugins.clone())
        .and(caller())
        .and(json_body::<PreloginRequest>(body_limit))
        .and_then(prelogin);
    let register = post("register")
        .and(with_auth.clone())
        .and(with_plugins.clone())
        .and(caller())
        .and(json_body::<RegisterRequest>(body_limit))
        .and_then(register);
    let login = post("login")
        .and(with_auth.clone())
        .and(with_plugins.clone())
        .and(caller())
        .and(json_body::<LoginRequest>(body_limit))
        .and_then(login);
    let refresh = post("refresh")
        .and(with_auth.clone())
        .and(json_body::<RefreshRequest>(body_limit))
        .and_then(refresh);
    let logout = post("logout")
        .and(with_auth.clone())
        .and(authenticated(auth.clone()))
        .and(optional_json_body::<LogoutRequest>(body_limit))
        .and_then(logout);
    let logout_all = post("logout-all")
        .and(with_auth.clone())
        .and(authenticated(auth.clone()))
        .and_then(logout_all);
    let password = post("password")
        .and(with_auth.clone())
        .and(with_plugins.clone())
        .and(caller())
        .and(authenticated(auth.clone()))
        .and(json_body::<PasswordChange>(body_limit))
        .and_then(change_password);
    let me = warp::path!("api" / "me")
        .and(warp::get())
        .and(with_auth.clone())
        .and(authenticated(auth.clone()))
        .and_then(describe_me);
    let delete_me = warp::path!("api" / "me")
        .and(warp::delete())
        .and(with_auth.clone())
        .and(with_plugins.clone())
        .and(caller())
        .and(authenticated(auth.clone()))
        .and(json_body::<DeleteAccountRequest>(body_limit))
        .and_then(delete_account);
    let sessions = warp::path!("api" / "sessions")
        .and(warp::get())
        .and(with_auth.clone())
        .and(authenticated(auth.clone()))
        .and_then(list_sessions);
    let revoke = warp::path!("api" / "sessions" / String)
        .and(warp::delete())
        .and(with_auth)
        .and(authenticated(auth))
        .and_then(revoke_session);

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
        .or(password)
        .unify()
        .or(me)
        .unify()
        .or(delete_me)
        .unify()
        .or(sessions)
        .unify()
        .or(revoke)
        .unify()
        .boxed()
}

/// Asks the guards about a sign-in step before any work (bcrypt, a row) is done.
fn admit(plugins: &Plugins, caller: &Caller, step: AuthStep, username: &str) -> ApiResult<()> {
    match plugins.admit(&Admission::Auth {
        client: caller.client(),
        step,
        username,
    }) {
        Verdict::Allow => Ok(()),
        Verdict::Refuse { retry_after_secs } => Err(ApiError::rate_limited(retry_after_secs)),
    }
}

async fn prelogin(
    auth: Arc<Auth>,
    plugins: Arc<Plugins>,
    caller: Caller,
    req: PreloginRequest,
) -> Result<Response, Rejection> {
    if let Err(e) = admit(&plugins, &caller, AuthStep::Prelogin, &req.username) {
        return reply(Err(e));
    }
    reply(
        auth.prelogin(&req.username)
            .await
            .map(|kdf| json(&json!({ "kdf": kdf })).into_response()),
    )
}

async fn register(
    auth: Arc<Auth>,
    plugins: Arc<Plugins>,
    caller: Caller,
    req: RegisterRequest,
) -> Result<Response, Rejection> {
    if let Err(e) = admit(&plugins, &caller, AuthStep::Register, &req.username) {
        return reply(Err(e));
    }
    reply(auth.register(req).await.map(|(username, key_version)| {
        with_status(
            json(&json!({ "username": username, "key_version": key_version })),
            StatusCode::CREATED,
        )
        .into_response()
    }))
}

async fn login(
    auth: Arc<Auth>,
    plugins: Arc<Plugins>,
    caller: Caller,
    req: LoginRequest,
) -> Result<Response, Rejection> {
    if let Err(e) = admit(&plugins, &caller, AuthStep::Login, &req.username) {
        return reply(Err(e));
    }
    reply(auth.login(req).await.map(|r| json(&r).into_response()))
}

async fn refresh(auth: Arc<Auth>, req: RefreshRequest) -> Result<Response, Rejection> {
    reply(
        auth.refresh(&req.refresh_token)
            .await
            .map(|pair| json(&pair).into_response()),
    )
}

/// 204 telling the browser to drop what this origin cached. Not `"storage"`: that wipes
/// every IndexedDB database of the origin, so each sign-out would erase the pinned keys,
/// replay guard and KDF memory of every account used in that browser, and the next sign-in
/// would trust whatever keys the server then shows. The browser deletes the session itself;
/// "Forget this device" deletes one account's records on request (docs/SECURITY.md).
fn signed_out() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        HeaderName::from_static("clear-site-data"),
        HeaderValue::from_static("\"cache\""),
    );
    r
}

async fn logout(
    auth: Arc<Auth>,
    who: Principal,
    req: Option<LogoutRequest>,
) -> Result<Response, Rejection> {
    let token = req.and_then(|r| r.refresh_token);
    reply(auth.logout(&who, token).await.map(|()| signed_out()))
}

async fn logout_all(auth: Arc<Auth>, who: Principal) -> Result<Response, Rejection> {
    reply(auth.logout_all(&who).await.map(|_| signed_out()))
}

/// Proving the password again costs what a login costs, and is limited like one (per
/// address and per account), so a stolen access token cannot guess faster than login.
async fn change_password(
    auth: Arc<Auth>,
    plugins: Arc<Plugins>,
    caller: Caller,
    who: Principal,
    req: PasswordChange,
) -> Result<Response, Rejection> {
    if let Err(e) = admit(&plugins, &caller, AuthStep::Login, &who.username) {
        return reply(Err(e));
    }
    reply(
        auth.change_password(&who, req)
            .await
            .map(|()| json(&json!({ "ok": true })).into_response()),
    )
}

/// Limited like a login, as [`change_password`].
async fn delete_account(
    auth: Arc<Auth>,
    plugins: Arc<Plugins>,
    caller: Caller,
    who: Principal,
    req: DeleteAccountRequest,
) -> Result<Response, Rejection> {
    if let Err(e) = admit(&plugins, &caller, AuthStep::Login, &who.username) {
        return reply(Err(e));
    }
    reply(
        auth.delete_account(&who, &req.auth_key)
            .await
            .map(|()| signed_out()),
    )
}

async fn list_sessions(auth: Arc<Auth>, who: Principal) -> Result<Response, Rejection> {
    reply(
        auth.sessions(&who)
            .await
            .map(|s| json(&json!({ "sessions": s })).into_response()),
    )
}

async fn revoke_session(
    id: String,
    auth: Arc<Auth>,
    who: Principal,
) -> Result<Response, Rejection> {
    reply(
        auth.revoke_session(&who, &id)
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response()),
    )
}

async fn describe_me(auth: Arc<Auth>, who: Principal) -> Result<Response, Rejection> {
    reply(me(&auth, who).await)
}

async fn me(auth: &Auth, who: Principal) -> ApiResult<Response> {
    let user = auth
        .db()
        .read(move |c| users::by_id(c, who.user_id))
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(json(&json!({
        "username": user.username,
        "key_version": user.keys.key_version,
        "is_admin": user.is_admin,
        "created_at": user.created_at,
    }))
    .into_response())
}
