//! Sobre's web pages in a real browser (headless Debian Chromium, axe-core):
//! the collector's page passes, and the checker itself is shown to catch
//! each kind of problem it claims to, on a page built to have them.

use sobre_tests::browser::{PageCheck, check_page};
use sobre_tests::{Collector, CollectorOpts};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// Issue #7's budget for a page Sobre publishes.
pub(crate) const MAX_BYTES: u64 = 100_000;

/// `check_page` drives a browser for a few seconds: off the async workers.
pub(crate) async fn check(url: String, max_bytes: u64) -> PageCheck {
    tokio::task::spawn_blocking(move || check_page(&url, max_bytes))
        .await
        .expect("check_page")
}

#[tokio::test]
async fn collector_page_renders_clean_light_and_accessible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let check = check(format!("http://127.0.0.1:{}/", c.http), MAX_BYTES).await;
    let problems = check.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    // It did look at the page, at both widths.
    for name in ["phone", "desktop"] {
        let v = check.viewport(name).expect("viewport checked");
        assert_eq!(v.status, Some(200), "{v:#?}");
        assert!(v.bytes > 0, "{v:#?}");
    }
}

/// A page with one of each problem the checker must catch.
const BAD_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Broken on purpose</title>
<script src="http://example.invalid/x.js"></script>
</head><body>
<img src="/missing.png">
<div style="width:900px">wider than a phone</div>
<p><a href="/help">reachable</a> <a href="/hidden" tabindex="-1">out of the tab order</a></p>
<script>console.error("deliberate console error")</script>
<script>throw new Error("deliberate uncaught error")</script>
</body></html>"#;

/// Serves `BAD_PAGE` at `/` and 404 elsewhere, one connection at a time,
/// from a thread that lives as long as the test process.
fn serve_bad_page() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Skip the headers up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path == "/" {
                ("200 OK", BAD_PAGE)
            } else {
                ("404 Not Found", "not found")
            };
            let _ = write!(
                &stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn checker_catches_each_problem_it_claims_to() {
    let port = serve_bad_page();
    // A budget smaller than the page itself, to see the weight check fail.
    let check = check(format!("http://127.0.0.1:{port}/"), 200).await;
    assert!(!check.ok, "{check:#?}");
    let problems = check.problems();
    for name in ["phone", "desktop"] {
        let v = check.viewport(name).expect("viewport checked");
        let has = |list: &[String], s: &str| list.iter().any(|e| e.contains(s));
        assert!(
            has(&v.console_errors, "deliberate console error"),
            "{name}: {v:#?}"
        );
        assert!(
            has(&v.console_errors, "uncaught: deliberate uncaught error"),
            "{name}: {v:#?}"
        );
        assert!(
            has(&v.third_party_requests, "example.invalid/x.js"),
            "{name}: {v:#?}"
        );
        assert!(has(&v.failed_requests, "/missing.png"), "{name}: {v:#?}");
        assert!(
            v.violations
                .iter()
                .any(|a| a.id == "image-alt" && a.impact == "critical"),
            "{name}: {v:#?}"
        );
        assert!(v.bytes > 200, "{name}: {v:#?}");
        assert!(
            has(
                &problems,
                &format!("{name} {}x{}: weighs", v.width, v.height)
            ),
            "{problems:#?}"
        );
    }
    // 900 px of content overflow a phone, not a desktop.
    let (phone, desktop) = (
        check.viewport("phone").expect("phone"),
        check.viewport("desktop").expect("desktop"),
    );
    assert!(phone.horizontal_overflow, "{phone:#?}");
    assert!(!desktop.horizontal_overflow, "{desktop:#?}");
    // Keyboard: the link taken out of the tab order, and only it.
    assert_eq!(desktop.unreachable_by_keyboard.len(), 1, "{desktop:#?}");
    assert!(
        desktop.unreachable_by_keyboard[0].contains("/hidden"),
        "{desktop:#?}"
    );
}
