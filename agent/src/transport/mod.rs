//! Transports: how envelopes leave the machine. MQTT and gRPC carry the
//! same Envelope up and Downlink down; the session loop does not know
//! which one it drives.

pub mod grpc;
pub mod mqtt;
pub mod tls;

use sobre_proto::v1::Downlink;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a connection could not be made or was lost.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach the MQTT broker {broker}: {reason}")]
    Mqtt { broker: String, reason: String },
    #[error("cannot reach the collector's gRPC endpoint {endpoint}: {reason}")]
    Grpc { endpoint: String, reason: String },
}

/// An open connection. Encoded envelopes go into `up`; downlinks come
/// out of `down`, which closes when the connection is lost.
#[derive(Debug)]
pub struct Link {
    pub up: mpsc::Sender<Vec<u8>>,
    pub down: mpsc::Receiver<Downlink>,
    close: CancellationToken,
    io: JoinHandle<()>,
}

impl Link {
    /// Closes politely (MQTT: publishes `offline` and disconnects), waiting
    /// at most `timeout` for it.
    pub async fn close(self, timeout: Duration) {
        self.close.cancel();
        let _ = tokio::time::timeout(timeout, self.io).await;
    }
}

/// One way to reach the collector.
pub trait Transport: Send + Sync {
    /// Opens a connection, or says why it cannot.
    fn connect(&self) -> impl Future<Output = Result<Link, TransportError>> + Send;
}

/// Links hold this many envelopes between the session and the socket.
const LINK_QUEUE: usize = 64;
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
