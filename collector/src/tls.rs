//! TLS termination (tokio-rustls with ring) for every TLS listener: the
//! embedded broker's TLS front, HTTPS and gRPC. The acceptor is built here
//! from PEM files; the handshake runs in `limits::serve`, under
//! `listeners.handshake_timeout_s`.

use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The acceptor for a PEM certificate chain and private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    acceptor_alpn(cert, key, Vec::new())
}

/// Like [`acceptor`], offering these ALPN protocols (gRPC: `h2`, which
/// tonic's client requires).
pub fn acceptor_alpn(cert: &Path, key: &Path, alpn: Vec<Vec<u8>>) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate file {} holds no certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("TLS key file {}: {e}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("TLS certificate and key do not go together: {e}"))?;
    cfg.alpn_protocols = alpn;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
