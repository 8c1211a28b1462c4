//! Periodic work: detection passes (findings and the nudges they call
//! for) and nudge delivery. Runs on its own store connection; SQLite
//! serialises its short transactions with the ingest writer's. In a
//! cluster the work runs on the leader (`cluster.rs`), except delivery
//! over gRPC, which only the collector holding the agent's stream can do.

use crate::cluster::Cluster;
use crate::db::Db;
use crate::detect::{self, DetectConfig};
use crate::footprint::compute::{HostInput, Window, compute, pue_for};
use crate::http::footprint_api::Settings;
use crate::ingest::routes::Routes;
use crate::nudge::{self, NudgeConfig};
use crate::store::Conn;
use crate::store::{StoreError, findings};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Jobs {
    conn: Mutex<Conn>,
    pub cluster: Cluster,
    pub detect: DetectConfig,
    pub nudge: NudgeConfig,
    footprint: Arc<Settings>,
    pub routes: Routes,
}

/// What one detection pass did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PassReport {
    pub findings: usize,
    pub opened: usize,
    pub resolved: usize,
    pub nudges: usize,
    pub hosts: usize,
    pub millis: u64,
}

impl Jobs {
    pub fn new(
        conn: Conn,
        cluster: Cluster,
        detect: DetectConfig,
        nudge: NudgeConfig,
        footprint: Arc<Settings>,
        routes: Routes,
    ) -> Self {
        Jobs {
            conn: Mutex::new(conn),
            cluster,
            detect,
            nudge,
            footprint,
            routes,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs every detector, updates findings, queues nudges. Blocking.
    pub fn pass(&self, now_ms: i64) -> Result<PassReport, StoreError> {
        let start = std::time::Instant::now();
        let conn = self.conn();
        let conn: &dyn Db = conn.as_ref();
        let days = self
            .detect
            .idle
            .window_days
            .max(self.detect.consolidation.window_days)
            .max(7)
            + 2;
        let mut hosts = findings::histories(conn, now_ms, days)?;
        let f = &self.footprint;
        // Lifetimes from the footprint's device model.
        let inputs: Vec<HostInput> = hosts
            .iter()
            .map(|h| HostInput {
                id: h.id.clone(),
                hostname: h.hostname.clone(),
                first_seen_ms: h.first_seen_ms,
                inventory: Some(h.inventory.clone()),
            })
            .collect();
        let report = compute(
            &f.cfg,
            &f.grid,
            &inputs,
            &[],
            Window {
                from_ms: now_ms - 3_600_000,
                to_ms: now_ms,
                step_ms: None,
                now_ms,
            },
        );
        for (h, fp) in hosts.iter_mut().zip(&report.hosts) {
            h.pue = pue_for(&f.cfg, &h.inventory.group, &h.inventory.chassis);
            h.grid_g_per_kwh = f.grid.at(now_ms);
            if let Some(d) = fp.devices.first() {
                h.past_lifetime = d.past_lifetime;
                h.life_extension_kg_per_year = d.life_extension_kg_per_year;
            }
        }
        let storage: Vec<crate::storage::HostStorage> = hosts
            .iter()
            .filter_map(|h| {
                h.storage
                    .clone()
                    .map(|summary| crate::storage::HostStorage {
                        agent_id: h.id.clone(),
                        group: h.inventory.group.clone(),
                        summary,
                    })
            })
            .collect();
        let redundant = crate::storage::fleet(&storage, 1000).redundant;
        let found = detect::detect(&self.detect, &hosts, &redundant, now_ms);
        let (opened, resolved) = findings::apply_pass(conn, &found, now_ms)?;
        // Nudges only for findings that are open (not acknowledged or
        // snoozed by the ops team).
        let open_ids: std::collections::HashSet<String> = findings::list(
            conn,
            &findings::FindingFilter {
                state: Some("open".into()),
                ..Default::default()
            },
        )?
        .into_iter()
        .map(|f| f.id)
        .collect();
        let open: Vec<_> = found
            .iter()
            .filter(|f| open_ids.contains(&f.id))
            .cloned()
            .collect();
        let (last, optout) = findings::nudge_state(conn)?;
        let planned = nudge::plan(&self.nudge, &open, &last, &optout, now_ms);
        findings::insert_nudges(conn, &planned, now_ms)?;
        if !planned.is_empty() {
            self.routes.online.notify_one();
        }
        let r = PassReport {
            findings: found.len(),
            opened,
            resolved,
            nudges: planned.len(),
            hosts: hosts.len(),
            millis: start.elapsed().as_millis() as u64,
        };
        tracing::info!(
            findings = r.findings,
            opened,
            resolved,
            nudges = r.nudges,
            hosts = r.hosts,
            ms = r.millis,
            node = %self.cluster.node,
            "detection pass"
        );
        Ok(r)
    }

    /// Campaign commands and nudges, then due nudges. Blocking. Off the
    /// leader, only what goes to this collector's own gRPC streams.
    pub fn dispatch(&self, now_ms: i64) -> Result<usize, StoreError> {
        let conn = self.conn();
        let conn: &dyn Db = conn.as_ref();
        let lead = self.cluster.is_leader();
        let routes = self.routes.gated(lead);
        if let Err(e) = crate::campaign::dispatch::pass(
            conn,
            &routes,
            lead,
            &self.nudge.lang,
            self.nudge.resend_after_s * 1000,
            now_ms,
        ) {
            tracing::error!(error = %e, "campaign dispatch failed; retrying at the next interval");
        }
        nudge::dispatch::dispatch(
            conn,
            &self.nudge,
            self.detect.utc_offset_hours,
            &routes,
            now_ms,
        )
    }

    /// Runs `f` on the jobs' connection, for campaign work.
    pub fn with_campaigns<T>(
        &self,
        f: impl FnOnce(&dyn Db) -> Result<T, crate::campaign::CampaignError>,
    ) -> Result<T, crate::campaign::CampaignError> {
        f(self.conn().as_ref())
    }

    /// A campaign's report, the CCF factors computed with this collector's
    /// grid intensity now and its server-room PUE.
    pub fn campaign_report(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<crate::campaign::report::Report, crate::campaign::CampaignError> {
        let f = &self.footprint;
        crate::campaign::report::build(
            self.conn().as_ref(),
            id,
            f.grid.at(now_ms),
            f.cfg.pue_server,
            now_ms,
        )
    }

    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(self.conn().as_ref())
    }
}

/// Detection every `detect.interval_s`, first right after start.
pub async fn detect_loop(jobs: Arc<Jobs>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(jobs.detect.interval_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            _ = jobs.cluster.took_lead.notified() => {}
        }
        if !jobs.cluster.is_leader() {
            continue;
        }
        let j = jobs.clone();
        match tokio::task::spawn_blocking(move || j.pass(crate::ingest::now_ms())).await {
            Ok(Err(e)) => {
                tracing::error!(error = %e, "detection pass failed; next one at the next interval")
            }
            Err(e) => tracing::error!(error = %e, "detection pass panicked"),
            Ok(Ok(_)) => {}
        }
    }
}

/// Nudge delivery: on a timer, and as soon as an agent comes online.
pub async fn dispatch_loop(jobs: Arc<Jobs>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(jobs.nudge.dispatch_interval_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            _ = jobs.routes.online.notified() => {}
        }
        let j = jobs.clone();
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || j.dispatch(crate::ingest::now_ms())).await
        {
            tracing::error!(error = %e, "nudge delivery failed; retrying at the next interval");
        }
    }
}
