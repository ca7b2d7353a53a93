//! `securechat healthcheck`, the container image's HEALTHCHECK: 0 while the configured
//! server answers `/readyz` with 200, 1 when it is gone, hung or not ready.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use securechat::healthcheck::probe;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::helpers::spawn_app;

const BIN: &str = env!("CARGO_BIN_EXE_securechat");

/// `securechat healthcheck` for a server on `port` that binds every interface (as in the
/// container), with nothing else from this environment.
async fn healthcheck(port: u16) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    tokio::process::Command::new(BIN)
        .env_clear()
        .env("SECURECHAT_SERVER__BIND", "0.0.0.0")
        .env("SECURECHAT_SERVER__PORT", port.to_string())
        .current_dir(dir.path())
        .arg("healthcheck")
        .output()
        .await
        .expect("run securechat healthcheck")
}

fn port_of(base_url: &str) -> u16 {
    base_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in base URL")
}

#[tokio::test]
async fn the_healthcheck_command_passes_while_the_server_is_ready_and_fails_once_it_stops() {
    let app = spawn_app().await;
    let port = port_of(app.client.base_url());

    let out = healthcheck(port).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("answered 200"));

    let _stopped = app.stop().await;
    let out = healthcheck(port).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

/// A listener that answers every connection with `reply` (None: reads and never answers).
async fn fake_server(reply: Option<&'static str>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                match reply {
                    Some(text) => {
                        let _ = socket.write_all(text.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_server_that_is_not_ready_fails_the_probe_naming_the_status() {
    let addr = fake_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    ))
    .await;
    let e = probe(addr, Duration::from_secs(5))
        .await
        .expect_err("503 is not ready");
    assert!(e.to_string().contains("503"), "{e}");

    let ok = fake_server(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
    probe(ok, Duration::from_secs(5))
        .await
        .expect("200 is ready");
}

#[tokio::test]
async fn a_hung_server_fails_the_probe_at_its_timeout() {
    let addr = fake_server(None).await;
    let started = Instant::now();
    let e = probe(addr, Duration::from_millis(300))
        .await
        .expect_err("a silent server is not ready");
    assert!(e.to_string().contains("no answer"), "{e}");
    // Generous: the point is that it does not wait for the server's 30 s.
    assert!(started.elapsed() < Duration::from_secs(10));
}
