//! The collector's own counters, served on `/metrics` in the Prometheus
//! text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Uplink messages that reached ingest, valid or not.
    pub received: AtomicU64,
    /// Envelopes newly committed to the store.
    pub stored: AtomicU64,
    /// Envelopes already stored (redelivered), acked again, not stored.
    pub duplicates: AtomicU64,
    /// Envelope seqs acked to agents.
    pub acked: AtomicU64,
    /// Acks that could not be delivered (agent gone; it will resend).
    pub ack_dropped: AtomicU64,
    /// Store transactions committed.
    pub commits: AtomicU64,
    /// Envelopes agents reported dropped from their spools (the rises of
    /// their footprints' `spool_dropped`).
    pub agent_spool_dropped: AtomicU64,
    /// Store transactions that failed (the batch is retried).
    pub commit_errors: AtomicU64,
    // --- InfluxDB sink (collector/src/sink) ---
    /// Points the time-series server accepted.
    pub sink_written: AtomicU64,
    /// Points in requests that failed and are retried (429, 5xx, network).
    pub sink_retried: AtomicU64,
    /// Points refused by the server (4xx) or expired before being sent.
    pub sink_dropped: AtomicU64,
    /// Samples committed to the store and not yet answered for (gauge).
    pub sink_backlog: AtomicU64,
    /// MQTT packets the guard held back: their client was not read until
    /// its agent had a token again (`limits.max_envelopes_per_s`).
    pub mqtt_throttled: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    http_refused: Mutex<BTreeMap<&'static str, u64>>,
    mqtt_refused: Mutex<BTreeMap<&'static str, u64>>,
    // --- Listeners (collector/src/limits) ---
    /// Connections closed at once, by (listener, reason).
    conn_refused: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Connections closed by a timeout, by (listener, phase).
    conn_timed_out: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Failed sign-ins, and attempts refused for them, by listener.
    auth_failed: Mutex<BTreeMap<&'static str, u64>>,
    auth_blocked: Mutex<BTreeMap<&'static str, u64>>,
    /// Each listener's connection cap (its permits left show how many are
    /// open), and the open-files budget they share.
    caps: Mutex<Vec<(&'static str, Arc<tokio::sync::Semaphore>, usize)>>,
    fd_budget: Mutex<Option<(Arc<tokio::sync::Semaphore>, u64)>>,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(key).or_default() += 1;
    }
}

fn count<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, key: &K) -> u64 {
    m.lock()
        .map(|m| m.get(key).copied().unwrap_or(0))
        .unwrap_or(0)
}

impl Metrics {
    pub fn rejected(&self, reason: &'static str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// An API request refused for lack of the right token.
    pub fn http_refused(&self, reason: &'static str) {
        if let Ok(mut m) = self.http_refused.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// An MQTT client the guard turned away (`ingest::guard`).
    pub fn mqtt_refused(&self, reason: &'static str) {
        if let Ok(mut m) = self.mqtt_refused.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    pub fn mqtt_refused_count(&self, reason: &str) -> u64 {
        self.mqtt_refused
            .lock()
            .map(|m| m.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// A connection closed at once by `listener` (`cap`, `fd_budget`,
    /// `auth_blocked`).
    pub fn conn_refused(&self, listener: &'static str, reason: &'static str) {
        bump(&self.conn_refused, (listener, reason));
    }

    pub fn conn_refused_count(&self, listener: &'static str, reason: &'static str) -> u64 {
        count(&self.conn_refused, &(listener, reason))
    }

    /// A connection of `listener` closed by a timeout (`handshake`,
    /// `first_byte`, `idle`, `header`, `request`, `connect`, `keep_alive`).
    pub fn conn_timed_out(&self, listener: &'static str, phase: &'static str) {
        bump(&self.conn_timed_out, (listener, phase));
    }

    pub fn conn_timed_out_count(&self, listener: &'static str, phase: &'static str) -> u64 {
        count(&self.conn_timed_out, &(listener, phase))
    }

    pub fn auth_failed(&self, listener: &'static str) {
        bump(&self.auth_failed, listener);
    }

    pub fn auth_blocked(&self, listener: &'static str) {
        bump(&self.auth_blocked, listener);
    }

    pub fn auth_blocked_count(&self, listener: &'static str) -> u64 {
        count(&self.auth_blocked, &listener)
    }

    /// Shows `listener`'s open connections: `max` minus `cap`'s permits.
    pub fn register_cap(
        &self,
        listener: &'static str,
        cap: Arc<tokio::sync::Semaphore>,
        max: usize,
    ) {
        if let Ok(mut v) = self.caps.lock() {
            v.push((listener, cap, max));
        }
    }

    /// Shows the descriptors connections may still take.
    pub fn register_fd_budget(&self, budget: Arc<tokio::sync::Semaphore>, total: u64) {
        if let Ok(mut b) = self.fd_budget.lock() {
            *b = Some((budget, total));
        }
    }

    pub fn rejected_count(&self, reason: &str) -> u64 {
        self.rejected
            .lock()
            .map(|m| m.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        };
        counter(
            "sobre_envelopes_received_total",
            "Uplink messages that reached ingest.",
            &self.received,
        );
        counter(
            "sobre_envelopes_stored_total",
            "Envelopes newly committed to the store.",
            &self.stored,
        );
        counter(
            "sobre_envelopes_duplicate_total",
            "Envelopes received again after being stored; acked, not stored.",
            &self.duplicates,
        );
        counter(
            "sobre_acks_sent_total",
            "Envelope seqs acknowledged to agents after commit.",
            &self.acked,
        );
        counter(
            "sobre_acks_dropped_total",
            "Acks that could not be delivered; the agent resends.",
            &self.ack_dropped,
        );
        counter(
            "sobre_agent_spool_dropped_total",
            "Envelopes agents reported dropped from their spools (full, or damaged on disk): lost data.",
            &self.agent_spool_dropped,
        );
        counter(
            "sobre_store_commits_total",
            "Store transactions committed.",
            &self.commits,
        );
        counter(
            "sobre_store_commit_errors_total",
            "Store transactions that failed and were retried.",
            &self.commit_errors,
        );
        counter(
            "sobre_mqtt_throttled_total",
            "MQTT packets held back by the guard until their agent was within limits.max_envelopes_per_s.",
            &self.mqtt_throttled,
        );
        // --- InfluxDB sink ---
        counter(
            "sobre_sink_points_written_total",
            "Points the time-series server accepted.",
            &self.sink_written,
        );
        counter(
            "sobre_sink_points_retried_total",
            "Points in write requests that failed and were retried.",
            &self.sink_retried,
        );
        counter(
            "sobre_sink_points_dropped_total",
            "Points refused by the server (4xx) or expired from the store unsent.",
            &self.sink_dropped,
        );
        let _ = writeln!(
            out,
            "# HELP sobre_sink_backlog_rows Samples in the store not yet sent to the time-series server.\n# TYPE sobre_sink_backlog_rows gauge\nsobre_sink_backlog_rows {}",
            self.sink_backlog.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sobre_envelopes_rejected_total Uplink messages refused, by reason.\n# TYPE sobre_envelopes_rejected_total counter"
        );
        if let Ok(m) = self.rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "sobre_envelopes_rejected_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP sobre_http_refused_total API requests refused for lack of the right token, by reason.\n# TYPE sobre_http_refused_total counter"
        );
        if let Ok(m) = self.http_refused.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(out, "sobre_http_refused_total{{reason=\"{reason}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP sobre_mqtt_refused_total MQTT clients the guard disconnected or refused, by reason.\n# TYPE sobre_mqtt_refused_total counter"
        );
        if let Ok(m) = self.mqtt_refused.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(out, "sobre_mqtt_refused_total{{reason=\"{reason}\"}} {n}");
            }
        }
        self.render_listeners(&mut out);
        out
    }

    fn render_listeners(&self, out: &mut String) {
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            "sobre_connections_open",
            "gauge",
            "Connections each listener holds now.",
        );
        family(
            "sobre_connections_max",
            "gauge",
            "Each listener's cap (listeners.<name>.max_connections).",
        );
        if let Ok(v) = self.caps.lock() {
            for (l, sem, max) in v.iter() {
                let open = max.saturating_sub(sem.available_permits());
                let _ = writeln!(out, "sobre_connections_open{{listener=\"{l}\"}} {open}");
                let _ = writeln!(out, "sobre_connections_max{{listener=\"{l}\"}} {max}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP sobre_connections_refused_total Connections closed at once, by listener and reason.\n# TYPE sobre_connections_refused_total counter"
        );
        if let Ok(m) = self.conn_refused.lock() {
            for ((l, r), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "sobre_connections_refused_total{{listener=\"{l}\",reason=\"{r}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP sobre_connections_timed_out_total Connections closed by a timeout, by listener and phase.\n# TYPE sobre_connections_timed_out_total counter"
        );
        if let Ok(m) = self.conn_timed_out.lock() {
            for ((l, p), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "sobre_connections_timed_out_total{{listener=\"{l}\",phase=\"{p}\"}} {n}"
                );
            }
        }
        for (name, help, m) in [
            (
                "sobre_auth_failures_total",
                "Failed sign-ins, by listener.",
                &self.auth_failed,
            ),
            (
                "sobre_auth_blocked_total",
                "Sign-ins refused because their source failed too often, by listener.",
                &self.auth_blocked,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if let Ok(m) = m.lock() {
                for (l, n) in m.iter() {
                    let _ = writeln!(out, "{name}{{listener=\"{l}\"}} {n}");
                }
            }
        }
        if let Ok(b) = self.fd_budget.lock()
            && let Some((sem, total)) = b.as_ref()
        {
            let _ = writeln!(
                out,
                "# HELP sobre_fd_budget Open files connections may hold (RLIMIT_NOFILE less a reserve).\n# TYPE sobre_fd_budget gauge\nsobre_fd_budget {total}\n# HELP sobre_fd_budget_free Of sobre_fd_budget, not in use.\n# TYPE sobre_fd_budget_free gauge\nsobre_fd_budget_free {}",
                sem.available_permits()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_reasons() {
        let m = Metrics::default();
        m.stored.fetch_add(3, Relaxed);
        m.rejected("malformed");
        m.rejected("malformed");
        let text = m.render();
        assert!(text.contains("sobre_envelopes_stored_total 3\n"), "{text}");
        assert!(
            text.contains("sobre_envelopes_rejected_total{reason=\"malformed\"} 2\n"),
            "{text}"
        );
        assert_eq!(m.rejected_count("malformed"), 2);
        m.mqtt_refused("acl_publish");
        assert!(
            m.render()
                .contains("sobre_mqtt_refused_total{reason=\"acl_publish\"} 1\n")
        );
        assert_eq!(m.mqtt_refused_count("acl_publish"), 1);
    }

    #[test]
    fn renders_the_listeners() {
        let m = Metrics::default();
        let cap = Arc::new(tokio::sync::Semaphore::new(10));
        m.register_cap("http", cap.clone(), 10);
        let _held = cap.try_acquire_many(3).expect("permits");
        m.conn_refused("http", "cap");
        m.conn_timed_out("mqtt", "connect");
        m.auth_failed("grpc");
        let text = m.render();
        for line in [
            "sobre_connections_open{listener=\"http\"} 3\n",
            "sobre_connections_max{listener=\"http\"} 10\n",
            "sobre_connections_refused_total{listener=\"http\",reason=\"cap\"} 1\n",
            "sobre_connections_timed_out_total{listener=\"mqtt\",phase=\"connect\"} 1\n",
            "sobre_auth_failures_total{listener=\"grpc\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
