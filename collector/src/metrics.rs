//! The collector's own counters, served on `/metrics` in the Prometheus
//! text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
        out
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
}
