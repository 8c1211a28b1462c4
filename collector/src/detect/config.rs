//! Detection thresholds, all configurable; defaults and sources in
//! METHODOLOGY.md.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// How often detectors run, in seconds (they also run on demand).
    pub interval_s: u64,
    /// Local time = UTC + this many hours, for working hours (France:
    /// 1 in winter, 2 in summer; no daylight-saving switch yet).
    pub utc_offset_hours: i64,
    pub idle: IdleConfig,
    pub left_on: LeftOnConfig,
    pub consolidation: ConsolidationConfig,
    /// A host's reclaimable storage (all bloat categories) from this size.
    pub bloat_min_bytes: u64,
    /// Content on several hosts from this size (per copy).
    pub redundant_min_bytes: u64,
    /// A battery is worn below this share of its design capacity.
    pub battery_health_below: f64,
    /// A host counts as still working if seen within this many days.
    pub alive_days: i64,
}

/// AWS Trusted Advisor's "low utilization" rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdleConfig {
    pub window_days: i64,
    pub min_idle_days: usize,
    /// A day is idle when its mean CPU is at most this...
    pub cpu_percent: f64,
    /// ...and its network traffic at most this.
    pub net_bytes: i64,
    /// Chassis the rule applies to.
    pub chassis: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LeftOnConfig {
    /// Off-hours: from this hour (local) to `end_hour` next morning...
    pub start_hour: i64,
    pub end_hour: i64,
    /// ...and all of Saturday and Sunday.
    pub weekends: bool,
    /// Over the last 7 days, at least this many off-hours hours on with
    /// nobody active.
    pub min_hours: usize,
    /// An hour counts as "on" when samples cover at least this share of it.
    pub min_coverage: f64,
    pub chassis: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsolidationConfig {
    pub window_days: i64,
    /// Plan the remaining machines at most this busy (p95).
    pub target_utilisation: f64,
    pub chassis: Vec<String>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            interval_s: 3600,
            utc_offset_hours: 1,
            idle: IdleConfig::default(),
            left_on: LeftOnConfig::default(),
            consolidation: ConsolidationConfig::default(),
            bloat_min_bytes: 1 << 30,
            redundant_min_bytes: 100 << 20,
            battery_health_below: 0.6,
            alive_days: 7,
        }
    }
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            window_days: 14,
            min_idle_days: 4,
            cpu_percent: 10.0,
            net_bytes: 5_000_000,
            chassis: vec!["server".into(), "vm".into()],
        }
    }
}

impl Default for LeftOnConfig {
    fn default() -> Self {
        LeftOnConfig {
            start_hour: 19,
            end_hour: 7,
            weekends: true,
            min_hours: 8,
            min_coverage: 0.5,
            chassis: vec!["desktop".into(), "laptop".into()],
        }
    }
}

impl Default for ConsolidationConfig {
    fn default() -> Self {
        ConsolidationConfig {
            window_days: 14,
            target_utilisation: 0.7,
            chassis: vec!["server".into(), "vm".into()],
        }
    }
}

impl DetectConfig {
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.left_on;
        if !(0..24).contains(&l.start_hour) || !(0..24).contains(&l.end_hour) {
            return Err("detect.left_on start_hour and end_hour must be 0..23".into());
        }
        if !(-12..=14).contains(&self.utc_offset_hours) {
            return Err("detect.utc_offset_hours must be between -12 and 14".into());
        }
        if self.idle.window_days < 1 || self.idle.min_idle_days < 1 {
            return Err("detect.idle window_days and min_idle_days must be at least 1".into());
        }
        let t = self.consolidation.target_utilisation;
        if !(t > 0.0 && t <= 1.0) {
            return Err("detect.consolidation.target_utilisation must be in (0, 1]".into());
        }
        if self.interval_s < 10 {
            return Err("detect.interval_s must be at least 10".into());
        }
        Ok(())
    }
}
