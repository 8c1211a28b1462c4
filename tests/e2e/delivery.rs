//! Samples travel agent → transport → collector → SQLite, in order, once,
//! over the embedded broker, an external Mosquitto and gRPC.

use crate::{PATIENCE, assert_once_in_order};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Mosquitto, Transport, wait_for};

async fn stream_and_check(c: &Collector, t: Transport, dir: &std::path::Path) {
    let opts = AgentOpts::new(&format!("e2e-{t:?}").to_lowercase(), t);
    let mut agent = Agent::start(&dir.join("agent"), &opts, c.mqtt, c.grpc);
    c.wait_samples(&agent.id, 40, PATIENCE).await;
    let status = agent.stop().await;
    assert!(status.success(), "agent exit: {status:?}\n{}", agent.log());
    assert!(agent.log().contains("spool drained"), "{}", agent.log());

    // After a drained stop every envelope the agent made is stored.
    let samples = c
        .get(&format!(
            "/api/v1/agents/{}/samples?since=0&limit=10000",
            agent.id
        ))
        .await;
    let rows = samples.as_array().expect("array");
    let seqs: Vec<u64> = rows
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_once_in_order(&seqs);
    // In order: arrival times do not go backwards along the seqs.
    let arrivals: Vec<i64> = rows
        .iter()
        .map(|r| r["received_at_ms"].as_i64().expect("t"))
        .collect();
    assert!(
        arrivals.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {arrivals:?}"
    );
    // The store saw each once: stored = samples + the start-up inventory.
    assert_eq!(
        c.metric("sobre_envelopes_stored_total").await,
        seqs.len() as u64 + 1
    );
    assert_eq!(c.metric("sobre_envelopes_duplicate_total").await, 0);

    // Inventory and identity are served.
    let detail = c.get(&format!("/api/v1/agents/{}", agent.id)).await;
    assert!(
        detail["inventory"]["cpu_threads"].as_u64().unwrap_or(0) >= 1,
        "{detail}"
    );
    assert!(
        !detail["hostname"].as_str().unwrap_or("").is_empty(),
        "{detail}"
    );
    let first = &rows[0];
    assert!(
        first["mem_total_bytes"].as_i64().unwrap_or(0) > 0,
        "{first}"
    );
    assert!(
        first["agent_rss_bytes"].as_i64().unwrap_or(0) > 0,
        "own footprint: {first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_embedded_broker_delivers_in_order_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    stream_and_check(&c, Transport::Mqtt, dir.path()).await;
    // Presence from the retained status and last will.
    let agents = c.get("/api/v1/agents").await;
    wait_for("offline after a clean stop", PATIENCE, || async {
        let a = c.get("/api/v1/agents").await;
        (a[0]["online"] == false).then_some(())
    })
    .await;
    assert_eq!(agents[0]["transport"], "mqtt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_through_mosquitto_delivers_in_order_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Mosquitto::start(&dir.path().join("mosquitto")).await;
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            external_broker: Some(m.port),
            ..Default::default()
        },
    )
    .await;
    stream_and_check(&c, Transport::Mqtt, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_delivers_in_order_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    stream_and_check(&c, Transport::Grpc, dir.path()).await;
    let agents = c.get("/api/v1/agents").await;
    assert_eq!(agents[0]["transport"], "grpc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_while_connected_offline_after_vanishing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let mut opts = AgentOpts::new("presence", Transport::Mqtt);
    opts.interval_ms = 1000;
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    wait_for("agent online", PATIENCE, || async {
        let a = c.get("/api/v1/agents").await;
        (a[0]["online"] == true).then_some(())
    })
    .await;
    // kill -9: no goodbye, the broker's last will says offline.
    agent.kill9();
    wait_for("last will marks the agent offline", PATIENCE, || async {
        let a = c.get("/api/v1/agents").await;
        (a[0]["online"] == false).then_some(())
    })
    .await;
}
