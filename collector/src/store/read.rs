//! Read side of the store, for the HTTP API. Runs queries on a separate
//! read-only connection so reads never wait for the writer.

use super::{Conn, StoreError};
use crate::args;
use crate::db::{Db, DbError, OptionalExt, Row};
use crate::footprint::compute::{Footprint, HOUR_MS, HostInput, HourRow, Report, Window};
use crate::footprint::{FootprintConfig, GridIntensity};
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// One line of `GET /api/v1/agents`.
#[derive(Debug, Serialize, PartialEq)]
pub struct AgentSummary {
    pub id: String,
    pub hostname: Option<String>,
    pub online: bool,
    pub transport: Option<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// `GET /api/v1/agents/{id}`: the summary, the inventory and what the
/// agent itself costs.
#[derive(Debug, Serialize)]
pub struct AgentDetail {
    #[serde(flatten)]
    pub summary: AgentSummary,
    pub inventory: Option<serde_json::Value>,
    pub footprint: Option<serde_json::Value>,
}

/// One usage sample as served by `GET /api/v1/agents/{id}/samples`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Sample {
    pub seq: u64,
    pub sent_at_ms: i64,
    pub received_at_ms: i64,
    pub interval_ms: Option<i64>,
    pub cpu_percent: Option<f64>,
    pub mem_total_bytes: Option<i64>,
    pub mem_available_bytes: Option<i64>,
    pub swap_total_bytes: Option<i64>,
    pub swap_used_bytes: Option<i64>,
    pub disk_read_bytes: Option<i64>,
    pub disk_written_bytes: Option<i64>,
    pub net_rx_bytes: Option<i64>,
    pub net_tx_bytes: Option<i64>,
    pub load1: Option<f64>,
    pub load5: Option<f64>,
    pub load15: Option<f64>,
    pub uptime_s: Option<i64>,
    pub user_sessions: Option<i64>,
    pub input_idle_s: Option<i64>,
    pub user_active: Option<bool>,
    pub agent_cpu_seconds: Option<f64>,
    pub agent_rss_bytes: Option<i64>,
    pub agent_bytes_sent: Option<i64>,
    /// Mean power over the sample's interval, the energy over it, and
    /// where they come from: "rapl", "battery" or "model".
    pub power_w: Option<f64>,
    pub energy_j: Option<f64>,
    pub power_source: Option<String>,
}

/// Clocks of agents and collector may disagree; a sample sent at `t` is
/// looked for among those received from `t - SKEW_MS` on, which keeps the
/// query on the arrival-time index.
const SKEW_MS: i64 = 10 * 60 * 1000;

#[derive(Clone)]
pub struct Reader {
    conn: Arc<Mutex<Conn>>,
}

impl Reader {
    pub fn new(conn: Conn) -> Reader {
        Reader {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T, DbError>) -> Result<T, StoreError> {
        // A panic while holding the lock leaves the connection usable.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(conn.as_ref())?)
    }

    pub fn agents(&self) -> Result<Vec<AgentSummary>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT agent_id, hostname, online, transport, first_seen_ms, last_seen_ms
                 FROM agents ORDER BY agent_id",
                args![],
                summary,
            )
        })
    }

    pub fn agent(&self, id: &str) -> Result<Option<AgentDetail>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT agent_id, hostname, online, transport, first_seen_ms, last_seen_ms,
                        inventory, footprint
                 FROM agents WHERE agent_id = ?1",
                args![id],
                |r| {
                    let json = |i| -> Result<Option<serde_json::Value>, DbError> {
                        Ok(r.get::<Option<String>>(i)?
                            .and_then(|s| serde_json::from_str(&s).ok()))
                    };
                    Ok(AgentDetail {
                        summary: summary(r)?,
                        inventory: json(6)?,
                        footprint: json(7)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Samples of one agent sent at or after `since_ms`, oldest first, at
    /// most `limit`. `None` when the agent is unknown.
    pub fn samples(
        &self,
        id: &str,
        since_ms: i64,
        limit: u32,
    ) -> Result<Option<Vec<Sample>>, StoreError> {
        self.with(|c| {
            let Some(rowid) = c
                .query_row(
                    "SELECT id FROM agents WHERE agent_id = ?1",
                    args![id],
                    |r| r.get::<i64>(0),
                )
                .optional()?
            else {
                return Ok(None);
            };
            c.query_map(
                "SELECT seq, sent_ms, received_ms, interval_ms, cpu_percent, mem_total,
                        mem_available, swap_total, swap_used, disk_read, disk_written, net_rx,
                        net_tx, load1, load5, load15, uptime_s, user_sessions, input_idle_s,
                        user_active, agent_cpu_s, agent_rss, agent_sent, power_w, energy_j,
                        power_source
                 FROM samples
                 WHERE received_ms >= ?1 AND agent = ?2 AND sent_ms >= ?3
                 ORDER BY sent_ms, seq LIMIT ?4",
                args![since_ms.saturating_sub(SKEW_MS), rowid, since_ms, limit],
                |r| {
                    Ok(Sample {
                        seq: r.get::<i64>(0)? as u64,
                        sent_at_ms: r.get(1)?,
                        received_at_ms: r.get(2)?,
                        interval_ms: r.get(3)?,
                        cpu_percent: r.get(4)?,
                        mem_total_bytes: r.get(5)?,
                        mem_available_bytes: r.get(6)?,
                        swap_total_bytes: r.get(7)?,
                        swap_used_bytes: r.get(8)?,
                        disk_read_bytes: r.get(9)?,
                        disk_written_bytes: r.get(10)?,
                        net_rx_bytes: r.get(11)?,
                        net_tx_bytes: r.get(12)?,
                        load1: r.get(13)?,
                        load5: r.get(14)?,
                        load15: r.get(15)?,
                        uptime_s: r.get(16)?,
                        user_sessions: r.get(17)?,
                        input_idle_s: r.get(18)?,
                        user_active: r.get(19)?,
                        agent_cpu_seconds: r.get(20)?,
                        agent_rss_bytes: r.get(21)?,
                        agent_bytes_sent: r.get(22)?,
                        power_w: r.get(23)?,
                        energy_j: r.get(24)?,
                        power_source: r.get(25)?,
                    })
                },
            )
            .map(Some)
        })
    }
}

impl Reader {
    /// The latest storage summary of one agent: `None` if the agent is
    /// unknown, `Some(None)` if it has not sent one yet.
    pub fn storage(&self, id: &str) -> Result<Option<Option<serde_json::Value>>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT storage FROM agents WHERE agent_id = ?1",
                args![id],
                |r| {
                    let s: Option<String> = r.get(0)?;
                    Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
                },
            )
            .optional()
        })
    }

    /// Every agent's latest storage summary, with its group.
    pub fn storage_fleet(
        &self,
        group: Option<&str>,
    ) -> Result<Vec<crate::storage::HostStorage>, StoreError> {
        self.with(|c| {
            let rows = c.query_map(
                "SELECT agent_id, grp, storage
                 FROM agents WHERE storage IS NOT NULL ORDER BY agent_id",
                args![],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<String>(2)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for (agent_id, g, json) in rows {
                if group.is_some_and(|want| want != g) {
                    continue;
                }
                if let Ok(summary) = serde_json::from_str(&json) {
                    out.push(crate::storage::HostStorage {
                        agent_id,
                        group: g,
                        summary,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Hosts and their hourly energy over `[from_ms, to_ms)`, for the
    /// footprint. `host` and `group` narrow the hosts. Every row in memory:
    /// for short periods; [`Reader::footprint`] streams them.
    pub fn footprint_inputs(
        &self,
        from_ms: i64,
        to_ms: i64,
        host: Option<&str>,
        group: Option<&str>,
    ) -> Result<(Vec<HostInput>, Vec<HourRow>), StoreError> {
        let hosts = self.footprint_hosts(host, group)?;
        let mut hours = Vec::new();
        self.with(|c| each_energy_hour(c, from_ms, to_ms, &mut |h| hours.push(h)))?;
        Ok((hosts, hours))
    }

    /// The hosts a footprint covers, with their inventories.
    pub fn footprint_hosts(
        &self,
        host: Option<&str>,
        group: Option<&str>,
    ) -> Result<Vec<HostInput>, StoreError> {
        self.with(|c| {
            let hosts: Vec<HostInput> = c.query_map(
                "SELECT agent_id, hostname, first_seen_ms, inventory FROM agents ORDER BY agent_id",
                args![],
                |r| {
                    let inv: Option<String> = r.get(3)?;
                    Ok(HostInput {
                        id: r.get(0)?,
                        hostname: r.get(1)?,
                        first_seen_ms: r.get(2)?,
                        inventory: inv.and_then(|s| serde_json::from_str(&s).ok()),
                    })
                },
            )?;
            Ok(hosts
                .into_iter()
                .filter(|h| host.is_none_or(|id| h.id == id))
                .filter(|h| {
                    group.is_none_or(|g| {
                        h.inventory.as_ref().map(|i| i.group.as_str()).unwrap_or("") == g
                    })
                })
                .collect())
        })
    }

    /// The footprint of the hosts `host`/`group` select over `w`, the hourly
    /// rows streamed from the store one at a time: memory is one entry per
    /// host and per time step, never one per row (issue #21: a year of a
    /// large fleet is tens of millions of rows).
    pub fn footprint(
        &self,
        host: Option<&str>,
        group: Option<&str>,
        cfg: &FootprintConfig,
        grid: &GridIntensity,
        w: Window,
    ) -> Result<Report, StoreError> {
        let hosts = self.footprint_hosts(host, group)?;
        let mut f = Footprint::new(cfg, grid, &hosts, w);
        self.with(|c| each_energy_hour(c, w.from_ms, w.to_ms, &mut |h| f.add(&h)))?;
        Ok(f.finish())
    }
}

/// Every `energy_hourly` row that may overlap `[from_ms, to_ms)`.
fn each_energy_hour(
    c: &dyn Db,
    from_ms: i64,
    to_ms: i64,
    f: &mut dyn FnMut(HourRow),
) -> Result<(), DbError> {
    c.each(
        "SELECT a.agent_id, e.hour_ms, e.energy_j, e.measured_j, e.covered_ms
         FROM energy_hourly e JOIN agents a ON a.id = e.agent
         WHERE e.hour_ms >= ?1 AND e.hour_ms < ?2",
        args![from_ms.saturating_sub(HOUR_MS), to_ms],
        &mut |r| {
            f(HourRow {
                agent_id: r.get(0)?,
                hour_ms: r.get(1)?,
                energy_j: r.get(2)?,
                measured_j: r.get(3)?,
                covered_ms: r.get(4)?,
            });
            Ok(())
        },
    )
}

fn summary(r: &Row) -> Result<AgentSummary, DbError> {
    Ok(AgentSummary {
        id: r.get(0)?,
        hostname: r.get(1)?,
        online: r.get(2)?,
        transport: r.get(3)?,
        first_seen_ms: r.get(4)?,
        last_seen_ms: r.get(5)?,
    })
}
