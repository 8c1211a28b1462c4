//! MQTT ingest: the collector's client on the (embedded or external)
//! broker. Subscribes to every agent's uplink and presence, and publishes
//! acks on each agent's downlink.

use super::{Event, IngestCtx, Reply, now_ms, rejected};
use rumqttc::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions, Packet, Publish, QoS};
use sobre_proto::topics::{self, Kind};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Connection settings of the collector's MQTT client.
#[derive(Clone)]
pub struct ClientSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub max_packet_bytes: usize,
    /// TLS to an external `mqtts://` broker.
    pub tls: Option<rumqttc::Transport>,
    /// User name and password on the broker, if it checks them.
    pub credentials: Option<(String, String)>,
}

/// Creates the client; nothing is sent until the event loop is polled.
pub fn client(s: &ClientSettings) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(&s.client_id, &s.host, s.port);
    if let Some(t) = &s.tls {
        opts.set_transport(t.clone());
    }
    if let Some((user, pass)) = &s.credentials {
        opts.set_credentials(user, pass);
    }
    opts.set_keep_alive(Duration::from_secs(30));
    // A persistent session: the broker queues uplinks while we restart.
    opts.set_clean_session(false);
    opts.set_max_packet_size(s.max_packet_bytes, s.max_packet_bytes);
    opts.set_inflight(200);
    // Acks for a whole batch are queued at once: room for several batches.
    let (client, mut eventloop) = AsyncClient::new(opts, 16 * 1024);
    // Small packets (envelopes, acks) must not wait for Nagle's algorithm:
    // measured, it halved throughput and added seconds of latency.
    eventloop.network_options.set_tcp_nodelay(true);
    (client, eventloop)
}

/// Polls the MQTT connection until `cancel`, feeding uplinks to the store.
/// rumqttc reconnects by itself on the next poll after an error; we back
/// off between attempts so a dead broker costs nothing.
pub async fn run(
    client: AsyncClient,
    mut eventloop: EventLoop,
    ctx: IngestCtx,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    // Statuses of agents without a credential yet (enrolling): applied when
    // their first authenticated envelope arrives, so an unauthenticated
    // client cannot create agents, and an enrolling one still shows online.
    let mut deferred: HashMap<String, bool> = HashMap::new();
    'run: loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                tracing::info!("connected to MQTT broker");
                for filter in [topics::ALL_UP, topics::ALL_STATUS] {
                    if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, filter, "cannot subscribe");
                    }
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                // Waiting here when the store is behind stops reading from
                // the broker: backpressure instead of unbounded memory.
                for ev in on_publish(&ctx, &p, &mut deferred).into_iter().flatten() {
                    if ctx.events.send(ev).await.is_err() {
                        break 'run;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost; reconnecting");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let _ = client.try_disconnect();
    tracing::info!("MQTT ingest stopped");
}

/// Statuses kept for agents still enrolling, at most.
const MAX_DEFERRED: usize = 10_000;

fn presence(agent_id: &str, online: bool) -> Event {
    Event::Presence {
        agent_id: agent_id.to_owned(),
        online,
        transport: "mqtt",
        at_ms: now_ms(),
    }
}

/// The events one MQTT message makes: an envelope, a presence, or a
/// deferred presence then the envelope that vouches for it.
fn on_publish(
    ctx: &IngestCtx,
    p: &Publish,
    deferred: &mut HashMap<String, bool>,
) -> [Option<Event>; 2] {
    let topic = p.topic.as_str();
    let Some((agent_id, kind)) = topics::parse(topic) else {
        tracing::debug!(%topic, "ignoring message on a foreign topic");
        return [None, None];
    };
    match kind {
        Kind::Up => {
            ctx.metrics.received.fetch_add(1, Relaxed);
            let checked =
                super::decode(&p.payload, Some(agent_id), &ctx.limits).and_then(|e| ctx.admit(e));
            match checked {
                Ok(env) => [
                    deferred
                        .remove(agent_id)
                        .map(|online| presence(agent_id, online)),
                    Some(Event::Envelope {
                        env,
                        reply: Reply::Mqtt,
                        received_ms: now_ms(),
                    }),
                ],
                Err(why) => {
                    rejected(&ctx.metrics, "mqtt", topic, &why);
                    [None, None]
                }
            }
        }
        Kind::Status => {
            let online = match &p.payload[..] {
                b if b == topics::ONLINE => true,
                b if b == topics::OFFLINE => false,
                // A retained status is cleared with an empty payload.
                _ => return [None, None],
            };
            // Presence creates an agent's row: only for agents that may
            // send; others' waits for their first authenticated envelope.
            if !ctx.credentials.may_send(agent_id) {
                if deferred.len() >= MAX_DEFERRED {
                    deferred.clear();
                }
                deferred.insert(agent_id.to_owned(), online);
                return [None, None];
            }
            if online {
                ctx.routes.online.notify_one();
            }
            [Some(presence(agent_id, online)), None]
        }
        Kind::Down => [None, None],
    }
}
