//! `[listeners]`: every listener's connection cap and timeouts, with
//! defaults sized for 5,000 agents on one collector, checked once at start.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One listener's share of the process: how many connections it holds at
/// once, and how long one may move no byte either way.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    /// Connections held at once; beyond it a new one is closed at once
    /// (`sobre_connections_refused_total{reason="cap"}`).
    pub max_connections: usize,
    /// A connection on which no byte moved either way for this long is
    /// closed, in seconds.
    pub idle_timeout_s: u64,
}

impl Cap {
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }
}

/// The collector's listeners: caps per listener, and the timeouts of each
/// phase of a connection (SECURITY.md, "Listeners").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    /// A new connection must complete its TLS handshake within this (on a
    /// plain listener: send its first byte), in seconds.
    pub handshake_timeout_s: u64,
    /// HTTP: a request's headers must arrive within this, and a kept-alive
    /// connection waiting for its next request is closed after it.
    pub http_header_timeout_s: u64,
    /// HTTP: a request (its body included) must be answered within this.
    pub http_request_timeout_s: u64,
    /// MQTT: the CONNECT must arrive within this after the connection.
    pub mqtt_connect_timeout_s: u64,
    /// gRPC: HTTP/2 PING every this long, and the connection closed when
    /// its answer takes longer than `grpc_keepalive_timeout_s`.
    pub grpc_keepalive_interval_s: u64,
    pub grpc_keepalive_timeout_s: u64,
    /// gRPC: concurrent streams on one connection (an agent uses one).
    pub grpc_max_streams: u32,
    /// Failed sign-ins (MQTT CONNECT, gRPC Enrol, console login) one source
    /// address (an IPv6 /64) may make at once before it is refused...
    pub failed_auth_burst: u32,
    /// ...and then one more every this many seconds.
    pub failed_auth_refill_s: u64,
    pub http: Cap,
    pub grpc: Cap,
    pub mqtt: Cap,
    pub mqtt_tls: Cap,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            handshake_timeout_s: 10,
            http_header_timeout_s: 10,
            http_request_timeout_s: 60,
            mqtt_connect_timeout_s: 10,
            grpc_keepalive_interval_s: 30,
            grpc_keepalive_timeout_s: 20,
            grpc_max_streams: 16,
            failed_auth_burst: 20,
            failed_auth_refill_s: 6,
            http: Cap {
                max_connections: 4096,
                idle_timeout_s: 60,
            },
            grpc: Cap {
                max_connections: 6000,
                idle_timeout_s: 120,
            },
            mqtt: Cap {
                max_connections: 6000,
                idle_timeout_s: 300,
            },
            mqtt_tls: Cap {
                max_connections: 6000,
                idle_timeout_s: 300,
            },
        }
    }
}

/// Largest cap and longest timeout taken: beyond them, a typo.
const MAX_CONNECTIONS: usize = 1_000_000;
const MAX_TIMEOUT_S: u64 = 86_400;

impl ListenersConfig {
    pub fn handshake(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_s)
    }

    /// Checks every key against its bounds; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let timeouts = [
            ("handshake_timeout_s", self.handshake_timeout_s),
            ("http_header_timeout_s", self.http_header_timeout_s),
            ("http_request_timeout_s", self.http_request_timeout_s),
            ("mqtt_connect_timeout_s", self.mqtt_connect_timeout_s),
            ("grpc_keepalive_interval_s", self.grpc_keepalive_interval_s),
            ("grpc_keepalive_timeout_s", self.grpc_keepalive_timeout_s),
            ("failed_auth_refill_s", self.failed_auth_refill_s),
        ];
        for (key, v) in timeouts {
            if !(1..=MAX_TIMEOUT_S).contains(&v) {
                return Err(format!(
                    "listeners.{key} = {v}: must be 1 to {MAX_TIMEOUT_S} seconds"
                ));
            }
        }
        for (name, cap) in self.caps() {
            if !(1..=MAX_CONNECTIONS).contains(&cap.max_connections) {
                return Err(format!(
                    "listeners.{name}.max_connections = {}: must be 1 to {MAX_CONNECTIONS}",
                    cap.max_connections
                ));
            }
            if !(1..=MAX_TIMEOUT_S).contains(&cap.idle_timeout_s) {
                return Err(format!(
                    "listeners.{name}.idle_timeout_s = {}: must be 1 to {MAX_TIMEOUT_S} seconds",
                    cap.idle_timeout_s
                ));
            }
        }
        if !(1..=1024).contains(&self.grpc_max_streams) {
            return Err(format!(
                "listeners.grpc_max_streams = {}: must be 1 to 1024",
                self.grpc_max_streams
            ));
        }
        if !(1..=10_000).contains(&self.failed_auth_burst) {
            return Err(format!(
                "listeners.failed_auth_burst = {}: must be 1 to 10000",
                self.failed_auth_burst
            ));
        }
        // A connection answering every PING must never look idle.
        let pinged = self.grpc_keepalive_interval_s + self.grpc_keepalive_timeout_s;
        if self.grpc.idle_timeout_s <= pinged {
            return Err(format!(
                "listeners.grpc.idle_timeout_s = {} must exceed listeners.grpc_keepalive_interval_s + \
                 grpc_keepalive_timeout_s = {pinged}, or live agents' connections would be closed",
                self.grpc.idle_timeout_s
            ));
        }
        Ok(())
    }

    /// Every listener's cap, by its name in the config and in `/metrics`.
    pub fn caps(&self) -> [(&'static str, Cap); 4] {
        [
            ("http", self.http),
            ("grpc", self.grpc),
            ("mqtt", self.mqtt),
            ("mqtt_tls", self.mqtt_tls),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_bound_names_its_key() {
        ListenersConfig::default().validate().expect("defaults");
        let mut c = ListenersConfig::default();
        c.http.max_connections = 0;
        let e = c.validate().expect_err("zero cap");
        assert!(e.contains("listeners.http.max_connections"), "{e}");
        let c = ListenersConfig {
            http_header_timeout_s: 0,
            ..Default::default()
        };
        let e = c.validate().expect_err("zero timeout");
        assert!(e.contains("listeners.http_header_timeout_s"), "{e}");
        let mut c = ListenersConfig::default();
        c.grpc.idle_timeout_s = 40;
        let e = c.validate().expect_err("idle below the pings");
        assert!(e.contains("listeners.grpc.idle_timeout_s"), "{e}");
        let mut c = ListenersConfig::default();
        c.mqtt_tls.idle_timeout_s = MAX_TIMEOUT_S + 1;
        let e = c.validate().expect_err("a typo");
        assert!(e.contains("listeners.mqtt_tls.idle_timeout_s"), "{e}");
    }
}
