//! What the sink reads from the store, on its own read-only connections:
//! committed samples after a rowid (arrival order), the agents' tags, and
//! the inputs of the periodic snapshots (footprint, storage, findings,
//! campaign reports). The writer appends samples in
//! arrival order from one thread, so a row committed after a read always
//! has a larger rowid than every row that read saw: reading "after the
//! last rowid sent" misses nothing. On PostgreSQL several collectors
//! write, and their rowids interleave with their commits; each sink then
//! reads only the samples its own collector wrote (`samples.node`), for
//! which the same holds.

use super::findings::FindingRow;
use super::points::{HostTags, SampleRow};
use crate::args;
use crate::campaign::report::{self, Report};
use crate::campaign::{CampaignError, State};
use crate::db::OptionalExt;
use crate::store::{self, Reader, StoreError, campaigns};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long the agents' tags are trusted before they are read again
/// (an inventory can change its group or site labels).
const TAGS_TTL: Duration = Duration::from_secs(60);

pub struct Source {
    conn: store::Conn,
    /// This collector's name on PostgreSQL: only its samples are read.
    node: Option<String>,
    pub reader: Reader,
    tags: HashMap<i64, HostTags>,
    tags_read: Option<Instant>,
    tags_generation: u64,
}

/// An agent as the snapshots need it.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub tags: HostTags,
    pub online: bool,
}

impl Source {
    pub fn open(store: &store::Location, node: Option<String>) -> Result<Source, StoreError> {
        Ok(Source {
            conn: store.open_reader()?,
            node,
            reader: Reader::new(store.open_reader()?),
            tags: HashMap::new(),
            tags_read: None,
            tags_generation: 0,
        })
    }

    /// Lowest and highest rowid of `samples` (0, 0 when empty).
    pub fn bounds(&self) -> Result<(i64, i64), StoreError> {
        let bounds = |r: &crate::db::Row| Ok((r.get(0)?, r.get(1)?));
        Ok(match &self.node {
            // Two subqueries: SQLite answers a lone min() or max() of the
            // rowid from the b-tree's edge, but scans for both at once.
            None => self.conn.query_row(
                "SELECT coalesce((SELECT min(rowid) FROM samples), 0),
                        coalesce((SELECT max(rowid) FROM samples), 0)",
                args![],
                bounds,
            )?,
            Some(node) => self.conn.query_row(
                "SELECT coalesce((SELECT min(rowid) FROM samples WHERE node = ?1), 0),
                        coalesce((SELECT max(rowid) FROM samples WHERE node = ?1), 0)",
                args![node],
                bounds,
            )?,
        })
    }

    /// Up to `limit` committed samples with a rowid above `after`, in
    /// rowid order, into `rows` (reused from batch to batch: each row is
    /// overwritten in place, its power source string included, and the
    /// rest truncated; rows stream from the engine, none kept twice).
    pub fn samples_after(
        &self,
        after: i64,
        limit: usize,
        rows: &mut Vec<SampleRow>,
    ) -> Result<(), StoreError> {
        const COLS: &str = "SELECT rowid, agent, seq, sent_ms, interval_ms, cpu_percent,
                mem_total, mem_available, swap_total, swap_used, disk_read, disk_written,
                net_rx, net_tx, load1, load5, load15, uptime_s, user_sessions, input_idle_s,
                user_active, agent_cpu_s, agent_rss, agent_sent, power_w, energy_j,
                power_source FROM samples";
        let mut n = 0;
        let mut put = |r: &crate::db::Row| {
            if n == rows.len() {
                rows.push(SampleRow::default());
            }
            let s = &mut rows[n];
            n += 1;
            s.rowid = r.get(0)?;
            s.agent = r.get(1)?;
            s.seq = r.get(2)?;
            s.sent_ms = r.get(3)?;
            s.interval_ms = r.get(4)?;
            s.cpu_percent = r.get(5)?;
            s.mem_total = r.get(6)?;
            s.mem_available = r.get(7)?;
            s.swap_total = r.get(8)?;
            s.swap_used = r.get(9)?;
            s.disk_read = r.get(10)?;
            s.disk_written = r.get(11)?;
            s.net_rx = r.get(12)?;
            s.net_tx = r.get(13)?;
            s.load1 = r.get(14)?;
            s.load5 = r.get(15)?;
            s.load15 = r.get(16)?;
            s.uptime_s = r.get(17)?;
            s.user_sessions = r.get(18)?;
            s.input_idle_s = r.get(19)?;
            s.user_active = r.get(20)?;
            s.agent_cpu_s = r.get(21)?;
            s.agent_rss = r.get(22)?;
            s.agent_sent = r.get(23)?;
            s.power_w = r.get(24)?;
            s.energy_j = r.get(25)?;
            match (r.text(26)?, &mut s.power_source) {
                (Some(v), Some(old)) => {
                    old.clear();
                    old.push_str(v);
                }
                (v, old) => *old = v.map(str::to_owned),
            }
            Ok(())
        };
        match &self.node {
            None => self.conn.each(
                &format!("{COLS} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"),
                args![after, limit as i64],
                &mut put,
            )?,
            Some(node) => self.conn.each(
                &format!("{COLS} WHERE node = ?3 AND rowid > ?1 ORDER BY rowid LIMIT ?2"),
                args![after, limit as i64, node],
                &mut put,
            )?,
        }
        rows.truncate(n);
        Ok(())
    }

    /// The tags of the agent with store id `agent`, read again when
    /// unknown or older than a minute at `now` (the caller's clock, read
    /// once per batch rather than once per sample), and their generation:
    /// a number that changes whenever the tags were read again.
    pub fn tags(&mut self, agent: i64, now: Instant) -> Result<(&HostTags, u64), StoreError> {
        let stale = self
            .tags_read
            .is_none_or(|t| now.saturating_duration_since(t) > TAGS_TTL);
        if stale || !self.tags.contains_key(&agent) {
            self.tags = self
                .agents()?
                .into_iter()
                .map(|(id, a)| (id, a.tags))
                .collect();
            self.tags_read = Some(now);
            self.tags_generation += 1;
            if !self.tags.contains_key(&agent) {
                // Not possible with the store's foreign key discipline, but
                // a sample is never dropped for want of a label.
                let id: Option<String> = self
                    .conn
                    .query_row(
                        "SELECT agent_id FROM agents WHERE id = ?1",
                        args![agent],
                        |r| r.get(0),
                    )
                    .optional()?;
                self.tags.insert(
                    agent,
                    HostTags {
                        agent: id.unwrap_or_else(|| format!("agent-{agent}")),
                        ..Default::default()
                    },
                );
            }
        }
        Ok((&self.tags[&agent], self.tags_generation))
    }

    /// The detectors' findings summed by (kind, agent): every pair the
    /// store has a finding for, resolved ones with `active` = 0, so that
    /// the latest point of a host says whether the condition still holds.
    pub fn findings(&self) -> Result<Vec<FindingRow>, StoreError> {
        // Sums are cast: PostgreSQL sums integers as NUMERIC.
        Ok(self.conn.query_map(
            "SELECT kind, agent_id,
                    CAST(sum(CASE WHEN state != 'resolved' THEN 1 ELSE 0 END) AS BIGINT),
                    CAST(sum(CASE WHEN state = 'open' THEN 1 ELSE 0 END) AS BIGINT),
                    coalesce(sum(CASE WHEN state != 'resolved' THEN saving_kwh_year END), 0),
                    coalesce(sum(CASE WHEN state != 'resolved' THEN saving_kg_year END), 0),
                    CAST(coalesce(sum(CASE WHEN state != 'resolved' THEN saving_bytes END), 0)
                        AS BIGINT),
                    min(CASE WHEN state != 'resolved' THEN first_seen_ms END)
             FROM findings GROUP BY kind, agent_id ORDER BY kind, agent_id",
            args![],
            |r| {
                Ok(FindingRow {
                    kind: r.get(0)?,
                    agent_id: r.get(1)?,
                    active: r.get(2)?,
                    open: r.get(3)?,
                    saving_kwh_year: r.get(4)?,
                    saving_kg_year: r.get(5)?,
                    saving_bytes: r.get(6)?,
                    oldest_active_ms: r.get(7)?,
                })
            },
        )?)
    }

    /// The report of every running or ended campaign (planned ones have
    /// nothing to show, archived ones are kept for the record only), built
    /// by `campaign::report` as the API builds it. A campaign whose report
    /// fails is logged and left out, not the whole snapshot.
    pub fn campaign_reports(
        &self,
        grid_g_per_kwh: f64,
        pue: f64,
        now_ms: i64,
    ) -> Result<Vec<Report>, StoreError> {
        let mut out = Vec::new();
        for c in campaigns::list(self.conn.as_ref())? {
            if !matches!(c.state, State::Running | State::Ended) {
                continue;
            }
            match report::build(self.conn.as_ref(), &c.id, grid_g_per_kwh, pue, now_ms) {
                Ok(r) => out.push(r),
                Err(CampaignError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(campaign = %c.id, error = %e, "sink: no campaign points for this campaign")
                }
            }
        }
        Ok(out)
    }

    /// Every agent, by store id, with its tags and presence.
    pub fn agents(&self) -> Result<HashMap<i64, AgentRow>, StoreError> {
        let rows = self.conn.query_map(
            "SELECT id, agent_id, hostname, online, inventory FROM agents",
            args![],
            |r| {
                let inv: serde_json::Value = r
                    .get::<Option<String>>(4)?
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                let label = |k: &str| inv[k].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
                Ok((
                    r.get::<i64>(0)?,
                    AgentRow {
                        tags: HostTags {
                            agent: r.get(1)?,
                            host: r.get::<Option<String>>(2)?.filter(|s| !s.is_empty()),
                            group: label("group"),
                            site: label("site"),
                            chassis: label("chassis"),
                        },
                        online: r.get(3)?,
                    },
                ))
            },
        )?;
        Ok(rows.into_iter().collect())
    }
}
