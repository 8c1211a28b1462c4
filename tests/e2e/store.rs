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
                postgres_url: Some(url),
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
