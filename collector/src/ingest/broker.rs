//! The embedded MQTT broker (rumqttd), so a single machine needs no
//! external broker. It listens on a loopback port of its own that only the
//! collector's own client and the MQTT guard (`ingest::guard`, in front of
//! every agent connection) can sign in to.

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Also the guard's error for `mqtt.listen`, where agents connect.
    #[error(
        "cannot listen for MQTT on {addr}: {source}; another broker may be running there — set mqtt.listen to a free port, or mqtt.embedded = false to use it"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the embedded MQTT broker did not start listening on {0} within 10 s")]
    NotReady(SocketAddr),
    #[error("cannot start the embedded MQTT broker thread: {0}")]
    Thread(std::io::Error),
}

/// In-memory log kept by rumqttd per subscription filter. It retains whole
/// segments, so memory per filter is bounded by about `SEGMENT_BYTES *
/// SEGMENTS`; a subscriber lagging further behind than that misses
/// messages, which the agents' spools then resend. Every agent's downlink
/// is its own filter, kept whether or not it was delivered: keep those
/// small (BENCHMARKS.md saw memory grow with 4 × 64 KiB per agent), 2 × 4
/// KiB is a few hundred acks or several nudges per agent.
const SEGMENT_BYTES: usize = 4 * 1024;
const SEGMENTS: usize = 2;
/// The collector's `sobre/v1/agents/+/up` filter carries the whole fleet's
/// uplink: with 256 KiB, a burst (a fleet flushing its spools after a
/// restart) overran it and rumqttd jumped the collector's cursor, losing
/// envelopes already PUBACKed (BENCHMARKS.md). 4 × 8 MiB holds ~190,000
/// envelopes of backlog, at most 32 MiB.
const UPLINK_SEGMENT_BYTES: usize = 8 * 1024 * 1024;
const UPLINK_SEGMENTS: usize = 4;

/// Decides who may connect: (client id, user name, password) → allowed.
pub type ConnectCheck = std::sync::Arc<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;

/// Starts the broker on its own threads and returns the address it
/// listens on once it accepts connections. Port 0 picks a free port;
/// `listen` should be on loopback (the guard is the way in for agents).
///
/// rumqttd has no shutdown; its threads end with the process.
pub fn start(
    listen: SocketAddr,
    max_packet_bytes: usize,
    check: ConnectCheck,
) -> Result<SocketAddr, BrokerError> {
    // rumqttd binds inside its own thread and cannot report the port it
    // got, or a bind failure, back to us: bind here first for a clear error
    // and to resolve port 0.
    let addr = {
        let probe = TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
        probe.local_addr().map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?
    };
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: max_packet_bytes,
        max_inflight_count: 200,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        let ok = check(&client_id, &user, &pass);
        if !ok {
            // Agents are checked by the guard: this is someone on the
            // collector's host going around it.
            tracing::warn!(client_id = ?client_id.chars().take(80).collect::<String>(), "connection to the embedded broker's internal listener refused: only the MQTT guard and the collector's own client may use it");
        }
        std::future::ready(ok)
    });
    let server = ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100_000,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENTS,
            custom_segment: Some(HashMap::from([(
                sobre_proto::topics::ALL_UP.to_owned(),
                SegmentConfig {
                    max_segment_size: UPLINK_SEGMENT_BYTES,
                    max_segment_count: UPLINK_SEGMENTS,
                },
            )])),
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(BrokerError::NotReady(addr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::info!(%addr, "embedded MQTT broker listening (internal; agents go through the guard)");
    Ok(addr)
}
