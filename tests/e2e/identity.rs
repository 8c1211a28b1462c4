//! Agent identity end to end: agents enrol with one-time tokens and sign
//! every envelope; an unenrolled agent, an agent using another agent's
//! key and a revoked agent are refused, logged and counted, while the
//! enrolled agents keep working; a forged downlink cannot be published on
//! the embedded broker (its guard), and is dropped by the agent wherever
//! it comes from.

use crate::PATIENCE;
use serde_json::json;
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};

/// A one-time enrolment token for `agent`, from the admin API.
pub(crate) async fn token(c: &Collector, agent: &str) -> String {
    let r = c
        .post_admin("/api/v1/enrolments", Some(&json!({ "agent_id": agent })))
        .await;
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.expect("JSON");
    v["token"].as_str().expect("token").to_owned()
}

fn agent(dir: &std::path::Path, id: &str, t: Transport, enrol: String, c: &Collector) -> Agent {
    let mut o = AgentOpts::new(id, t);
    o.interval_ms = 100;
    o.enrol_toml = enrol;
    Agent::start(&dir.join(id), &o, c.mqtt, c.grpc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_unrevoked_agents_are_heard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            enrolment: true,
            ..Default::default()
        },
    )
    .await;
    let d = dir.path();
    let t1 = token(&c, "good-mqtt").await;
    let t2 = token(&c, "good-grpc").await;
    let mut good1 = agent(
        d,
        "good-mqtt",
        Transport::Mqtt,
        format!("token = \"{t1}\""),
        &c,
    );
    let mut good2 = agent(
        d,
        "good-grpc",
        Transport::Grpc,
        format!("token = \"{t2}\""),
        &c,
    );
    c.wait_samples("good-mqtt", 3, PATIENCE).await;
    c.wait_samples("good-grpc", 3, PATIENCE).await;
    let key_file = d.join("good-grpc/credential");
    let key = std::fs::read_to_string(&key_file).expect("the agent kept its key");
    assert_eq!(key.trim().len(), 64);
    assert!(!good2.log().contains(key.trim()), "the key is never logged");

    // No enrolment at all; and a thief posing as good-mqtt with the key it
    // stole from good-grpc (in its own folder, as another process).
    let mut rogue = agent(d, "rogue", Transport::Mqtt, String::new(), &c);
    let mut o = AgentOpts::new("good-mqtt", Transport::Grpc);
    o.interval_ms = 100;
    o.enrol_toml = format!("credential_file = \"{}\"", key_file.display());
    let mut thief = Agent::start(&d.join("thief"), &o, c.mqtt, c.grpc);
    // A token bound to another agent does not enrol this one.
    let t3 = token(&c, "someone-else").await;
    let mut wrong = agent(
        d,
        "wrong-token",
        Transport::Grpc,
        format!("token = \"{t3}\""),
        &c,
    );
    wait_for("refusals counted", PATIENCE, || async {
        let (u, m) = (
            c.metric("sobre_envelopes_rejected_total{reason=\"unenrolled\"}")
                .await,
            c.metric("sobre_envelopes_rejected_total{reason=\"bad_mac\"}")
                .await,
        );
        (u > 0 && m > 0).then_some(())
    })
    .await;
    wait_for("the wrong token refused", PATIENCE, || async {
        wrong.log().contains("enrolment refused").then_some(())
    })
    .await;
    for id in ["rogue", "wrong-token"] {
        assert_eq!(
            c.get_status(&format!("/api/v1/agents/{id}")).await.0,
            404,
            "{id} was stored"
        );
    }

    // The thief's reports under good-mqtt's name were not stored: the real
    // agent's seqs are still each once, in order (the thief's seqs would
    // interleave).
    crate::assert_once_in_order(&c.sample_seqs("good-mqtt").await);

    // Only enrolled agents may connect to the embedded broker: an
    // anonymous client is turned away.
    let (_anon, mut anon_events) =
        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("nosy", "127.0.0.1", c.mqtt), 4);
    let first = tokio::time::timeout(PATIENCE, async {
        loop {
            match anon_events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => return Ok(a.code),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("an answer from the broker");
    assert!(
        !matches!(first, Ok(rumqttc::ConnectReturnCode::Success)),
        "an anonymous client connected: {first:?}"
    );
    // An enrolled agent publishing on another's downlink (a forged ack for
    // good-mqtt's next reports, under good-grpc's own credentials) is cut
    // off by the guard before the broker sees it. Behind a broker without
    // topic ACLs the agent drops it anyway (the test below).
    let key = sobre_agent::scan::parse_key(key.trim()).expect("key");
    let mut opts = rumqttc::MqttOptions::new("sobre-agent-good-grpc", "127.0.0.1", c.mqtt);
    opts.set_credentials("good-grpc", sobre_agent::enrol::mqtt_password(&key));
    let (raw, mut events) = rumqttc::AsyncClient::new(opts, 16);
    raw.publish(
        sobre_proto::topics::down("good-mqtt"),
        rumqttc::QoS::AtLeastOnce,
        false,
        forged_ack(&c, "good-mqtt").await,
    )
    .await
    .expect("publish a forged ack");
    tokio::time::timeout(PATIENCE, async { while events.poll().await.is_ok() {} })
        .await
        .expect("the guard closes the connection");
    assert_eq!(
        c.metric("sobre_mqtt_refused_total{reason=\"acl_publish\"}")
            .await,
        1
    );
    let n = c.sample_seqs("good-mqtt").await.len();
    c.wait_samples("good-mqtt", n + 10, PATIENCE).await;
    crate::assert_once_in_order(&c.sample_seqs("good-mqtt").await);
    assert!(
        !good1
            .log()
            .contains("downlink without a valid signature dropped"),
        "the forged ack reached good-mqtt"
    );

    // Revoke good-grpc: refused from then on; good-mqtt goes on.
    let revoke = sobre_tests::http_client()
        .delete(format!(
            "http://127.0.0.1:{}/api/v1/agents/good-grpc/credential",
            c.http
        ))
        .bearer_auth(c.admin_token())
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), 200);
    wait_for("good-grpc refused", PATIENCE, || async {
        (c.metric("sobre_envelopes_rejected_total{reason=\"revoked\"}")
            .await
            > 0)
        .then_some(())
    })
    .await;
    let after = c.sample_seqs("good-grpc").await.len();
    let mqtt_before = c.sample_seqs("good-mqtt").await.len();
    // 2 s of good-mqtt's reports: good-grpc would have sent as many.
    c.wait_samples("good-mqtt", mqtt_before + 20, PATIENCE)
        .await;
    // A few may have been admitted just before the revocation.
    assert!(
        c.sample_seqs("good-grpc").await.len() <= after + 3,
        "a revoked agent's reports kept being stored"
    );
    let log = c.log();
    for reason in ["unenrolled", "bad_mac", "revoked"] {
        assert!(
            log.contains(&format!("reason=\"{reason}\""))
                || log.contains(&format!("reason={reason}")),
            "{reason} not logged"
        );
    }
    // The refused agents cannot drain their spool (nothing is acked): each
    // waits its drain timeout, so they stop side by side.
    let stops = tokio::join!(
        good1.stop(),
        good2.stop(),
        rogue.stop(),
        thief.stop(),
        wrong.stop()
    );
    for s in [stops.0, stops.1, stops.2, stops.3, stops.4] {
        assert!(s.success(), "{s:?}");
    }
}

/// An unsigned ack for `agent`'s next 200 reports.
async fn forged_ack(c: &Collector, agent: &str) -> Vec<u8> {
    let next = c.sample_seqs(agent).await.last().copied().unwrap_or(0);
    prost::Message::encode_to_vec(&sobre_proto::v1::Downlink {
        body: Some(sobre_proto::v1::downlink::Body::Ack(sobre_proto::v1::Ack {
            seqs: (next + 1..next + 200).collect(),
        })),
        mac: Vec::new(),
    })
}

/// Behind a broker that lets anyone publish anywhere (Mosquitto as the
/// tests run it), a forged downlink still achieves nothing: an enrolled
/// agent drops what its collector did not sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlinks_are_checked_behind_any_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let broker = sobre_tests::Mosquitto::start(&d.join("mosquitto")).await;
    let c = Collector::start(
        &d.join("collector"),
        CollectorOpts {
            enrolment: true,
            external_broker: Some(broker.port),
            ..Default::default()
        },
    )
    .await;
    let t = token(&c, "good").await;
    let mut o = AgentOpts::new("good", Transport::Mqtt);
    o.interval_ms = 100;
    o.enrol_toml = format!("token = \"{t}\"");
    let mut good = Agent::start(&d.join("good"), &o, broker.port, c.grpc);
    c.wait_samples("good", 3, PATIENCE).await;
    let (raw, mut events) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("anyone", "127.0.0.1", broker.port),
        16,
    );
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    raw.publish(
        sobre_proto::topics::down("good"),
        rumqttc::QoS::AtLeastOnce,
        false,
        forged_ack(&c, "good").await,
    )
    .await
    .expect("publish a forged ack");
    wait_for("good to drop the forged ack", PATIENCE, || async {
        good.log()
            .contains("downlink without a valid signature dropped")
            .then_some(())
    })
    .await;
    let n = c.sample_seqs("good").await.len();
    c.wait_samples("good", n + 10, PATIENCE).await;
    assert!(good.stop().await.success());
    crate::assert_once_in_order(&c.sample_seqs("good").await);
}
