//! Delivers acks, once the store committed, back over the route each
//! envelope came in by.

use super::Reply;
use crate::metrics::Metrics;
use crate::store::AckBatch;
use prost::Message;
use rumqttc::{AsyncClient, QoS};
use sobre_proto::topics;
use sobre_proto::v1::{Ack, Downlink, downlink};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::mpsc;

/// Runs until the writer closes its side.
pub async fn run(
    mut acks: mpsc::Receiver<AckBatch>,
    mqtt: Option<AsyncClient>,
    metrics: Arc<Metrics>,
    credentials: Arc<super::credentials::Credentials>,
) {
    while let Some(batch) = acks.recv().await {
        let n = batch.seqs.len() as u64;
        let mut dl = Downlink {
            body: Some(downlink::Body::Ack(Ack { seqs: batch.seqs })),
            mac: Vec::new(),
        };
        credentials.sign(&batch.agent_id, &mut dl);
        let delivered = match batch.reply {
            Reply::Grpc(tx) => tx.try_send(Ok(dl)).is_ok(),
            Reply::Mqtt => match &mqtt {
                // Wait for room in the client's queue (dropping acks under
                // load made agents resend, which made more load), but
                // never for long: at shutdown the event loop stops.
                Some(client) => matches!(
                    tokio::time::timeout(
                        std::time::Duration::from_secs(2),
                        client.publish(
                            topics::down(&batch.agent_id),
                            QoS::AtLeastOnce,
                            false,
                            dl.encode_to_vec(),
                        ),
                    )
                    .await,
                    Ok(Ok(()))
                ),
                None => false,
            },
        };
        if delivered {
            metrics.acked.fetch_add(n, Relaxed);
        } else {
            metrics.ack_dropped.fetch_add(n, Relaxed);
            tracing::debug!(agent = %batch.agent_id, seqs = n, "ack not delivered; the agent will resend");
        }
    }
}
