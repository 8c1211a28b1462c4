//! The relay against a stand-in broker, and what arbitrary client bytes
//! can get through (checked with rumqttd's own parser).

use super::super::packet::tests::encode;
use super::super::{InternalAuth, Settings};
use super::*;
use crate::ingest::credentials::Credentials;
use crate::metrics::Metrics;
use proptest::prelude::*;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{self, LastWill, Publish, Subscribe};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::DuplexStream;
use tokio::net::TcpListener;

struct Rig {
    guard: Arc<Guard>,
    metrics: Arc<Metrics>,
    broker: TcpListener,
    _dir: tempfile::TempDir,
}

/// A guard in front of a stand-in broker (a plain listener the test
/// reads), `burst` tokens per agent and next to no refill.
async fn rig(required: bool, burst: f64) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = crate::store::open(dir.path(), false).expect("store");
    let credentials = Arc::new(Credentials::load(&conn, required).expect("credentials"));
    let broker = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics = Arc::new(Metrics::default());
    let settings = Settings {
        broker: broker.local_addr().expect("addr"),
        auth: InternalAuth::new("sobre-collector", "own").expect("random"),
        max_packet_bytes: 1 << 20,
        per_s: 1e-6,
        burst,
        connect_timeout: Duration::from_secs(30),
        failures: None,
        budget: None,
    };
    Rig {
        guard: Arc::new(Guard::new(settings, credentials, metrics.clone())),
        metrics,
        broker,
        _dir: dir,
    }
}

/// A client connected through the guard (the guard runs in a task).
fn client(r: &Rig) -> DuplexStream {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let g = r.guard.clone();
    tokio::spawn(g.relay(s, SocketAddr::from(([127, 0, 0, 1], 9))));
    c
}

fn connect(id: &str) -> Vec<u8> {
    let mut c = v4::Connect::new(id);
    c.keep_alive = 30;
    c.last_will = Some(LastWill::new(
        "sobre/v1/agents/a1/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    encode(v4::Packet::Connect(c))
}

fn publish(topic: &str, pkid: u16) -> Vec<u8> {
    let mut p = Publish::new(topic, QoS::AtLeastOnce, vec![pkid as u8; 40]);
    p.pkid = pkid;
    encode(v4::Packet::Publish(p))
}

/// Reads exactly `n` bytes.
async fn read_n<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    r.read_exact(&mut v).await.expect("read");
    v
}

/// Reads until EOF.
async fn read_end<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    v
}

/// What the guard forwards of `input` (after a CONNECT) for agent
/// `a1`, and whether it stopped on a refusal.
fn forwarded(input: &[u8]) -> (Vec<u8>, bool) {
    let acl = Acl::enrolled("a1");
    let mut pos = 0;
    loop {
        match next_packet(&acl, &input[pos..], 4096) {
            Ok(Some((len, _))) => pos += len,
            Ok(None) => return (input[..pos].to_vec(), false),
            Err(_) => return (input[..pos].to_vec(), true),
        }
    }
}

#[test]
fn forwarding_stops_at_the_first_foreign_packet() {
    let own = publish("sobre/v1/agents/a1/up", 1);
    let input = [
        own.clone(),
        publish("sobre/v1/agents/a2/up", 2),
        own.clone(),
    ]
    .concat();
    assert_eq!(forwarded(&input), (own.clone(), true));
    assert_eq!(forwarded(&own[..own.len() - 1]), (Vec::new(), false));
}

/// Fragments of client traffic: whole packets on own, foreign and
/// near-miss topics, and arbitrary bytes.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let topic = prop::sample::select(vec![
        "sobre/v1/agents/a1/up",
        "sobre/v1/agents/a1/status",
        "sobre/v1/agents/a1/down",
        "sobre/v1/agents/a2/up",
        "sobre/v1/agents/a2/down",
        "sobre/v1/agents/+/up",
        "sobre/v1/agents/a1/#",
        "sobre/v1/agents/a1/up/",
        "#",
    ]);
    prop_oneof![
        (topic.clone(), any::<u16>()).prop_map(|(t, id)| publish(t, id.max(1))),
        topic
            .clone()
            .prop_map(|t| encode(v4::Packet::Subscribe(Subscribe::new(t, QoS::AtLeastOnce)))),
        Just(vec![0xc0, 0x00]),
        prop::collection::vec(any::<u8>(), 0..40),
        // A header claiming a packet type with random contents.
        (0u8..16, prop::collection::vec(any::<u8>(), 0..30)).prop_map(|(t, body)| {
            let mut v = vec![t << 4 | 0x02, body.len() as u8];
            v.extend(body);
            v
        }),
    ]
}

proptest! {
    /// Whatever a client sends, the guard does not panic, and what it
    /// forwards, read by rumqttd's own parser, is nothing but agent
    /// a1's own topics: no publish or subscription elsewhere, no
    /// second CONNECT, no packet the two parsers read differently.
    #[test]
    fn arbitrary_bytes_never_reach_a_foreign_topic(
        parts in prop::collection::vec(fragment(), 0..12)
    ) {
        use rumqttd::protocol::{Packet as P, Protocol};
        let input = parts.concat();
        let (out, _) = forwarded(&input);
        prop_assert!(input.starts_with(&out), "forwarded as sent, in order");
        let mut stream = BytesMut::from(&out[..]);
        let mut v4 = rumqttd::protocol::v4::V4;
        while !stream.is_empty() {
            let before = stream.len();
            match v4.read_mut(&mut stream, 4096) {
                Ok(P::Publish(p, _)) => prop_assert!(
                    p.topic[..] == b"sobre/v1/agents/a1/up"[..]
                        || p.topic[..] == b"sobre/v1/agents/a1/status"[..],
                    "{:?}", p.topic
                ),
                Ok(P::Subscribe(s, _)) => {
                    for f in s.filters {
                        prop_assert_eq!(f.path, "sobre/v1/agents/a1/down");
                    }
                }
                Ok(P::Connect(..)) => prop_assert!(false, "a second CONNECT went through"),
                // Acks, pings, unsubscribes: no topic to take.
                Ok(_) => {}
                // rumqttd refuses it and drops the connection: harmless.
                Err(_) => break,
            }
            prop_assert!(stream.len() < before);
        }
    }

    #[test]
    fn arbitrary_connects_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut with_type = bytes.clone();
        if let Some(b) = with_type.first_mut() {
            *b = 0x10;
        }
        for input in [bytes, with_type] {
            if let Ok(Some(h)) = packet::frame(&input, 4096) {
                let _ = packet::parse(h, &input[..h.frame_length()]);
            }
        }
    }
}

#[tokio::test]
async fn bytes_pass_unchanged_but_the_connect_signs_in_as_the_guard() {
    let r = rig(false, 100.0).await;
    let mut c = client(&r);
    let mut after = publish("sobre/v1/agents/a1/up", 1);
    after.extend(encode(v4::Packet::Subscribe(Subscribe::new(
        "sobre/v1/agents/a1/down",
        QoS::AtLeastOnce,
    ))));
    after.extend(publish("sobre/v1/agents/a1/status", 2));
    after.extend([0xc0, 0x00, 0x40, 0x02, 0x00, 0x05]); // PINGREQ, PUBACK 5
    let mut sent = connect("sobre-agent-a1");
    sent.extend(&after);
    // In small pieces: packets straddle reads.
    for chunk in sent.chunks(7) {
        c.write_all(chunk).await.expect("write");
    }
    let (mut b, _) = r.broker.accept().await.expect("accept");
    let mut buf = BytesMut::new();
    let inner = loop {
        if let Some(h) = packet::frame(&buf, 1 << 20).expect("frame") {
            let f = buf.split_to(h.frame_length());
            match packet::parse(h, &f).expect("parse") {
                Packet::Connect(c) => break c,
                p => panic!("not a CONNECT: {p:?}"),
            }
        }
        b.read_buf(&mut buf).await.expect("read");
    };
    assert_eq!(inner.client_id, "sobre-agent-a1");
    assert_eq!(inner.keep_alive, 30);
    assert_eq!(
        inner.last_will.as_ref().map(|w| w.topic.as_str()),
        Some("sobre/v1/agents/a1/status")
    );
    let login = inner.login.as_ref().expect("login");
    assert_eq!(login.username, GUARD_USER);
    assert!(
        r.guard
            .settings
            .auth
            .allows(&inner.client_id, &login.username, &login.password)
    );
    let mut rest = buf.to_vec();
    rest.extend(read_n(&mut b, after.len() - rest.len()).await);
    assert_eq!(rest, after, "client packets forwarded byte for byte");
    // Broker to client: anything, as it comes.
    let down: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    b.write_all(&down).await.expect("write");
    assert_eq!(read_n(&mut c, down.len()).await, down);
    // The client leaves: the broker sees the end.
    drop(c);
    assert!(read_end(&mut b).await.is_empty());
    assert_eq!(r.metrics.mqtt_throttled.load(Relaxed), 0);
}

#[tokio::test]
async fn publishing_on_another_agents_topic_disconnects() {
    let r = rig(false, 100.0).await;
    let mut c = client(&r);
    let own = publish("sobre/v1/agents/a1/up", 1);
    let mut sent = connect("sobre-agent-a1");
    sent.extend(&own);
    sent.extend(publish("sobre/v1/agents/victim/up", 2));
    sent.extend(publish("sobre/v1/agents/a1/up", 3));
    c.write_all(&sent).await.expect("write");
    let (mut b, _) = r.broker.accept().await.expect("accept");
    let got = read_end(&mut b).await;
    assert!(got.ends_with(&own), "the own publish went through");
    assert!(
        !got.windows(6).any(|w| w == b"victim"),
        "nothing of the foreign publish reached the broker"
    );
    assert!(read_end(&mut c).await.is_empty(), "the client is cut off");
    assert_eq!(r.metrics.mqtt_refused_count("acl_publish"), 1);
}

#[tokio::test]
async fn subscribing_to_another_downlink_or_a_wildcard_disconnects() {
    for filter in ["sobre/v1/agents/victim/down", "sobre/v1/agents/+/down", "#"] {
        let r = rig(false, 100.0).await;
        let mut c = client(&r);
        let mut sent = connect("sobre-agent-a1");
        sent.extend(encode(v4::Packet::Subscribe(Subscribe::new(
            filter,
            QoS::AtLeastOnce,
        ))));
        c.write_all(&sent).await.expect("write");
        let (mut b, _) = r.broker.accept().await.expect("accept");
        let got = read_end(&mut b).await;
        assert!(
            matches!(super::super::packet::tests::read(&got), Ok(Some((n, Packet::Connect(_)))) if n == got.len()),
            "{filter}: only the CONNECT reached the broker"
        );
        assert!(read_end(&mut c).await.is_empty());
        assert_eq!(r.metrics.mqtt_refused_count("acl_subscribe"), 1, "{filter}");
    }
}

#[tokio::test]
async fn refused_at_connect_with_not_authorised() {
    // Enrolment required and no credential; the collector's own id;
    // a will on another agent's status.
    let cases = [
        (true, connect("sobre-agent-a1"), "not_enrolled"),
        (false, connect("sobre-collector"), "reserved_client_id"),
        (false, connect("sobre-agent-a2"), "acl_will"),
    ];
    for (required, sent, reason) in cases {
        let r = rig(required, 100.0).await;
        let mut c = client(&r);
        c.write_all(&sent).await.expect("write");
        assert_eq!(read_end(&mut c).await, packet::connack(5), "{reason}");
        assert_eq!(r.metrics.mqtt_refused_count(reason), 1, "{reason}");
    }
    // A CONNECT larger than any agent's: refused from its header.
    let r = rig(false, 100.0).await;
    let mut c = client(&r);
    let mut big = v4::Connect::new("sobre-agent-a1");
    big.set_login("a1", "p".repeat(5000));
    c.write_all(&encode(v4::Packet::Connect(big)))
        .await
        .expect("write");
    assert!(read_end(&mut c).await.is_empty());
    assert_eq!(r.metrics.mqtt_refused_count("protocol"), 1);
    // Not a CONNECT first.
    let r = rig(false, 100.0).await;
    let mut c = client(&r);
    c.write_all(&publish("sobre/v1/agents/a1/up", 1))
        .await
        .expect("write");
    assert!(read_end(&mut c).await.is_empty());
    assert_eq!(r.metrics.mqtt_refused_count("protocol"), 1);
}

#[tokio::test]
async fn over_its_rate_a_client_is_not_read_but_still_hears_the_broker() {
    let r = rig(false, 2.0).await;
    let mut c = client(&r);
    let (p1, p2) = (
        publish("sobre/v1/agents/a1/up", 1),
        publish("sobre/v1/agents/a1/up", 2),
    );
    let mut sent = connect("sobre-agent-a1");
    sent.extend(&p1);
    sent.extend(&p2);
    for pkid in 3..50 {
        sent.extend(publish("sobre/v1/agents/a1/up", pkid));
    }
    c.write_all(&sent).await.expect("write");
    let (mut b, _) = r.broker.accept().await.expect("accept");
    // The guard counts the hold right before it stops reading: from
    // then on nothing more can come (a token is ~11 days away).
    while r.metrics.mqtt_throttled.load(Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    // The re-encoded CONNECT first (its length differs), by its frame.
    let mut buf = BytesMut::new();
    loop {
        if let Some(h) = packet::frame(&buf, 1 << 20).expect("frame") {
            let _ = buf.split_to(h.frame_length());
            break;
        }
        b.read_buf(&mut buf).await.expect("read");
    }
    let mut rest = buf.to_vec();
    rest.extend(read_n(&mut b, p1.len() + p2.len() - rest.len()).await);
    assert_eq!(rest, [p1, p2].concat(), "the burst, and no more");
    let mut more = [0u8; 1];
    assert!(
        matches!(b.try_read(&mut more), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing past the burst reached the broker"
    );
    // Acks and downlinks still reach the held client.
    b.write_all(&[0x40, 0x02, 0x00, 0x01]).await.expect("write");
    assert_eq!(read_n(&mut c, 4).await, [0x40, 0x02, 0x00, 0x01]);
    assert_eq!(r.metrics.mqtt_throttled.load(Relaxed), 1);
}
