//! Scale-out (issue 9): several collectors on one Mosquitto through an MQTT
//! shared subscription (`mqtt.share_group`) split the uplinks, see every
//! agent's presence, and lose nothing when one of them dies mid-stream;
//! and the harness's real PostgreSQL, which their shared store will use.
//!
//! Each collector keeps its own SQLite store here, so a seq stored by both
//! is a redelivery the shared store will deduplicate: the tests count
//! those and bound them by the resends the agents made.

use crate::PATIENCE;
use serde_json::Value;
use sobre_tests::{
    Agent, AgentOpts, Collector, CollectorOpts, Mosquitto, Postgres, Transport, wait_for,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const GROUP: &str = "sobre-e2e";
const AGENTS: usize = 24;
/// The load generator stops by itself after this, acked or not.
const LOADGEN_DURATION: Duration = Duration::from_secs(90);

async fn member(dir: &Path, broker: u16) -> Collector {
    Collector::start(
        dir,
        CollectorOpts {
            external_broker: Some(broker),
            mqtt_toml: format!("share_group = \"{GROUP}\""),
            ..Default::default()
        },
    )
    .await
}

/// `sobre-loadgen mqtt`: AGENTS simulated agents sending `count` envelopes
/// each, one per `interval_ms`, resending what is unacked after
/// `resend_ms`; its JSON result goes to `<dir>/<prefix>.json`.
fn loadgen(
    dir: &Path,
    broker: u16,
    prefix: &str,
    count: u64,
    interval_ms: u64,
    resend_ms: u64,
) -> Child {
    let out = std::fs::File::create(dir.join(format!("{prefix}.json"))).expect("loadgen output");
    let err = std::fs::File::create(dir.join(format!("{prefix}.log"))).expect("loadgen log");
    Command::new(sobre_tests::bin("sobre-loadgen"))
        .arg("mqtt")
        .arg(format!("--broker=127.0.0.1:{broker}"))
        .arg(format!("--agents={AGENTS}"))
        .arg(format!("--count={count}"))
        .arg(format!("--interval-ms={interval_ms}"))
        .arg(format!("--resend-ms={resend_ms}"))
        .args(["--window=8", "--warmup=0", "--threads=1"])
        .arg(format!("--duration={}", LOADGEN_DURATION.as_secs()))
        .args(["--connect-timeout=60", "--id-prefix", prefix])
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .stdin(Stdio::null())
        .spawn()
        .expect("start sobre-loadgen")
}

/// Waits for the load generator and checks every envelope was acked.
async fn finish(mut lg: Child, dir: &Path, prefix: &str, count: u64) -> Value {
    let status = sobre_tests::procs::wait_exit(&mut lg, LOADGEN_DURATION + PATIENCE).await;
    let text = std::fs::read_to_string(dir.join(format!("{prefix}.json"))).unwrap_or_default();
    let log = std::fs::read_to_string(dir.join(format!("{prefix}.log"))).unwrap_or_default();
    assert!(status.success(), "sobre-loadgen failed: {status:?}\n{log}");
    let r: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    eprintln!("{prefix}: {r}");
    assert_eq!(r["connected"], AGENTS as u64, "{r}");
    assert_eq!(r["acked"], AGENTS as u64 * count, "{r}");
    assert_eq!(r["unacked"], 0, "{r}");
    r
}

/// The loadgen's agent ids (`<prefix>-NNNNN-<8 hex>`) as the collectors
/// know them.
async fn agent_ids(collectors: &[&Collector], prefix: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for c in collectors {
        for a in c.get("/api/v1/agents").await.as_array().expect("agents") {
            let id = a["id"].as_str().expect("id");
            if id.starts_with(&format!("{prefix}-")) {
                ids.insert(id.to_owned());
            }
        }
    }
    ids
}

/// Stored seqs per collector for every agent of `prefix`: asserts the union
/// is exactly 1..=count for each, and returns (stored per collector, seqs
/// stored by both).
async fn check_union(collectors: &[&Collector], prefix: &str, count: u64) -> (Vec<usize>, usize) {
    let ids = agent_ids(collectors, prefix).await;
    assert_eq!(ids.len(), AGENTS, "agents known to the cluster: {ids:?}");
    let mut per_collector = vec![0; collectors.len()];
    let mut in_both = 0;
    for id in &ids {
        let mut union = BTreeSet::new();
        let mut seen_by: Vec<BTreeSet<u64>> = Vec::new();
        for (i, c) in collectors.iter().enumerate() {
            let seqs: BTreeSet<u64> = c.sample_seqs(id).await.into_iter().collect();
            per_collector[i] += seqs.len();
            union.extend(&seqs);
            seen_by.push(seqs);
        }
        let expected: BTreeSet<u64> = (1..=count).collect();
        let missing: Vec<_> = expected.difference(&union).collect();
        assert!(missing.is_empty(), "{id}: seqs stored nowhere: {missing:?}");
        assert_eq!(union, expected, "{id}: seqs the agent never sent");
        in_both += seen_by[0].intersection(&seen_by[1]).count();
    }
    (per_collector, in_both)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_in_a_share_group_split_the_uplinks_and_all_see_presence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Mosquitto::start(&dir.path().join("mosquitto")).await;
    let a = member(&dir.path().join("a"), m.port).await;
    let b = member(&dir.path().join("b"), m.port).await;

    // Presence is not shared: both collectors see a real agent come and go.
    let mut opts = AgentOpts::new("presence", Transport::Mqtt);
    opts.interval_ms = 1000;
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, m.port, 0);
    for c in [&a, &b] {
        wait_for("the agent online on every collector", PATIENCE, || async {
            (c.get("/api/v1/agents/presence").await["online"] == true).then_some(())
        })
        .await;
    }

    const COUNT: u64 = 40;
    let lg = loadgen(dir.path(), m.port, "share", COUNT, 50, 2_000);
    let r = finish(lg, dir.path(), "share", COUNT).await;
    let (stored, in_both) = check_union(&[&a, &b], "share", COUNT).await;
    eprintln!(
        "stored by a: {}, by b: {}, by both: {in_both}",
        stored[0], stored[1]
    );
    assert!(
        stored[0] > 0 && stored[1] > 0,
        "one collector got nothing: {stored:?}"
    );
    // A seq lands on both only if the agent sent it twice (its ack came
    // after --resend-ms) and the broker gave the copies to different
    // members; with a shared store the second is a duplicate, acked again.
    let resent = r["resent"].as_u64().expect("resent");
    assert!(
        in_both as u64 <= resent,
        "{in_both} seqs stored twice but only {resent} resends"
    );

    agent.kill9();
    for c in [&a, &b] {
        wait_for(
            "the agent's last will on every collector",
            PATIENCE,
            || async { (c.get("/api/v1/agents/presence").await["online"] == false).then_some(()) },
        )
        .await;
    }
    // Two members with one client id would throw each other off the broker.
    let ids: Vec<String> = [&a, &b]
        .iter()
        .map(|c| {
            let log = c.log();
            let line = log
                .lines()
                .find(|l| l.contains("connected to MQTT broker"))
                .unwrap_or_else(|| panic!("no connection line:\n{log}"))
                .to_owned();
            assert!(!log.contains("MQTT connection lost"), "{log}");
            line.split("client_id=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or_else(|| panic!("no client_id in {line}"))
                .to_owned()
        })
        .collect();
    assert_ne!(ids[0], ids[1], "both collectors use one client id");
    assert!(
        ids.iter().all(|i| i.starts_with("sobre-collector-")),
        "{ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_mid_stream_loses_nothing_and_its_share_goes_to_the_survivor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Mosquitto::start(&dir.path().join("mosquitto")).await;
    let mut a = member(&dir.path().join("a"), m.port).await;
    let b = member(&dir.path().join("b"), m.port).await;

    // 24 agents × 100 envelopes, one per 100 ms each: a stream of at least
    // 10 s, whatever the machine's speed; the kill comes once both members
    // have committed a share of it.
    const COUNT: u64 = 100;
    let mut lg = loadgen(dir.path(), m.port, "failover", COUNT, 100, 3_000);
    for c in [&a, &b] {
        wait_for("both members storing the stream", PATIENCE, || async {
            (c.metric("sobre_envelopes_stored_total").await >= 100).then_some(())
        })
        .await;
    }
    assert!(
        lg.try_wait().expect("loadgen status").is_none(),
        "the stream ended before the kill: raise COUNT"
    );
    a.kill9();
    let b_at_kill = b.metric("sobre_envelopes_stored_total").await;
    let r = finish(lg, dir.path(), "failover", COUNT).await;
    // Every envelope was acked, those after the kill by the survivor.
    assert!(
        b.metric("sobre_envelopes_stored_total").await > b_at_kill,
        "the survivor stored nothing after the kill"
    );

    // The dead member's session went with it: fresh envelopes, never
    // resent (resend after 10 min), all reach the survivor. Had the broker
    // kept a share for the dead member (a persistent session: measured,
    // half of them), those would stay unacked until --duration.
    let lg = loadgen(dir.path(), m.port, "after", 10, 20, 600_000);
    let after = finish(lg, dir.path(), "after", 10).await;
    assert_eq!(after["resent"], 0, "{after}");

    // Back up (it rejoins the group; no traffic is left), its store read
    // through its API: the union of both stores holds every seq.
    a.restart().await;
    let (stored, in_both) = check_union(&[&a, &b], "failover", COUNT).await;
    let resent = r["resent"].as_u64().expect("resent");
    eprintln!(
        "failover: stored by a (killed): {}, by b: {}, by both: {in_both}, resends: {resent}",
        stored[0], stored[1]
    );
    // Stored by both: committed by the killed member whose ack never left,
    // then resent by the agent and stored by the survivor.
    assert!(
        in_both as u64 <= resent,
        "{in_both} seqs stored twice but only {resent} resends"
    );
}

/// The harness's PostgreSQL: Debian's binaries, reachable at `url()`, and
/// committed data survives a kill -9 of every server process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_postgres_answers_and_keeps_commits_across_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pg = Postgres::start(&dir.path().join("pg")).await;
    let url = pg.url();
    assert!(url.starts_with("postgres://sobre@127.0.0.1:"), "{url}");
    let u = url.clone();
    let one = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&u, postgres::NoTls).expect("connect");
        let one: i32 = c.query_one("SELECT 1", &[]).expect("SELECT 1").get(0);
        c.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42);")
            .expect("write");
        one
    })
    .await
    .expect("join");
    assert_eq!(one, 1);

    pg.kill9();
    pg.restart().await;
    let v = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("reconnect");
        let v: i32 = c.query_one("SELECT v FROM t", &[]).expect("read").get(0);
        v
    })
    .await
    .expect("join");
    assert_eq!(v, 42, "a committed row was lost:\n{}", pg.log());
}
