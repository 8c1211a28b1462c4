//! Hostile or broken uplinks are refused with a logged reason and a
//! counter, and the collector keeps serving well-behaved agents.

use crate::PATIENCE;
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sobre_proto::topics;
use sobre_proto::v1::{Envelope, UsageReport, envelope::Body};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};

fn envelope(agent_id: &str, version: u32) -> Vec<u8> {
    Envelope {
        mac: Vec::new(),
        agent_id: agent_id.into(),
        seq: 1,
        sent_at_ms: 0,
        version,
        spool_floor: 1,
        footprint: None,
        body: Some(Body::Usage(UsageReport::default())),
    }
    .encode_to_vec()
}

/// A plain MQTT client, as an attacker or a broken device would use.
async fn raw_client(port: u16) -> AsyncClient {
    let mut opts = MqttOptions::new("raw-intruder", "127.0.0.1", port);
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uplinks_are_refused_counted_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let mut opts = AgentOpts::new("good-neighbour", Transport::Mqtt);
    opts.interval_ms = 100;
    let mut good = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    c.wait_samples(&good.id, 3, PATIENCE).await;

    let raw = raw_client(c.mqtt).await;
    let cases: [(&str, Vec<u8>); 5] = [
        ("malformed", b"\xff\xff\xff not protobuf".to_vec()),
        ("oversized", vec![0u8; 200 * 1024]),
        ("agent_mismatch", envelope("someone-else", 1)),
        ("unsupported_version", envelope("intruder", 2)),
        ("empty_body", {
            let mut e = Envelope::decode(&envelope("intruder", 1)[..]).expect("decode");
            e.body = None;
            e.encode_to_vec()
        }),
    ];
    for (reason, payload) in &cases {
        raw.publish(
            topics::up("intruder"),
            QoS::AtLeastOnce,
            false,
            payload.clone(),
        )
        .await
        .expect("publish");
        let name = format!("sobre_envelopes_rejected_total{{reason=\"{reason}\"}}");
        wait_for(&format!("{reason} to be counted"), PATIENCE, || {
            let name = name.clone();
            let c = &c;
            async move { (c.metric(&name).await == 1).then_some(()) }
        })
        .await;
        assert!(
            c.log().contains(&format!("reason=\"{reason}\""))
                || c.log().contains(&format!("reason={reason}")),
            "no log line for {reason}:\n{}",
            c.log()
        );
    }
    // The intruder never became an agent.
    let (status, _) = c.get_status("/api/v1/agents/intruder").await;
    assert_eq!(status, 404);

    // The good agent kept being served throughout.
    let n = c.sample_seqs(&good.id).await.len();
    c.wait_samples(&good.id, n + 3, PATIENCE).await;
    assert!(good.stop().await.success());
    crate::assert_once_in_order(&c.sample_seqs(&good.id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_say_what_was_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let (status, body) = c.get_status("/api/v1/agents/nobody").await;
    assert_eq!(status, 404);
    assert!(body.contains("no agent with id"), "{body}");
    let (status, body) = c
        .get_status("/api/v1/agents/nobody/samples?since=yesterday")
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("since"), "{body}");
    let (status, _) = c.get_status("/api/v2/anything").await;
    assert_eq!(status, 404);
}
