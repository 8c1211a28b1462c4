//! Findings and nudges in the store: the findings' lifecycle across
//! detection passes, nudges and their delivery state, opt-outs, and what
//! the detectors read (hourly roll-up, inventories, storage).

use super::StoreError;
use crate::args;
use crate::db::{Db, DbError, OptionalExt};
use crate::detect::{DAY_MS, Finding, HostHistory, HourStats};
use crate::nudge::NewNudge;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// A finding as stored, with its lifecycle.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredFinding {
    pub id: String,
    pub kind: String,
    pub agent_id: Option<String>,
    pub subject: String,
    /// open | acknowledged | snoozed | resolved
    pub state: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub resolved_ms: Option<i64>,
    pub snoozed_until_ms: Option<i64>,
    pub saving_kwh_year: Option<f64>,
    pub saving_kg_year: Option<f64>,
    pub saving_bytes: Option<i64>,
    pub evidence: serde_json::Value,
}

/// Applies one detection pass: new findings open; findings seen again are
/// updated (a resolved one reopens, an expired snooze reopens); findings
/// not seen any more are resolved. Returns (opened, resolved).
pub fn apply_pass(
    conn: &dyn Db,
    current: &[Finding],
    now_ms: i64,
) -> Result<(usize, usize), StoreError> {
    // The transaction takes SQLite's write lock first (see
    // `Db::transaction`): the pass reads, then writes.
    conn.transaction(|tx| apply_pass_in(tx, current, now_ms))
}

fn apply_pass_in(
    tx: &dyn Db,
    current: &[Finding],
    now_ms: i64,
) -> Result<(usize, usize), StoreError> {
    let mut opened = 0;
    let seen: HashSet<&str> = current.iter().map(|f| f.id.as_str()).collect();
    for f in current {
        let state: Option<(String, Option<i64>)> = tx
            .query_row(
                "SELECT state, snoozed_until_ms FROM findings WHERE id = ?1",
                args![f.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let evidence = serde_json::to_string(&f.evidence).unwrap_or_default();
        let saving_bytes = f.saving_bytes.map(|b| b as i64);
        match state {
            None => {
                tx.execute(
                    "INSERT INTO findings (id, kind, agent_id, subject, state, first_seen_ms, last_seen_ms,
                        saving_kwh_year, saving_kg_year, saving_bytes, evidence)
                     VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?5, ?6, ?7, ?8, ?9)",
                    args![f.id, f.kind.as_str(), f.agent_id, f.subject, now_ms, f.saving_kwh_year, f.saving_kg_year, saving_bytes, evidence],
                )?;
                opened += 1;
            }
            Some((state, snoozed)) => {
                let new_state = match state.as_str() {
                    "resolved" => {
                        opened += 1;
                        "open"
                    }
                    "snoozed" if snoozed.is_none_or(|t| t <= now_ms) => "open",
                    other => other,
                };
                tx.execute(
                    "UPDATE findings SET state = ?2, last_seen_ms = ?3, resolved_ms = NULL,
                        saving_kwh_year = ?4, saving_kg_year = ?5, saving_bytes = ?6, evidence = ?7
                     WHERE id = ?1",
                    args![
                        f.id,
                        new_state,
                        now_ms,
                        f.saving_kwh_year,
                        f.saving_kg_year,
                        saving_bytes,
                        evidence
                    ],
                )?;
            }
        }
    }
    let mut resolved = 0;
    let gone: Vec<String> = tx
        .query_map(
            "SELECT id FROM findings WHERE state != 'resolved'",
            args![],
            |r| r.get::<String>(0),
        )?
        .into_iter()
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    for id in gone {
        tx.execute(
            "UPDATE findings SET state = 'resolved', resolved_ms = ?2 WHERE id = ?1",
            args![id, now_ms],
        )?;
        resolved += 1;
    }
    Ok((opened, resolved))
}

/// Filters of `GET /api/v1/findings`.
#[derive(Debug, Default, Clone)]
pub struct FindingFilter {
    pub kind: Option<String>,
    pub state: Option<String>,
    pub agent_id: Option<String>,
}

pub fn list(conn: &dyn Db, f: &FindingFilter) -> Result<Vec<StoredFinding>, StoreError> {
    Ok(conn.query_map(
        "SELECT id, kind, agent_id, subject, state, first_seen_ms, last_seen_ms, resolved_ms,
                snoozed_until_ms, saving_kwh_year, saving_kg_year, saving_bytes, evidence
         FROM findings
         WHERE (CAST(?1 AS TEXT) IS NULL OR kind = ?1) AND (CAST(?2 AS TEXT) IS NULL OR state = ?2)
           AND (CAST(?3 AS TEXT) IS NULL OR agent_id = ?3)
         ORDER BY coalesce(saving_kg_year, 0) DESC, id",
        args![f.kind, f.state, f.agent_id],
        |r| {
            let ev: String = r.get(12)?;
            Ok(StoredFinding {
                id: r.get(0)?,
                kind: r.get(1)?,
                agent_id: r.get(2)?,
                subject: r.get(3)?,
                state: r.get(4)?,
                first_seen_ms: r.get(5)?,
                last_seen_ms: r.get(6)?,
                resolved_ms: r.get(7)?,
                snoozed_until_ms: r.get(8)?,
                saving_kwh_year: r.get(9)?,
                saving_kg_year: r.get(10)?,
                saving_bytes: r.get(11)?,
                evidence: serde_json::from_str(&ev).unwrap_or_default(),
            })
        },
    )?)
}

/// Acknowledge or snooze (until `until_ms`) a finding that is not
/// resolved. False when there is no such finding.
pub fn set_state(
    conn: &dyn Db,
    id: &str,
    state: &str,
    until_ms: Option<i64>,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE findings SET state = ?2, snoozed_until_ms = ?3 WHERE id = ?1 AND state != 'resolved'",
        args![id, state, until_ms],
    )?;
    Ok(n == 1)
}

/// What the detectors need, for hosts seen in the last `days` days.
pub fn histories(conn: &dyn Db, now_ms: i64, days: i64) -> Result<Vec<HostHistory>, StoreError> {
    let since = now_ms - days * DAY_MS;
    let mut hosts: Vec<HostHistory> = Vec::new();
    let mut index: HashMap<i64, usize> = HashMap::new();
    {
        let rows = conn.query_map(
            "SELECT id, agent_id, hostname, inventory, first_seen_ms, last_seen_ms, storage FROM agents",
        args![],
        |r| {
            Ok((
                r.get::<i64>(0)?,
                r.get::<String>(1)?,
                r.get::<Option<String>>(2)?,
                r.get::<Option<String>>(3)?,
                r.get::<i64>(4)?,
                r.get::<i64>(5)?,
                r.get::<Option<String>>(6)?,
            ))
        },
        )?;
        for (rowid, id, hostname, inv, first, last, storage) in rows {
            index.insert(rowid, hosts.len());
            hosts.push(HostHistory {
                id,
                hostname,
                inventory: inv
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default(),
                first_seen_ms: first,
                last_seen_ms: last,
                storage: storage.and_then(|s| serde_json::from_str(&s).ok()),
                ..Default::default()
            });
        }
    }
    let rows = conn.query_map(
        "SELECT agent, hour_ms, energy_j, usage_ms, cpu_weighted, net_bytes, active_ms, mem_used_max
         FROM energy_hourly WHERE hour_ms >= ?1 ORDER BY hour_ms",
        args![since],
        |r| {
        Ok((
            r.get::<i64>(0)?,
            HourStats {
                hour_ms: r.get(1)?,
                energy_j: r.get(2)?,
                usage_ms: r.get(3)?,
                cpu_weighted: r.get(4)?,
                net_bytes: r.get(5)?,
                active_ms: r.get(6)?,
                mem_used_max: r.get(7)?,
            },
        ))
    },
    )?;
    for (agent, h) in rows {
        if let Some(i) = index.get(&agent) {
            hosts[*i].hours.push(h);
        }
    }
    Ok(hosts)
}

/// (agent, kind).
type AgentKind = (String, String);

/// Newest nudge per (agent, kind), for rate limits; and the opt-outs.
pub fn nudge_state(
    conn: &dyn Db,
) -> Result<(HashMap<AgentKind, i64>, HashSet<AgentKind>), StoreError> {
    let mut last = HashMap::new();
    for (k, v) in conn.query_map(
        "SELECT agent_id, kind, max(created_ms) FROM nudges GROUP BY agent_id, kind",
        args![],
        |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)),
    )? {
        last.insert(k, v);
    }
    let out: HashSet<AgentKind> = conn
        .query_map("SELECT agent_id, kind FROM nudge_optout", args![], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .into_iter()
        .collect();
    Ok((last, out))
}

pub fn insert_nudges(conn: &dyn Db, nudges: &[NewNudge], now_ms: i64) -> Result<(), StoreError> {
    conn.transaction(|tx| {
        for n in nudges {
            tx.execute(
                "INSERT INTO nudges (id, agent_id, finding_id, kind, lang, title, body, action, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
                args![n.id, n.agent_id, n.finding_id, n.kind.as_str(), n.lang, n.text.title, n.text.body, n.text.action, now_ms],
            )?;
        }
        Ok(())
    })
}

/// A nudge as stored, with its delivery state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredNudge {
    pub id: String,
    pub agent_id: String,
    pub finding_id: Option<String>,
    pub kind: String,
    pub lang: String,
    pub title: String,
    pub body: String,
    pub action: String,
    pub created_ms: i64,
    pub sent_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    pub how: Option<String>,
    /// Filled by `pending`: whether the agent is online over MQTT.
    #[serde(skip)]
    pub mqtt_online: bool,
}

fn nudge_row(r: &crate::db::Row) -> Result<StoredNudge, DbError> {
    Ok(StoredNudge {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        finding_id: r.get(2)?,
        kind: r.get(3)?,
        lang: r.get(4)?,
        title: r.get(5)?,
        body: r.get(6)?,
        action: r.get(7)?,
        created_ms: r.get(8)?,
        sent_ms: r.get(9)?,
        delivered_ms: r.get(10)?,
        how: r.get(11)?,
        mqtt_online: r.get::<Option<bool>>(12)?.unwrap_or(false),
    })
}

const NUDGE_COLS: &str =
    "n.id, n.agent_id, n.finding_id, n.kind, n.lang, n.title, n.body, n.action,
    n.created_ms, n.sent_ms, n.delivered_ms, n.how";

/// Undelivered nudges of online agents, not sent since `resend_before_ms`.
pub fn pending(conn: &dyn Db, resend_before_ms: i64) -> Result<Vec<StoredNudge>, StoreError> {
    let sql = format!(
        "SELECT {NUDGE_COLS}, (a.online = 1 AND a.transport = 'mqtt')
         FROM nudges n JOIN agents a ON a.agent_id = n.agent_id
         WHERE n.delivered_ms IS NULL AND a.online = 1
           AND (n.sent_ms IS NULL OR n.sent_ms < ?1)
         ORDER BY n.created_ms"
    );
    Ok(conn.query_map(&sql, args![resend_before_ms], nudge_row)?)
}

pub fn mark_sent(conn: &dyn Db, id: &str, now_ms: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE nudges SET sent_ms = ?2 WHERE id = ?1",
        args![id, now_ms],
    )?;
    Ok(())
}

pub fn nudges_of(conn: &dyn Db, agent_id: &str) -> Result<Vec<StoredNudge>, StoreError> {
    Ok(conn.query_map(
        &format!(
            "SELECT {NUDGE_COLS}, NULL FROM nudges n WHERE n.agent_id = ?1 ORDER BY n.created_ms"
        ),
        args![agent_id],
        nudge_row,
    )?)
}

/// Opts a host out of a kind of nudge (`*`: all), or back in.
pub fn set_optout(conn: &dyn Db, agent_id: &str, kind: &str, out: bool) -> Result<(), StoreError> {
    if out {
        conn.execute(
            "INSERT INTO nudge_optout (agent_id, kind) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            args![agent_id, kind],
        )?;
    } else {
        conn.execute(
            "DELETE FROM nudge_optout WHERE agent_id = ?1 AND kind = ?2",
            args![agent_id, kind],
        )?;
    }
    Ok(())
}
