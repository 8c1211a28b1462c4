//! TLS termination (tokio-rustls with ring) shared by the embedded
//! broker's TLS front (`ingest/tls_front.rs`) and HTTPS (`http/tls.rs`):
//! the acceptor from PEM files, and one accept loop that hands each
//! connection, once its handshake succeeded, to the caller's handler.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// The acceptor for a PEM certificate chain and private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
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
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("TLS certificate and key do not go together: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// The next connection on `listener`, or `None` once `cancel`. A failed
/// accept (out of file descriptors, typically) is logged and retried after
/// 50 ms, giving running connections a moment instead of spinning.
pub(crate) async fn accept(
    listener: &TcpListener,
    what: &str,
    cancel: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            a = listener.accept() => match a {
                Ok(a) => return Some(a),
                Err(e) => tracing::warn!(error = %e, "{what} accept failed"),
            },
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
}

/// Accepts connections until `cancel`; each completes its TLS handshake
/// (a refused one is logged as "`what` handshake refused") and is then
/// served by `handle` until it ends or `cancel`.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    what: &'static str,
    cancel: CancellationToken,
    handle: F,
) where
    F: Fn(TlsStream<TcpStream>, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    while let Some((tcp, peer)) = accept(&listener, what, &cancel).await {
        let (acceptor, cancel, handle) = (acceptor.clone(), cancel.clone(), handle.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "{what} handshake refused");
                    return;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = handle(tls, peer) => {}
            }
        });
    }
}
