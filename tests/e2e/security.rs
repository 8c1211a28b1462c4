//! Security end to end: who may read and write the API. Writes need the
//! admin token, a read-only token reads but cannot write, a wrong token
//! is refused; every refusal is counted and logged without the token.
//! And who may use which MQTT topic on the embedded broker: an enrolled
//! agent its own only (the guard, `collector/src/ingest/guard`).

use crate::PATIENCE;
use crate::identity::token;
use prost::Message;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Packet, QoS,
};
use sobre_proto::topics;
use sobre_proto::v1::{Envelope, UsageReport, envelope::Body};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_roles_admin_writes_read_only_reads_and_refusals_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let read_token = "r".repeat(64);
    let tokens = dir.path().join("read.tokens");
    std::fs::write(&tokens, format!("# auditors\n{read_token}\n")).expect("tokens");
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            http_toml: format!(
                "open_read = false\nread_tokens_file = \"{}\"",
                tokens.display()
            ),
            ..Default::default()
        },
    )
    .await;
    let client = sobre_tests::http_client();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", c.http);
    let status = |r: reqwest::Response| r.status().as_u16();

    // Health stays open for probes; reads need a token here.
    assert_eq!(c.get_status("/health").await.0, 200);
    let (code, body) = c.get_status("/api/v1/agents").await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("open_read"), "the error says why: {body}");
    let read = client.get(url("/api/v1/agents")).bearer_auth(&read_token);
    assert_eq!(status(read.send().await.expect("GET")), 200);
    // The console shows no more than the API: its pages send to sign-in.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = no_redirects
        .get(url("/machines/x"))
        .send()
        .await
        .expect("GET");
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/login?back=%2Fmachines%2Fx");
    let signed_in = no_redirects
        .get(url("/"))
        .header("cookie", format!("sobre_token={read_token}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(signed_in.status(), 200);

    // Writes: admin only.
    let write = |t: Option<&str>| {
        let mut r = client.post(url("/api/v1/detect"));
        if let Some(t) = t {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let none = write(None).await.expect("POST");
    assert_eq!(none.status(), 401);
    assert!(none.headers().contains_key("www-authenticate"));
    let body = none.text().await.unwrap_or_default();
    assert!(
        body.contains("admin token") && body.contains("admin.token"),
        "{body}"
    );
    assert_eq!(status(write(Some(&read_token)).await.expect("POST")), 403);
    assert_eq!(
        status(write(Some(&"x".repeat(64))).await.expect("POST")),
        401
    );
    let admin = c.admin_token();
    assert_eq!(status(write(Some(&admin)).await.expect("POST")), 200);
    // The console's forms carry the token in a cookie.
    let cookie = client
        .post(url("/api/v1/detect"))
        .header("cookie", format!("lang=fr; sobre_token={admin}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(cookie.status(), 200);

    let metrics = client
        .get(url("/metrics"))
        .bearer_auth(&read_token)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "sobre_http_refused_total{reason=\"no_token\"} 3",
        "sobre_http_refused_total{reason=\"read_only_token\"} 1",
        "sobre_http_refused_total{reason=\"bad_token\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
    let log = c.log();
    assert!(log.contains("API request refused"), "refusals are logged");
    assert!(
        !log.contains(&admin) && !log.contains(&read_token),
        "tokens never logged"
    );
}

/// A hand-driven MQTT client: connected (CONNACK success), or the reason
/// it was not.
async fn mqtt(
    port: u16,
    client_id: &str,
    login: Option<(&str, &str)>,
    will: Option<LastWill>,
) -> Result<(AsyncClient, EventLoop), String> {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    if let Some((user, pass)) = login {
        o.set_credentials(user, pass);
    }
    if let Some(w) = will {
        o.set_last_will(w);
    }
    let (client, mut events) = AsyncClient::new(o, 16);
    let first = tokio::time::timeout(PATIENCE, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => return Ok(a.code),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .expect("an answer from the broker");
    match first {
        Ok(ConnectReturnCode::Success) => Ok((client, events)),
        Ok(code) => Err(format!("{code:?}")),
        Err(e) => Err(e),
    }
}

/// Polls until the connection ends; the messages it got meanwhile.
async fn until_closed(events: &mut EventLoop) -> Vec<rumqttc::Publish> {
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => got.push(p),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    })
    .await
    .expect("the guard closes the connection");
    got
}

/// Polls until `want` arrives.
async fn until(events: &mut EventLoop, what: &str, want: impl Fn(&Packet) -> bool) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(p)) if want(&p) => return,
                Ok(_) => {}
                Err(e) => panic!("connection lost waiting for {what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn signed(key: &[u8; 32], agent: &str, seq: u64) -> Vec<u8> {
    let env = Envelope {
        agent_id: agent.into(),
        seq,
        sent_at_ms: sobre_tests::now_ms(),
        version: 1,
        spool_floor: seq,
        body: Some(Body::Usage(UsageReport::default())),
        ..Default::default()
    };
    sobre_agent::enrol::sign(key, &env.encode_to_vec()).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_agent_may_use_its_own_topics_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let c = Collector::start(
        &d.join("collector"),
        CollectorOpts {
            enrolment: true,
            ..Default::default()
        },
    )
    .await;
    let mut agents = Vec::new();
    for id in ["good", "victim"] {
        let mut o = AgentOpts::new(id, Transport::Mqtt);
        o.interval_ms = 100;
        o.enrol_toml = format!("token = \"{}\"", token(&c, id).await);
        agents.push(Agent::start(&d.join(id), &o, c.mqtt, c.grpc));
    }
    c.wait_samples("good", 3, PATIENCE).await;
    c.wait_samples("victim", 3, PATIENCE).await;

    // Mallory is enrolled too, with a key of its own, and drives its MQTT
    // connection by hand.
    let grpc = format!("http://127.0.0.1:{}", c.grpc);
    let key = sobre_agent::enrol::enrol_once(&grpc, None, "mallory", &token(&c, "mallory").await)
        .await
        .expect("enrol mallory");
    let pass = sobre_agent::enrol::mqtt_password(&key);
    let login = Some(("mallory", pass.as_str()));
    let (m, mut events) = mqtt(c.mqtt, "sobre-agent-mallory", login, None)
        .await
        .expect("mallory connects");
    // Its own topics: fine.
    m.subscribe(topics::down("mallory"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    until(&mut events, "SUBACK", |p| matches!(p, Packet::SubAck(_))).await;
    m.publish(
        topics::up("mallory"),
        QoS::AtLeastOnce,
        false,
        signed(&key, "mallory", 1),
    )
    .await
    .expect("publish");
    until(&mut events, "PUBACK", |p| matches!(p, Packet::PubAck(_))).await;
    c.wait_samples("mallory", 1, PATIENCE).await;

    // Another agent's uplink: disconnected before anything reaches the
    // broker, so ingest never even sees it (no bad_mac, no agent_mismatch).
    const FORGED: u64 = 4_242_424_242;
    m.publish(
        topics::up("victim"),
        QoS::AtLeastOnce,
        false,
        signed(&key, "victim", FORGED),
    )
    .await
    .expect("publish");
    until_closed(&mut events).await;
    let refused = |reason: &str| format!("sobre_mqtt_refused_total{{reason=\"{reason}\"}}");
    assert_eq!(c.metric(&refused("acl_publish")).await, 1);
    for reason in ["bad_mac", "agent_mismatch"] {
        let name = format!("sobre_envelopes_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(c.metric(&name).await, 0, "{reason}: it reached ingest");
    }

    // Another agent's downlink: refused, and nothing of it received.
    let (m, mut events) = mqtt(c.mqtt, "sobre-agent-mallory", login, None)
        .await
        .expect("mallory connects again");
    m.subscribe(topics::down("victim"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    assert!(until_closed(&mut events).await.is_empty());
    assert_eq!(c.metric(&refused("acl_subscribe")).await, 1);

    // A last will on another agent's status, the collector's own client
    // id, an id that is not mallory's: refused at CONNECT.
    let will = LastWill::new(
        topics::status("victim"),
        topics::OFFLINE,
        QoS::AtLeastOnce,
        true,
    );
    let no = mqtt(c.mqtt, "sobre-agent-mallory", login, Some(will)).await;
    let why = no.err().unwrap_or_default();
    assert!(why.contains("NotAuthorized"), "{why}");
    assert_eq!(c.metric(&refused("acl_will")).await, 1);
    let no = mqtt(c.mqtt, "sobre-collector", login, None).await;
    assert!(no.is_err());
    assert_eq!(c.metric(&refused("reserved_client_id")).await, 1);
    let no = mqtt(c.mqtt, "sobre-agent-victim", login, None).await;
    assert!(no.is_err());
    assert_eq!(c.metric(&refused("not_enrolled")).await, 1);

    // Around the guard: rumqttd's own listener (loopback, a port of its
    // own) does not take an agent's credentials, even valid ones.
    let log = c.log();
    let internal: u16 = log
        .lines()
        .find(|l| l.contains("embedded MQTT broker listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the internal port is in the log:\n{log}"));
    assert_ne!(internal, c.mqtt);
    assert!(
        mqtt(internal, "sobre-agent-mallory", login, None)
            .await
            .is_err()
    );
    wait_for("the internal refusal logged", PATIENCE, || async {
        c.log().contains("internal listener refused").then_some(())
    })
    .await;

    // Each refusal logged with its reason, no password.
    let log = c.log();
    for reason in [
        "acl_publish",
        "acl_subscribe",
        "acl_will",
        "reserved_client_id",
        "not_enrolled",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("MQTT client refused by the guard")
                    && (l.contains(&format!("reason=\"{reason}\""))
                        || l.contains(&format!("reason={reason}")))),
            "no log line for {reason}:\n{log}"
        );
    }
    assert!(
        log.contains("sobre/v1/agents/victim/up"),
        "the topic is named"
    );
    assert!(!log.contains(&pass), "a password was logged");

    // Nothing stored for the victim from mallory; everyone else goes on.
    for id in ["good", "victim"] {
        let n = c.sample_seqs(id).await.len();
        c.wait_samples(id, n + 5, PATIENCE).await;
    }
    for a in &mut agents {
        assert!(a.stop().await.success());
    }
    let victim = c.sample_seqs("victim").await;
    assert!(!victim.contains(&FORGED));
    crate::assert_once_in_order(&victim);
    crate::assert_once_in_order(&c.sample_seqs("good").await);
    assert_eq!(c.sample_seqs("mallory").await, vec![1]);
}
