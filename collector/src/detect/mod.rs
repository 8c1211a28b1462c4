//! Detectors: pure functions from stored history to findings, each with
//! its rule, its evidence and its estimated saving. Thresholds live in
//! [`DetectConfig`]; their sources are in METHODOLOGY.md.

pub mod config;
pub mod rules;

pub use config::DetectConfig;

use serde::Serialize;
use sobre_proto::v1::{Inventory, StorageSummary};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// One hour of one host, from the hourly roll-up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HourStats {
    pub hour_ms: i64,
    pub energy_j: f64,
    /// Time covered by usage samples in this hour.
    pub usage_ms: i64,
    /// Σ cpu_percent × ms.
    pub cpu_weighted: f64,
    pub net_bytes: i64,
    /// Time a person was active.
    pub active_ms: i64,
    pub mem_used_max: i64,
}

impl HourStats {
    /// Mean CPU % over the covered time.
    pub fn cpu_mean(&self) -> f64 {
        if self.usage_ms > 0 {
            self.cpu_weighted / self.usage_ms as f64
        } else {
            0.0
        }
    }
}

/// What the detectors know of one host.
#[derive(Debug, Clone, Default)]
pub struct HostHistory {
    pub id: String,
    pub hostname: Option<String>,
    pub inventory: Inventory,
    /// PUE and grid intensity (g/kWh) to turn energy into savings.
    pub pue: f64,
    pub grid_g_per_kwh: f64,
    /// Sorted by hour.
    pub hours: Vec<HourStats>,
    pub last_seen_ms: i64,
    pub first_seen_ms: i64,
    pub storage: Option<StorageSummary>,
    /// From the footprint: is the device past its planned lifetime, and
    /// what would one more year of life save (kgCO2e/year)?
    pub past_lifetime: bool,
    pub life_extension_kg_per_year: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    IdleServer,
    LeftOn,
    Consolidation,
    Redundant,
    Bloat,
    PastLifetime,
    BatteryWorn,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IdleServer => "idle_server",
            Kind::LeftOn => "left_on",
            Kind::Consolidation => "consolidation",
            Kind::Redundant => "redundant",
            Kind::Bloat => "bloat",
            Kind::PastLifetime => "past_lifetime",
            Kind::BatteryWorn => "battery_worn",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub const ALL: [Kind; 7] = [
        Kind::IdleServer,
        Kind::LeftOn,
        Kind::Consolidation,
        Kind::Redundant,
        Kind::Bloat,
        Kind::PastLifetime,
        Kind::BatteryWorn,
    ];
}

/// A condition that holds now, with what it would save if acted upon.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    /// Stable across passes: the same condition on the same subject keeps
    /// its id.
    pub id: String,
    pub kind: Kind,
    /// The host concerned; `None` for fleet- or group-level findings.
    pub agent_id: Option<String>,
    /// What it is about: the host, the group, or a content id.
    pub subject: String,
    pub saving_kwh_year: Option<f64>,
    pub saving_kg_year: Option<f64>,
    pub saving_bytes: Option<u64>,
    /// The numbers behind the rule.
    pub evidence: serde_json::Value,
}

impl Finding {
    pub fn new(
        kind: Kind,
        agent_id: Option<&str>,
        subject: &str,
        evidence: serde_json::Value,
    ) -> Finding {
        Finding {
            id: finding_id(kind, agent_id, subject),
            kind,
            agent_id: agent_id.map(str::to_owned),
            subject: subject.to_owned(),
            saving_kwh_year: None,
            saving_kg_year: None,
            saving_bytes: None,
            evidence,
        }
    }
}

/// `kind-` and the FNV-1a 64 hash of (kind, agent, subject), in hex:
/// stable across versions and safe in URLs.
pub fn finding_id(kind: Kind, agent_id: Option<&str>, subject: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind
        .as_str()
        .bytes()
        .chain([0])
        .chain(agent_id.unwrap_or("").bytes())
        .chain([0])
        .chain(subject.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}-{h:016x}", kind.as_str())
}

/// Runs every detector over the fleet at `now_ms`.
pub fn detect(
    cfg: &DetectConfig,
    hosts: &[HostHistory],
    redundant: &[crate::storage::Redundant],
    now_ms: i64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for h in hosts {
        out.extend(rules::idle_server(cfg, h, now_ms));
        out.extend(rules::left_on(cfg, h, now_ms));
        out.extend(rules::bloat(cfg, h));
        out.extend(rules::past_lifetime(cfg, h, now_ms));
        out.extend(rules::battery_worn(cfg, h, now_ms));
    }
    out.extend(rules::consolidation(cfg, hosts, now_ms));
    out.extend(rules::redundant(cfg, redundant));
    out
}

#[cfg(test)]
mod tests;
