//! What a stranger can hold of the collector: every listener (HTTP, gRPC,
//! MQTT, MQTT over TLS) admits connections under its own cap and a shared
//! open-files budget (`serve`), times out each phase of a connection
//! (`conn`; HTTP headers and requests in `http::serve`, MQTT CONNECT and
//! keep-alive in `ingest::guard`), refuses sources that fail to sign in
//! too often (`auth`), and logs what strangers trigger once per reason
//! and period (`log`). Settings: `[listeners]` (`settings`).

pub mod auth;
pub mod conn;
pub mod fd;
pub mod log;
pub mod serve;
pub mod settings;

pub use auth::{AuthFailures, Blocked};
pub use conn::Conn;
pub use log::logs;
pub use serve::{Budget, Listener};
pub use settings::{Cap, ListenersConfig};

use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// What every listener shares, made once at start.
pub struct Shared {
    pub cfg: ListenersConfig,
    pub budget: Budget,
    pub failures: Arc<AuthFailures>,
    pub metrics: Arc<Metrics>,
}

/// Which listeners run, for the descriptors their caps may take.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub grpc: bool,
    /// The embedded broker's guard (`mqtt.listen`).
    pub mqtt: bool,
    pub mqtt_tls: bool,
}

impl Shared {
    /// Raises the open-files limit, sizes the budget, and warns when the
    /// caps of the listeners that run could spend it.
    pub fn start(cfg: &ListenersConfig, running: Running, metrics: Arc<Metrics>) -> Shared {
        let nofile = fd::raise();
        let budget = Budget::new(nofile.budget(), &metrics);
        let need = descriptors(cfg, running);
        tracing::info!(
            was = ?nofile.was,
            now = ?nofile.now,
            budget = budget.total(),
            caps_need = need,
            "open-files limit (RLIMIT_NOFILE)"
        );
        if need > budget.total() {
            tracing::warn!(
                caps_need = need,
                budget = budget.total(),
                open_files_limit = nofile.now.unwrap_or(0),
                "the listeners' caps (listeners.*.max_connections; an MQTT connection takes 3 \
                 descriptors) add up to more than the open-files limit leaves for connections: \
                 past it, every listener refuses new connections (reason fd_budget). Raise the \
                 hard limit (systemd LimitNOFILE=) or lower the caps"
            );
        }
        Shared {
            cfg: cfg.clone(),
            budget,
            failures: Arc::new(AuthFailures::new(
                cfg.failed_auth_burst,
                Duration::from_secs(cfg.failed_auth_refill_s),
                metrics.clone(),
            )),
            metrics,
        }
    }

    /// The listener `name` (`http`, `grpc`, `mqtt`, `mqtt_tls`).
    pub fn listener(&self, name: &'static str, cap: Cap) -> Listener {
        Listener::new(
            name,
            cap,
            self.cfg.handshake(),
            &self.budget,
            self.metrics.clone(),
        )
    }
}

/// The descriptors the running listeners' caps may hold together: one
/// per HTTP or gRPC connection, three per MQTT one (the client's, and the
/// guard's connection to the embedded rumqttd at both ends).
pub fn descriptors(cfg: &ListenersConfig, running: Running) -> u64 {
    let n = |on: bool, c: Cap, each: u64| {
        if on {
            c.max_connections as u64 * each
        } else {
            0
        }
    };
    n(true, cfg.http, 1)
        + n(running.grpc, cfg.grpc, 1)
        + n(running.mqtt, cfg.mqtt, 3)
        + n(running.mqtt_tls, cfg.mqtt_tls, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mqtt_connection_costs_three_descriptors() {
        let cfg = ListenersConfig::default();
        let all = Running {
            grpc: true,
            mqtt: true,
            mqtt_tls: true,
        };
        assert_eq!(descriptors(&cfg, all), 4096 + 6000 + 3 * 6000 + 3 * 6000);
        let grpc_only = Running {
            grpc: true,
            mqtt: false,
            mqtt_tls: false,
        };
        assert_eq!(descriptors(&cfg, grpc_only), 4096 + 6000);
    }
}
