//! gRPC transport: one `Telemetry/Connect` bidirectional stream per
//! connection; presence is the stream itself.

use super::{CONNECT_TIMEOUT, LINK_QUEUE, Link, Transport, TransportError};
use prost::Message;
use sobre_proto::v1::Envelope;
use sobre_proto::v1::telemetry_client::TelemetryClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

#[derive(Debug, Clone)]
pub struct GrpcTransport {
    pub endpoint: String,
    pub max_message_bytes: usize,
    /// PEM of the CA that signed the collector's certificate (`https://`).
    pub ca_pem: Option<Vec<u8>>,
}

/// An endpoint for `url`: plain for `http://`, TLS (rustls) for
/// `https://`, trusting only the given CA.
pub fn endpoint(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, String> {
    let ep = Endpoint::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
    if !url.starts_with("https://") {
        return Ok(ep);
    }
    let ca = ca_pem.ok_or_else(|| {
        format!("{url} is https: set transport.ca_file to the CA that signed the collector's certificate")
    })?;
    ep.tls_config(
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
    )
    .map_err(|e| e.to_string())
}

impl GrpcTransport {
    fn error(&self, reason: impl ToString) -> TransportError {
        let mut reason = reason.to_string();
        // What a plain-text client sees from a TLS listener.
        if self.endpoint.starts_with("http://")
            && (reason.contains("h2 protocol error") || reason.contains("http2 error"))
        {
            reason.push_str(
                " (the collector may require TLS: use an https:// grpc_endpoint and set transport.ca_file)",
            );
        }
        TransportError::Grpc {
            endpoint: self.endpoint.clone(),
            reason,
        }
    }
}

impl Transport for GrpcTransport {
    async fn connect(&self) -> Result<Link, TransportError> {
        let channel = endpoint(&self.endpoint, self.ca_pem.as_deref())
            .map_err(|e| self.error(e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| self.error(format!("{e}: {}", source_chain(&e))))?;
        let mut client =
            TelemetryClient::new(channel).max_decoding_message_size(self.max_message_bytes);
        let (up_tx, up_rx) = mpsc::channel::<Vec<u8>>(LINK_QUEUE);
        // Envelopes are spooled encoded; decoding again is cheap and keeps
        // the generated client's typed API.
        let outbound = ReceiverStream::new(up_rx).filter_map(|b| Envelope::decode(&b[..]).ok());
        let response = tokio::time::timeout(CONNECT_TIMEOUT, client.connect(outbound))
            .await
            .map_err(|_| self.error("no response to Connect within 10 s"))?
            .map_err(|s| self.error(s.message()))?;
        let mut inbound = response.into_inner();
        let (down_tx, down_rx) = mpsc::channel(LINK_QUEUE);
        let close = CancellationToken::new();
        let io = tokio::spawn({
            let close = close.clone();
            async move {
                loop {
                    let msg = tokio::select! {
                        _ = close.cancelled() => break,
                        m = inbound.message() => m,
                    };
                    match msg {
                        Ok(Some(dl)) => {
                            if down_tx.send(dl).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) => {
                            tracing::warn!("collector closed the gRPC stream");
                            break;
                        }
                        Err(s) => {
                            tracing::warn!(code = ?s.code(), error = %s.message(), "gRPC stream lost");
                            break;
                        }
                    }
                }
            }
        });
        Ok(Link {
            up: up_tx,
            down: down_rx,
            close,
            io,
        })
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}
