//! Owns the HTTP surface of files: the tus endpoints at `/api/uploads` (OPTIONS, POST with
//! creation-with-upload, HEAD, PATCH, DELETE), `GET /api/files/limits`, `GET /api/files/{id}`
//! and `GET /api/conversations/{peer}/files`. Filters parse, handlers call `Files` and reply.
//!
//! Every `/api/uploads` answer but OPTIONS carries `Tus-Resumable: 1.0.0`, errors included
//! (authentication is checked inside the handlers for that reason).

use crate::plugins::Plugins;
use securechat_plugin_api::{Admission, Verdict};
use std::sync::Arc;

use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_TYPE};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::{json, Response};
use warp::{Filter, Reply};

use super::tus::{self, Checksum};
use super::{Files, UploadStatus};
use crate::auth::routes::authenticated;
use crate::auth::{Auth, Principal};
use crate::error::{ApiError, ApiResult};
use crate::http::reply;

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[
    ("OPTIONS", "/api/uploads"),
    ("POST", "/api/uploads"),
    ("HEAD", "/api/uploads/{id}"),
    ("PATCH", "/api/uploads/{id}"),
    ("DELETE", "/api/uploads/{id}"),
    ("GET", "/api/files/limits"),
    ("GET", "/api/files/{id}"),
    ("GET", "/api/conversations/{peer}/files"),
];

/// Whether a request carries upload data (`PATCH /api/uploads/{id}`, or `POST /api/uploads`
/// with creation-with-upload): such a body may take as long as it keeps moving (the edge's
/// `server.request_timeout_secs` bounds its pauses, not its length).
pub fn streams_upload_body(method: &warp::http::Method, path: &str) -> bool {
    use warp::http::Method;
    (method == Method::PATCH && path.starts_with("/api/uploads/"))
        || (method == Method::POST && path == "/api/uploads")
}

/// Whether `path` has a HEAD of its own (tus's `HEAD /api/uploads/{id}`, answering the
/// offset): everywhere else the edge answers HEAD as GET without the body.
pub fn answers_head_itself(path: &str) -> bool {
    path.starts_with("/api/uploads/")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    before: Option<String>,
    limit: Option<u32>,
}

fn set(r: &mut Response, name: &'static str, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        r.headers_mut().insert(name, v);
    }
}

/// A tus answer: the result (or its error) with `Tus-Resumable`.
fn tus_reply(result: ApiResult<Response>) -> Result<Response, warp::Rejection> {
    let mut r = result.unwrap_or_else(|e| e.into_response());
    set(&mut r, "tus-resumable", tus::VERSION);
    if r.status() == StatusCode::PRECONDITION_FAILED {
        set(&mut r, "tus-version", tus::VERSION);
    }
    Ok(r)
}

fn status_reply(code: StatusCode, s: &UploadStatus) -> Response {
    let mut r = empty(code);
    set(&mut r, "upload-offset", s.offset.to_string());
    set(&mut r, "upload-expires", tus::http_date(s.expires_at));
    r
}

async fn principal(auth: &Auth, h: &HeaderMap) -> ApiResult<Principal> {
    let token = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    auth.authenticate(token).await
}

/// Version, then credentials: what every tus request but OPTIONS needs first.
async fn tus_caller(auth: &Auth, h: &HeaderMap) -> ApiResult<Principal> {
    tus::check_version(h)?;
    principal(auth, h).await
}

fn has_body(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let declared = tus::u64_header(h, "content-length", "invalid_request")?;
    Ok(match declared {
        Some(0) => None,
        Some(n) => Some(n),
        None if h.contains_key("transfer-encoding") => Some(0),
        None => None,
    })
}

fn offset_content_type(h: &HeaderMap) -> ApiResult<()> {
    let ct = h
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().map(str::trim) == Some(tus::OFFSET_CONTENT_TYPE) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_content_type",
            "send Content-Type: application/offset+octet-stream",
        ))
    }
}

pub fn routes(files: Files, auth: Arc<Auth>, plugins: Arc<Plugins>) -> BoxedFilter<(Response,)> {
    let with_files = warp::any().map(move || files.clone());
    let with_plugins = warp::any().map(move || plugins.clone());
    let with_auth = {
        let auth = auth.clone();
        warp::any().map(move || auth.clone())
    };
    let who = authenticated(auth);

    let options = warp::path!("api" / "uploads")
        .and(warp::options())
        .and(with_files.clone())
        .map(|f: Files| {
            let mut r = empty(StatusCode::NO_CONTENT);
            set(&mut r, "tus-version", tus::VERSION);
            set(&mut r, "tus-extension", tus::EXTENSIONS);
            set(
                &mut r,
                "tus-max-size",
                f.config().max_file_bytes.to_string(),
            );
            set(&mut r, "tus-checksum-algorithm", tus::CHECKSUM_ALGORITHMS);
            r
        });

    let create = warp::path!("api" / "uploads")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_files.clone())
        .and(with_auth.clone())
        .and(with_plugins.clone())
        .and_then(
            |h: HeaderMap, body, f: Files, auth: Arc<Auth>, p: Arc<Plugins>| async move {
                tus_reply(create(&f, &auth, &p, &h, body).await)
            },
        );

    let head = warp::path!("api" / "uploads" / String)
        .and(warp::head())
        .and(warp::header::headers_cloned())
        .and(with_files.clone())
        .and(with_auth.clone())
        .and_then(
            |id: String, h: HeaderMap, f: Files, auth: Arc<Auth>| async move {
                tus_reply(head(&f, &auth, &id, &h).await)
            },
        );

    let patch = warp::path!("api" / "uploads" / String)
        .and(warp::patch())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_files.clone())
        .and(with_auth.clone())
        .and(with_plugins)
        .and_then(
            |id: String, h: HeaderMap, body, f: Files, auth: Arc<Auth>, p: Arc<Plugins>| async move {
                tus_reply(patch(&f, &auth, &p, &id, &h, body).await)
            },
        );

    let delete = warp::path!("api" / "uploads" / String)
        .and(warp::delete())
        .and(warp::header::headers_cloned())
        .and(with_files.clone())
        .and(with_auth)
        .and_then(
            |id: String, h: HeaderMap, f: Files, auth: Arc<Auth>| async move {
                tus_reply(delete(&f, &auth, &id, &h).await)
            },
        );

    let limits = warp::path!("api" / "files" / "limits")
        .and(warp::get())
        .and(who.clone())
        .and(with_files.clone())
        .and_then(|who: Principal, f: Files| async move {
            reply(f.limits(&who).await.map(|l| json(&l).into_response()))
        });

    let download = warp::path!("api" / "files" / String)
        .and(warp::get())
        .and(who.clone())
        .and(warp::header::optional::<String>("range"))
        .and(with_files.clone())
        .and_then(
            |id: String, who: Principal, range: Option<String>, f: Files| async move {
                reply(download(&f, &who, &id, range.as_deref()).await)
            },
        );

    let list = warp::path!("api" / "conversations" / String / "files")
        .and(warp::get())
        .and(who)
        .and(warp::query::<ListQuery>())
        .and(with_files)
        .and_then(
            |peer: String, who: Principal, q: ListQuery, f: Files| async move {
                reply(
                    f.list(&who, &peer, q.before.as_deref(), q.limit)
                        .await
                        .map(|page| json(&page).into_response()),
                )
            },
        );

    options
        .or(create)
        .unify()
        .or(head)
        .unify()
        .or(patch)
        .unify()
        .or(delete)
        .unify()
        .or(limits)
        .unify()
        .or(download)
        .unify()
        .or(list)
        .unify()
        .boxed()
}

fn empty(code: StatusCode) -> Response {
    let mut r = warp::reply().into_response();
    *r.status_mut() = code;
    r
}

async fn head(f: &Files, auth: &Auth, id: &str, h: &HeaderMap) -> ApiResult<Response> {
    let who = tus_caller(auth, h).await?;
    let s = f.head(&who, id).await?;
    let mut r = status_reply(StatusCode::OK, &s);
    set(&mut r, "upload-length", s.length.to_string());
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn patch<S, B>(
    f: &Files,
    auth: &Auth,
    plugins: &Plugins,
    id: &str,
    h: &HeaderMap,
    body: S,
) -> ApiResult<Response>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: bytes::Buf + Send + 'static,
{
    let who = tus_caller(auth, h).await?;
    offset_content_type(h)?;
    let offset = tus::u64_header(h, "upload-offset", "invalid_request")?
        .ok_or_else(|| ApiError::bad_request("invalid_request", "Upload-Offset is required"))?;
    let checksum: Option<Checksum> = tus::parse_checksum(h)?;
    let declared = tus::u64_header(h, "content-length", "invalid_request")?;
    admit_upload_bytes(plugins, f, &who, declared)?;
    let s = f.patch(&who, id, offset, declared, checksum, body).await?;
    Ok(status_reply(StatusCode::NO_CONTENT, &s))
}

async fn delete(f: &Files, auth: &Auth, id: &str, h: &HeaderMap) -> ApiResult<Response> {
    let who = tus_caller(auth, h).await?;
    f.delete(&who, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Upload bandwidth per account, asked before a byte of a body is read so that a refusal
/// keeps nothing. A body without `Content-Length` (chunked) is charged as a full PATCH.
fn admit_upload_bytes(
    plugins: &Plugins,
    f: &Files,
    who: &Principal,
    declared: Option<u64>,
) -> ApiResult<()> {
    let bytes = declared.unwrap_or(f.config().max_patch_bytes);
    match plugins.admit(&Admission::UploadBytes {
        username: &who.username,
        bytes,
    }) {
        Verdict::Refuse { retry_after_secs } => Err(ApiError::rate_limited(retry_after_secs)),
        Verdict::Allow => Ok(()),
    }
}

async fn create<S, B>(
    f: &Files,
    auth: &Auth,
    plugins: &Plugins,
    h: &HeaderMap,
    body: S,
) -> ApiResult<Response>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: bytes::Buf + Send + 'static,
{
    let who = tus_caller(auth, h).await?;
    let first = has_body(h)?;
    if first.is_some() {
        offset_content_type(h)?;
    }
    let checksum = tus::parse_checksum(h)?;
    let length = tus::u64_header(h, "upload-length", "invalid_length")?;
    let metadata = tus::parse_metadata(h, f.config().record_size_max);
    if first.is_some() {
        let declared = tus::u64_header(h, "content-length", "invalid_request")?;
        admit_upload_bytes(plugins, f, &who, declared)?;
    }
    let created = f.create(&who, length, metadata, first).await?;
    let mut r = empty(StatusCode::CREATED);
    set(&mut r, "location", format!("/api/uploads/{}", created.id));
    set(&mut r, "upload-expires", tus::http_date(created.expires_at));
    if first.is_some() {
        // The upload exists now whatever happens to its first bytes: answer with what was kept.
        let offset = match f.patch(&who, &created.id, 0, None, checksum, body).await {
            Ok(s) => s.offset,
            Err(_) => f
                .head(&who, &created.id)
                .await
                .map(|s| s.offset)
                .unwrap_or(0),
        };
        set(&mut r, "upload-offset", offset.to_string());
    }
    Ok(r)
}

async fn download(
    f: &Files,
    who: &Principal,
    id: &str,
    range: Option<&str>,
) -> ApiResult<Response> {
    let d = f.download(who, id, range).await?;
    let mut r = warp::reply::stream(d.body).into_response();
    let len = match d.range {
        Some((a, b)) => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(
                &mut r,
                "content-range",
                format!("bytes {a}-{b}/{}", d.total),
            );
            b - a + 1
        }
        None => d.total,
    };
    set(&mut r, "content-length", len.to_string());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut()
        .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    set(&mut r, "etag", format!("\"{}\"", d.etag));
    Ok(r)
}
