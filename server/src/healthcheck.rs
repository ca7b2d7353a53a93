//! Owns `securechat healthcheck`: one `GET /readyz` to the server this configuration
//! describes, from the same host or container, succeeding only on 200. It is the
//! container image's HEALTHCHECK, so the image needs no curl or wget.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::ServerConfig;

/// How long the whole check may take (connect, request, answer).
pub const TIMEOUT: Duration = Duration::from_secs(4);

/// Where the server of `server` answers locally: its bind address, or loopback when it
/// binds every interface (`0.0.0.0` / `::`).
pub fn target(server: &ServerConfig) -> anyhow::Result<SocketAddr> {
    if server.port == 0 {
        bail!("server.port is 0 (a random port): the healthcheck needs a fixed port");
    }
    let ip = match server.bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    Ok(SocketAddr::new(ip, server.port))
}

/// `GET /readyz` on `addr` within `timeout`: Ok on 200, an error naming what failed
/// otherwise (refused, timed out, or the status).
pub async fn probe(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let status = tokio::time::timeout(timeout, get_readyz(addr))
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))??;
    if status != StatusCode::OK {
        bail!("GET /readyz on {addr} answered {status}");
    }
    Ok(())
}

async fn get_readyz(addr: SocketAddr) -> anyhow::Result<StatusCode> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when `sender` is dropped (or the server closes).
    tokio::spawn(conn);
    let request = Request::get("/readyz")
        .header(HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await.context("GET /readyz")?;
    Ok(response.status())
}

/// The `securechat healthcheck` command: probe the configured server, say so on stdout.
pub async fn run(server: &ServerConfig) -> anyhow::Result<()> {
    let addr = target(server)?;
    probe(addr, TIMEOUT).await?;
    println!("ready: GET /readyz on {addr} answered 200");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(bind: &str, port: u16) -> ServerConfig {
        ServerConfig {
            bind: bind.parse().unwrap(),
            port,
            ..ServerConfig::default()
        }
    }

    #[test]
    fn a_wildcard_bind_is_probed_on_loopback_and_a_specific_one_as_it_is() {
        assert_eq!(
            target(&server("0.0.0.0", 8080)).unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            target(&server("::", 9000)).unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert_eq!(
            target(&server("10.1.2.3", 8080)).unwrap(),
            "10.1.2.3:8080".parse().unwrap()
        );
    }

    #[test]
    fn a_random_port_cannot_be_probed() {
        let e = target(&server("127.0.0.1", 0)).unwrap_err();
        assert!(e.to_string().contains("server.port"), "{e}");
    }
}
