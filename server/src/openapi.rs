//! Owns `/api/openapi.json`: the OpenAPI 3 description of the REST API, kept in
//! `server/openapi.json` and held true by a test that calls every path it lists.

use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::reply::Response;
use warp::Filter;

/// The routes this module serves (method, OpenAPI path); the OpenAPI test checks them.
pub const ROUTES: &[(&str, &str)] = &[("GET", "/api/openapi.json")];

pub const SPEC: &str = include_str!("../openapi.json");

pub fn route() -> BoxedFilter<(Response,)> {
    warp::path!("api" / "openapi.json")
        .and(warp::get())
        .map(|| {
            let mut r = Response::new(SPEC.into());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        })
        .boxed()
}
