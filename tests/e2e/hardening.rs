//! Issue #21, what an outside probe broke, each as the probe did it: with
//! plain HTTP requests against the real collector.

use serde_json::json;
use sobre_tests::{Collector, CollectorOpts};

/// Values a hostile or careless client sends where a number is expected.
const EXTREMES: &[&str] = &[
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551615",
    "-1",
    "0",
    "1e300",
    "NaN",
];

/// Every query parameter of the API that takes a number, as `(method,
/// path with {v})`. A new one is added here with its endpoint; the query
/// structs take such numbers only as `http::params` types.
const NUMERIC: &[(&str, &str)] = &[
    ("GET", "/api/v1/footprint?from={v}"),
    ("GET", "/api/v1/footprint?to={v}"),
    ("GET", "/api/v1/footprint?from={v}&to=9223372036854775807"),
    ("GET", "/api/v1/footprint?from=-9223372036854775808&to={v}"),
    ("GET", "/api/v1/footprint?from={v}&to=0"),
    ("GET", "/api/v1/footprint?from=0&to={v}&step=hour"),
    ("GET", "/api/v1/agents/ws-1/samples?since={v}"),
    ("GET", "/api/v1/agents/ws-1/samples?limit={v}"),
    ("GET", "/api/v1/storage?top={v}"),
    ("POST", "/api/v1/findings/f-1/snooze?days={v}"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footprint_with_i64_extremes_no_longer_exhausts_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(dir.path(), CollectorOpts::default()).await;
    // The request of the probe: from/to at the extremes of i64.
    let (code, body) = c
        .get_status("/api/v1/footprint?from=-9223372036854775808&to=9223372036854775807")
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("year 9999"),
        "the error names the range: {body}"
    );
    // The widest window that is allowed still answers, bounded.
    let (code, body) = c
        .get_status("/api/v1/footprint?from=0&to=34560000000&step=day")
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = c
        .get_status("/api/v1/footprint?from=0&to=253402300799999")
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("400 days"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_numeric_parameter_takes_extremes_with_a_400_or_a_bounded_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(dir.path(), CollectorOpts::default()).await;
    let client = sobre_tests::http_client();
    let token = c.admin_token();
    let before_kb = c.status_kb("VmHWM");
    let mut seen = Vec::new();
    for (method, path) in NUMERIC {
        for v in EXTREMES {
            let url = format!("http://127.0.0.1:{}{}", c.http, path.replace("{v}", v));
            let req = match *method {
                "GET" => client.get(&url),
                _ => client.post(&url).bearer_auth(&token),
            };
            let r = req.send().await.expect("request");
            let code = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            assert!(
                matches!(code, 200 | 400 | 404),
                "{method} {url}: {code} {body}"
            );
            if code == 400 {
                assert!(body.contains("\"error\""), "{url}: a JSON error: {body}");
            }
            seen.push(code);
        }
    }
    // Campaign bodies: times at the extremes and reversed.
    for (start, end) in [
        (i64::MIN, i64::MAX),
        (0, i64::MAX),
        (i64::MIN, 0),
        (10_000, 5_000),
    ] {
        let r = c
            .post_admin(
                "/api/v1/campaigns",
                Some(&json!({"id": "c1", "name": "x", "starts_at_ms": start, "ends_at_ms": end})),
            )
            .await;
        let code = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(code, 400, "campaign {start}..{end}: {body}");
    }
    let r = c
        .post_admin(
            "/api/v1/campaigns",
            Some(
                &json!({"id": "c2", "name": "x", "starts_at_ms": 0, "ends_at_ms": 1,
                "rescan_interval_s": u32::MAX}),
            ),
        )
        .await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(seen.contains(&400), "{seen:?}");
    // Nothing above may have made the collector grow: 64 MB over what it
    // had at the start is far beyond any of these answers.
    let after_kb = c.status_kb("VmHWM");
    assert!(
        after_kb < before_kb + 64 * 1024,
        "peak RSS grew from {before_kb} kB to {after_kb} kB"
    );
    let (code, _) = c.get_status("/health").await;
    assert_eq!(code, 200);
}

/// Every file and folder under `root`, with its mode.
fn modes(root: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue; // gone while listing (a temporary file renamed)
        };
        out.push((p.clone(), meta.permissions().mode() & 0o7777));
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir").flatten() {
                stack.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_keys_and_spool_are_no_longer_readable_by_other_local_users() {
    // Started with umask 0, as a careless service manager might: every
    // file and folder the collector and the agent create is owner-only
    // all the same.
    rustix::process::umask(rustix::fs::Mode::empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            enrolment: true,
            ..Default::default()
        },
    )
    .await;
    let t = crate::identity::token(&c, "ws-modes").await;
    let mut o = sobre_tests::AgentOpts::new("ws-modes", sobre_tests::Transport::Grpc);
    o.interval_ms = 100;
    let key = dir.path().join("agent/state/agent.key");
    o.enrol_toml = format!("token = \"{t}\"\ncredential_file = \"{}\"", key.display());
    o.storage_toml = Some("enabled = true\nfirst_delay_ms = 0\nroots = []".into());
    let agent_dir = dir.path().join("agent");
    let _a = sobre_tests::Agent::start(&agent_dir, &o, c.mqtt, c.grpc);
    c.wait_samples("ws-modes", 3, crate::PATIENCE).await;
    let mut checked = modes(&c.data_dir);
    for sub in ["spool", "index", "state"] {
        checked.extend(modes(&agent_dir.join(sub)));
    }
    let names: Vec<String> = checked
        .iter()
        .map(|(p, _)| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for want in [
        "sobre.sqlite",
        "sobre.sqlite-wal",
        "admin.token",
        "agent.key",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} not found in {names:?}"
        );
    }
    let open: Vec<_> = checked.iter().filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(open.is_empty(), "readable by others: {open:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_enrolment_token_no_longer_takes_over_an_existing_agent() {
    use sobre_proto::v1::EnrolRequest;
    use sobre_proto::v1::telemetry_client::TelemetryClient;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            enrolment: true,
            ..Default::default()
        },
    )
    .await;
    let t = crate::identity::token(&c, "ws-victim").await;
    let mut o = sobre_tests::AgentOpts::new("ws-victim", sobre_tests::Transport::Grpc);
    o.interval_ms = 100;
    o.enrol_toml = format!("token = \"{t}\"");
    let _victim = sobre_tests::Agent::start(&dir.path().join("victim"), &o, c.mqtt, c.grpc);
    let before = c.wait_samples("ws-victim", 3, crate::PATIENCE).await.len();
    // The probe: a token for any id, then Enrol with the victim's id.
    let r = c.post_admin("/api/v1/enrolments", Some(&json!({}))).await;
    assert_eq!(r.status(), 201);
    let any: serde_json::Value = r.json().await.expect("JSON");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", c.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = TelemetryClient::new(channel);
    let refused = client
        .enrol(EnrolRequest {
            agent_id: "ws-victim".into(),
            token: any["token"].as_str().expect("token").into(),
        })
        .await
        .expect_err("must not replace the victim's key");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("already enrolled"),
        "{refused:?}"
    );
    // The real agent goes on being heard.
    c.wait_samples("ws-victim", before + 5, crate::PATIENCE)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_redirect_csrf_and_host_probes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(dir.path(), CollectorOpts::default()).await;
    let token = c.admin_token();
    let base = format!("http://127.0.0.1:{}", c.http);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Open redirect: back=/%09/evil.example passed the old check, and
    // browsers drop the tab.
    let r = client
        .post(format!("{base}/login"))
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&back=%2F%09%2Fevil.example"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(to.starts_with('/') && !to.contains("evil"), "{to}");

    // CSRF on the JSON API: a page on another port of the same site
    // (a Grafana beside Sobre) posts with the sign-in cookie.
    let forged = client
        .post(format!("{base}/api/v1/enrolments"))
        .header("cookie", format!("sobre_token={token}"))
        .header("origin", "http://127.0.0.1:3000")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("POST");
    let code = forged.status().as_u16();
    let body = forged.text().await.unwrap_or_default();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("another site"), "{body}");
    // The same from this collector's own origin, or by bearer, goes through.
    let own = client
        .post(format!("{base}/api/v1/enrolments"))
        .header("cookie", format!("sobre_token={token}"))
        .header("origin", &base)
        .json(&json!({}))
        .send()
        .await
        .expect("POST");
    assert_eq!(own.status(), 201);

    // DNS rebinding: a request for a name that is not ours.
    let rebound = client
        .get(format!("{base}/api/v1/agents"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("GET");
    let code = rebound.status().as_u16();
    let body = rebound.text().await.unwrap_or_default();
    assert_eq!(code, 421, "{body}");
    assert!(body.contains("http.allowed_hosts"), "{body}");
    let ours = client
        .get(format!("{base}/api/v1/agents"))
        .header("host", format!("localhost:{}", c.http))
        .send()
        .await
        .expect("GET");
    assert_eq!(ours.status(), 200);
}
