//! TLS trust (`securechat_client::tls::Trust`) over https:// and wss://: a client made
//! with `Trust::from_pem(CA)` reaches a server whose certificate that CA signed, while one
//! on the public roots refuses the same server before any request is sent.

// The whole file is test code, its stand-in servers included.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::ServerConfig;
use securechat_client::ws::{connect_trusting, connect_with, WsOptions};
use securechat_client::{Client, Method, Trust, WsEvent};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A fresh CA (its PEM) and a server configuration for `localhost` signed by it.
fn pki() -> (String, Arc<ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), Arc::new(config))
}

/// Serves TLS on 127.0.0.1: `websocket` echoes the first text frame of each connection,
/// otherwise each request is answered 200 `{"ok":true}`. Counts the requests that got
/// past the handshake.
async fn serve(config: Arc<ServerConfig>, websocket: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if websocket {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Some(Ok(msg)) = ws.next().await {
                        let _ = ws.send(msg).await;
                    }
                    let _ = ws.close(None).await;
                } else {
                    let mut buf = vec![0u8; 4096];
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"ok":true}"#;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (addr, served)
}

#[tokio::test]
async fn https_through_the_given_ca_reaches_the_server_and_the_public_roots_refuse_it() {
    let (ca_pem, config) = pki();
    let (addr, served) = serve(config, false).await;
    let base = format!("https://localhost:{}", addr.port());

    let trusted = Client::with_trust(&base, Trust::from_pem(ca_pem.as_bytes()).unwrap()).unwrap();
    let resp = trusted
        .request(Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json().unwrap()["ok"], true);

    let public = Client::new(&base).unwrap();
    let e = public
        .request(Method::GET, "/readyz", None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, securechat_client::Error::Transport(_)), "{e}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "the refused request never got through"
    );
}

#[tokio::test]
async fn wss_through_the_given_ca_echoes_a_frame_and_the_public_roots_refuse_it() {
    let (ca_pem, config) = pki();
    let (addr, served) = serve(config, true).await;
    let url = format!("wss://localhost:{}/api/ws?ticket=t", addr.port());
    let options = WsOptions::new(None);

    let trust = Trust::from_pem(ca_pem.as_bytes()).unwrap();
    let mut ws = connect_trusting(&url, &options, Some(&trust))
        .await
        .unwrap();
    ws.send_text("over tls").await.unwrap();
    assert_eq!(
        ws.recv_event(Duration::from_secs(5)).await.unwrap(),
        WsEvent::Text("over tls".into())
    );

    let e = connect_with(&url, &options).await.unwrap_err();
    assert!(e.to_string().contains("websocket"), "{e}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "the refused upgrade never got through"
    );
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_refused() {
    let dir = std::env::temp_dir().join(format!("securechat-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.pem");
    assert!(Trust::from_pem_file(&missing).is_err());
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let e = Trust::from_pem_file(&empty).unwrap_err();
    assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
