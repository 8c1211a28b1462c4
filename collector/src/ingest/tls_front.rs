//! TLS in front of the embedded broker: rumqttd's own TLS needs aws-lc
//! (a C build this project avoids), so the collector terminates TLS itself
//! (`crate::tls`) and hands the plain stream to the MQTT guard, like any
//! plain connection. Agents see an ordinary `mqtts://` broker.

use super::guard::Guard;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Accepts TLS connections until `cancel`, each served by `guard`.
pub async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    guard: Arc<Guard>,
    cancel: CancellationToken,
) {
    crate::tls::serve(listener, acceptor, "MQTT TLS", cancel, move |tls, peer| {
        guard.clone().relay(tls, peer)
    })
    .await
}
