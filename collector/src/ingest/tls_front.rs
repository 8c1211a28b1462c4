//! TLS in front of the embedded broker: rumqttd's own TLS needs aws-lc
//! (a C build this project avoids), so the collector terminates TLS itself
//! (`crate::tls`) and passes the bytes to the broker's plain listener on
//! loopback. Agents see an ordinary `mqtts://` broker.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Accepts TLS connections until `cancel`, each relayed to `broker`.
pub async fn run(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    broker: SocketAddr,
    cancel: CancellationToken,
) {
    crate::tls::serve(listener, acceptor, "MQTT TLS", cancel, move |mut tls, _| async move {
        let mut plain = match TcpStream::connect(broker).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%broker, error = %e, "embedded broker unreachable from the TLS front");
                return;
            }
        };
        let _ = plain.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
    })
    .await
}
