//! Optional TLS on the listener, for deployments without a mesh that terminates it:
//! loads a PEM certificate chain and private key into a rustls server config on the
//! `ring` provider (the crypto the HTTP client already uses; no aws-lc C build) that
//! offers `h2` and `http/1.1` by ALPN. It only builds the config; `serve` does the
//! handshakes. Certificates are read once at start: a rotated Secret needs a restart.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols offered, in order of preference: gRPC needs `h2`; REST clients and
/// probes may speak HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A server config for the certificate chain (leaf first) and key in these PEM files.
pub fn server_config(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate chain {}", cert_path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no PEM certificate", cert_path.display());
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading the TLS private key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not make a usable pair")?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_certificate_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("absent-cert.pem");
        let err = server_config(&cert, &dir.path().join("key.pem")).unwrap_err();
        assert!(format!("{err:#}").contains("absent-cert.pem"), "{err:#}");
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let err = server_config(&cert, &dir.path().join("key.pem")).unwrap_err();
        assert!(format!("{err:#}").contains("no PEM certificate"), "{err:#}");
    }
}
