//! The store conformance suite (`sobre_collector::store::conformance`) on
//! a real PostgreSQL: the same checks the collector's unit tests run on
//! SQLite, each on a database of its own.

use sobre_collector::store::{Location, conformance};
use sobre_tests::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = Postgres::start(&dir.path().join("pg")).await;
    let mut urls = Vec::new();
    for i in 0..conformance::CHECKS.len() {
        let name = format!("check{i}");
        pg.create_database(&name).await;
        urls.push(pg.url_for(&name));
    }
    let data_dir = dir.path().join("data");
    // The store is blocking: run the suite off the async workers.
    let ran = tokio::task::spawn_blocking(move || {
        let mut next = urls.into_iter();
        conformance::run(&mut || {
            let url = next.next().expect("one database per check");
            let location = Location {
                data_dir: data_dir.clone(),
                sync_full: true,
                postgres_url: Some(sobre_base::Secret::new(url)),
            };
            Box::new(move || location.open().expect("open the PostgreSQL store"))
        })
    })
    .await
    .expect("join");
    let ran = ran.unwrap_or_else(|f| panic!("{f}\n{}", pg.log()));
    assert_eq!(ran.len(), conformance::CHECKS.len());
}

/// Regression: enrolment over gRPC wrote the agent's key into a SQLite
/// file in `data_dir` even when the store was in PostgreSQL, so the
/// collector's own checks (and every other collector) never saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_enrolment_wrote_the_key_to_sqlite_when_the_store_was_postgresql() {
    use serde_json::json;
    use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport};
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = Postgres::start(&dir.path().join("pg")).await;
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            enrolment: true,
            extra_toml: format!("[store]\npostgres_url = \"{}\"\n", pg.url()),
            ..Default::default()
        },
    )
    .await;
    let r = c
        .post_admin("/api/v1/enrolments", Some(&json!({ "agent_id": "ws-pg" })))
        .await;
    assert_eq!(r.status(), 201);
    let token = r.json::<serde_json::Value>().await.expect("JSON")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut o = AgentOpts::new("ws-pg", Transport::Grpc);
    o.interval_ms = 100;
    o.enrol_toml = format!("token = \"{token}\"");
    let _agent = Agent::start(&dir.path().join("agent"), &o, c.mqtt, c.grpc);
    c.wait_samples("ws-pg", 3, crate::PATIENCE).await;
    assert!(
        !c.data_dir.join(sobre_collector::store::FILE).exists(),
        "a SQLite store appeared beside the PostgreSQL one"
    );
    let url = pg.url();
    let keys: i64 = tokio::task::spawn_blocking(move || {
        let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        db.query_one(
            "SELECT count(*) FROM credentials WHERE agent_id = 'ws-pg'",
            &[],
        )
        .expect("query")
        .get(0)
    })
    .await
    .expect("join");
    assert_eq!(keys, 1, "the agent's key is in PostgreSQL");
}

/// PostgreSQL killed (every server process, `kill -9`) while an agent
/// streams, then back: the collector keeps running, acks nothing it could
/// not commit, reconnects, and the agent's spool fills the gap, each seq
/// stored once. Found on the way: the first read after the restart failed
/// ("prepared statement s15 does not exist"), the connection using a
/// statement of the session that died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_killed_under_a_streaming_agent_loses_and_doubles_nothing() {
    use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pg = Postgres::start(&dir.path().join("pg")).await;
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            extra_toml: format!("[store]\npostgres_url = \"{}\"\n", pg.url()),
            ..Default::default()
        },
    )
    .await;
    let mut o = AgentOpts::new("ws-db", Transport::Mqtt);
    o.interval_ms = 100;
    let mut agent = Agent::start(&dir.path().join("agent"), &o, c.mqtt, c.grpc);
    c.wait_samples("ws-db", 5, crate::PATIENCE).await;
    pg.kill9();
    // The collector notices: a commit fails and is retried, nothing acked.
    wait_for("a failed commit", crate::PATIENCE, || async {
        (c.metric("sobre_store_commit_errors_total").await > 0).then_some(())
    })
    .await;
    let errors_while_down = c.metric("sobre_store_commit_errors_total").await;
    pg.restart().await;
    let stored_before = c.metric("sobre_envelopes_stored_total").await;
    wait_for(
        "samples again after the restart",
        crate::PATIENCE,
        || async {
            (c.metric("sobre_envelopes_stored_total").await >= stored_before + 10).then_some(())
        },
    )
    .await;
    agent.stop().await;
    // Everything the agent sent, once and in order, across the outage
    // (the first read after the restart included: a connection the server
    // dropped is reopened, not reported as an error).
    let (status, body) = c
        .get_status("/api/v1/agents/ws-db/samples?since=0&limit=10000")
        .await;
    assert_eq!(status, 200, "{body}");
    let seqs = c.sample_seqs("ws-db").await;
    crate::assert_once_in_order(&seqs);
    let log = c.log();
    assert!(
        errors_while_down > 0 && log.contains("store commit failed"),
        "{log}"
    );
}
