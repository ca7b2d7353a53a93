//! Owns the HTTP edge shared by every route: JSON bodies with a size cap and one error for
//! malformed JSON, the one way a handler's result becomes a reply, security headers, and
//! request logging, and who the caller is (the TCP peer and, verbatim, the proxy headers,
//! for the plugins' guards to judge). (Bearer authentication is
//! `auth::routes::authenticated`.)
//!
//! Invariants: every response — API, asset or error — carries the security headers; the
//! request log line has method, route template (`/api/users/{name}/keys`, never the
//! concrete path, which may name a user, a file or a peer; never the query string), status
//! and duration, and nothing else from the request.

use serde::de::DeserializeOwned;
use warp::http::header::{HeaderMap, HeaderName, HeaderValue};
use warp::{Filter, Rejection};

use crate::error::{ApiError, ApiResult};

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'none'; require-trusted-types-for 'script'";

/// A handler's outcome as a warp reply: an error is answered with its JSON body here (not
/// passed on as a rejection, which would make warp try the routes after this one).
pub fn reply(result: ApiResult<warp::reply::Response>) -> Result<warp::reply::Response, Rejection> {
    Ok(result.unwrap_or_else(|e| e.into_response()))
}

fn too_large() -> Rejection {
    warp::reject::custom(ApiError::new(
        warp::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "request body too large",
    ))
}

/// The request body, at most `limit` bytes whether or not a Content-Length was sent
/// (chunked bodies are counted as they arrive and cut off at the limit).
pub fn limited_body(
    limit: u64,
) -> impl Filter<Extract = (bytes::Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, stream| collect_body(declared, stream, limit))
}

async fn collect_body<S, B>(
    declared: Option<u64>,
    stream: S,
    limit: u64,
) -> Result<bytes::Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures_util::TryStreamExt;
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut stream = std::pin::pin!(stream);
    let mut body = bytes::BytesMut::new();
    while let Some(mut chunk) = stream.try_next().await.map_err(|e| {
        warp::reject::custom(if is_timeout(&e) {
            ApiError::new(
                warp::http::StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )
        } else {
            ApiError::bad_request("invalid_request", "the request body could not be read")
        })
    })? {
        if body.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

/// A JSON body of at most `limit` bytes, parsed into `T`; bad JSON is a 400 `invalid_json`.
pub fn json_body<T: DeserializeOwned + Send>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    limited_body(limit).and_then(|bytes: bytes::Bytes| async move {
        serde_json::from_slice::<T>(&bytes).map_err(|e| {
            let message = match e.classify() {
                serde_json::error::Category::Data => format!("invalid request: {e}"),
                _ => "request body is not valid JSON".to_owned(),
            };
            warp::reject::custom(ApiError::bad_request(
                if e.classify() == serde_json::error::Category::Data {
                    "invalid_request"
                } else {
                    "invalid_json"
                },
                message,
            ))
        })
    })
}

/// An optional JSON body: empty means `None`.
pub fn optional_json_body<T: DeserializeOwned + Send>(
    limit: u64,
) -> impl Filter<Extract = (Option<T>,), Error = Rejection> + Clone {
    limited_body(limit).and_then(|bytes: bytes::Bytes| async move {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice::<T>(&bytes).map(Some).map_err(|_| {
            warp::reject::custom(ApiError::bad_request(
                "invalid_json",
                "request body is not valid JSON",
            ))
        })
    })
}

/// The headers every response carries.
pub fn security_headers(behind_tls: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |name: &'static str, value: &'static str| {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set("content-security-policy", CSP);
    set("x-content-type-options", "nosniff");
    set("x-frame-options", "DENY");
    set("referrer-policy", "no-referrer");
    set("cross-origin-opener-policy", "same-origin");
    set("cross-origin-resource-policy", "same-origin");
    set(
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    if behind_tls {
        set(
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        );
    }
    h
}

/// The route templates of the server (`/api/users/{name}/keys`), to name a request in the
/// log without the names and ids in its path.
#[derive(Clone)]
pub struct RouteTemplates(std::sync::Arc<Vec<&'static str>>);

/// What the log says for a path that is neither a route nor an embedded asset.
pub const UNROUTED: &str = "(unrouted)";

impl RouteTemplates {
    /// From `(method, template)` pairs; templates with more fixed segments are tried first,
    /// so `/api/files/limits` wins over `/api/files/{id}`.
    pub fn new(table: &[(&'static str, &'static str)]) -> RouteTemplates {
        let mut templates: Vec<&'static str> = table.iter().map(|(_, t)| *t).collect();
        templates.sort_unstable();
        templates.dedup();
        let fixed = |t: &str| t.split('/').filter(|s| !s.starts_with('{')).count();
        templates.sort_by_key(|t| std::cmp::Reverse(fixed(t)));
        RouteTemplates(std::sync::Arc::new(templates))
    }

    /// The template `path` matches; else the path itself if it is an embedded asset (a
    /// fixed file name of the build); else [`UNROUTED`].
    pub fn name<'a>(&self, path: &'a str) -> &'a str {
        let matches = |template: &str| {
            let mut t = template.split('/');
            let mut p = path.split('/');
            loop {
                match (t.next(), p.next()) {
                    (None, None) => return true,
                    (Some(ts), Some(ps)) if ts.starts_with('{') && !ps.is_empty() => {}
                    (Some(ts), Some(ps)) if ts == ps => {}
                    _ => return false,
                }
            }
        };
        if let Some(template) = self.0.iter().copied().find(|t| matches(t)) {
            return template;
        }
        if crate::assets::is_embedded(path) {
            path
        } else {
            UNROUTED
        }
    }
}

/// The request log: method, route template, status, milliseconds.
pub fn request_log(
    templates: RouteTemplates,
) -> warp::log::Log<impl Fn(warp::log::Info<'_>) + Clone + Send> {
    warp::log::custom(move |info| {
        tracing::info!(
            target: "securechat::request",
            method = %info.method(),
            route = templates.name(info.path()),
            status = info.status().as_u16(),
            ms = info.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    })
}

/// The peer address of a connection; `serve` puts it in each request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Who sent a request, as far as the transport tells: the TCP peer and the proxy headers,
/// verbatim. Whether the headers are believed is for the guard (trusted proxies).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub peer: Option<std::net::IpAddr>,
    pub x_forwarded_for: Option<String>,
    pub forwarded: Option<String>,
}

impl Caller {
    pub fn client(&self) -> securechat_plugin_api::Client<'_> {
        securechat_plugin_api::Client {
            peer: self.peer,
            x_forwarded_for: self.x_forwarded_for.as_deref(),
            forwarded: self.forwarded.as_deref(),
        }
    }
}

/// The request's [`Caller`].
pub fn caller() -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    warp::ext::optional::<PeerAddr>()
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .and(warp::header::optional::<String>("forwarded"))
        .map(
            |peer: Option<PeerAddr>, xff: Option<String>, fwd: Option<String>| Caller {
                peer: peer.map(|p| p.0.ip()),
                x_forwarded_for: xff,
                forwarded: fwd,
            },
        )
}

/// The error a request body ends with when its time is up (`serve::bodies` raises it, under
/// `server.request_timeout_secs`); [`is_timeout`] finds it behind warp's error. It lives
/// here, not in `serve`, so that reading a body never depends on the connection loop.
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

/// Whether `e`, or an error it wraps, is a [`BodyTimedOut`].
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{RouteTemplates, UNROUTED};

    #[test]
    fn a_path_is_logged_as_its_route_template_or_a_placeholder() {
        let t = RouteTemplates::new(&crate::route_table());
        for (path, logged) in [
            ("/api/users/alice/keys", "/api/users/{name}/keys"),
            ("/api/users", "/api/users"),
            ("/api/files/limits", "/api/files/limits"),
            ("/api/files/0b7d3a4e", "/api/files/{id}"),
            (
                "/api/conversations/bob/files",
                "/api/conversations/{peer}/files",
            ),
            (
                "/api/admin/users/carol/disable",
                "/api/admin/users/{name}/disable",
            ),
            ("/api/admin/messages.csv", "/api/admin/messages.csv"),
            ("/healthz", "/healthz"),
            ("/", "/"),
            ("/js/crypto.js", "/js/crypto.js"),
            ("/alice", UNROUTED),
            ("/api/users/alice/keys/more", UNROUTED),
            ("/api/users//keys", UNROUTED),
            ("/js/alice.js", UNROUTED),
        ] {
            assert_eq!(t.name(path), logged, "{path}");
        }
    }
}
