//! MQTT ingest: the collector's client on the (embedded or external)
//! broker. Subscribes to every agent's uplink (alone, or as one member of
//! a shared-subscription group of collectors) and presence, and publishes
//! acks on each agent's downlink.

use super::{Event, IngestCtx, Reply, now_ms, rejected};
use crate::config::{DEFAULT_MQTT_CLIENT_ID, MqttConfig};
use rumqttc::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions, Packet, Publish, QoS};
use sobre_proto::topics::{self, Kind};
use std::collections::HashMap;
use std::path::Path;
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
    /// `mqtt.share_group`: take a share of the uplinks with the other
    /// collectors of this group instead of all of them.
    pub share_group: Option<String>,
}

/// The event loop and what to subscribe to on every (re)connection.
pub struct Connection {
    eventloop: EventLoop,
    up_filter: String,
    share_group: Option<String>,
    client_id: String,
}

/// The uplink filter: every agent's `up` topic, shared in a group when
/// several collectors split the load (MQTT 5 shared subscription, which
/// Mosquitto, EMQX and VerneMQ also grant to MQTT 3.1.1 clients such as
/// ours). Messages still arrive on the agent's own topic, without the
/// `$share/<group>/` prefix (MQTT 5, 4.8.2; checked on Mosquitto 2.0).
pub fn up_filter(share_group: Option<&str>) -> String {
    match share_group {
        Some(g) => format!("$share/{g}/{}", topics::ALL_UP),
        None => topics::ALL_UP.to_owned(),
    }
}

/// The collector's client id: `mqtt.client_id`, or with a share group and
/// the default id, one derived from the host name and `data_dir` (see
/// `MqttConfig::client_id`). The embedded broker's connect check uses
/// `mqtt.client_id` as is: config validation refuses a share group there,
/// so both agree.
pub fn client_id(cfg: &MqttConfig, data_dir: &Path) -> String {
    if cfg.share_group.is_none() || cfg.client_id != DEFAULT_MQTT_CLIENT_ID {
        return cfg.client_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // After the store opened it, data_dir exists and canonicalizes; the
    // fallbacks only keep the id stable if it somehow does not.
    let dir = std::fs::canonicalize(data_dir)
        .or_else(|_| std::path::absolute(data_dir))
        .unwrap_or_else(|_| data_dir.to_owned());
    derived_client_id(host.trim(), &dir)
}

/// `sobre-collector-<host>-<8 hex>`: readable in the broker's logs, unique
/// per (host, data_dir) since two collectors cannot share a data_dir, and
/// the same after a restart. Only `[A-Za-z0-9._-]` of the host name is
/// kept (at most 32 characters), so any broker accepts the id.
fn derived_client_id(host: &str, data_dir: &Path) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    let host = if host.is_empty() { "host" } else { &host };
    let hash = blake3::hash(data_dir.as_os_str().as_encoded_bytes());
    let hex = hash.to_hex();
    format!("{DEFAULT_MQTT_CLIENT_ID}-{host}-{}", &hex[..8])
}

/// Creates the client; nothing is sent until the event loop is polled.
pub fn client(s: &ClientSettings) -> (AsyncClient, Connection) {
    let mut opts = MqttOptions::new(&s.client_id, &s.host, s.port);
    if let Some(t) = &s.tls {
        opts.set_transport(t.clone());
    }
    if let Some((user, pass)) = &s.credentials {
        opts.set_credentials(user, pass);
    }
    opts.set_keep_alive(Duration::from_secs(30));
    // Alone, a persistent session: the broker queues uplinks while we
    // restart. In a share group, a clean one: Mosquitto (and EMQX) keep a
    // disconnected persistent member in the group and queue its
    // round-robin share for it, so while a collector is down
    // half the uplinks (with two) would wait for it instead of going to
    // the survivor; a clean session leaves the group when its connection
    // ends (SCALING.md). Nothing is lost either way: what a dead collector
    // had not committed is unacked, and the agents resend it.
    opts.set_clean_session(s.share_group.is_some());
    opts.set_max_packet_size(s.max_packet_bytes, s.max_packet_bytes);
    opts.set_inflight(200);
    // Acks for a whole batch are queued at once: room for several batches.
    let (client, mut eventloop) = AsyncClient::new(opts, 16 * 1024);
    // Small packets (envelopes, acks) must not wait for Nagle's algorithm:
    // measured, it halved throughput and added seconds of latency.
    eventloop.network_options.set_tcp_nodelay(true);
    let conn = Connection {
        eventloop,
        up_filter: up_filter(s.share_group.as_deref()),
        share_group: s.share_group.clone(),
        client_id: s.client_id.clone(),
    };
    (client, conn)
}

/// Polls the MQTT connection until `cancel`, feeding uplinks to the store.
/// rumqttc reconnects by itself on the next poll after an error; we back
/// off between attempts so a dead broker costs nothing.
pub async fn run(client: AsyncClient, conn: Connection, ctx: IngestCtx, cancel: CancellationToken) {
    let Connection {
        mut eventloop,
        up_filter,
        share_group,
        client_id,
    } = conn;
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
                tracing::info!(
                    %client_id,
                    share_group = share_group.as_deref().unwrap_or("none"),
                    "connected to MQTT broker"
                );
                // Presence is not shared: statuses are few, agents do not
                // resend them, and each collector (or the one running the
                // nudge dispatch) must see every agent come online. Writing
                // the same presence twice is harmless.
                for filter in [up_filter.as_str(), topics::ALL_STATUS] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uplink_filter_is_shared_only_in_a_group() {
        assert_eq!(up_filter(None), "sobre/v1/agents/+/up");
        assert_eq!(
            up_filter(Some("sobre-collectors")),
            "$share/sobre-collectors/sobre/v1/agents/+/up"
        );
    }

    #[test]
    fn a_group_member_has_a_clean_session_a_lone_collector_a_persistent_one() {
        let mut s = ClientSettings {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "c".into(),
            max_packet_bytes: 1 << 20,
            tls: None,
            credentials: None,
            share_group: None,
        };
        // AsyncClient::new needs no runtime; nothing connects until polled.
        let (_c, alone) = client(&s);
        assert!(!alone.eventloop.mqtt_options.clean_session());
        assert_eq!(alone.up_filter, topics::ALL_UP);
        s.share_group = Some("g".into());
        let (_c, member) = client(&s);
        assert!(member.eventloop.mqtt_options.clean_session());
        assert_eq!(member.up_filter, "$share/g/sobre/v1/agents/+/up");
    }

    #[test]
    fn derived_client_ids_differ_by_data_dir_and_stay_clean() {
        let a = derived_client_id("web-01", Path::new("/var/lib/sobre/a"));
        let b = derived_client_id("web-01", Path::new("/var/lib/sobre/b"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            derived_client_id("web-01", Path::new("/var/lib/sobre/a"))
        );
        assert!(a.starts_with("sobre-collector-web-01-"), "{a}");
        let odd = derived_client_id("h\u{e9}te #1/x", Path::new("/d"));
        assert!(odd.starts_with("sobre-collector-h-te--1-x-"), "{odd}");
        assert!(derived_client_id("", Path::new("/d")).starts_with("sobre-collector-host-"));
    }

    #[test]
    fn client_id_is_derived_only_for_a_default_id_in_a_group() {
        let mut cfg = MqttConfig::default();
        let dir = Path::new("/nonexistent/sobre-data");
        assert_eq!(client_id(&cfg, dir), "sobre-collector");
        cfg.share_group = Some("g".into());
        let derived = client_id(&cfg, dir);
        assert!(
            derived.starts_with("sobre-collector-") && derived.len() > 25,
            "{derived}"
        );
        cfg.client_id = "collector-east".into();
        assert_eq!(client_id(&cfg, dir), "collector-east");
    }
}
