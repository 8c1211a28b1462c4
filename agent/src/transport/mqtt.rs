//! MQTT transport (rumqttc, QoS 1): publishes on the agent's `up` topic,
//! subscribes to its `down` topic, and announces presence on `status`
//! (retained `online`; the broker publishes the last will `offline` if the
//! agent vanishes).

use super::{CONNECT_TIMEOUT, LINK_QUEUE, Link, Transport, TransportError};
use prost::Message;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use sobre_proto::topics;
use sobre_proto::v1::Downlink;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct MqttTransport {
    pub agent_id: String,
    pub broker: String,
    pub host: String,
    pub port: u16,
    /// Largest packet accepted from the broker.
    pub max_packet_bytes: usize,
    /// For `mqtts://`: PEM of the CA that signed the broker's certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// The enrolment key, once known: the agent then connects with its id
    /// and a password derived from it (the embedded broker checks them).
    pub key: crate::enrol::KeyHolder,
}

impl MqttTransport {
    fn options(&self) -> Result<MqttOptions, TransportError> {
        let mut o = MqttOptions::new(
            format!("sobre-agent-{}", self.agent_id),
            &self.host,
            self.port,
        );
        o.set_keep_alive(Duration::from_secs(30));
        // The spool, not the broker, is the source of truth: a clean
        // session costs the broker nothing while the agent is away.
        o.set_clean_session(true);
        o.set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes);
        o.set_last_will(LastWill::new(
            topics::status(&self.agent_id),
            topics::OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(key) = self.key.read().ok().and_then(|k| *k) {
            o.set_credentials(&self.agent_id, crate::enrol::mqtt_password(&key));
        }
        if super::tls::is_tls(&self.broker) {
            let ca = self.ca_pem.as_deref().ok_or_else(|| {
                self.error("mqtts:// needs transport.ca_file (the CA of the broker's certificate)")
            })?;
            o.set_transport(super::tls::mqtt_transport(ca).map_err(|e| self.error(e))?);
        }
        Ok(o)
    }

    fn error(&self, reason: impl ToString) -> TransportError {
        let mut reason = reason.to_string();
        // What a plain-text client sees from a TLS listener.
        if !super::tls::is_tls(&self.broker) && reason.contains("Connection reset by peer") {
            reason.push_str(
                " (if the broker requires TLS: use an mqtts:// broker URL and set transport.ca_file)",
            );
        }
        TransportError::Mqtt {
            broker: self.broker.clone(),
            reason,
        }
    }
}

impl Transport for MqttTransport {
    async fn connect(&self) -> Result<Link, TransportError> {
        let (client, mut eventloop) = AsyncClient::new(self.options()?, LINK_QUEUE * 2);
        // Reports and acks are small: send them now, not after Nagle's delay.
        eventloop.network_options.set_tcp_nodelay(true);
        // Wait for the broker's CONNACK before calling this link up.
        let connack = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match connack {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.error(e)),
            Err(_) => return Err(self.error("no CONNACK within 10 s")),
        }
        let id = &self.agent_id;
        client
            .try_subscribe(topics::down(id), QoS::AtLeastOnce)
            .map_err(|e| self.error(e))?;
        client
            .try_publish(topics::status(id), QoS::AtLeastOnce, true, topics::ONLINE)
            .map_err(|e| self.error(e))?;

        let (up_tx, up_rx) = mpsc::channel(LINK_QUEUE);
        let (down_tx, down_rx) = mpsc::channel(LINK_QUEUE);
        let close = CancellationToken::new();
        let io = tokio::spawn(io_loop(
            client,
            eventloop,
            id.clone(),
            up_rx,
            down_tx,
            close.clone(),
        ));
        Ok(Link {
            up: up_tx,
            down: down_rx,
            close,
            io,
        })
    }
}

/// Drives the connection: polls the event loop (which sends what the
/// client queued and receives downlinks) and publishes what the session
/// hands over. Ends when the connection breaks or on close.
async fn io_loop(
    client: AsyncClient,
    mut eventloop: EventLoop,
    agent_id: String,
    mut up: mpsc::Receiver<Vec<u8>>,
    down: mpsc::Sender<Downlink>,
    close: CancellationToken,
) {
    let up_topic = topics::up(&agent_id);
    let down_topic = topics::down(&agent_id);
    // The publisher runs beside the poller: `publish` waits for room in
    // the client's queue, which only the poller drains.
    let publisher = {
        let client = client.clone();
        let close = close.clone();
        tokio::spawn(async move {
            loop {
                let bytes = tokio::select! {
                    _ = close.cancelled() => break,
                    b = up.recv() => match b { Some(b) => b, None => break },
                };
                if client
                    .publish(&up_topic, QoS::AtLeastOnce, false, bytes)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    loop {
        let ev = tokio::select! {
            _ = close.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == down_topic => {
                match Downlink::decode(&p.payload[..]) {
                    Ok(dl) => {
                        if down.send(dl).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed downlink"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "MQTT connection lost");
                publisher.abort();
                return;
            }
        }
    }
    publisher.abort();
    // Polite goodbye: replace the retained status, then disconnect, and
    // keep polling so both actually leave.
    let _ = client.try_publish(
        topics::status(&agent_id),
        QoS::AtLeastOnce,
        true,
        topics::OFFLINE,
    );
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
