//! TLS end to end (rustls in the agent and the collector): over gRPC to the
//! collector, and over MQTT through a Mosquitto with a TLS listener. An
//! agent that trusts the CA delivers; a plain-text agent against a TLS
//! listener and an agent facing an expired certificate are refused, with a
//! clear error in their logs, and nothing of theirs is stored.

use crate::PATIENCE;
use sobre_tests::tls::pki;
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Mosquitto, Transport, wait_for};

fn tls_collector_opts(p: &sobre_tests::tls::Pki) -> CollectorOpts {
    CollectorOpts {
        grpc_toml: p.server_toml(),
        ..Default::default()
    }
}

fn tls_agent(id: &str, ca: &std::path::Path) -> AgentOpts {
    let mut o = AgentOpts::new(id, Transport::Grpc);
    o.interval_ms = 100;
    o.grpc_scheme = "https";
    o.transport_toml = format!("ca_file = \"{}\"", ca.display());
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_delivers_and_refuses_plain_text_and_expired_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let good = pki(&d.join("pki"), false);
    let c = Collector::start(&d.join("collector"), tls_collector_opts(&good)).await;
    assert!(c.log().contains("gRPC over TLS"), "{}", c.log());

    let mut secure = Agent::start(
        &d.join("secure"),
        &tls_agent("secure", &good.ca),
        c.mqtt,
        c.grpc,
    );
    crate::assert_once_in_order(&c.wait_samples("secure", 5, PATIENCE).await);

    // Plain text against the TLS listener.
    let mut o = AgentOpts::new("plain", Transport::Grpc);
    o.interval_ms = 100;
    let mut plain = Agent::start(&d.join("plain"), &o, c.mqtt, c.grpc);
    wait_for("the plain-text agent's error", PATIENCE, || async {
        plain
            .log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("the collector may require TLS"))
            .then_some(())
    })
    .await;
    assert_eq!(c.get_status("/api/v1/agents/plain").await.0, 404);

    // A collector whose certificate expired.
    let old = pki(&d.join("pki-expired"), true);
    let c2 = Collector::start(&d.join("collector2"), tls_collector_opts(&old)).await;
    let mut late = Agent::start(
        &d.join("late"),
        &tls_agent("late", &old.ca),
        c2.mqtt,
        c2.grpc,
    );
    let line = wait_for("the expired certificate's error", PATIENCE, || async {
        late.log()
            .lines()
            .find(|l| l.to_lowercase().contains("expired"))
            .map(String::from)
    })
    .await;
    assert!(
        line.contains("certificate expired") && line.contains("gRPC"),
        "{line}"
    );
    assert_eq!(c2.get_status("/api/v1/agents/late").await.0, 404);

    let stops = tokio::join!(secure.stop(), plain.stop(), late.stop());
    for s in [stops.0, stops.1, stops.2] {
        assert!(s.success(), "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_through_mosquitto_delivers_and_refuses_plain_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let p = pki(&d.join("pki"), false);
    let broker = Mosquitto::start_tls(&d.join("mosquitto"), &p).await;
    let c = Collector::start(
        &d.join("collector"),
        CollectorOpts {
            external_broker: Some(broker.port),
            mqtt_tls_ca: Some(p.ca.clone()),
            ..Default::default()
        },
    )
    .await;
    wait_for("the collector's TLS client connected", PATIENCE, || async {
        c.log().contains("connected to MQTT broker").then_some(())
    })
    .await;
    let mut secure = AgentOpts::new("mqtts-agent", Transport::Mqtt);
    secure.interval_ms = 100;
    secure.transport_toml = format!("ca_file = \"{}\"", p.ca.display());
    secure.mqtt_scheme = "mqtts";
    let mut secure = Agent::start(&d.join("secure"), &secure, broker.port, c.grpc);
    crate::assert_once_in_order(&c.wait_samples("mqtts-agent", 5, PATIENCE).await);

    let mut o = AgentOpts::new("mqtt-plain", Transport::Mqtt);
    o.interval_ms = 100;
    let mut plain = Agent::start(&d.join("plain"), &o, broker.port, c.grpc);
    wait_for("the plain-text agent's error", PATIENCE, || async {
        plain
            .log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("if the broker requires TLS"))
            .then_some(())
    })
    .await;
    assert_eq!(c.get_status("/api/v1/agents/mqtt-plain").await.0, 404);
    let stops = tokio::join!(secure.stop(), plain.stop());
    assert!(stops.0.success() && stops.1.success(), "{stops:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_speaks_tls_through_the_collectors_front() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let p = pki(&d.join("pki"), false);
    let tls_port = sobre_tests::free_port();
    let c = Collector::start(
        &d.join("collector"),
        CollectorOpts {
            mqtt_toml: p.mqtt_tls_toml(tls_port),
            ..Default::default()
        },
    )
    .await;
    let mut o = AgentOpts::new("front-agent", Transport::Mqtt);
    o.interval_ms = 100;
    o.mqtt_scheme = "mqtts";
    o.transport_toml = format!("ca_file = \"{}\"", p.ca.display());
    let mut a = Agent::start(&d.join("a"), &o, tls_port, c.grpc);
    crate::assert_once_in_order(&c.wait_samples("front-agent", 5, PATIENCE).await);
    // A plain-text client on the TLS port: the handshake fails, logged.
    let mut plain = AgentOpts::new("front-plain", Transport::Mqtt);
    plain.interval_ms = 100;
    let mut b = Agent::start(&d.join("b"), &plain, tls_port, c.grpc);
    wait_for(
        "the refused handshake in the collector's log",
        PATIENCE,
        || async { c.log().contains("MQTT TLS handshake refused").then_some(()) },
    )
    .await;
    assert_eq!(c.get_status("/api/v1/agents/front-plain").await.0, 404);
    let stops = tokio::join!(a.stop(), b.stop());
    assert!(stops.0.success() && stops.1.success(), "{stops:?}");
}

/// One HTTP/1.1 GET over TLS trusting only `ca`; the response as text.
async fn https_get(port: u16, ca: &std::path::Path, path: &str) -> std::io::Result<String> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await.or_else(|e| {
        // Some servers close without TLS close_notify after the response.
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Ok(0)
        } else {
            Err(e)
        }
    })?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_console_are_served_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let p = pki(&d.join("pki"), false);
    let port = sobre_tests::free_port();
    let cfg = format!(
        "data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:0\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n",
        d.join("data").display(),
        p.cert.display(),
        p.key.display()
    );
    std::fs::write(d.join("collector.toml"), cfg).expect("config");
    let log = std::fs::File::create(d.join("collector.log")).expect("log");
    let mut child = std::process::Command::new(sobre_tests::bin("sobre-collector"))
        .arg("--config")
        .arg(d.join("collector.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the collector");
    let health = wait_for("/health over HTTPS", PATIENCE, || async {
        https_get(port, &p.ca, "/health").await.ok()
    })
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let console = https_get(port, &p.ca, "/")
        .await
        .expect("console over HTTPS");
    assert!(
        console.starts_with("HTTP/1.1 200") && console.contains("<html"),
        "{console}"
    );
    // Plain HTTP on the HTTPS port gets no page.
    let plain = sobre_tests::http_client()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.is_ok_and(|r| r.status().is_success()));
    let log = || std::fs::read_to_string(d.join("collector.log")).unwrap_or_default();
    wait_for("the refused handshake logged", PATIENCE, || async {
        log().contains("HTTPS handshake refused").then_some(())
    })
    .await;
    sobre_tests::sigterm(child.id());
    let status = sobre_tests::procs::wait_exit(&mut child, PATIENCE).await;
    assert!(status.success(), "{status:?}\n{}", log());
}
