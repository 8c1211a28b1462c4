//! The embedded broker's listeners: plain MQTT on `mqtt.listen` and MQTT
//! over TLS on `mqtt.tls_listen`. rumqttd's own TLS needs aws-lc (a C
//! build this project avoids), so the collector terminates TLS itself (the
//! `mqtt_tls` listener, `limits::serve`) and hands the plain stream to the
//! MQTT guard, like any plain connection. Agents see an ordinary
//! `mqtts://` broker. Either listener admits connections under its own
//! cap and timeouts (`[listeners]`) and refuses sources that failed to
//! sign in too often.

use super::guard::Guard;
use crate::limits::Listener;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Accepts connections until `cancel`, each served by `guard`.
pub async fn run(
    listener: Arc<Listener>,
    tcp: TcpListener,
    guard: Arc<Guard>,
    cancel: CancellationToken,
) {
    listener
        .serve(tcp, cancel, move |conn, peer| {
            guard.clone().relay(conn, peer)
        })
        .await
}
