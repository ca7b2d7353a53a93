//! Owns TLS trust for `https://` and `wss://`: one rustls configuration (ring crypto)
//! shared by the HTTP client and the WebSocket, trusting either the public web PKI
//! (webpki-roots, the default) or exactly the CA certificates of a PEM file, e.g. the
//! internal root of a Caddy deployed with `tls internal` (`securechat-client --ca-cert`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::{Error, Result};

/// Which server certificates a [`crate::Client`] accepts.
#[derive(Clone, Debug)]
pub struct Trust(Arc<ClientConfig>);

impl Trust {
    /// The public web PKI (the Mozilla root program, as webpki-roots ships it).
    pub fn public_roots() -> Result<Trust> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// Only the CA certificates in `pem` (one or more `CERTIFICATE` blocks).
    pub fn from_pem(pem: &[u8]) -> Result<Trust> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| Error::Tls(format!("CA certificate PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::Tls("no CERTIFICATE block in the CA PEM".into()));
        }
        Self::with_roots(roots)
    }

    /// [`Trust::from_pem`] of a file.
    pub fn from_pem_file(path: &Path) -> Result<Trust> {
        let pem = std::fs::read(path)
            .map_err(|e| Error::Tls(format!("reading {}: {e}", path.display())))?;
        Self::from_pem(&pem)
    }

    fn with_roots(roots: RootCertStore) -> Result<Trust> {
        // The provider is named rather than taken from the process default, so that no
        // other crate's choice of provider can change or break it.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Trust(Arc::new(config)))
    }

    /// The rustls configuration (no ALPN: HTTP/1.1, which the WebSocket upgrade needs).
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_certificates_is_refused() {
        let e = Trust::from_pem(b"not a certificate").unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let e = Trust::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(e.to_string().contains("CA certificate"), "{e}");
    }

    #[test]
    fn the_configuration_offers_no_alpn_so_the_websocket_upgrade_stays_on_http1() {
        assert!(Trust::public_roots()
            .unwrap()
            .config()
            .alpn_protocols
            .is_empty());
    }
}
