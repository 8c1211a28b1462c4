//! Findings and nudges end to end: simulated histories of an idle server
//! and of machines left on produce findings; each affected agent, offline
//! when the nudge was made, receives it over MQTT or gRPC once it
//! connects and acknowledges it; a second nudge of the kind within the
//! week is held back.

use crate::PATIENCE;
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sobre_proto::topics;
use sobre_proto::v1::{Envelope, Inventory, PowerSource, UsageReport, envelope::Body};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, bin, now_ms, wait_for};

const HOUR: i64 = 3_600_000;

fn envelope(agent: &str, seq: u64, sent_at_ms: i64, body: Body) -> Vec<u8> {
    Envelope {
        mac: Vec::new(),
        agent_id: agent.into(),
        seq,
        sent_at_ms,
        version: 1,
        // The importer holds everything until acked, as an agent's spool
        // would: its floor stays at the first seq. (Claiming floor = seq
        // while 100 messages are in flight lets the collector forget
        // earlier seqs that arrive late, and drop them as duplicates.)
        spool_floor: 1,
        footprint: None,
        body: Some(body),
    }
    .encode_to_vec()
}

/// Publishes an inventory and `hours` hourly usage reports ending at the
/// current hour, as a machine that was on all along would have sent.
pub(crate) async fn simulate(
    client: &AsyncClient,
    agent: &str,
    chassis: &str,
    hours: i64,
    cpu: f32,
) -> usize {
    let topic = topics::up(agent);
    let inv = Inventory {
        hostname: agent.into(),
        chassis: chassis.into(),
        cpu_threads: 4,
        mem_total_bytes: 8 << 30,
        ..Default::default()
    };
    let now_hour = now_ms() / HOUR * HOUR;
    let mut seq = 1;
    let mut payloads = vec![envelope(
        agent,
        seq,
        now_hour - hours * HOUR,
        Body::Inventory(inv),
    )];
    for i in 0..hours {
        seq += 1;
        let end = now_hour - (hours - 1 - i) * HOUR;
        let usage = UsageReport {
            interval_ms: HOUR as u32,
            cpu_percent: cpu,
            mem_total_bytes: 8 << 30,
            mem_available_bytes: 6 << 30,
            user_active: false,
            power_w: 10.0,
            energy_j: 36_000.0,
            power_source: PowerSource::Model as i32,
            ..Default::default()
        };
        payloads.push(envelope(agent, seq, end, Body::Usage(usage)));
    }
    let n = payloads.len();
    for p in payloads {
        client
            .publish(&topic, QoS::AtLeastOnce, false, p)
            .await
            .expect("publish");
    }
    n - 1
}

pub(crate) async fn raw_client(port: u16) -> AsyncClient {
    let mut opts = MqttOptions::new("history-importer", "127.0.0.1", port);
    opts.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    client
}

async fn post(c: &Collector, path: &str) -> serde_json::Value {
    c.post_admin(path, None).await.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_become_nudges_that_reach_offline_agents_once_a_week() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            // Never quiet, so the test does not depend on the hour it runs.
            extra_toml:
                "[nudge]\nquiet_start_hour = 0\nquiet_end_hour = 0\ndispatch_interval_s = 1\n"
                    .into(),
            ..Default::default()
        },
    )
    .await;
    let raw = raw_client(c.mqtt).await;
    let mut expected = Vec::new();
    expected.push((
        "idle-srv",
        simulate(&raw, "idle-srv", "server", 15 * 24, 2.0).await,
    ));
    for id in ["left-on-mqtt", "left-on-grpc"] {
        expected.push((id, simulate(&raw, id, "desktop", 7 * 24, 3.0).await));
    }
    for (id, n) in &expected {
        c.wait_samples(id, *n, PATIENCE).await;
    }

    let pass = post(&c, "/api/v1/detect").await;
    assert_eq!(pass["nudges"], 2, "{pass}");
    let idle = c.get("/api/v1/findings?kind=idle_server").await;
    assert_eq!(idle.as_array().map(Vec::len), Some(1), "{idle}");
    assert_eq!(idle[0]["agent_id"], "idle-srv");
    assert_eq!(idle[0]["state"], "open");
    // 10 W all day, every day, PUE 1.58: 87.6 × 1.58 kWh a year.
    let kwh = idle[0]["saving_kwh_year"].as_f64().expect("saving");
    assert!((kwh - 87.6 * 1.58).abs() < 1e-6, "{idle}");
    let left = c.get("/api/v1/findings?kind=left_on").await;
    assert_eq!(left.as_array().map(Vec::len), Some(2), "{left}");
    // The same from the command line, beside the running collector.
    let out = std::process::Command::new(bin("sobre-collector"))
        .arg("--config")
        .arg(c.dir.join("collector.toml"))
        .args(["findings", "--kind", "idle_server", "--json"])
        .output()
        .expect("sobre-collector findings");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"subject\":\"idle-srv\""),
        "{text}"
    );

    // The agents are offline: the nudges wait. A second pass within the
    // week makes no new ones.
    let pass = post(&c, "/api/v1/detect").await;
    assert_eq!(pass["nudges"], 0, "held back: {pass}");
    for id in ["left-on-mqtt", "left-on-grpc"] {
        let n = c.get(&format!("/api/v1/agents/{id}/nudges")).await;
        assert_eq!(n.as_array().map(Vec::len), Some(1), "{n}");
        assert!(n[0]["sent_ms"].is_null(), "not sent while offline: {n}");
        assert!(
            n[0]["body"].as_str().unwrap_or("").contains("heures"),
            "French by default: {n}"
        );
    }

    // The agents connect; each receives its nudge and says so.
    let mut agents = Vec::new();
    for (id, t) in [
        ("left-on-mqtt", Transport::Mqtt),
        ("left-on-grpc", Transport::Grpc),
    ] {
        let mut opts = AgentOpts::new(id, t);
        opts.interval_ms = 1000;
        agents.push(Agent::start(&dir.path().join(id), &opts, c.mqtt, c.grpc));
    }
    for a in &agents {
        let n = wait_for(
            &format!("{} to acknowledge its nudge", a.id),
            PATIENCE,
            || async {
                let n = c.get(&format!("/api/v1/agents/{}/nudges", a.id)).await;
                (!n[0]["delivered_ms"].is_null()).then_some(n)
            },
        )
        .await;
        assert_eq!(n[0]["how"], "kept");
        // The person at the machine can read it.
        let out = std::process::Command::new(bin("sobre-agent"))
            .arg("--config")
            .arg(a.dir.join("agent.toml"))
            .args(["nudges", "--json"])
            .output()
            .expect("sobre-agent nudges");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(n[0]["id"].as_str().expect("id")), "{text}");
        assert!(text.contains("kWh"), "{text}");
    }
    for a in &mut agents {
        assert!(a.stop().await.success());
    }
    let _ = now_ms();
}
