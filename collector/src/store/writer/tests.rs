//! The writer against a real SQLite store: dedup, restart, inventory,
//! roll-up, storage summaries, presence.
use super::*;
use sobre_proto::v1::{Inventory, UsageReport};

fn usage(agent: &str, seq: u64, floor: u64) -> Event {
    Event::Envelope {
        env: Envelope {
            agent_id: agent.into(),
            seq,
            version: 1,
            spool_floor: floor,
            sent_at_ms: seq as i64,
            body: Some(Body::Usage(UsageReport {
                cpu_percent: 12.5,
                ..Default::default()
            })),
            ..Default::default()
        },
        reply: Reply::Mqtt,
        received_ms: 1_000 + seq as i64,
    }
}

fn writer(dir: &std::path::Path) -> Writer {
    let conn: crate::store::Conn = Box::new(crate::store::open(dir, false).expect("open"));
    Writer::new(conn, Arc::new(Metrics::default()), 100).expect("writer")
}

fn stored(dir: &std::path::Path, agent: &str) -> Vec<u64> {
    let r = crate::store::Reader::new(Box::new(crate::store::open_reader(dir).expect("reader")));
    r.samples(agent, 0, 10_000)
        .expect("query")
        .unwrap_or_default()
        .iter()
        .map(|s| s.seq)
        .collect()
}

#[test]
fn redelivered_envelopes_are_acked_but_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = writer(dir.path());
    let acks = w
        .commit(&[usage("a", 1, 1), usage("a", 2, 1), usage("b", 1, 1)])
        .expect("commit");
    let mut acked: Vec<(String, Vec<u64>)> =
        acks.into_iter().map(|a| (a.agent_id, a.seqs)).collect();
    acked.sort();
    assert_eq!(acked, vec![("a".into(), vec![1, 2]), ("b".into(), vec![1])]);
    // The same envelopes again, in another batch, plus a new one.
    let acks = w
        .commit(&[usage("a", 2, 1), usage("a", 1, 1), usage("a", 3, 1)])
        .expect("commit");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].seqs, vec![2, 1, 3], "duplicates are acked again");
    assert_eq!(stored(dir.path(), "a"), vec![1, 2, 3]);
    assert_eq!(w.metrics.duplicates.load(Relaxed), 2);
}

#[test]
fn dedup_survives_a_restart_of_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    writer(dir.path())
        .commit(&[usage("a", 10, 10), usage("a", 11, 10)])
        .expect("commit");
    // A new process: the window is reloaded from the agents table.
    let mut w = writer(dir.path());
    w.commit(&[usage("a", 11, 10), usage("a", 12, 10)])
        .expect("commit");
    assert_eq!(stored(dir.path(), "a"), vec![10, 11, 12]);
}

#[test]
fn inventory_updates_the_agent_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = writer(dir.path());
    let inv = Event::Envelope {
        env: Envelope {
            agent_id: "a".into(),
            seq: 1,
            version: 1,
            body: Some(Body::Inventory(Inventory {
                hostname: "mairie-01".into(),
                cpu_threads: 8,
                ..Default::default()
            })),
            ..Default::default()
        },
        reply: Reply::Mqtt,
        received_ms: 5,
    };
    w.commit(&[inv]).expect("commit");
    let r = crate::store::Reader::new(Box::new(
        crate::store::open_reader(dir.path()).expect("reader"),
    ));
    let a = r.agent("a").expect("query").expect("known");
    assert_eq!(a.summary.hostname.as_deref(), Some("mairie-01"));
    assert_eq!(a.inventory.expect("inventory")["cpu_threads"], 8);
}

#[test]
fn rollup_accumulates_across_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = writer(dir.path());
    let with_power = |seq: u64| {
        let mut ev = usage("a", seq, 1);
        if let Event::Envelope { env, .. } = &mut ev {
            env.sent_at_ms = 10_000 * seq as i64;
            if let Some(Body::Usage(u)) = &mut env.body {
                u.interval_ms = 10_000;
                u.energy_j = 200.0;
                u.power_w = 20.0;
                u.power_source = PowerSource::Model as i32;
            }
        }
        ev
    };
    w.commit(&[with_power(1), with_power(2)]).expect("commit");
    w.commit(&[with_power(3), with_power(3)])
        .expect("commit with a duplicate");
    let total: f64 = w
        .conn
        .query_row("SELECT sum(energy_j) FROM energy_hourly", args![], |r| {
            r.get(0)
        })
        .expect("sum");
    assert_eq!(total, 600.0, "the duplicate is not counted twice");
}

#[test]
fn the_latest_storage_summary_wins_whatever_the_arrival_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = writer(dir.path());
    let summary = |seq: u64, finished: i64, files: u64| Event::Envelope {
        env: Envelope {
            agent_id: "a".into(),
            seq,
            version: 1,
            body: Some(Body::Storage(sobre_proto::v1::StorageSummary {
                finished_at_ms: finished,
                files,
                ..Default::default()
            })),
            ..Default::default()
        },
        reply: Reply::Mqtt,
        received_ms: 1,
    };
    // The newer scan arrives first (e.g. replayed from a spool).
    w.commit(&[summary(2, 2_000, 20)]).expect("commit");
    w.commit(&[summary(1, 1_000, 10)]).expect("commit");
    let r = crate::store::Reader::new(Box::new(
        crate::store::open_reader(dir.path()).expect("reader"),
    ));
    let latest = r
        .storage("a")
        .expect("query")
        .expect("agent")
        .expect("summary");
    assert_eq!(latest["files"], 20);
    let n: i64 = w
        .conn
        .query_row("SELECT count(*) FROM storage_summaries", args![], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(n, 2, "every summary is kept");
    assert_eq!(r.storage_fleet(None).expect("fleet").len(), 1);
}

#[test]
fn presence_marks_online_and_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = writer(dir.path());
    let presence = |online| Event::Presence {
        agent_id: "a".into(),
        online,
        transport: "grpc",
        at_ms: 7,
    };
    w.commit(&[presence(true)]).expect("commit");
    let r = crate::store::Reader::new(Box::new(
        crate::store::open_reader(dir.path()).expect("reader"),
    ));
    assert!(r.agents().expect("agents")[0].online);
    w.commit(&[presence(false)]).expect("commit");
    assert!(!r.agents().expect("agents")[0].online);
}
