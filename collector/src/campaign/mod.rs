//! Digital Clean Up Day campaigns: their lifecycle (planned → running →
//! ended → archived), which hosts they concern (`Scope`), the commands and
//! nudges sent to those hosts (`dispatch`), the live report (`report`) in
//! JSON, CSV and a printable page (`html`), and the CO2e factors it shows
//! (`factors`). The agents count deletions; the collector only adds up.

pub mod cli;
pub mod dispatch;
pub mod factors;
pub mod html;
pub mod report;

use serde::{Deserialize, Serialize};

/// Hosts a campaign concerns: a host is in when it matches any listed
/// group, site or host (agent id or hostname). All empty: every host.
/// Group and site come from the agent's config, as sent in its inventory;
/// a host whose inventory has not arrived yet is in no group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    pub groups: Vec<String>,
    pub sites: Vec<String>,
    pub hosts: Vec<String>,
}

impl Scope {
    pub fn is_everyone(&self) -> bool {
        self.groups.is_empty() && self.sites.is_empty() && self.hosts.is_empty()
    }

    pub fn contains(&self, h: &Host) -> bool {
        self.is_everyone()
            || self.groups.contains(&h.group)
            || self.sites.contains(&h.site)
            || self
                .hosts
                .iter()
                .any(|x| *x == h.agent_id || Some(x.as_str()) == h.hostname.as_deref())
    }
}

/// A host as scoping sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Host {
    pub agent_id: String,
    pub hostname: Option<String>,
    pub group: String,
    pub site: String,
    pub online: bool,
    pub mqtt: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created; starts by itself at `starts_at_ms` (or `start`).
    Planned,
    /// Agents in scope take a baseline and count.
    Running,
    /// Agents send their final count; the report is final once all have.
    Ended,
    /// Kept for the record; nothing is sent any more.
    Archived,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Planned => "planned",
            State::Running => "running",
            State::Ended => "ended",
            State::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Planned,
            State::Running,
            State::Ended,
            State::Archived,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A campaign as stored and served.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub scope: Scope,
    /// Key of the CO2e factor the report shows (see `factors`).
    pub factor: String,
    pub state: State,
    /// Seconds between two counts on each host during the campaign.
    pub rescan_interval_s: u32,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
}

/// What `POST /api/v1/campaigns` and `campaign create` take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Short id used in URLs and on the wire, [A-Za-z0-9._-]{1,64}.
    pub id: String,
    pub name: String,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default = "default_factor")]
    pub factor: String,
    #[serde(default = "default_rescan")]
    pub rescan_interval_s: u32,
}

pub fn default_factor() -> String {
    factors::DEFAULT.into()
}

fn default_rescan() -> u32 {
    3600
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("invalid campaign: {0}")]
    Invalid(String),
    #[error("no campaign {0:?}; `sobre-collector campaign list` shows them")]
    NotFound(String),
    #[error("a campaign with id {0:?} already exists; choose another id")]
    Exists(String),
    #[error("campaign {id:?} is {state}: cannot {action} it")]
    BadTransition {
        id: String,
        state: &'static str,
        action: &'static str,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<crate::db::DbError> for CampaignError {
    fn from(e: crate::db::DbError) -> Self {
        CampaignError::Store(e.into())
    }
}

impl NewCampaign {
    pub fn validate(&self) -> Result<(), CampaignError> {
        let bad = |m: String| Err(CampaignError::Invalid(m));
        if !sobre_proto::topics::valid_agent_id(&self.id) {
            return bad(format!(
                "id {:?}: use 1 to 64 of A-Z a-z 0-9 . _ - (e.g. cleanup-day-2026)",
                self.id
            ));
        }
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return bad("name: give a name of 1 to 200 characters".into());
        }
        // Times far outside any campaign's life would make its report's
        // arithmetic wrap: 1970 to the end of year 9999, as the API's.
        use sobre_base::civil::MAX_TIME_MS;
        for (key, v) in [
            ("starts_at_ms", self.starts_at_ms),
            ("ends_at_ms", self.ends_at_ms),
        ] {
            if !(0..=MAX_TIME_MS).contains(&v) {
                return bad(format!(
                    "{key} = {v}: give milliseconds since 1970, from 0 to {MAX_TIME_MS} (year 9999)"
                ));
            }
        }
        if self.ends_at_ms <= self.starts_at_ms {
            return bad("the end must come after the start".into());
        }
        if factors::find(&self.factor).is_none() {
            return bad(format!(
                "factor {:?}: use one of {}",
                self.factor,
                factors::KEYS.join(", ")
            ));
        }
        if !(60..=30 * 86_400).contains(&self.rescan_interval_s) {
            return bad("rescan_interval_s must be from 60 to 2592000 (30 days)".into());
        }
        let n = self.scope.groups.len() + self.scope.sites.len() + self.scope.hosts.len();
        if n > 1000 {
            return bad("scope: at most 1000 groups, sites and hosts".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, group: &str) -> Host {
        Host {
            agent_id: id.into(),
            hostname: Some(format!("{id}.local")),
            group: group.into(),
            site: "hdv".into(),
            online: true,
            mqtt: true,
        }
    }

    #[test]
    fn scope_matches_groups_sites_and_hosts_by_id_or_name() {
        let s = Scope {
            groups: vec!["dsi".into()],
            ..Default::default()
        };
        assert!(s.contains(&host("a", "dsi")));
        assert!(!s.contains(&host("b", "rh")));
        let s = Scope {
            hosts: vec!["b.local".into(), "c".into()],
            ..Default::default()
        };
        assert!(s.contains(&host("b", "rh")));
        assert!(s.contains(&host("c", "rh")));
        assert!(!s.contains(&host("d", "rh")));
        assert!(Scope::default().contains(&host("z", "")));
    }

    #[test]
    fn new_campaigns_are_checked_with_clear_errors() {
        let ok = NewCampaign {
            id: "cud-2026".into(),
            name: "Clean Up Day".into(),
            starts_at_ms: 1,
            ends_at_ms: 2,
            scope: Scope::default(),
            factor: default_factor(),
            rescan_interval_s: 3600,
        };
        assert!(ok.validate().is_ok());
        let e = NewCampaign {
            id: "a b".into(),
            ..ok.clone()
        };
        assert!(e.validate().is_err_and(|e| e.to_string().contains("id")));
        let e = NewCampaign {
            ends_at_ms: 1,
            ..ok.clone()
        };
        assert!(e.validate().is_err_and(|e| e.to_string().contains("end")));
        let e = NewCampaign {
            factor: "made-up".into(),
            ..ok
        };
        let msg = e
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("ccf-ssd"), "{msg}");
    }
}
