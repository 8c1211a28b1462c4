//! Nothing is lost and nothing is stored twice when the collector, the
//! broker or the agent dies mid-stream, or when the agent is stopped while
//! the collector is away.

use crate::{PATIENCE, assert_once_in_order};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Mosquitto, Transport, wait_for};

/// Stops the agent (drained), then checks every seq is stored once. Each
/// agent restart sends an inventory, which takes one seq between samples:
/// `restarts` such gaps are expected.
async fn finish(c: &Collector, agent: &mut Agent, restarts: usize) -> Vec<u64> {
    finish_gaps(c, agent, restarts..=restarts).await
}

/// As [`finish`], with a range of inventory gaps: a run stopped before it
/// took its first sample leaves no gap.
async fn finish_gaps(
    c: &Collector,
    agent: &mut Agent,
    restarts: std::ops::RangeInclusive<usize>,
) -> Vec<u64> {
    let status = agent.stop().await;
    assert!(status.success(), "agent exit {status:?}\n{}", agent.log());
    assert!(
        agent.log().contains("spool drained"),
        "agent did not drain:\n{}",
        agent.log()
    );
    let seqs = c.sample_seqs(&agent.id).await;
    if *restarts.end() == 0 {
        assert_once_in_order(&seqs);
    } else {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "unique, increasing: {seqs:?}"
        );
        let gaps: Vec<_> = seqs.windows(2).filter(|w| w[1] != w[0] + 1).collect();
        assert!(
            restarts.contains(&gaps.len()),
            "one gap per restart's inventory ({restarts:?}): {gaps:?}"
        );
        assert!(
            gaps.iter().all(|w| w[1] == w[0] + 2),
            "gaps of exactly one seq: {gaps:?}"
        );
    }
    seqs
}

async fn collector_sigkill(t: Transport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let opts = AgentOpts::new("crash", t);
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    c.wait_samples(&agent.id, 20, PATIENCE).await;
    c.kill9();
    // The agent keeps sampling into its spool while the collector is dead:
    // wait until it has noticed (its log says so) before restarting.
    wait_for(
        "agent to notice the collector is gone",
        PATIENCE,
        || async {
            let log = agent.log();
            (log.contains("connection lost") || log.contains("cannot connect")).then_some(())
        },
    )
    .await;
    c.restart().await;
    let before = c.sample_seqs(&agent.id).await.len();
    c.wait_samples(&agent.id, before + 20, PATIENCE).await;
    let seqs = finish(&c, &mut agent, 0).await;
    assert!(seqs.len() >= before + 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkill_mid_stream_mqtt_loses_nothing() {
    collector_sigkill(Transport::Mqtt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigkill_mid_stream_grpc_loses_nothing() {
    collector_sigkill(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_restart_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = Mosquitto::start(&dir.path().join("mosquitto")).await;
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            external_broker: Some(m.port),
            ..Default::default()
        },
    )
    .await;
    let opts = AgentOpts::new("broker-restart", Transport::Mqtt);
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    c.wait_samples(&agent.id, 20, PATIENCE).await;
    m.kill9();
    wait_for("agent to notice the broker is gone", PATIENCE, || async {
        agent.log().contains("connection lost").then_some(())
    })
    .await;
    m.restart().await;
    let before = c.sample_seqs(&agent.id).await.len();
    c.wait_samples(&agent.id, before + 20, PATIENCE).await;
    finish(&c, &mut agent, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sigkill_resumes_without_reusing_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let opts = AgentOpts::new("agent-kill", Transport::Mqtt);
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    let first = c.wait_samples(&agent.id, 10, PATIENCE).await;
    agent.kill9();
    agent.restart();
    c.wait_samples(&agent.id, first.len() + 10, PATIENCE).await;
    // Nothing spooled before the kill is lost or stored twice.
    finish(&c, &mut agent, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_without_collector_keeps_the_spool_then_delivers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c_dir = dir.path().join("collector");
    // The agent starts first, with nowhere to send.
    let opts = AgentOpts::new("offline-first", Transport::Grpc);
    let grpc = sobre_tests::free_port();
    let mqtt = sobre_tests::free_port();
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, mqtt, grpc);
    wait_for("a few failed connections", PATIENCE, || async {
        (agent.log().matches("cannot connect").count() >= 3).then_some(())
    })
    .await;
    let status = agent.stop().await;
    assert!(status.success(), "clean exit even with nothing sent");
    assert!(
        agent.log().contains("envelopes stay spooled"),
        "{}",
        agent.log()
    );

    // Now a collector appears on the port the agent was told about.
    let mut c = Collector::start(&c_dir, CollectorOpts::default()).await;
    if c.grpc != grpc {
        // Point the agent at the collector's real port.
        let cfg = std::fs::read_to_string(agent.dir.join("agent.toml")).expect("cfg");
        let cfg = cfg.replace(
            &format!("127.0.0.1:{grpc}"),
            &format!("127.0.0.1:{}", c.grpc),
        );
        std::fs::write(agent.dir.join("agent.toml"), cfg).expect("cfg");
    }
    agent.restart();
    c.wait_samples(&agent.id, 5, PATIENCE).await;
    // The samples taken while offline were kept and delivered first (on a
    // loaded machine the first run may stop before its first sample, and
    // then leaves no gap).
    let seqs = finish_gaps(&c, &mut agent, 0..=1).await;
    assert!(seqs.len() >= 5);
    let status = c.stop().await;
    assert!(status.success(), "collector exit {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sigterm_mid_stream_commits_then_resumes_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let opts = AgentOpts::new("graceful", Transport::Mqtt);
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    c.wait_samples(&agent.id, 20, PATIENCE).await;
    let status = c.stop().await;
    assert!(status.success(), "collector exit {status:?}\n{}", c.log());
    assert!(c.log().contains("store closed cleanly"), "{}", c.log());
    c.restart().await;
    let before = c.sample_seqs(&agent.id).await.len();
    c.wait_samples(&agent.id, before + 20, PATIENCE).await;
    finish(&c, &mut agent, 0).await;
}
