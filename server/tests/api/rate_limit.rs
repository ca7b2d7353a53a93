//! Rate limits (the `rate-limit` plugin) seen from outside: sign-in attempts per address
//! (behind a trusted proxy and not), password changes counted as logins, user searches
//! under the per-address API limit, WebSocket frame floods, the config table, and
//! `/api/features` in builds with and without the plugin.

#[cfg(feature = "rate-limit")]
use std::time::Duration;

use securechat_client::b64;
#[cfg(feature = "rate-limit")]
use securechat_client::ws::ServerFrame;
use serde_json::{json, Value};

#[cfg(feature = "rate-limit")]
use crate::helpers::{spawn_app, PASSWORD};
use crate::helpers::{spawn_app_with, TestApp};
#[cfg(feature = "rate-limit")]
use crate::relay::{ack, connect, next_matching, seal, upgrade_status};

/// `[plugins.rate_limit]` set to `table` (TOML text).
#[cfg(feature = "rate-limit")]
fn rate_limit(c: &mut securechat::Config, table: &str) {
    let t: toml::Table = toml::from_str(table).expect("toml");
    c.plugins.0.insert("rate_limit".into(), t);
}

pub(crate) async fn features(app: &TestApp) -> Value {
    let r = app
        .client
        .http()
        .get(format!("{}/api/features", app.client.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

/// Whether a `/api/features` answer lists plugin `name` as enabled or not (other
/// compiled-in plugins may be listed too).
pub(crate) fn lists(features: &Value, name: &str, enabled: bool) -> bool {
    features["plugins"]
        .as_array()
        .is_some_and(|l| l.contains(&json!({ "name": name, "enabled": enabled })))
}

/// A login with a wrong auth key, presenting `forwarded_for` as X-Forwarded-For if given.
async fn failed_login(app: &TestApp, user: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .http()
        .post(format!("{}/api/auth/login", app.client.base_url()))
        .json(&json!({ "username": user, "auth_key": b64::encode([7u8; 32]) }));
    if let Some(ip) = forwarded_for {
        req = req.header("X-Forwarded-For", ip);
    }
    req.send().await.expect("send")
}

#[cfg(feature = "rate-limit")]
async fn assert_rate_limited(r: reqwest::Response) {
    assert_eq!(r.status(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn the_sixth_failed_login_from_one_address_gets_429_with_retry_after_while_another_address_still_logs_in(
) {
    let app = spawn_app_with(|c| {
        rate_limit(
            c,
            r#"trusted_proxies = ["127.0.0.1"]
               login_per_ip = { burst = 5, per_secs = 60 }"#,
        )
    })
    .await;
    app.register("alice").await;
    for _ in 0..5 {
        let r = failed_login(&app, "alice", Some("198.51.100.1")).await;
        assert_eq!(r.status(), 401, "a plain failed login first");
    }
    assert_rate_limited(failed_login(&app, "alice", Some("198.51.100.1")).await).await;
    // A proxy that appends its own hop: the client is still the first untrusted address.
    assert_rate_limited(failed_login(&app, "alice", Some("198.51.100.1, 127.0.0.1")).await).await;
    // Another address is not held back, neither for a wrong key nor for the right one.
    assert_eq!(
        failed_login(&app, "alice", Some("198.51.100.2"))
            .await
            .status(),
        401
    );
    let s = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect("login from 127.0.0.1");
    assert_eq!(s.username, "alice");
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn a_spoofed_x_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app =
        spawn_app_with(|c| rate_limit(c, "login_per_ip = { burst = 5, per_secs = 60 }")).await;
    app.register("alice").await;
    for i in 0..5 {
        let spoof = format!("203.0.113.{i}");
        let r = failed_login(&app, "alice", Some(&spoof)).await;
        assert_eq!(r.status(), 401);
    }
    // Every attempt counted against the real peer, 127.0.0.1, whatever the header said.
    assert_rate_limited(failed_login(&app, "alice", Some("203.0.113.99")).await).await;
    let e = app
        .client
        .login("alice", PASSWORD)
        .await
        .expect_err("the peer is limited");
    assert!(e.is_api(429, "rate_limited"), "{e}");
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn a_flood_of_websocket_frames_from_one_user_is_cut_off_while_another_users_messages_keep_flowing(
) {
    let app = spawn_app_with(|c| {
        rate_limit(
            c,
            "ws_frames_per_connection = { burst = 30, per_secs = 60 }",
        )
    })
    .await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let carol = app.register_and_login("carol").await;
    let mut b = connect(&app, &bob).await;
    let mut c = connect(&app, &carol).await;
    let mut a = connect(&app, &alice).await;

    // Typing to oneself is a valid frame that answers nothing: only the limit speaks.
    let typing = json!({ "type": "typing", "to": "alice" }).to_string();
    let mut sent = 0;
    for _ in 0..200 {
        if a.send_text(typing.clone()).await.is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent > 30, "the flood went out ({sent} frames)");
    let (code, message) = next_matching(&mut a, |f| match f {
        ServerFrame::Error { code, message, .. } => Some((code, message)),
        _ => None,
    })
    .await;
    assert_eq!(code, "rate_limited");
    assert!(message.contains("retry in"), "a retry hint: {message}");
    let mut closed = None;
    for _ in 0..300 {
        match a.recv_event(Duration::from_secs(5)).await {
            Ok(securechat_client::ws::WsEvent::Close { code, .. }) => {
                closed = code;
                break;
            }
            Ok(securechat_client::ws::WsEvent::Ended) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    assert_eq!(
        closed,
        Some(1008),
        "a connection that keeps flooding is closed"
    );

    // Bob and carol were never held back.
    for i in 0..5 {
        b.send_envelope(&seal(&app, &bob, "carol", &format!("still here {i}")).await)
            .await
            .expect("send");
        ack(&mut b).await;
        next_matching(&mut c, |f| match f {
            ServerFrame::Message { .. } => Some(()),
            _ => None,
        })
        .await;
    }
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn new_websocket_connections_of_one_account_are_limited_and_another_account_still_connects() {
    let app =
        spawn_app_with(|c| rate_limit(c, "ws_connects_per_account = { burst = 2, per_secs = 60 }"))
            .await;
    let alice = app.register_and_login("alice").await;
    let bob = app.register_and_login("bob").await;
    let own = app.client.origin();
    let ticket = |s: &securechat_client::Session| {
        let token = s.access_token.clone();
        let app = &app;
        async move { app.client.ws_ticket(&token).await.expect("ticket").ticket }
    };
    for _ in 0..2 {
        let t = ticket(&alice).await;
        assert_eq!(upgrade_status(&app, &t, Some(&own)).await, 101);
    }
    let t = ticket(&alice).await;
    assert_eq!(upgrade_status(&app, &t, Some(&own)).await, 429);
    let t = ticket(&bob).await;
    assert_eq!(upgrade_status(&app, &t, Some(&own)).await, 101);
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn an_unknown_key_in_the_rate_limit_table_refuses_to_start_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::helpers::test_config(dir.path().join("data"));
    rate_limit(&mut config, "login_per_ipp = { burst = 5, per_secs = 60 }");
    let err = securechat::App::build(config)
        .await
        .err()
        .expect("must refuse to start")
        .to_string();
    assert!(err.contains("login_per_ipp"), "{err:#}");
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn with_the_plugin_disabled_nothing_is_limited_and_features_says_so() {
    let app = spawn_app_with(|c| {
        rate_limit(
            c,
            "enabled = false\nlogin_per_ip = { burst = 1, per_secs = 60 }",
        )
    })
    .await;
    assert!(lists(&features(&app).await, "rate_limit", false));
    app.register("alice").await;
    for _ in 0..8 {
        assert_eq!(failed_login(&app, "alice", None).await.status(), 401);
    }
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn features_lists_the_rate_limit_plugin_as_enabled_by_default() {
    let app = spawn_app().await;
    assert!(lists(&features(&app).await, "rate_limit", true));
}

#[cfg(not(feature = "rate-limit"))]
#[tokio::test]
async fn without_the_plugin_features_lists_nothing_and_nothing_is_limited() {
    // A [plugins.rate_limit] table is ignored by a build without the plugin.
    let app = spawn_app_with(|c| {
        let t: toml::Table =
            toml::from_str("login_per_ip = { burst = 1, per_secs = 60 }").expect("toml");
        c.plugins.0.insert("rate_limit".into(), t);
    })
    .await;
    let f = features(&app).await;
    assert!(
        !lists(&f, "rate_limit", true) && !lists(&f, "rate_limit", false),
        "{f}"
    );
    app.register("alice").await;
    for _ in 0..8 {
        assert_eq!(failed_login(&app, "alice", None).await.status(), 401);
    }
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn user_searches_share_the_per_address_api_limit() {
    let app = spawn_app_with(|c| rate_limit(c, "api_per_ip = { burst = 12, per_secs = 60 }")).await;
    let me = app.register_and_login("zed").await;
    for searched in 0..20 {
        let r = app
            .client
            .http()
            .get(format!("{}/api/users?query=zed", app.client.base_url()))
            .bearer_auth(&me.access_token)
            .send()
            .await
            .expect("send");
        if r.status() == 429 {
            assert!(searched > 0, "some searches got through first");
            return assert_rate_limited(r).await;
        }
        assert_eq!(r.status(), 200);
    }
    panic!("20 searches and no 429");
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn guessing_the_password_through_a_password_change_is_limited_like_a_login() {
    let app =
        spawn_app_with(|c| rate_limit(c, "login_per_account = { burst = 3, per_secs = 60 }")).await;
    let alice = app.register_and_login("alice").await; // one login of the three
    let wrong = json!({
        "auth_key": b64::encode([7u8; 32]),
        "new_auth_key": b64::encode([8u8; 32]),
        "kdf": {"alg": "PBKDF2-SHA256", "iterations": crate::helpers::ITERATIONS,
                "salt": b64::encode([9u8; 16])},
        "key_bundle": {"iv": b64::encode([1u8; 12]), "ct": b64::encode([2u8; 64])},
        "refresh_token": alice.refresh_token,
    });
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = app
            .client
            .http()
            .post(format!("{}/api/auth/password", app.client.base_url()))
            .bearer_auth(&alice.access_token)
            .json(&wrong)
            .send()
            .await
            .expect("send");
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_rate_limited(r).await;
        }
    }
    assert_eq!(statuses, vec![401, 401, 429]);
    app.client
        .login("alice", PASSWORD)
        .await
        .expect_err("the account's login limit is spent too");
}
