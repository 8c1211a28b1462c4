//! `sobre-collector bench-detect`: a detection pass over a synthetic fleet,
//! timed, with the process's peak memory. Figures go in BENCHMARKS.md.

use crate::detect::{DAY_MS, HOUR_MS};
use crate::store;
use rusqlite::params;
use std::path::Path;
use std::time::Instant;

/// Fills a store in `dir` with `hosts` × `days` of hourly roll-up (what
/// `days` of 1-minute samples per host become at ingest), runs one pass,
/// and returns a report line.
pub fn detect(
    dir: &Path,
    hosts: usize,
    days: i64,
    now_ms: i64,
) -> Result<String, store::StoreError> {
    // The fill is SQLite's own bulk path; the pass goes through the store.
    let mut conn = store::open(dir, false)?.into_inner();
    let fill = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut agent = tx.prepare(
            "INSERT INTO agents (agent_id, hostname, first_seen_ms, last_seen_ms, online, inventory)
             VALUES (?1, ?1, ?2, ?3, 1, ?4)",
        )?;
        let mut hour = tx.prepare(
            "INSERT INTO energy_hourly (hour_ms, agent, energy_j, measured_j, covered_ms, samples,
                cpu_weighted, cpu_max, net_bytes, active_ms, mem_used_max, usage_ms)
             VALUES (?1, ?2, ?3, 0, ?4, 60, ?5, ?6, ?7, ?8, ?9, ?4)",
        )?;
        let start = now_ms / HOUR_MS * HOUR_MS - days * DAY_MS;
        for i in 0..hosts {
            // A mix: a third servers (some idle), the rest workstations
            // (some left on at night), in 20 groups.
            let chassis = match i % 3 {
                0 => "server",
                1 => "desktop",
                _ => "laptop",
            };
            let inv = serde_json::json!({
                "chassis": chassis, "cpu_threads": 8, "mem_total_bytes": 16u64 << 30,
                "group": format!("g{}", i % 20), "hostname": format!("h{i}"),
            });
            agent.execute(params![format!("h{i:05}"), start, now_ms, inv.to_string()])?;
            let rowid = tx.last_insert_rowid();
            for h in 0..days * 24 {
                let t = start + h * HOUR_MS;
                let busy = (i % 7 != 0) && (h % 24 >= 8 && h % 24 < 18);
                let cpu = if busy { 35.0 } else { 3.0 };
                let active = if busy && chassis != "server" {
                    HOUR_MS
                } else {
                    0
                };
                hour.execute(params![
                    t,
                    rowid,
                    if busy { 180_000.0 } else { 72_000.0 },
                    HOUR_MS,
                    cpu * HOUR_MS as f64,
                    cpu,
                    if busy { 20_000_000 } else { 10_000 },
                    active,
                    4i64 << 30,
                ])?;
            }
        }
    }
    tx.commit()?;
    let fill_s = fill.elapsed().as_secs_f64();
    let settings = std::sync::Arc::new(crate::http::footprint_api::Settings {
        cfg: crate::footprint::FootprintConfig::default(),
        grid: crate::footprint::GridIntensity::flat(56.0),
    });
    let jobs = crate::jobs::Jobs::new(
        Box::new(crate::db::sqlite::Sqlite::new(conn)),
        crate::cluster::Cluster::single("bench".into()),
        crate::detect::DetectConfig::default(),
        crate::nudge::NudgeConfig::default(),
        settings,
        crate::ingest::routes::Routes::default(),
    );
    let t = Instant::now();
    let report = jobs.pass(now_ms)?;
    let pass_s = t.elapsed().as_secs_f64();
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_default();
    Ok(format!(
        "hosts={hosts} days={days} hourly_rows={} fill_s={fill_s:.1} pass_s={pass_s:.2} findings={} nudges={} peak_rss={hwm}",
        hosts as i64 * days * 24,
        report.findings,
        report.nudges
    ))
}
