//! The HTTP edge: one error shape, security headers everywhere, body limits, assets,
//! health, and the OpenAPI document matching the routes.

use securechat_client::Method;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

const HEADERS: [&str; 4] = [
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
];

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/"),
        (Method::GET, "/styles.css"),
        (Method::GET, "/no-such-page"),
        (Method::GET, "/api/me"),
        (Method::DELETE, "/api/auth/login"),
        (Method::POST, "/api/auth/prelogin"),
        (Method::GET, "/api/ws"),
    ] {
        let r = app
            .client
            .request(method.clone(), path, None, None)
            .await
            .expect("send");
        for h in HEADERS {
            assert!(
                r.header(h).is_some(),
                "{method} {path} lacks {h} (status {})",
                r.status
            );
        }
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
        // No form may submit anywhere (a password field posted before the script loads
        // goes nowhere), and script-reachable HTML sinks need Trusted Types.
        assert!(csp.contains("form-action 'none'") && !csp.contains("form-action 'self'"));
        assert!(csp.contains("require-trusted-types-for 'script'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert!(
            r.header("strict-transport-security").is_none(),
            "no HSTS without TLS"
        );
        if r.status >= 400 && path.starts_with("/api/") {
            let body: Value = r.json().expect("errors are JSON");
            assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
            assert!(body["error"]["message"].is_string());
        }
    }
}

#[tokio::test]
async fn an_unknown_page_gets_an_html_404_and_an_unknown_api_path_a_json_one() {
    let app = spawn_app().await;
    for path in [
        "/admin",
        "/settings.html",
        "/no/such/deep/page",
        "/../Cargo.toml",
    ] {
        let r = app
            .client
            .request(Method::GET, path, None, None)
            .await
            .expect("send");
        assert_eq!(r.status, 404, "{path}");
        let ctype = r.header("content-type").unwrap_or_default();
        assert!(ctype.starts_with("text/html"), "{path}: {ctype}");
        let page = r.text();
        assert!(page.contains("Page not found"), "{path}");
        // Absolute links: the page's style and way back work from any depth.
        assert!(page.contains("href=\"/styles.css\"") && page.contains("href=\"/chat.html\""));
    }
    for path in ["/api/nothing-here", "/api/", "/api"] {
        let r = app
            .client
            .request(Method::GET, path, None, None)
            .await
            .expect("send");
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.error().expect("JSON error").error.code,
            "not_found",
            "{path}"
        );
    }
}

#[tokio::test]
async fn head_is_answered_wherever_get_is_with_the_same_status_and_no_body() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/index.html",
        "/styles.css",
        "/js/crypto.js",
        "/healthz",
        "/readyz",
        "/api/openapi.json",
        "/api/features",
        "/api/me",
        "/no-such-page",
    ] {
        let get = app
            .client
            .request(Method::GET, path, None, None)
            .await
            .expect("send");
        let head = app
            .client
            .request(Method::HEAD, path, None, None)
            .await
            .expect("send");
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert_ne!(head.status, 405, "HEAD {path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
        assert!(head.text().is_empty(), "HEAD {path} has a body");
        assert!(
            head.header("content-security-policy").is_some(),
            "HEAD {path}"
        );
    }
    // A route without GET still refuses HEAD.
    let r = app
        .client
        .request(Method::HEAD, "/api/auth/login", None, None)
        .await
        .expect("send");
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn hsts_is_sent_when_configured_as_behind_tls() {
    let app = spawn_app_with(|c| c.server.behind_tls = true).await;
    let r = app
        .client
        .request(Method::GET, "/healthz", None, None)
        .await
        .expect("send");
    assert!(r
        .header("strict-transport-security")
        .is_some_and(|v| v.contains("max-age=")));
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_wrong_methods_405() {
    let app = spawn_app_with(|c| c.server.max_json_body_bytes = 2048).await;
    let big = format!("{{\"username\":\"{}\"}}", "a".repeat(4096));
    let r = app
        .client
        .request_bytes(
            Method::POST,
            "/api/auth/prelogin",
            None,
            Some("application/json"),
            Some(big.into_bytes()),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 413);
    assert_eq!(r.error().expect("body").error.code, "payload_too_large");
    let r = app
        .client
        .request(Method::GET, "/api/auth/login", None, None)
        .await
        .expect("send");
    assert_eq!(r.status, 405);
    assert_eq!(r.error().expect("body").error.code, "method_not_allowed");
}

#[tokio::test]
async fn the_frontend_is_served_from_the_binary_with_content_types() {
    let app = spawn_app().await;
    for (path, ctype) in [
        ("/", "text/html"),
        ("/register.html", "text/html"),
        ("/login.html", "text/html"),
        ("/admin.html", "text/html"),
        ("/js/admin.js", "javascript"),
        ("/styles.css", "text/css"),
        ("/js/crypto.js", "javascript"),
    ] {
        let r = app
            .client
            .request(Method::GET, path, None, None)
            .await
            .expect("send");
        assert_eq!(r.status, 200, "{path}");
        let got = r.header("content-type").unwrap_or_default();
        assert!(got.contains(ctype), "{path}: {got}");
    }
    let r = app
        .client
        .request(Method::GET, "/../Cargo.toml", None, None)
        .await
        .expect("send");
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let r = app
            .client
            .request(Method::GET, path, None, None)
            .await
            .expect("send");
        assert_eq!(r.status, 200);
        assert_eq!(r.json().expect("json")["status"], "ok");
    }
}

/// Every path and method the OpenAPI document lists exists (answers something other than
/// "route not found"/405, with a documented status), and the document lists exactly the
/// server's route table (each routes module declares its `ROUTES` beside its filters).
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    let r = app
        .client
        .request(Method::GET, "/api/openapi.json", None, None)
        .await
        .expect("send");
    assert_eq!(r.status, 200);
    let spec: Value = r.json().expect("json");
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let paths = spec["paths"].as_object().expect("paths");
    let mut listed = Vec::new();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("ops") {
            listed.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path.replace("{name}", "nobody").replace("{peer}", "nobody");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = app
                .client
                .request(m, &concrete, None, None)
                .await
                .expect("send");
            let code = r.error().map(|e| e.error.code).unwrap_or_default();
            assert!(
                r.status != 405
                    && !(r.status == 404 && code == "not_found" && r.text().contains("route")),
                "{method} {path} is documented but answers {} {}",
                r.status,
                r.text()
            );
            let documented: Vec<&String> = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .collect();
            assert!(
                documented
                    .iter()
                    .any(|s| s.as_str() == r.status.to_string()),
                "{method} {path} answered {} which is not documented ({documented:?})",
                r.status
            );
        }
    }
    listed.sort();
    let mut served: Vec<String> = securechat::route_table()
        .into_iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    served.sort();
    assert_eq!(
        listed, served,
        "the document and the server's route table differ"
    );
}

#[tokio::test]
async fn metrics_expose_the_writer_the_relay_and_the_job_queue_in_a_format_prometheus_parses() {
    use openmetrics_parser::{MetricNumber, OpenMetricsType, OpenMetricsValue};

    let app = spawn_app().await;
    app.register("alice").await;
    let r = app
        .client
        .request(Method::GET, "/metrics", None, None)
        .await
        .expect("send");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    let text = r.text();

    // An independent, strict parser of the exposition format accepts it: OpenMetrics 1.0,
    // what the Content-Type says and what Prometheus asks a target for first. (Its older
    // Prometheus-0.0.4 grammar wants `# TYPE x_total counter`, which OpenMetrics forbids.)
    let om = openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{text}"));

    let kind = |name: &str| {
        om.families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name} in\n{text}"))
            .family_type
    };
    for (name, want) in [
        ("securechat_db_write_transactions", OpenMetricsType::Counter),
        ("securechat_db_write_operations", OpenMetricsType::Counter),
        ("securechat_websocket_connections", OpenMetricsType::Gauge),
        ("securechat_http_connections", OpenMetricsType::Gauge),
        (
            "securechat_http_connections_evicted",
            OpenMetricsType::Counter,
        ),
        (
            "securechat_http_connections_refused",
            OpenMetricsType::Counter,
        ),
        (
            "securechat_http_connections_idle_closed",
            OpenMetricsType::Counter,
        ),
        (
            "securechat_http_request_body_timeouts",
            OpenMetricsType::Counter,
        ),
        ("securechat_jobs", OpenMetricsType::Gauge),
        ("securechat_jobs_enqueued", OpenMetricsType::Counter),
        (
            "securechat_jobs_duration_seconds",
            OpenMetricsType::Histogram,
        ),
        ("securechat_jobs_wait_seconds", OpenMetricsType::Histogram),
    ] {
        assert_eq!(kind(name), want, "{name}");
    }

    let ops = om.families["securechat_db_write_operations"]
        .iter_samples()
        .find_map(|s| match &s.value {
            OpenMetricsValue::Counter(c) => Some(c.value.as_f64()),
            _ => None,
        })
        .expect("a counter sample");
    assert!(ops >= 1.0, "the registration was a write: {ops}");
    let connections = om.families["securechat_websocket_connections"]
        .iter_samples()
        .find_map(|s| match &s.value {
            OpenMetricsValue::Gauge(MetricNumber::Int(n)) => Some(*n),
            _ => None,
        });
    assert_eq!(connections, Some(0));
    // Every queue's histogram has its buckets, ending in +Inf with the count.
    for s in om.families["securechat_jobs_wait_seconds"].iter_samples() {
        let OpenMetricsValue::Histogram(h) = &s.value else {
            panic!("not a histogram sample")
        };
        assert_eq!(h.buckets.len(), 13, "12 bounds and +Inf");
        assert_eq!(h.buckets.last().map(|b| b.upper_bound), Some(f64::INFINITY));
    }
}
