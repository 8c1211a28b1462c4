//! The hourly roll-up the writer keeps per batch: each usage sample's
//! energy, CPU, network, activity and memory spread over the hours its
//! interval covers, added to `energy_hourly` with one upsert row per
//! (hour, agent).

use crate::db::{Db, DbError, Value};
use sobre_proto::v1::PowerSource;
use std::collections::HashMap;

const HOUR_MS: i64 = 3_600_000;

/// Energy of one agent in one hour, accumulated over a batch and added to
/// `energy_hourly` with one upsert per (hour, agent).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct HourTotals {
    energy_j: f64,
    measured_j: f64,
    /// Time covered by samples with power.
    covered_ms: i64,
    samples: i64,
    /// Σ cpu_percent × ms: the hour's mean CPU is cpu_weighted ÷ usage_ms.
    cpu_weighted: f64,
    cpu_max: f64,
    net_bytes: i64,
    /// Time a person was active.
    active_ms: i64,
    mem_used_max: i64,
    /// Time covered by usage samples.
    usage_ms: i64,
}

#[derive(Debug, Default)]
pub(super) struct Rollup(HashMap<(i64, i64), HourTotals>);

impl Rollup {
    /// Spreads a sample's energy over the hours its interval
    /// `[sent − interval, sent]` covers, in proportion to the time in each.
    pub(super) fn add(&mut self, agent: i64, sent_ms: i64, u: &sobre_proto::v1::UsageReport) {
        let has_power = u.power_source() != PowerSource::Unspecified;
        let measured = matches!(u.power_source(), PowerSource::Rapl | PowerSource::Battery);
        let mem_used = u.mem_total_bytes.saturating_sub(u.mem_available_bytes) as i64;
        let net = (u.net_rx_bytes + u.net_tx_bytes) as f64;
        let len = i64::from(u.interval_ms);
        let start = sent_ms - len;
        let mut t = start;
        loop {
            let hour = t.div_euclid(HOUR_MS) * HOUR_MS;
            let end = (hour + HOUR_MS).min(sent_ms);
            let share = if len > 0 {
                (end - t) as f64 / len as f64
            } else {
                1.0
            };
            let ms = end - t;
            let h = self.0.entry((hour, agent)).or_default();
            if has_power {
                let e = u.energy_j * share;
                h.energy_j += e;
                if measured {
                    h.measured_j += e;
                }
                h.covered_ms += ms;
            }
            h.usage_ms += ms;
            h.cpu_weighted += f64::from(u.cpu_percent) * ms as f64;
            h.cpu_max = h.cpu_max.max(f64::from(u.cpu_percent));
            h.net_bytes += (net * share).round() as i64;
            if u.user_active {
                h.active_ms += ms;
            }
            h.mem_used_max = h.mem_used_max.max(mem_used);
            // A sample counts in the hour where it ends.
            if end == sent_ms {
                h.samples += 1;
            }
            if end >= sent_ms || len == 0 {
                break;
            }
            t = end;
        }
    }

    pub(super) fn write(&self, tx: &dyn Db) -> Result<(), DbError> {
        let mut rows = Vec::with_capacity(self.0.len() * 12);
        for ((hour, agent), h) in &self.0 {
            let (int, real) = (Value::Int, Value::Real);
            rows.extend_from_slice(&[
                int(*hour),
                int(*agent),
                real(h.energy_j),
                real(h.measured_j),
                int(h.covered_ms),
                int(h.samples),
                real(h.cpu_weighted),
                real(h.cpu_max),
                int(h.net_bytes),
                int(h.active_ms),
                int(h.mem_used_max),
                int(h.usage_ms),
            ]);
        }
        super::rows::insert(
            tx,
            "INSERT INTO energy_hourly AS e (hour_ms, agent, energy_j, measured_j, covered_ms,
                samples, cpu_weighted, cpu_max, net_bytes, active_ms, mem_used_max, usage_ms)",
            "ON CONFLICT (hour_ms, agent) DO UPDATE SET
                energy_j = e.energy_j + excluded.energy_j,
                measured_j = e.measured_j + excluded.measured_j,
                covered_ms = e.covered_ms + excluded.covered_ms,
                samples = e.samples + excluded.samples,
                cpu_weighted = e.cpu_weighted + excluded.cpu_weighted,
                cpu_max = CASE WHEN e.cpu_max > excluded.cpu_max THEN e.cpu_max
                               ELSE excluded.cpu_max END,
                net_bytes = e.net_bytes + excluded.net_bytes,
                active_ms = e.active_ms + excluded.active_ms,
                mem_used_max = CASE WHEN e.mem_used_max > excluded.mem_used_max
                                    THEN e.mem_used_max ELSE excluded.mem_used_max END,
                usage_ms = e.usage_ms + excluded.usage_ms",
            12,
            &rows,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sobre_proto::v1::UsageReport;

    #[test]
    fn energy_rolls_up_by_hour_split_at_the_boundary() {
        let mut r = Rollup::default();
        let report = |source: PowerSource, interval_ms: u32, energy_j: f64| UsageReport {
            interval_ms,
            energy_j,
            power_source: source as i32,
            ..Default::default()
        };
        // 10 s of model energy ending 4 s into hour 1: 6 s in hour 0, 4 s in hour 1.
        r.add(
            7,
            HOUR_MS + 4_000,
            &report(PowerSource::Model, 10_000, 100.0),
        );
        // 10 s measured, all in hour 1.
        r.add(
            7,
            HOUR_MS + 20_000,
            &report(PowerSource::Rapl, 10_000, 50.0),
        );
        // No power reported: not rolled up.
        r.add(
            7,
            HOUR_MS + 30_000,
            &report(PowerSource::Unspecified, 10_000, 0.0),
        );
        let h0 = r.0[&(0, 7)];
        let h1 = r.0[&(HOUR_MS, 7)];
        assert!((h0.energy_j - 60.0).abs() < 1e-9 && h0.covered_ms == 6_000 && h0.samples == 0);
        assert!((h1.energy_j - 90.0).abs() < 1e-9, "{h1:?}");
        assert!((h1.measured_j - 50.0).abs() < 1e-9);
        assert_eq!(
            (h1.covered_ms, h1.samples, h1.usage_ms),
            (14_000, 3, 24_000)
        );
    }
}
