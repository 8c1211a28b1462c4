//! The campaign report: what the agents counted, added up by group and by
//! category and over time, with the hosts that have no baseline and the
//! CO2e of the deleted bytes under every published factor. Served as JSON
//! and CSV and rendered by `html`.

use super::factors::{self, Factor};
use super::{Campaign, CampaignError};
use crate::db::Db;
use crate::store::campaigns as db;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub files_deleted: u64,
    pub bytes_deleted: u64,
    pub files_moved: u64,
    pub files_added: u64,
    pub bytes_added: u64,
    pub files_in_trash: u64,
    pub bytes_in_trash: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupRow {
    pub group: String,
    pub hosts: usize,
    pub with_baseline: usize,
    pub participants: usize,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
    /// New files do not offset deletions; shown beside them.
    pub files_added: u64,
    pub bytes_added: u64,
    /// The group's deleted bytes under the campaign's chosen factor.
    pub kg_co2e_per_year: f64,
}

/// How a host without a group is shown in the CSV and the InfluxDB sink.
pub const NO_GROUP: &str = "(none)";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CategoryRow {
    pub category: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    pub at_ms: i64,
    pub files_deleted: u64,
    pub bytes_deleted: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostIssue {
    pub agent_id: String,
    pub hostname: Option<String>,
    pub group: String,
    /// "no baseline yet", "no final count", or the agent's error.
    pub issue: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Co2e {
    /// The factor the organiser chose.
    pub factor: Factor,
    pub kg_per_year: f64,
    /// The same bytes under every published factor, lowest first.
    pub range: Vec<(Factor, f64)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub campaign: Campaign,
    pub generated_at_ms: i64,
    /// Whether every host with a baseline has sent its final count.
    pub complete: bool,
    pub hosts_in_scope: usize,
    pub hosts_with_baseline: usize,
    /// Hosts that deleted at least one file.
    pub participants: usize,
    pub totals: Totals,
    pub by_group: Vec<GroupRow>,
    pub by_category: Vec<CategoryRow>,
    pub over_time: Vec<Point>,
    pub hosts_without_baseline: Vec<HostIssue>,
    pub hosts_with_issues: Vec<HostIssue>,
    pub co2e: Co2e,
}

/// Builds the report of campaign `id` from the store. `grid_g_per_kwh`
/// and `pue` feed the CCF factors.
pub fn build(
    conn: &dyn Db,
    id: &str,
    grid_g_per_kwh: f64,
    pue: f64,
    now_ms: i64,
) -> Result<Report, CampaignError> {
    let campaign = db::get(conn, id)?;
    let rows: HashMap<String, db::HostRow> = db::host_rows(conn, id)?
        .into_iter()
        .map(|r| (r.agent_id.clone(), r))
        .collect();
    // In scope now, plus any host that reported (it was in scope then).
    let hosts: Vec<_> = db::hosts(conn)?
        .into_iter()
        .filter(|h| campaign.scope.contains(h) || rows.contains_key(&h.agent_id))
        .collect();
    let mut totals = Totals::default();
    let mut groups: BTreeMap<String, GroupRow> = BTreeMap::new();
    let mut cats: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let (mut without, mut issues) = (Vec::new(), Vec::new());
    let (mut with_baseline, mut participants, mut complete) = (0, 0, true);
    for h in &hosts {
        let g = groups.entry(h.group.clone()).or_insert_with(|| GroupRow {
            group: h.group.clone(),
            hosts: 0,
            with_baseline: 0,
            participants: 0,
            files_deleted: 0,
            bytes_deleted: 0,
            files_added: 0,
            bytes_added: 0,
            kg_co2e_per_year: 0.0,
        });
        g.hosts += 1;
        let issue = |what: String| HostIssue {
            agent_id: h.agent_id.clone(),
            hostname: h.hostname.clone(),
            group: h.group.clone(),
            issue: what,
        };
        let row = rows.get(&h.agent_id);
        let Some(p) = row
            .filter(|r| r.baseline_ms.is_some())
            .and_then(|r| r.progress.as_ref())
        else {
            let why = row
                .and_then(|r| r.error.clone())
                .unwrap_or_else(|| "no baseline yet".into());
            without.push(issue(why));
            continue;
        };
        with_baseline += 1;
        g.with_baseline += 1;
        if !p.r#final {
            complete = false;
            if campaign.state != super::State::Running {
                issues.push(issue("no final count yet".into()));
            }
        }
        if p.files_deleted > 0 {
            participants += 1;
            g.participants += 1;
        }
        g.files_deleted += p.files_deleted;
        g.bytes_deleted += p.bytes_deleted;
        g.files_added += p.files_added;
        g.bytes_added += p.bytes_added;
        totals.files_deleted += p.files_deleted;
        totals.bytes_deleted += p.bytes_deleted;
        totals.files_moved += p.files_moved;
        totals.files_added += p.files_added;
        totals.bytes_added += p.bytes_added;
        totals.files_in_trash += p.files_in_trash;
        totals.bytes_in_trash += p.bytes_in_trash;
        for d in &p.deleted {
            let c = cats.entry(d.category.clone()).or_default();
            c.0 += d.files;
            c.1 += d.bytes;
        }
    }
    if campaign.state == super::State::Running || campaign.state == super::State::Planned {
        complete = false;
    }
    let gbs = totals.bytes_deleted as f64 / 1e9;
    let mut all: Vec<(Factor, f64)> = factors::all(grid_g_per_kwh, pue)
        .into_iter()
        .map(|f| {
            let kg = f.kg_per_gb_year * gbs;
            (f, kg)
        })
        .collect();
    all.sort_by(|a, b| a.0.kg_per_gb_year.total_cmp(&b.0.kg_per_gb_year));
    let chosen = all
        .iter()
        .find(|(f, _)| f.key == campaign.factor)
        .or_else(|| all.iter().find(|(f, _)| f.key == factors::DEFAULT))
        .cloned()
        // `all` always holds the default factor.
        .expect("factors::all includes the default");
    for g in groups.values_mut() {
        g.kg_co2e_per_year = chosen.0.kg_per_gb_year * g.bytes_deleted as f64 / 1e9;
    }
    Ok(Report {
        over_time: over_time(&db::history(conn, id)?),
        generated_at_ms: now_ms,
        complete,
        hosts_in_scope: hosts.len(),
        hosts_with_baseline: with_baseline,
        participants,
        totals,
        by_group: groups.into_values().collect(),
        by_category: cats
            .into_iter()
            .map(|(category, (files, bytes))| CategoryRow {
                category,
                files,
                bytes,
            })
            .collect(),
        hosts_without_baseline: without,
        hosts_with_issues: issues,
        co2e: Co2e {
            factor: chosen.0,
            kg_per_year: chosen.1,
            range: all,
        },
        campaign,
    })
}

/// The fleet's running total after each count: every host's latest count
/// added up, one point per distinct time.
pub fn over_time(history: &[(String, i64, u64, u64)]) -> Vec<Point> {
    let mut latest: HashMap<&str, (u64, u64)> = HashMap::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut out: Vec<Point> = Vec::new();
    for (agent, at, f, b) in history {
        let prev = latest.insert(agent, (*f, *b)).unwrap_or((0, 0));
        // `prev` is part of the running total: subtracting cannot underflow.
        files = files.saturating_sub(prev.0) + f;
        bytes = bytes.saturating_sub(prev.1) + b;
        match out.last_mut() {
            Some(p) if p.at_ms == *at => {
                p.files_deleted = files;
                p.bytes_deleted = bytes;
            }
            _ => out.push(Point {
                at_ms: *at,
                files_deleted: files,
                bytes_deleted: bytes,
            }),
        }
    }
    out
}

/// The report as CSV: one row per group, then a total row. Numbers only,
/// no host names.
pub fn csv(r: &Report) -> String {
    let mut out = String::from(
        "campaign,group,hosts,hosts_with_baseline,participants,files_deleted,bytes_deleted\n",
    );
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    for g in &r.by_group {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            field(&r.campaign.id),
            field(if g.group.is_empty() {
                NO_GROUP
            } else {
                &g.group
            }),
            g.hosts,
            g.with_baseline,
            g.participants,
            g.files_deleted,
            g.bytes_deleted
        ));
    }
    out.push_str(&format!(
        "{},(total),{},{},{},{},{}\n",
        field(&r.campaign.id),
        r.hosts_in_scope,
        r.hosts_with_baseline,
        r.participants,
        r.totals.files_deleted,
        r.totals.bytes_deleted
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_time_adds_each_hosts_latest_count() {
        let h = |a: &str, t, f, b| (a.to_owned(), t, f, b);
        let pts = over_time(&[
            h("a", 1, 1, 100),
            h("b", 2, 2, 50),
            h("a", 3, 4, 400),
            h("b", 3, 2, 50),
        ]);
        let bytes: Vec<_> = pts.iter().map(|p| (p.at_ms, p.bytes_deleted)).collect();
        assert_eq!(bytes, vec![(1, 100), (2, 150), (3, 450)]);
        assert_eq!(pts.last().map(|p| p.files_deleted), Some(6));
    }

    #[test]
    fn over_time_follows_a_count_that_goes_down() {
        // A restored file lowers a host's count: the total follows.
        let h = |t, b| ("a".to_owned(), t, 1u64, b);
        let pts = over_time(&[h(1, 500), h(2, 300)]);
        assert_eq!(pts.last().map(|p| p.bytes_deleted), Some(300));
    }
}
