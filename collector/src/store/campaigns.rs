//! Campaign rows: the campaigns, each host's latest count
//! (`campaign_hosts`) and the history of counts (`campaign_progress`) the
//! report's "over time" is drawn from.

use super::StoreError;
use crate::args;
use crate::campaign::{Campaign, CampaignError, Host, NewCampaign, Scope, State};
use crate::db::{Db, DbError, OptionalExt};
use sobre_proto::v1::CampaignProgress;

const COLS: &str = "id, name, starts_ms, ends_ms, scope, factor, state, rescan_interval_s,
    created_ms, started_ms, ended_ms";

fn row(r: &crate::db::Row) -> Result<Campaign, DbError> {
    let scope: String = r.get(4)?;
    let state: String = r.get(6)?;
    Ok(Campaign {
        id: r.get(0)?,
        name: r.get(1)?,
        starts_at_ms: r.get(2)?,
        ends_at_ms: r.get(3)?,
        // Written by `create` from a Scope: always valid JSON.
        scope: serde_json::from_str(&scope).unwrap_or_default(),
        factor: r.get(5)?,
        state: State::parse(&state).unwrap_or(State::Archived),
        rescan_interval_s: r.get(7)?,
        created_ms: r.get(8)?,
        started_ms: r.get(9)?,
        ended_ms: r.get(10)?,
    })
}

pub fn create(conn: &dyn Db, c: &NewCampaign, now_ms: i64) -> Result<Campaign, CampaignError> {
    c.validate()?;
    let scope = serde_json::to_string(&c.scope).unwrap_or_else(|_| "{}".into());
    let n = conn.execute(
        "INSERT INTO campaigns (id, name, starts_ms, ends_ms, scope, factor, state,
            rescan_interval_s, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'planned', ?7, ?8)
         ON CONFLICT (id) DO NOTHING",
        args![
            c.id,
            c.name.trim(),
            c.starts_at_ms,
            c.ends_at_ms,
            scope,
            c.factor,
            c.rescan_interval_s,
            now_ms
        ],
    )?;
    if n == 0 {
        return Err(CampaignError::Exists(c.id.clone()));
    }
    get(conn, &c.id)
}

pub fn get(conn: &dyn Db, id: &str) -> Result<Campaign, CampaignError> {
    conn.query_row(
        &format!("SELECT {COLS} FROM campaigns WHERE id = ?1"),
        args![id],
        row,
    )
    .optional()?
    .ok_or_else(|| CampaignError::NotFound(id.into()))
}

pub fn list(conn: &dyn Db) -> Result<Vec<Campaign>, StoreError> {
    Ok(conn.query_map(
        &format!("SELECT {COLS} FROM campaigns ORDER BY starts_ms DESC, id"),
        args![],
        row,
    )?)
}

/// Moves a campaign along its lifecycle; `start` and `end` also move the
/// dates to now when they come early.
pub fn transition(
    conn: &dyn Db,
    id: &str,
    to: State,
    now_ms: i64,
) -> Result<Campaign, CampaignError> {
    let c = get(conn, id)?;
    let (ok, action) = match to {
        State::Running => (c.state == State::Planned, "start"),
        State::Ended => (c.state == State::Running, "end"),
        State::Archived => (c.state == State::Ended, "archive"),
        State::Planned => (false, "re-plan"),
    };
    if !ok {
        return Err(CampaignError::BadTransition {
            id: id.into(),
            state: c.state.as_str(),
            action,
        });
    }
    match to {
        State::Running => conn.execute(
            "UPDATE campaigns SET state = 'running', started_ms = ?2,
                starts_ms = CASE WHEN starts_ms < ?2 THEN starts_ms ELSE ?2 END WHERE id = ?1",
            args![id, now_ms],
        )?,
        State::Ended => conn.execute(
            "UPDATE campaigns SET state = 'ended', ended_ms = ?2,
                ends_ms = CASE WHEN ends_ms < ?2 THEN ends_ms ELSE ?2 END WHERE id = ?1",
            args![id, now_ms],
        )?,
        _ => conn.execute(
            "UPDATE campaigns SET state = ?2 WHERE id = ?1",
            args![id, to.as_str()],
        )?,
    };
    tracing::info!(campaign = id, state = to.as_str(), "campaign state changed");
    get(conn, id)
}

/// Starts planned campaigns whose start has come and ends running ones
/// whose end has; returns what changed.
pub fn advance(conn: &dyn Db, now_ms: i64) -> Result<Vec<Campaign>, CampaignError> {
    let mut changed = Vec::new();
    for c in list(conn)? {
        let to = match c.state {
            State::Planned if c.starts_at_ms <= now_ms => State::Running,
            State::Running if c.ends_at_ms <= now_ms => State::Ended,
            _ => continue,
        };
        changed.push(transition(conn, &c.id, to, now_ms)?);
    }
    Ok(changed)
}

const HOST_COLS: &str = "SELECT agent_id, hostname, grp, site, online, transport FROM agents";

fn host_row(r: &crate::db::Row) -> Result<Host, DbError> {
    Ok(Host {
        agent_id: r.get(0)?,
        hostname: r.get(1)?,
        group: r.get(2)?,
        site: r.get(3)?,
        online: r.get::<i64>(4)? == 1,
        mqtt: r.get::<Option<String>>(5)?.as_deref() == Some("mqtt"),
    })
}

/// Every known host with its labels and presence.
pub fn hosts(conn: &dyn Db) -> Result<Vec<Host>, StoreError> {
    Ok(conn.query_map(&format!("{HOST_COLS} ORDER BY agent_id"), args![], host_row)?)
}

/// One host's standing in a campaign.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostRow {
    pub agent_id: String,
    pub command_sent_ms: Option<i64>,
    pub baseline_ms: Option<i64>,
    pub is_final: bool,
    pub error: Option<String>,
    pub progress: Option<CampaignProgress>,
}

pub fn host_rows(conn: &dyn Db, campaign: &str) -> Result<Vec<HostRow>, StoreError> {
    Ok(conn.query_map(
        "SELECT agent_id, command_sent_ms, baseline_ms, final, error, progress
         FROM campaign_hosts WHERE campaign_id = ?1 ORDER BY agent_id",
        args![campaign],
        |r| {
            let progress: Option<String> = r.get(5)?;
            Ok(HostRow {
                agent_id: r.get(0)?,
                command_sent_ms: r.get(1)?,
                baseline_ms: r.get(2)?,
                is_final: r.get(3)?,
                error: r.get(4)?,
                progress: progress.and_then(|p| serde_json::from_str(&p).ok()),
            })
        },
    )?)
}

pub fn mark_command_sent(
    conn: &dyn Db,
    campaign: &str,
    agent_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO campaign_hosts (campaign_id, agent_id, command_sent_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (campaign_id, agent_id) DO UPDATE SET command_sent_ms = ?3",
        args![campaign, agent_id, now_ms],
    )?;
    Ok(())
}

/// Stores an agent's count (in the ingest writer's transaction). Counts
/// for an unknown campaign, or from a host outside its scope, are dropped
/// with a warning: a host only counts for a campaign it was asked to.
/// The latest count by `counted_at_ms` wins; a final one is never replaced
/// by a non-final one.
pub fn record_progress(tx: &dyn Db, agent_id: &str, p: &CampaignProgress) -> Result<(), DbError> {
    let scope: Option<String> = tx
        .query_row(
            "SELECT scope FROM campaigns WHERE id = ?1",
            args![p.campaign_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(scope) = scope else {
        tracing::warn!(agent = agent_id, campaign = %p.campaign_id, "count for an unknown campaign dropped");
        return Ok(());
    };
    let scope: Scope = serde_json::from_str(&scope).unwrap_or_default();
    let host = tx
        .query_row(
            &format!("{HOST_COLS} WHERE agent_id = ?1"),
            args![agent_id],
            host_row,
        )
        .optional()?;
    if !host.as_ref().is_some_and(|h| scope.contains(h)) {
        tracing::warn!(agent = agent_id, campaign = %p.campaign_id, "count from a host outside the campaign's scope dropped");
        return Ok(());
    }
    let json = serde_json::to_string(p).unwrap_or_default();
    if !p.error.is_empty() && p.baseline_at_ms == 0 {
        tx.execute(
            "INSERT INTO campaign_hosts (campaign_id, agent_id, error, final) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (campaign_id, agent_id) DO UPDATE SET error = ?3,
                final = CASE WHEN campaign_hosts.final > ?4 THEN campaign_hosts.final ELSE ?4 END",
            args![p.campaign_id, agent_id, p.error, p.r#final],
        )?;
        return Ok(());
    }
    tx.execute(
        "INSERT INTO campaign_hosts (campaign_id, agent_id, baseline_ms, counted_ms, final, progress)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (campaign_id, agent_id) DO UPDATE SET
            baseline_ms = coalesce(campaign_hosts.baseline_ms, ?3), counted_ms = ?4,
            final = ?5, progress = ?6, error = NULL
         WHERE coalesce(campaign_hosts.counted_ms, 0) <= ?4
            AND (campaign_hosts.final = 0 OR ?5 = 1)",
        args![
            p.campaign_id,
            agent_id,
            p.baseline_at_ms,
            p.counted_at_ms,
            p.r#final,
            json
        ],
    )?;
    tx.execute(
        "INSERT INTO campaign_progress (campaign_id, agent_id, counted_ms, files_deleted, bytes_deleted)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        args![
            p.campaign_id,
            agent_id,
            p.counted_at_ms,
            p.files_deleted as i64,
            p.bytes_deleted as i64
        ],
    )?;
    Ok(())
}

/// (agent, counted_ms, files_deleted, bytes_deleted) in time order.
pub fn history(conn: &dyn Db, campaign: &str) -> Result<Vec<(String, i64, u64, u64)>, StoreError> {
    Ok(conn.query_map(
        "SELECT agent_id, counted_ms, files_deleted, bytes_deleted FROM campaign_progress
         WHERE campaign_id = ?1 ORDER BY counted_ms, rowid",
        args![campaign],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<i64>(2)? as u64,
                r.get::<i64>(3)? as u64,
            ))
        },
    )?)
}

/// Queues a campaign nudge once per (campaign, host, when); delivered by
/// the nudge dispatcher like any other, opt-outs of kind `campaign` (or
/// `*`) respected. Returns whether it was new.
#[allow(clippy::too_many_arguments)]
pub fn queue_nudge(
    conn: &dyn Db,
    id: &str,
    agent_id: &str,
    lang: &str,
    title: &str,
    body: &str,
    action: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT INTO nudges (id, agent_id, finding_id, kind, lang, title, body, action, created_ms)
         SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), NULL, 'campaign', CAST(?3 AS TEXT),
            CAST(?4 AS TEXT), CAST(?5 AS TEXT), CAST(?6 AS TEXT), CAST(?7 AS BIGINT)
         WHERE NOT EXISTS (SELECT 1 FROM nudge_optout WHERE agent_id = ?2 AND kind IN ('campaign', '*'))
         ON CONFLICT (id) DO NOTHING",
        args![id, agent_id, lang, title, body, action, now_ms],
    )?;
    Ok(n > 0)
}

/// Ids of the campaign nudges already queued (sent or not).
pub fn campaign_nudge_ids(conn: &dyn Db) -> Result<std::collections::HashSet<String>, StoreError> {
    Ok(conn
        .query_map(
            "SELECT id FROM nudges WHERE kind = 'campaign'",
            args![],
            |r| r.get(0),
        )?
        .into_iter()
        .collect())
}

/// Duplicate bytes (reclaimable) of a host's latest storage summary.
pub fn duplicate_bytes(conn: &dyn Db, agent_id: &str) -> Result<u64, StoreError> {
    let storage: Option<String> = conn
        .query_row(
            "SELECT storage FROM agents WHERE agent_id = ?1",
            args![agent_id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let Some(summary) = storage.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    else {
        return Ok(0);
    };
    let bytes = summary["categories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["category"] == "duplicates")
        .filter_map(|c| c["bytes"].as_u64())
        .sum();
    Ok(bytes)
}
