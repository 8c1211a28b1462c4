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
