//! Owns the browser client: the files of `frontend/`, embedded in the binary at build time
//! and served with a Content-Type from mime_guess, and the HTML "page not found" answer for
//! any other path outside `/api/` (`404.html`, status 404).
//!
//! Invariant: only embedded files are ever served — no path reaches the filesystem.
//! Invariant: a path under `/api/` is never answered with a page; the API's JSON errors stand.

use rust_embed::RustEmbed;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::path::Tail;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "../frontend/"]
struct Frontend;

/// The page served, with status 404, for any path outside `/api/` that names no file.
const NOT_FOUND_PAGE: &str = "404.html";

pub fn routes() -> BoxedFilter<(Response,)> {
    warp::get()
        .and(warp::path::tail())
        .and_then(|tail: Tail| async move {
            // API paths are never pages: let the API's own rejection (401, 405…) stand.
            if tail.as_str() == "api" || tail.as_str().starts_with("api/") {
                Err(warp::reject::not_found())
            } else {
                Ok(serve(tail.as_str()))
            }
        })
        .boxed()
}

/// Whether `path` (as requested, with its leading `/`) names an embedded file; `/` is the
/// index page.
pub fn is_embedded(path: &str) -> bool {
    match path.strip_prefix('/') {
        Some("") => true,
        Some(name) => Frontend::get(name).is_some(),
        None => false,
    }
}

fn serve(path: &str) -> Response {
    let path = if path.is_empty() { "index.html" } else { path };
    match Frontend::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            let mut res = Response::new(file.data.into_owned().into());
            *res.status_mut() = StatusCode::OK;
            let content_type = if mime.type_() == "text" || mime.subtype() == "javascript" {
                format!("{mime}; charset=utf-8")
            } else {
                mime.to_string()
            };
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                res.headers_mut().insert(CONTENT_TYPE, v);
            }
            // Pages and modules change with the binary; let browsers revalidate.
            res.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res
        }
        None => not_found_page(),
    }
}

/// The HTML page for a path that names no file: browsers land here from a mistyped or old
/// link, so they get a page with a way back rather than the API's JSON.
fn not_found_page() -> Response {
    match Frontend::get(NOT_FOUND_PAGE) {
        Some(file) => {
            let mut res = Response::new(file.data.into_owned().into());
            *res.status_mut() = StatusCode::NOT_FOUND;
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res
        }
        // Only if the page was left out of the build: the JSON answer is still correct.
        None => ApiError::not_found("page").into_response(),
    }
}
