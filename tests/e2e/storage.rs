//! Storage end to end: the agent's scheduled scan sends aggregates only,
//! the collector serves them per host and for the fleet.

use crate::PATIENCE;
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_scan_sends_aggregates_without_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A small tree with a duplicate pair and a distinctive name that must
    // not leave the machine.
    let tree = dir.path().join("home");
    std::fs::create_dir_all(tree.join("Documents")).expect("mkdir");
    let content = vec![7u8; 300_000];
    std::fs::write(tree.join("Documents/délibération-secrète-42.pdf"), &content).expect("w");
    std::fs::write(
        tree.join("Documents/Copie de délibération-secrète-42.pdf"),
        &content,
    )
    .expect("w");
    std::fs::write(tree.join("notes.tmp"), b"scratch").expect("w");

    let c = Collector::start(&dir.path().join("collector"), CollectorOpts::default()).await;
    let mut opts = AgentOpts::new("scanner", Transport::Mqtt);
    opts.interval_ms = 1000;
    opts.storage_toml = Some(format!(
        "enabled = true\nfirst_delay_ms = 0\nbackground = false\nroots = [\"{}\"]",
        tree.display()
    ));
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    let summary = wait_for("a storage summary", PATIENCE, || async {
        let (status, body) = c.get_status("/api/v1/agents/scanner/storage").await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(
        !summary.contains("secrète") && !summary.contains("Documents"),
        "names leaked: {summary}"
    );
    let v: serde_json::Value = serde_json::from_str(&summary).expect("JSON");
    assert_eq!(v["files"], 3, "{v}");
    assert_eq!(v["complete"], true);
    let dup: u64 = v["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .filter(|c| c["category"] == "duplicates")
        .map(|c| c["bytes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(dup, 300_000, "one copy is reclaimable: {v}");
    let fleet = c.get("/api/v1/storage").await;
    assert_eq!(fleet["hosts"], 1);
    assert!(
        fleet["reclaimable_bytes"].as_u64().unwrap_or(0) >= 300_000,
        "{fleet}"
    );
    assert!(agent.stop().await.success());
}
