//! TLS in front of the embedded broker: rumqttd's own TLS needs aws-lc
//! (a C build this project avoids), so the collector terminates TLS itself
//! (tokio-rustls with ring) and passes the bytes to the broker's plain
//! listener on loopback. Agents see an ordinary `mqtts://` broker.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

/// The acceptor for a PEM certificate chain and private key (also used
/// for HTTPS, `http/tls.rs`).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("mqtt.tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "mqtt.tls_cert {} holds no certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("mqtt.tls_key {}: {e}", key.display()))?;
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

/// Accepts TLS connections until `cancel`, each relayed to `broker`.
pub async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    broker: SocketAddr,
    cancel: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT TLS accept failed");
                    continue;
                }
            },
        };
        let (acceptor, cancel) = (acceptor.clone(), cancel.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let mut tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "MQTT TLS handshake refused");
                    return;
                }
            };
            let mut plain = match TcpStream::connect(broker).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(%broker, error = %e, "embedded broker unreachable from the TLS front");
                    return;
                }
            };
            let _ = plain.set_nodelay(true);
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut tls, &mut plain) => {}
            }
        });
    }
}
