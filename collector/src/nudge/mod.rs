//! Nudges: which findings become a message for the person at the machine,
//! when (rate limits, quiet hours, opt-outs), in which words (`text.rs`),
//! and their delivery over the downlink (`dispatch.rs`).

pub mod dispatch;
pub mod text;

use crate::detect::{DAY_MS, Finding, HOUR_MS, Kind};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NudgeConfig {
    pub enabled: bool,
    /// "fr" or "en".
    pub lang: String,
    /// At most one nudge of a kind per host in this many days.
    pub per_kind_days: i64,
    /// No delivery between these local hours (start inclusive, end
    /// exclusive; evening to morning when start > end).
    pub quiet_start_hour: i64,
    pub quiet_end_hour: i64,
    /// Finding kinds that produce nudges.
    pub kinds: Vec<String>,
    /// An undelivered nudge is sent again after this many seconds.
    pub resend_after_s: i64,
    /// How often pending nudges are looked at, in seconds.
    pub dispatch_interval_s: u64,
}

impl Default for NudgeConfig {
    fn default() -> Self {
        NudgeConfig {
            enabled: true,
            lang: "fr".into(),
            per_kind_days: 7,
            quiet_start_hour: 20,
            quiet_end_hour: 8,
            kinds: ["left_on", "bloat", "battery_worn", "past_lifetime"]
                .map(String::from)
                .to_vec(),
            resend_after_s: 600,
            dispatch_interval_s: 60,
        }
    }
}

impl NudgeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !["fr", "en"].contains(&self.lang.as_str()) {
            return Err(format!("nudge.lang {:?}: use \"fr\" or \"en\"", self.lang));
        }
        if !(0..24).contains(&self.quiet_start_hour) || !(0..24).contains(&self.quiet_end_hour) {
            return Err("nudge quiet hours must be 0..23".into());
        }
        for k in &self.kinds {
            if Kind::parse(k).is_none() {
                return Err(format!("nudge.kinds: unknown kind {k:?}"));
            }
        }
        if self.dispatch_interval_s == 0 || self.resend_after_s <= 0 {
            return Err("nudge.dispatch_interval_s and resend_after_s must be > 0".into());
        }
        Ok(())
    }

    /// Whether `now_ms` (UTC) falls in quiet hours at `utc_offset_hours`.
    pub fn quiet(&self, now_ms: i64, utc_offset_hours: i64) -> bool {
        let hod = (now_ms + utc_offset_hours * HOUR_MS)
            .div_euclid(HOUR_MS)
            .rem_euclid(24);
        let (s, e) = (self.quiet_start_hour, self.quiet_end_hour);
        if s > e {
            hod >= s || hod < e
        } else {
            s < e && hod >= s && hod < e
        }
    }
}

/// A nudge to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNudge {
    pub id: String,
    pub agent_id: String,
    pub finding_id: String,
    pub kind: Kind,
    pub lang: String,
    pub text: text::Text,
}

/// Which open findings become nudges now: kinds configured, host not opted
/// out, and no nudge of that kind to that host in the last
/// `per_kind_days` (`last_sent` maps (agent, kind) to the newest nudge's
/// creation time).
pub fn plan(
    cfg: &NudgeConfig,
    open: &[Finding],
    last_sent: &HashMap<(String, String), i64>,
    optout: &HashSet<(String, String)>,
    now_ms: i64,
) -> Vec<NewNudge> {
    if !cfg.enabled {
        return Vec::new();
    }
    let mut out: Vec<NewNudge> = Vec::new();
    for f in open {
        let Some(agent) = &f.agent_id else { continue };
        let kind = f.kind.as_str().to_owned();
        if !cfg.kinds.contains(&kind) {
            continue;
        }
        let key = (agent.clone(), kind.clone());
        if optout.contains(&key) || optout.contains(&(agent.clone(), "*".into())) {
            continue;
        }
        if last_sent
            .get(&key)
            .is_some_and(|t| *t > now_ms - cfg.per_kind_days * DAY_MS)
        {
            continue;
        }
        if out.iter().any(|n| n.agent_id == *agent && n.kind == f.kind) {
            continue; // two findings of one kind (two batteries): one nudge
        }
        let Some(text) = text::render(f, &cfg.lang) else {
            continue;
        };
        out.push(NewNudge {
            id: format!("{}-{now_ms}", f.id),
            agent_id: agent.clone(),
            finding_id: f.id.clone(),
            kind: f.kind,
            lang: cfg.lang.clone(),
            text,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn left_on(agent: &str) -> Finding {
        let mut f = Finding::new(
            Kind::LeftOn,
            Some(agent),
            agent,
            json!({"wasted_hours": 10}),
        );
        f.saving_kwh_year = Some(5.0);
        f.saving_kg_year = Some(0.3);
        f
    }

    #[test]
    fn one_nudge_per_kind_per_week() {
        let cfg = NudgeConfig::default();
        let now = 100 * DAY_MS;
        let none = HashMap::new();
        let planned = plan(
            &cfg,
            &[left_on("a"), left_on("b")],
            &none,
            &HashSet::new(),
            now,
        );
        assert_eq!(planned.len(), 2);
        assert!(planned[0].text.body.contains("10 heures"));
        let mut last = HashMap::new();
        last.insert(("a".to_owned(), "left_on".to_owned()), now - 6 * DAY_MS);
        let planned = plan(&cfg, &[left_on("a")], &last, &HashSet::new(), now);
        assert!(planned.is_empty(), "held back: one 6 days ago");
        last.insert(("a".to_owned(), "left_on".to_owned()), now - 7 * DAY_MS);
        assert_eq!(
            plan(&cfg, &[left_on("a")], &last, &HashSet::new(), now).len(),
            1,
            "a week later"
        );
    }

    #[test]
    fn opt_outs_per_kind_and_per_host() {
        let cfg = NudgeConfig::default();
        let mut out = HashSet::new();
        out.insert(("a".to_owned(), "left_on".to_owned()));
        out.insert(("b".to_owned(), "*".to_owned()));
        let planned = plan(
            &cfg,
            &[left_on("a"), left_on("b"), left_on("c")],
            &HashMap::new(),
            &out,
            0,
        );
        assert_eq!(
            planned
                .iter()
                .map(|n| n.agent_id.as_str())
                .collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let cfg = NudgeConfig::default();
        let at = |h: i64| h * HOUR_MS; // UTC; offset 1 → local h + 1
        assert!(cfg.quiet(at(19), 1), "20:00 local");
        assert!(cfg.quiet(at(6), 1), "07:00 local");
        assert!(!cfg.quiet(at(7), 1), "08:00 local");
        assert!(!cfg.quiet(at(18), 1), "19:00 local");
    }
}
