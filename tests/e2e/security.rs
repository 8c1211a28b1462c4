//! Security end to end: who may read and write the API. Writes need the
//! admin token, a read-only token reads but cannot write, a wrong token
//! is refused; every refusal is counted and logged without the token.

use sobre_tests::{Collector, CollectorOpts};

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
