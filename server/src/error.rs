//! Owns the one error shape of the HTTP API, `{"error":{"code","message"}}`, and the single
//! `recover` that turns warp's own rejections into it.
//!
//! Invariant: the `code` strings are stable API; the `message` is for people; details that
//! help an operator (SQL errors, I/O errors) go to the log, never into a response.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::StatusCode;
use warp::reject::Reject;
use warp::Reply;

/// An error a handler answers with. Build one with the constructors; `internal` logs its detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (seconds), for `rate_limited`.
    pub retry_after_secs: Option<u64>,
    /// Sent as `Content-Range: bytes */N`, for `range_not_satisfiable` (RFC 9110 §15.5.17).
    pub range_total: Option<u64>,
}

impl Reject for ApiError {}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            range_total: None,
        }
    }

    /// 416 `range_not_satisfiable` for a resource of `total` bytes, with its Content-Range.
    pub fn range_not_satisfiable(total: u64) -> Self {
        Self {
            range_total: Some(total),
            ..Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {total} bytes"),
            )
        }
    }

    /// 429 `rate_limited` with `Retry-After`: a plugin's guard refused; nothing was done.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {retry_after_secs} s"),
            )
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing, expired or revoked credentials",
        )
    }

    pub fn invalid_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// A failure that is ours, not the caller's: the detail is logged, the caller sees a generic line.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    pub fn into_response(&self) -> warp::reply::Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        let mut r = warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        if let Some(secs) = self.retry_after_secs {
            r.headers_mut()
                .insert(warp::http::header::RETRY_AFTER, secs.into());
        }
        if let Some(total) = self.range_total {
            if let Ok(v) = warp::http::HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(warp::http::header::CONTENT_RANGE, v);
            }
        }
        r
    }
}

/// A storage failure is ours: logged in full, answered as `internal`.
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::internal(e)
    }
}

impl From<crate::username::InvalidUsername> for ApiError {
    fn from(e: crate::username::InvalidUsername) -> Self {
        ApiError::bad_request("invalid_username", e.to_string())
    }
}

impl From<crate::keys::KeyError> for ApiError {
    fn from(e: crate::keys::KeyError) -> Self {
        use crate::keys::KeyError;
        match e {
            KeyError::InvalidKey(why) => ApiError::bad_request("invalid_key", why),
            KeyError::InvalidSignature(what) => {
                ApiError::bad_request("invalid_signature", format!("{what} does not verify"))
            }
            KeyError::InvalidBundle(why) => ApiError::bad_request("invalid_key_bundle", why),
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> warp::reply::Response {
        ApiError::into_response(&self)
    }
}

/// Turns every rejection into the one JSON shape. Rejections that are ours carry an `ApiError`.
pub async fn recover(rejection: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.is_not_found() {
        ApiError::not_found("route")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body too large",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a Content-Length header is required",
        )
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        )
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::bad_request("invalid_request", "malformed query string")
    } else if rejection.find::<warp::reject::MissingHeader>().is_some()
        || rejection.find::<warp::reject::InvalidHeader>().is_some()
    {
        ApiError::bad_request(
            "invalid_request",
            "a required header is missing or malformed",
        )
    } else {
        tracing::warn!(rejection = ?rejection, "unhandled rejection");
        ApiError::bad_request("invalid_request", "the request could not be handled")
    };
    Ok(error.into_response())
}

pub type ApiResult<T> = Result<T, ApiError>;
