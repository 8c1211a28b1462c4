//! The README's first command: `sobre-collector quickstart` runs Sobre on
//! this machine with no setup, and the API soon lists this machine with
//! its inventory and live samples.

use crate::PATIENCE;
use sobre_tests::{bin, sigterm, wait_for};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_lists_this_machine_with_inventory_and_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("quickstart.log");
    let log_file = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(bin("sobre-collector"))
        .args([
            "quickstart",
            "--http",
            "127.0.0.1:0",
            "--interval",
            "1",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("SOBRE_LOG", "info,sobre_agent=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("start quickstart");
    // The banner says where to go.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let url = lines
        .find_map(|l| l.trim().strip_prefix("Open").map(|u| u.trim().to_owned()))
        .expect("the banner prints the address to open");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let token = lines
        .find_map(|l| {
            l.trim()
                .strip_prefix("Admin  token")
                .map(|t| t.trim().to_owned())
        })
        .expect("the banner prints the admin token");
    assert_eq!(token.len(), 64, "{token}");

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned();
    let client = sobre_tests::http_client();
    let id = wait_for("this machine in /api/v1/agents", PATIENCE, || {
        let (client, url, hostname) = (client.clone(), url.clone(), hostname.clone());
        async move {
            let v: serde_json::Value = client
                .get(format!("{url}/api/v1/agents"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let a = v
                .as_array()?
                .iter()
                .find(|a| a["hostname"] == hostname.as_str())?;
            (a["online"] == true).then(|| a["id"].as_str().map(str::to_owned))?
        }
    })
    .await;
    let detail: serde_json::Value = client
        .get(format!("{url}/api/v1/agents/{id}"))
        .send()
        .await
        .expect("GET agent")
        .json()
        .await
        .expect("JSON");
    assert!(
        detail["inventory"]["mem_total_bytes"].as_u64().unwrap_or(0) > 0,
        "{detail}"
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let _guard = PrintOnPanic(&log);
    // Secure by default: writes need the printed token, which the logs
    // never show.
    let detect = |t: Option<&str>| {
        let mut r = client.post(format!("{url}/api/v1/detect"));
        if let Some(t) = t {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(detect(None).await.expect("POST").status(), 401);
    assert_eq!(detect(Some(&token)).await.expect("POST").status(), 200);
    assert!(
        !log().contains(&token),
        "the admin token leaked into the logs"
    );
    wait_for("live samples", PATIENCE, || {
        let (client, url, id) = (client.clone(), url.clone(), id.clone());
        async move {
            let v: serde_json::Value = client
                .get(format!("{url}/api/v1/agents/{id}/samples"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (v.as_array()?.len() >= 2).then_some(())
        }
    })
    .await;
    sigterm(child.id());
    let status = crate::wait_child(&mut child).await;
    assert!(status.success(), "quickstart exit {status:?}");
}

/// Prints the quickstart's log if the test fails past this point.
struct PrintOnPanic<'a, F: Fn() -> String>(&'a F);

impl<F: Fn() -> String> Drop for PrintOnPanic<'_, F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- quickstart log ---\n{}", (self.0)());
        }
    }
}
