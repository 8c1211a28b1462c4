//! Where to send a downlink that is not an ack (nudges, commands): the
//! agent's open gRPC stream if it has one, else its MQTT downlink topic.

use prost::Message;
use rumqttc::{AsyncClient, QoS};
use sobre_proto::topics;
use sobre_proto::v1::Downlink;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{Notify, mpsc};

type GrpcTx = mpsc::Sender<Result<Downlink, tonic::Status>>;

#[derive(Clone)]
pub struct Routes {
    grpc: Arc<Mutex<HashMap<String, GrpcTx>>>,
    mqtt: Arc<OnceLock<AsyncClient>>,
    /// Signs each downlink with its agent's key.
    signer: Arc<OnceLock<Arc<super::credentials::Credentials>>>,
    /// Woken when an agent comes online, so queued nudges leave at once.
    pub online: Arc<Notify>,
    /// False on a collector that is not the cluster's leader: MQTT
    /// downlinks are the leader's to send (any collector could, so only
    /// one does), gRPC ones go from whoever holds the stream.
    mqtt_allowed: bool,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            grpc: Arc::default(),
            mqtt: Arc::default(),
            signer: Arc::default(),
            online: Arc::default(),
            mqtt_allowed: true,
        }
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl Routes {
    /// The same routes, with MQTT sends allowed or not (see
    /// `mqtt_allowed`).
    pub fn gated(&self, mqtt_allowed: bool) -> Routes {
        Routes {
            mqtt_allowed,
            ..self.clone()
        }
    }

    pub fn set_mqtt(&self, client: AsyncClient) {
        let _ = self.mqtt.set(client);
    }

    pub fn set_signer(&self, credentials: Arc<super::credentials::Credentials>) {
        let _ = self.signer.set(credentials);
    }

    pub fn register_grpc(&self, agent_id: &str, tx: GrpcTx) {
        if let Ok(mut m) = self.grpc.lock() {
            m.insert(agent_id.to_owned(), tx);
        }
        self.online.notify_one();
    }

    /// Forgets a stream, unless a newer one replaced it.
    pub fn unregister_grpc(&self, agent_id: &str, tx: &GrpcTx) {
        if let Ok(mut m) = self.grpc.lock()
            && m.get(agent_id).is_some_and(|t| t.same_channel(tx))
        {
            m.remove(agent_id);
        }
    }

    /// Sends `dl` to the agent: over its gRPC stream if open, else on its
    /// MQTT downlink when `mqtt_ok` (the agent is online over MQTT).
    /// False when it could not be handed over.
    pub fn send(&self, agent_id: &str, mqtt_ok: bool, mut dl: Downlink) -> bool {
        if let Some(s) = self.signer.get() {
            s.sign(agent_id, &mut dl);
        }
        let tx = self.grpc.lock().ok().and_then(|m| m.get(agent_id).cloned());
        if let Some(tx) = tx {
            return tx.try_send(Ok(dl)).is_ok();
        }
        match (mqtt_ok && self.mqtt_allowed, self.mqtt.get()) {
            (true, Some(c)) => c
                .try_publish(
                    topics::down(agent_id),
                    QoS::AtLeastOnce,
                    false,
                    dl.encode_to_vec(),
                )
                .is_ok(),
            _ => false,
        }
    }
}
