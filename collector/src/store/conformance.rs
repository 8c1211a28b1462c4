//! The store conformance suite: the same store operations, run on any
//! engine behind [`crate::db::Db`], with the results each must give. The
//! collector's unit tests run it on SQLite; the e2e tests run it on a real
//! PostgreSQL (`tests/e2e/store.rs`). A check that fails says which, and
//! what it got.
//!
//! [`run`] makes a fresh, empty store for each check; within a check,
//! every call of `open` is a new connection to that same store (a second
//! collector, a reader).

use super::{Conn, Reader, Writer, campaigns, findings, lease};
use crate::args;
use crate::campaign::{NewCampaign, Scope, State};
use crate::db::{Db, Engine};
use crate::ingest::credentials::Credentials;
use crate::ingest::{Event, Reply};
use crate::metrics::Metrics;
use sobre_proto::v1::envelope::Body;
use sobre_proto::v1::{
    CampaignProgress, Envelope, Inventory, PowerSource, StorageSummary, UsageReport,
};
use std::sync::Arc;

/// A failed check: its name and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("store conformance check {check:?} failed: {what}")]
pub struct Failure {
    pub check: &'static str,
    pub what: String,
}

type Check = fn(&dyn Fn() -> Conn) -> Result<(), String>;

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("migrations_are_idempotent", migrations_are_idempotent),
    ("writer_stores_once_and_acks_every_copy", writer_dedups),
    ("two_writers_store_each_seq_once", two_writers),
    ("agents_inventory_storage_presence", agents),
    ("energy_rolls_up_by_hour", rollup),
    ("findings_lifecycle_and_nudges", findings_and_nudges),
    ("campaign_lifecycle_progress_report", campaign),
    ("credentials_enrol_revoke_reload", credentials),
    ("leases_one_holder_expiry_release", leases),
    ("sink_reads_samples_in_order", sink_source),
];

/// Opens connections to one store.
pub type Opener = Box<dyn Fn() -> Conn>;

/// Runs every check, each on a store `fresh` makes; the names of those
/// that ran, or the first failure.
pub fn run(fresh: &mut dyn FnMut() -> Opener) -> Result<Vec<&'static str>, Failure> {
    let mut ran = Vec::new();
    for (name, check) in CHECKS {
        let open = fresh();
        check(&*open).map_err(|what| Failure { check: name, what })?;
        ran.push(*name);
    }
    Ok(ran)
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

fn envelope(agent: &str, seq: u64, body: Body) -> Event {
    Event::Envelope {
        env: Envelope {
            agent_id: agent.into(),
            seq,
            version: 1,
            spool_floor: 1,
            sent_at_ms: 1_000_000 + seq as i64 * 60_000,
            body: Some(body),
            ..Default::default()
        },
        reply: Reply::Mqtt,
        received_ms: 1_000_000 + seq as i64 * 60_000,
    }
}

fn usage(agent: &str, seq: u64) -> Event {
    envelope(
        agent,
        seq,
        Body::Usage(UsageReport {
            interval_ms: 60_000,
            cpu_percent: 20.0,
            power_w: 30.0,
            energy_j: 1_800.0,
            power_source: PowerSource::Model as i32,
            mem_total_bytes: 8 << 30,
            mem_available_bytes: 4 << 30,
            user_active: true,
            ..Default::default()
        }),
    )
}

fn writer(conn: Conn) -> Result<Writer, String> {
    Writer::new(conn, Arc::new(Metrics::default()), 100).map_err(e)
}

fn seqs(conn: Conn, agent: &str) -> Result<Vec<u64>, String> {
    let r = Reader::new(conn);
    Ok(r.samples(agent, 0, 10_000)
        .map_err(e)?
        .unwrap_or_default()
        .iter()
        .map(|s| s.seq)
        .collect())
}

fn migrations_are_idempotent(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let c = open();
    let n: i64 = c
        .query_row("SELECT count(*) FROM agents", args![], |r| r.get(0))
        .map_err(e)?;
    ensure!(n == 0, "a fresh store has {n} agents");
    Ok(())
}

fn writer_dedups(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let mut w = writer(open())?;
    let acks = w
        .commit(&[usage("a", 1), usage("a", 2), usage("b", 1)])
        .map_err(e)?;
    ensure!(
        acks.iter().map(|a| a.seqs.len()).sum::<usize>() == 3,
        "acks {acks:?}"
    );
    let acks = w
        .commit(&[usage("a", 2), usage("a", 1), usage("a", 3)])
        .map_err(e)?;
    ensure!(
        acks.len() == 1 && acks[0].seqs == vec![2, 1, 3],
        "duplicates must be acked again: {acks:?}"
    );
    let got = seqs(open(), "a")?;
    ensure!(got == vec![1, 2, 3], "stored seqs of a: {got:?}");
    // A writer that starts later (a restart) still knows what is stored.
    let mut w2 = writer(open())?;
    w2.commit(&[usage("a", 3), usage("a", 4)]).map_err(e)?;
    let got = seqs(open(), "a")?;
    ensure!(got == vec![1, 2, 3, 4], "after a restart: {got:?}");
    Ok(())
}

/// Two collectors on one store receive overlapping redeliveries of the
/// same agent: each seq is stored once. Only PostgreSQL is shared by
/// several writers; SQLite has one collector, whose writer is checked
/// above.
fn two_writers(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let first = open();
    if first.engine() == Engine::Sqlite {
        return Ok(());
    }
    let mut a = writer(first)?;
    let mut b = writer(open())?;
    a.commit(&[usage("x", 1), usage("x", 2)]).map_err(e)?;
    // B has never seen x: it must learn what A stored from the store.
    let acks = b
        .commit(&[usage("x", 2), usage("x", 3), usage("x", 1)])
        .map_err(e)?;
    ensure!(acks[0].seqs == vec![2, 3, 1], "B acks every copy: {acks:?}");
    a.commit(&[usage("x", 3), usage("x", 4)]).map_err(e)?;
    let got = seqs(open(), "x")?;
    ensure!(
        got == vec![1, 2, 3, 4],
        "each seq once across writers: {got:?}"
    );
    // Concurrent batches from two threads, interleaved seqs, every one
    // sent to both: still once each.
    let (conn_a, conn_b) = (open(), open());
    let run = |conn: Conn| {
        std::thread::spawn(move || -> Result<(), String> {
            let mut w = writer(conn)?;
            for chunk in (10..210).collect::<Vec<u64>>().chunks(20) {
                let batch: Vec<Event> = chunk.iter().map(|s| usage("y", *s)).collect();
                w.commit(&batch).map_err(e)?;
            }
            Ok(())
        })
    };
    let (ta, tb) = (run(conn_a), run(conn_b));
    ta.join()
        .map_err(|_| "writer thread panicked".to_string())??;
    tb.join()
        .map_err(|_| "writer thread panicked".to_string())??;
    let got = seqs(open(), "y")?;
    ensure!(
        got == (10..210).collect::<Vec<_>>(),
        "concurrent writers: {} rows, first {:?}",
        got.len(),
        &got[..got.len().min(5)]
    );
    Ok(())
}

fn agents(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let mut w = writer(open())?;
    let inv = Body::Inventory(Inventory {
        hostname: "mairie-01".into(),
        cpu_threads: 8,
        group: "dsi".into(),
        site: "hotel-de-ville".into(),
        ..Default::default()
    });
    let storage = |finished, files| {
        Body::Storage(StorageSummary {
            finished_at_ms: finished,
            files,
            ..Default::default()
        })
    };
    w.commit(&[envelope("a", 1, inv), envelope("a", 3, storage(2_000, 20))])
        .map_err(e)?;
    // An older scan that arrives later does not replace the newer one.
    w.commit(&[envelope("a", 2, storage(1_000, 10))])
        .map_err(e)?;
    w.commit(&[Event::Presence {
        agent_id: "b".into(),
        online: true,
        transport: "grpc",
        at_ms: 5,
    }])
    .map_err(e)?;
    let r = Reader::new(open());
    let a = r.agent("a").map_err(e)?.ok_or("agent a unknown")?;
    ensure!(
        a.summary.hostname.as_deref() == Some("mairie-01"),
        "hostname {:?}",
        a.summary.hostname
    );
    let latest = r
        .storage("a")
        .map_err(e)?
        .flatten()
        .ok_or("no storage summary")?;
    ensure!(latest["files"] == 20, "latest summary {latest}");
    let fleet = r.storage_fleet(Some("dsi")).map_err(e)?;
    ensure!(
        fleet.len() == 1 && fleet[0].group == "dsi",
        "fleet of group dsi: {}",
        fleet.len()
    );
    ensure!(
        r.storage_fleet(Some("rh")).map_err(e)?.is_empty(),
        "group rh is empty"
    );
    let all = r.agents().map_err(e)?;
    ensure!(all.len() == 2, "agents {all:?}");
    ensure!(all[1].online && all[1].id == "b", "b online: {all:?}");
    let hosts = campaigns::hosts(open().as_ref()).map_err(e)?;
    ensure!(
        hosts[0].group == "dsi" && hosts[0].site == "hotel-de-ville",
        "labels of a: {:?}",
        hosts[0]
    );
    Ok(())
}

fn rollup(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let mut w = writer(open())?;
    w.commit(&[usage("a", 1), usage("a", 2)]).map_err(e)?;
    w.commit(&[usage("a", 3), usage("a", 3)]).map_err(e)?;
    let r = Reader::new(open());
    let (hosts, hours) = r.footprint_inputs(0, 10_000_000, None, None).map_err(e)?;
    ensure!(hosts.len() == 1, "hosts {}", hosts.len());
    let total: f64 = hours.iter().map(|h| h.energy_j).sum();
    let close = (total - 3.0 * 1_800.0).abs() < 1e-6;
    ensure!(
        close,
        "energy {total} J, want 5400 (the duplicate not counted)"
    );
    Ok(())
}

fn findings_and_nudges(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let c = open();
    let db: &dyn Db = c.as_ref();
    let f = |id: &str| crate::detect::Finding {
        id: id.into(),
        kind: crate::detect::Kind::IdleServer,
        agent_id: Some("srv".into()),
        subject: "srv".into(),
        saving_kwh_year: Some(100.0),
        saving_kg_year: Some(5.0),
        saving_bytes: None,
        evidence: serde_json::json!({"cpu": 1.0}),
    };
    let (opened, resolved) = findings::apply_pass(db, &[f("f1"), f("f2")], 10).map_err(e)?;
    ensure!(
        (opened, resolved) == (2, 0),
        "first pass {opened}/{resolved}"
    );
    let (opened, resolved) = findings::apply_pass(db, &[f("f1")], 20).map_err(e)?;
    ensure!(
        (opened, resolved) == (0, 1),
        "second pass {opened}/{resolved}"
    );
    ensure!(
        findings::set_state(db, "f1", "snoozed", Some(100)).map_err(e)?,
        "snooze f1"
    );
    let open_only = findings::list(
        db,
        &findings::FindingFilter {
            state: Some("snoozed".into()),
            ..Default::default()
        },
    )
    .map_err(e)?;
    ensure!(
        open_only.len() == 1 && open_only[0].id == "f1",
        "snoozed: {open_only:?}"
    );
    let nudge = crate::nudge::NewNudge {
        id: "n1".into(),
        agent_id: "srv".into(),
        finding_id: "f1".into(),
        kind: crate::detect::Kind::IdleServer,
        lang: "fr".into(),
        text: crate::nudge::text::Text {
            title: "t".into(),
            body: "b".into(),
            action: "a".into(),
        },
    };
    findings::insert_nudges(db, &[nudge.clone(), nudge], 30).map_err(e)?;
    let (last, optout) = findings::nudge_state(db).map_err(e)?;
    ensure!(last.len() == 1 && optout.is_empty(), "nudge state {last:?}");
    // Pending needs the agent online.
    let mut w = writer(open())?;
    w.commit(&[Event::Presence {
        agent_id: "srv".into(),
        online: true,
        transport: "mqtt",
        at_ms: 5,
    }])
    .map_err(e)?;
    let pending = findings::pending(db, 1_000).map_err(e)?;
    ensure!(
        pending.len() == 1 && pending[0].mqtt_online,
        "pending {pending:?}"
    );
    findings::mark_sent(db, "n1", 40).map_err(e)?;
    ensure!(
        findings::pending(db, 40).map_err(e)?.is_empty(),
        "sent is not pending before resend time"
    );
    findings::set_optout(db, "srv", "*", true).map_err(e)?;
    findings::set_optout(db, "srv", "*", true).map_err(e)?;
    ensure!(
        findings::nudge_state(db).map_err(e)?.1.len() == 1,
        "one opt-out"
    );
    ensure!(
        findings::nudges_of(db, "srv").map_err(e)?.len() == 1,
        "nudges of srv"
    );
    Ok(())
}

fn campaign(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let c = open();
    let db: &dyn Db = c.as_ref();
    let mut w = writer(open())?;
    w.commit(&[envelope(
        "ws",
        1,
        Body::Inventory(Inventory {
            hostname: "ws".into(),
            group: "dsi".into(),
            ..Default::default()
        }),
    )])
    .map_err(e)?;
    let new = NewCampaign {
        id: "cud".into(),
        name: "Clean Up Day".into(),
        starts_at_ms: 100,
        ends_at_ms: 1_000_000_000,
        scope: Scope {
            groups: vec!["dsi".into()],
            ..Default::default()
        },
        factor: crate::campaign::default_factor(),
        rescan_interval_s: 3600,
    };
    campaigns::create(db, &new, 1).map_err(e)?;
    ensure!(
        campaigns::create(db, &new, 1).is_err(),
        "a second create of the same id must fail"
    );
    let changed = campaigns::advance(db, 200).map_err(e)?;
    ensure!(
        changed.len() == 1 && changed[0].state == State::Running,
        "advance {changed:?}"
    );
    campaigns::mark_command_sent(db, "cud", "ws", 210).map_err(e)?;
    let progress = |counted, deleted, fin| {
        Body::Campaign(CampaignProgress {
            campaign_id: "cud".into(),
            baseline_at_ms: 210,
            counted_at_ms: counted,
            files_deleted: deleted,
            bytes_deleted: deleted * 1000,
            r#final: fin,
            ..Default::default()
        })
    };
    w.commit(&[envelope("ws", 2, progress(300, 5, false))])
        .map_err(e)?;
    w.commit(&[envelope("ws", 3, progress(400, 9, true))])
        .map_err(e)?;
    // A late non-final count does not replace the final one.
    w.commit(&[envelope("ws", 4, progress(350, 7, false))])
        .map_err(e)?;
    let rows = campaigns::host_rows(db, "cud").map_err(e)?;
    ensure!(
        rows.len() == 1 && rows[0].is_final && rows[0].command_sent_ms == Some(210),
        "host rows {rows:?}"
    );
    let p = rows[0].progress.as_ref().ok_or("no progress")?;
    ensure!(p.files_deleted == 9, "final count {p:?}");
    let history = campaigns::history(db, "cud").map_err(e)?;
    ensure!(history.len() == 3, "history {history:?}");
    let report = crate::campaign::report::build(db, "cud", 56.0, 1.5, 500).map_err(e)?;
    ensure!(
        report.totals.files_deleted == 9,
        "report total {}",
        report.totals.files_deleted
    );
    ensure!(
        campaigns::queue_nudge(db, "cn1", "ws", "fr", "t", "b", "a", 500).map_err(e)?,
        "first queue_nudge"
    );
    ensure!(
        !campaigns::queue_nudge(db, "cn1", "ws", "fr", "t", "b", "a", 500).map_err(e)?,
        "second queue_nudge is not new"
    );
    ensure!(
        campaigns::campaign_nudge_ids(db)
            .map_err(e)?
            .contains("cn1"),
        "nudge ids"
    );
    campaigns::transition(db, "cud", State::Ended, 600).map_err(e)?;
    let list = campaigns::list(db).map_err(e)?;
    ensure!(list[0].ends_at_ms == 600, "ends moved to now: {list:?}");
    Ok(())
}

fn credentials(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let c = open();
    let db: &dyn Db = c.as_ref();
    let creds = Credentials::load(db, true).map_err(e)?;
    let token = Credentials::issue(db, Some("ag"), 60_000, 0).map_err(e)?;
    ensure!(
        creds.enrol(db, "other", &token, 1).is_err(),
        "a token bound to ag must not enrol other"
    );
    creds.enrol(db, "ag", &token, 1).map_err(e)?;
    ensure!(creds.may_send("ag"), "ag may send after enrolment");
    ensure!(
        creds.enrol(db, "ag", &token, 2).is_err(),
        "a token is used once"
    );
    // Another collector's view catches up by reloading.
    let other = Credentials::load(open().as_ref(), true).map_err(e)?;
    ensure!(other.may_send("ag"), "loaded elsewhere");
    creds.revoke(db, "ag", 3).map_err(e)?;
    ensure!(other.may_send("ag"), "not yet reloaded");
    other.reload(db).map_err(e)?;
    ensure!(!other.may_send("ag"), "revocation seen after reload");
    Ok(())
}

fn leases(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let (a, b) = (open(), open());
    let (a, b): (&dyn Db, &dyn Db) = (a.as_ref(), b.as_ref());
    ensure!(
        lease::acquire(a, "leader", "A", 0, 1_000).map_err(e)?,
        "A takes a free lease"
    );
    ensure!(
        !lease::acquire(b, "leader", "B", 500, 1_000).map_err(e)?,
        "B cannot take A's live lease"
    );
    ensure!(
        lease::acquire(a, "leader", "A", 600, 1_000).map_err(e)?,
        "A renews"
    );
    ensure!(
        !lease::acquire(b, "leader", "B", 1_500, 1_000).map_err(e)?,
        "renewed until 1600"
    );
    ensure!(
        lease::acquire(b, "leader", "B", 1_600, 1_000).map_err(e)?,
        "B takes it once expired"
    );
    let h = lease::holder(a, "leader", 1_700).map_err(e)?;
    ensure!(h == Some(("B".into(), 1_600)), "holder {h:?}");
    lease::release(a, "leader", "A").map_err(e)?;
    ensure!(
        lease::holder(a, "leader", 1_700).map_err(e)?.is_some(),
        "A cannot release B's lease"
    );
    lease::release(b, "leader", "B").map_err(e)?;
    ensure!(
        lease::acquire(a, "leader", "A", 1_800, 1_000).map_err(e)?,
        "free again after release"
    );
    Ok(())
}

fn sink_source(open: &dyn Fn() -> Conn) -> Result<(), String> {
    let c = open();
    let node = (c.engine() == Engine::Postgres).then(|| "n1".to_string());
    let mut w = writer(c)?.node(node.clone());
    w.commit(&[usage("a", 1), usage("b", 1), usage("a", 2)])
        .map_err(e)?;
    let out = open()
        .run("SELECT rowid, seq FROM samples ORDER BY rowid", args![])
        .map_err(e)?;
    ensure!(out.rows.len() == 3, "rows {}", out.rows.len());
    let ids: Vec<i64> = out
        .rows
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()
        .map_err(e)?;
    ensure!(ids.windows(2).all(|w| w[0] < w[1]), "rowids grow: {ids:?}");
    if let Some(n) = node {
        let mine: i64 = open()
            .query_row(
                "SELECT count(*) FROM samples WHERE node = ?1",
                args![n],
                |r| r.get(0),
            )
            .map_err(e)?;
        ensure!(mine == 3, "samples carry the node: {mine}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_passes_the_store_conformance_suite() {
        let mut dirs = Vec::new();
        let ran = super::run(&mut || {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().to_owned();
            dirs.push(dir);
            Box::new(move || -> super::Conn {
                Box::new(crate::store::open(&path, false).expect("open"))
            })
        })
        .expect("conformance");
        assert_eq!(ran.len(), super::CHECKS.len());
    }
}
