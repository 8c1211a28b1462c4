//! The stated range of every numeric key of the agent's configuration,
//! checked once by [`AgentConfig::validate`](super::AgentConfig::validate):
//! an out-of-range value is refused with its key, its value and the range,
//! instead of a timer that never fires (`interval_ms = u64::MAX`), a resend
//! storm (`ack_timeout_ms = 0`) or an unbounded window (`max_inflight =
//! 10^9`). A unit test walks the configuration and fails for any numeric key
//! missing here.

use super::AgentConfig;
use crate::probe::power::ChassisWatts;

const SECOND: u64 = 1_000;
const HOUR: u64 = 3_600 * SECOND;
const DAY: u64 = 24 * HOUR;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// A numeric key's value and its inclusive range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Int { value: u64, min: u64, max: u64 },
    Float { value: f64, min: f64, max: f64 },
}

/// One numeric key: its dotted name, value, range and unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked {
    pub key: &'static str,
    pub bound: Bound,
    pub unit: &'static str,
}

impl Checked {
    fn int(key: &'static str, value: u64, min: u64, max: u64, unit: &'static str) -> Self {
        let bound = Bound::Int { value, min, max };
        Checked { key, bound, unit }
    }

    fn float(key: &'static str, value: f64, min: f64, max: f64, unit: &'static str) -> Self {
        let bound = Bound::Float { value, min, max };
        Checked { key, bound, unit }
    }

    /// `Err` naming the key, the value and the range when out of range.
    pub fn check(&self) -> Result<(), String> {
        let (ok, value, min, max) = match self.bound {
            Bound::Int { value, min, max } => (
                (min..=max).contains(&value),
                value.to_string(),
                min.to_string(),
                max.to_string(),
            ),
            Bound::Float { value, min, max } => (
                value.is_finite() && (min..=max).contains(&value),
                value.to_string(),
                min.to_string(),
                max.to_string(),
            ),
        };
        if ok {
            return Ok(());
        }
        Err(format!(
            "{} = {value} is out of range: it must be from {min} to {max} ({})",
            self.key, self.unit
        ))
    }
}

/// Every numeric key of `c` with its range (the power curve's points are
/// checked with their own rule in `validate`).
pub fn numeric_keys(c: &AgentConfig) -> Vec<Checked> {
    let t = &c.transport;
    let s = &c.storage;
    let p = &c.power;
    let ms = "milliseconds";
    let int = Checked::int;
    let float = Checked::float;
    let mut v = vec![
        int("interval_ms", c.interval_ms, 10, DAY, ms),
        int(
            "inventory_interval_ms",
            c.inventory_interval_ms,
            SECOND,
            30 * DAY,
            ms,
        ),
        int("transport.ack_timeout_ms", t.ack_timeout_ms, 100, HOUR, ms),
        int(
            "transport.max_inflight",
            t.max_inflight as u64,
            1,
            10_000,
            "envelopes",
        ),
        int("transport.backoff_min_ms", t.backoff_min_ms, 1, HOUR, ms),
        int("transport.backoff_max_ms", t.backoff_max_ms, 1, DAY, ms),
        int(
            "transport.drain_timeout_ms",
            t.drain_timeout_ms,
            0,
            10 * 60 * SECOND,
            ms,
        ),
        int(
            "spool.max_bytes",
            c.spool.max_bytes,
            crate::spool::MIN_MAX_BYTES,
            64 * GIB,
            "bytes",
        ),
        int(
            "storage.interval_ms",
            s.interval_ms,
            60 * SECOND,
            365 * DAY,
            ms,
        ),
        int("storage.first_delay_ms", s.first_delay_ms, 0, 30 * DAY, ms),
        int("storage.threads", s.threads as u64, 1, 64, "threads"),
        float(
            "storage.cpu_budget_percent",
            s.cpu_budget_percent,
            0.01,
            100.0,
            "% of one core",
        ),
        int("storage.cold_years", s.cold_years.into(), 1, 100, "years"),
        int(
            "storage.old_download_days",
            s.old_download_days.into(),
            1,
            36_500,
            "days",
        ),
        int(
            "storage.large_min_bytes",
            s.large_min_bytes,
            1,
            TIB,
            "bytes",
        ),
        int(
            "storage.fingerprint_min_bytes",
            s.fingerprint_min_bytes,
            1,
            TIB,
            "bytes",
        ),
        int(
            "storage.max_fingerprints",
            s.max_fingerprints as u64,
            0,
            2_000,
            "files",
        ),
        int("storage.max_paths", s.max_paths as u64, 0, 500, "paths"),
        float("power.vcpu_min_w", p.vcpu_min_w.into(), 0.0, 100.0, "watts"),
        float("power.vcpu_max_w", p.vcpu_max_w.into(), 0.0, 100.0, "watts"),
        float(
            "power.memory_w_per_gb",
            p.memory_w_per_gb.into(),
            0.0,
            10.0,
            "watts",
        ),
        float(
            "power.ssd_w_per_tb",
            p.ssd_w_per_tb.into(),
            0.0,
            100.0,
            "watts",
        ),
        float(
            "power.hdd_w_per_tb",
            p.hdd_w_per_tb.into(),
            0.0,
            100.0,
            "watts",
        ),
    ];
    let tdp = [
        "power.default_tdp_w.laptop",
        "power.default_tdp_w.desktop",
        "power.default_tdp_w.server",
        "power.default_tdp_w.tablet",
        "power.default_tdp_w.vm",
        "power.default_tdp_w.other",
    ];
    chassis(&mut v, tdp, &p.default_tdp_w, 1_000.0);
    let platform = [
        "power.platform_w.laptop",
        "power.platform_w.desktop",
        "power.platform_w.server",
        "power.platform_w.tablet",
        "power.platform_w.vm",
        "power.platform_w.other",
    ];
    chassis(&mut v, platform, &p.platform_w, 5_000.0);
    v
}

fn chassis(out: &mut Vec<Checked>, keys: [&'static str; 6], w: &ChassisWatts, max: f64) {
    let values = [w.laptop, w.desktop, w.server, w.tablet, w.vm, w.other];
    for (key, value) in keys.into_iter().zip(values) {
        out.push(Checked::float(key, value.into(), 0.0, max, "watts"));
    }
}

/// The first out-of-range key, if any.
pub fn check_all(c: &AgentConfig) -> Result<(), String> {
    numeric_keys(c).iter().try_for_each(Checked::check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Dotted paths of every number in the TOML form of `v` (arrays, the
    /// power curve's points, are checked by their own rule).
    fn number_paths(v: &toml::Value, at: &str, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Integer(_) | toml::Value::Float(_) => {
                out.insert(at.to_owned());
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    number_paths(v, &path, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_numeric_key_has_a_stated_range() {
        let cfg = AgentConfig::default();
        let v = toml::Value::try_from(&cfg).expect("to toml");
        let mut found = BTreeSet::new();
        number_paths(&v, "", &mut found);
        let stated: BTreeSet<String> = numeric_keys(&cfg)
            .iter()
            .map(|c| c.key.to_owned())
            .collect();
        assert_eq!(found, stated);
        check_all(&cfg).expect("the defaults are in range");
    }

    /// The default config as a file, with `key = literal` (tables such as
    /// `[power.platform_w]` must be given whole).
    fn file_with(key: &str, literal: &str) -> String {
        let (table, leaf) = key.rsplit_once('.').unwrap_or(("", key));
        let text = toml::to_string(&AgentConfig::default()).expect("to toml");
        let mut current = String::new();
        let mut out = String::new();
        for line in text.lines() {
            if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = h.to_owned();
            }
            if current == table && line.starts_with(&format!("{leaf} = ")) {
                out.push_str(&format!("{leaf} = {literal}\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert!(
            out.contains(&format!("{leaf} = {literal}\n")),
            "{key} not in {text}"
        );
        out
    }

    #[test]
    fn extremes_of_every_numeric_key_are_refused_with_key_value_and_range() {
        let ints = [
            "0",
            "-1",
            "1000000000",
            "9223372036854775807",
            "18446744073709551615",
        ];
        let floats = ["0.0", "-1.0", "1e300", "nan", "inf", "-inf"];
        let mut refused = 0;
        for c in numeric_keys(&AgentConfig::default()) {
            let leaf = c.key.rsplit('.').next().unwrap_or(c.key);
            let (literals, min, max) = match c.bound {
                Bound::Int { min, max, .. } => (&ints[..], min as f64, max as f64),
                Bound::Float { min, max, .. } => (&floats[..], min, max),
            };
            for lit in literals {
                let text = file_with(c.key, lit);
                let cfg = match AgentConfig::parse(&text) {
                    Ok(cfg) => cfg,
                    Err(e) => {
                        // The type refuses it (negative, over i64 or u32).
                        assert!(e.contains(leaf), "{text}: {e}");
                        refused += 1;
                        continue;
                    }
                };
                let value: f64 = lit.parse().expect("a number");
                let in_range = value.is_finite() && (min..=max).contains(&value);
                match cfg.validate() {
                    Ok(()) => assert!(in_range, "{text} accepted"),
                    Err(e) => {
                        assert!(!in_range, "{text} refused: {e}");
                        assert!(e.contains(c.key), "{text}: {e}");
                        let range = format!("from {} to {}", min, max);
                        assert!(e.contains(&range), "{text}: {e} (wants {range})");
                        if let Bound::Int { .. } = c.bound {
                            assert!(e.contains(&format!("= {lit} ")), "{text}: {e}");
                        }
                        refused += 1;
                    }
                }
            }
        }
        assert!(refused > 100, "{refused}");
    }

    #[test]
    fn the_issue_21_values_are_refused() {
        for (text, needle) in [
            (
                "interval_ms = 9223372036854775807\n",
                "interval_ms = 9223372036854775807",
            ),
            (
                "[transport]\nack_timeout_ms = 0\n",
                "transport.ack_timeout_ms = 0",
            ),
            (
                "[transport]\nmax_inflight = 1000000000\n",
                "transport.max_inflight = 1000000000",
            ),
        ] {
            let err = AgentConfig::parse(text)
                .expect("parses")
                .validate()
                .expect_err(text);
            assert!(
                err.contains(needle) && err.contains("out of range"),
                "{err}"
            );
        }
    }
}
