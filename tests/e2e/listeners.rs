//! The collector's listeners against clients that hold on (issue 21, item
//! 5; item 7's log flood and CONNECT flag): idle connections, slow
//! headers, TLS ports without a ClientHello, connections past a cap,
//! sources that keep failing to sign in, a reserved CONNECT flag, and a
//! stranger varying its client id to flood the log. Each test talks to a
//! real collector over raw sockets and waits on conditions (the server
//! closing, a counter, a log line), never on a fixed sleep. The load test
//! (2,000 idle connections per listener and a slowloris) is `siege.rs`.

use crate::PATIENCE;
use sobre_tests::{Collector, CollectorOpts, free_port, tls, wait_for};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A collector whose `[listeners]` section is `listeners` (after the
/// harness's own, so these keys come on top; tables after it).
pub async fn collector(dir: &std::path::Path, listeners: &str, enrolment: bool) -> Collector {
    Collector::start(
        dir,
        CollectorOpts {
            enrolment,
            listeners_toml: Some(format!(
                "{}{listeners}",
                if listeners.contains("failed_auth") {
                    ""
                } else {
                    sobre_tests::procs::LISTENERS_TOML
                }
            )),
            ..Default::default()
        },
    )
    .await
}

/// A raw MQTT 3.1.1 CONNECT with these connect `flags` (user name and
/// password included when their flags say so).
pub fn connect_packet(client_id: &str, flags: u8, keep_alive: u16) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags];
    body.extend(keep_alive.to_be_bytes());
    let mut string = |v: &str| {
        body.extend((v.len() as u16).to_be_bytes());
        body.extend(v.as_bytes());
    };
    string(client_id);
    if flags & 0x80 != 0 {
        string("a1");
    }
    if flags & 0x40 != 0 {
        string("not-the-key");
    }
    let mut p = vec![0x10];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        p.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    p.extend(body);
    p
}

/// What the server sends until it closes the connection; panics if it
/// keeps it open beyond [`PATIENCE`].
pub async fn until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{what}: the collector kept the connection open"
    );
    got
}

async fn tcp(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect")
}

/// Waits until `/metrics` shows `name` at `min` or more.
pub async fn metric_at_least(c: &Collector, name: &str, min: u64) -> u64 {
    wait_for(&format!("{name} >= {min}"), PATIENCE, || async move {
        let v = c.metric(name).await;
        (v >= min).then_some(v)
    })
    .await
}

#[tokio::test]
async fn idle_connections_were_held_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(
        dir.path(),
        "handshake_timeout_s = 1\nhttp_header_timeout_s = 1\nmqtt_connect_timeout_s = 2\n",
        false,
    )
    .await;
    // Connected, and not a byte sent: each listener closes it.
    for (port, what) in [(c.http, "HTTP"), (c.grpc, "gRPC"), (c.mqtt, "MQTT")] {
        let mut s = tcp(port).await;
        until_closed(&mut s, what).await;
    }
    // HTTP kept alive after a request, then silent.
    let mut s = tcp(c.http).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let answer = until_closed(&mut s, "HTTP kept alive").await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "answered first");
    // MQTT: one byte of a CONNECT, then nothing.
    let mut s = tcp(c.mqtt).await;
    s.write_all(&[0x10]).await.expect("write");
    until_closed(&mut s, "MQTT without a whole CONNECT").await;
    // MQTT: signed in with a 1 s keep-alive, then silent for longer
    // (closed after 1.5 s by the guard, or by rumqttd behind it, which
    // enforces the same rule).
    let mut s = tcp(c.mqtt).await;
    s.write_all(&connect_packet("idle-client", 0x02, 1))
        .await
        .expect("connect");
    let got = until_closed(&mut s, "MQTT past its keep-alive").await;
    assert_eq!(got, [0x20, 2, 0, 0], "admitted (CONNACK 0), then closed");
    for (listener, phase) in [
        ("http", "first_byte"),
        ("grpc", "first_byte"),
        ("mqtt", "first_byte"),
        ("http", "header"),
        ("mqtt", "connect"),
    ] {
        metric_at_least(
            &c,
            &format!(
                "sobre_connections_timed_out_total{{listener=\"{listener}\",phase=\"{phase}\"}}"
            ),
            1,
        )
        .await;
    }
}

#[tokio::test]
async fn slow_headers_were_never_timed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(dir.path(), "http_header_timeout_s = 2\n", false).await;
    let mut s = tcp(c.http).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("request line");
    // One more header line every 200 ms, as a slowloris does, until the
    // collector hangs up.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut lines = 0u32;
    let hung_up = tokio::time::timeout(PATIENCE, async {
        loop {
            tick.tick().await;
            if s.write_all(b"X-Slow: y\r\n").await.is_err() {
                return;
            }
            lines += 1;
            let mut probe = [0u8; 64];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
            {
                return;
            }
        }
    })
    .await;
    assert!(
        hung_up.is_ok(),
        "headers trickled for {lines} lines, never cut"
    );
    assert!(lines > 1, "it was trickling, not refused at once");
    metric_at_least(
        &c,
        "sobre_connections_timed_out_total{listener=\"http\",phase=\"header\"}",
        1,
    )
    .await;
    assert_eq!(c.get_status("/health").await.0, 200);
}

#[tokio::test]
async fn tls_port_without_client_hello_was_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = tls::pki(&dir.path().join("pki"), false);
    let tls_port = free_port();
    let c = Collector::start(
        &dir.path().join("c"),
        CollectorOpts {
            mqtt_toml: p.mqtt_tls_toml(tls_port),
            grpc_toml: p.server_toml(),
            listeners_toml: Some(format!(
                "{}handshake_timeout_s = 1\n",
                sobre_tests::procs::LISTENERS_TOML
            )),
            ..Default::default()
        },
    )
    .await;
    for (port, what) in [(tls_port, "MQTT TLS"), (c.grpc, "gRPC TLS")] {
        let mut s = tcp(port).await;
        until_closed(&mut s, what).await;
    }
    for listener in ["mqtt_tls", "grpc"] {
        metric_at_least(
            &c,
            &format!(
                "sobre_connections_timed_out_total{{listener=\"{listener}\",phase=\"handshake\"}}"
            ),
            1,
        )
        .await;
    }
}

#[tokio::test]
async fn reserved_connect_flag_reached_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(dir.path(), "", true).await;
    // User name, password, clean session, and the reserved bit.
    let mut s = tcp(c.mqtt).await;
    s.write_all(&connect_packet("sobre-agent-a1", 0xc3, 30))
        .await
        .expect("connect");
    let got = until_closed(&mut s, "reserved flag").await;
    assert!(got.is_empty(), "closed without a CONNACK: {got:?}");
    metric_at_least(&c, "sobre_mqtt_refused_total{reason=\"protocol\"}", 1).await;
    assert_eq!(
        c.metric("sobre_mqtt_refused_total{reason=\"not_enrolled\"}")
            .await,
        0,
        "it never reached the credential check"
    );
    // The same CONNECT without it reaches the check, and is refused there.
    let mut s = tcp(c.mqtt).await;
    s.write_all(&connect_packet("sobre-agent-a1", 0xc2, 30))
        .await
        .expect("connect");
    assert_eq!(until_closed(&mut s, "bad key").await, [0x20, 2, 0, 5]);
    metric_at_least(&c, "sobre_mqtt_refused_total{reason=\"not_enrolled\"}", 1).await;
}

#[tokio::test]
async fn log_flood_per_client_id() {
    const CLIENTS: u64 = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(dir.path(), "", true).await;
    for i in 0..CLIENTS {
        let mut s = tcp(c.mqtt).await;
        s.write_all(&connect_packet(&format!("stranger-{i}"), 0xc2, 30))
            .await
            .expect("connect");
        assert_eq!(until_closed(&mut s, "stranger").await, [0x20, 2, 0, 5]);
    }
    assert_eq!(
        c.metric("sobre_mqtt_refused_total{reason=\"not_enrolled\"}")
            .await,
        CLIENTS,
        "every refusal counted"
    );
    let refusals = |log: &str| {
        log.lines()
            .filter(|l| l.contains("MQTT client refused by the guard"))
            .count()
    };
    // One line per reason per 10 s, whatever the client id; the rest is
    // summarised once the reason falls quiet.
    let log = wait_for("the summary of the lines left out", PATIENCE, || async {
        let log = c.log();
        log.contains("more like it").then_some(log)
    })
    .await;
    let lines = refusals(&log);
    assert!(
        (1..=CLIENTS as usize / 10).contains(&lines),
        "{lines} lines for {CLIENTS} refusals"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("mqtt not_enrolled") && l.contains("more like it")),
        "{log}"
    );
}

#[tokio::test]
async fn failed_sign_ins_block_their_source_on_every_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(
        dir.path(),
        "failed_auth_burst = 3\nfailed_auth_refill_s = 3600\n",
        true,
    )
    .await;
    for _ in 0..3 {
        let mut s = tcp(c.mqtt).await;
        s.write_all(&connect_packet("sobre-agent-a1", 0xc2, 30))
            .await
            .expect("connect");
        assert_eq!(until_closed(&mut s, "bad key").await, [0x20, 2, 0, 5]);
    }
    // The fourth is closed before its CONNECT is read.
    let mut s = tcp(c.mqtt).await;
    let _ = s
        .write_all(&connect_packet("sobre-agent-a1", 0xc2, 30))
        .await;
    assert!(until_closed(&mut s, "blocked").await.is_empty());
    metric_at_least(&c, "sobre_auth_blocked_total{listener=\"mqtt\"}", 1).await;
    // The console's login and gRPC Enrol refuse it too, without checking.
    let login = sobre_tests::http_client()
        .post(format!("http://127.0.0.1:{}/login", c.http))
        .header("Origin", format!("http://127.0.0.1:{}", c.http))
        .header("Sec-Fetch-Site", "same-origin")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("token=nope&back=%2F")
        .send()
        .await
        .expect("POST /login");
    assert_eq!(login.status().as_u16(), 429);
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", c.grpc))
        .expect("URL")
        .connect()
        .await
        .expect("gRPC");
    let mut grpc = sobre_proto::v1::telemetry_client::TelemetryClient::new(channel);
    let enrol = grpc
        .enrol(sobre_proto::v1::EnrolRequest {
            agent_id: "a1".into(),
            token: "nope".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(enrol.code(), tonic::Code::ResourceExhausted, "{enrol:?}");
    // Reads are not sign-ins.
    assert_eq!(c.get_status("/health").await.0, 200);
    assert_eq!(
        c.metric("sobre_auth_failures_total{listener=\"mqtt\"}")
            .await,
        3
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = collector(
        dir.path(),
        "handshake_timeout_s = 600\nmqtt_connect_timeout_s = 600\n[listeners.mqtt]\nmax_connections = 4\nidle_timeout_s = 600\n",
        false,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tcp(c.mqtt).await);
    }
    // The fifth is closed at once, its CONNECT unanswered.
    let mut fifth = tcp(c.mqtt).await;
    let _ = fifth.write_all(&connect_packet("fifth", 0x02, 30)).await;
    assert!(until_closed(&mut fifth, "past the cap").await.is_empty());
    metric_at_least(
        &c,
        "sobre_connections_refused_total{listener=\"mqtt\",reason=\"cap\"}",
        1,
    )
    .await;
    assert_eq!(
        c.metric("sobre_connections_open{listener=\"mqtt\"}").await,
        4
    );
    // A slot given back is a slot taken again: signed in, CONNACK 0.
    held.pop();
    metric_at_least(&c, "sobre_connections_max{listener=\"mqtt\"}", 4).await;
    wait_for("a free slot", PATIENCE, || async {
        (c.metric("sobre_connections_open{listener=\"mqtt\"}").await == 3).then_some(())
    })
    .await;
    let mut again = tcp(c.mqtt).await;
    again
        .write_all(&connect_packet("again", 0x02, 30))
        .await
        .expect("connect");
    let mut connack = [0u8; 4];
    tokio::time::timeout(PATIENCE, again.read_exact(&mut connack))
        .await
        .expect("answered")
        .expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);
}
