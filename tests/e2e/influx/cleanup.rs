//! The Clean Up Day part of the InfluxDB test: a tiny tree for one real
//! agent to scan, and a campaign over the test's agents run through the
//! API from its start to the final count, so that the campaign dashboard
//! has real `campaign` points to show.

use crate::PATIENCE;
use serde_json::{Value, json};
use sobre_tests::{Collector, wait_for};
use std::path::{Path, PathBuf};

/// The campaign's id (a `campaign` tag value).
pub const ID: &str = "cud-influx";

/// Settings the campaign needs from the collector: commands resent
/// quickly if a host was not known yet when the campaign started.
pub const NUDGE_TOML: &str = "[nudge]\ndispatch_interval_s = 1\nresend_after_s = 5\n";

/// A few files in `dir` for an agent to scan; returns them with their size.
pub fn tiny_tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::create_dir_all(dir.join("Documents")).expect("tree");
    [
        ("Documents/rapport.odt", 12_000),
        ("Documents/photo.jpg", 30_000),
        ("notes.txt", 500),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, size))| {
        let p = dir.join(name);
        std::fs::write(&p, vec![b'a' + i as u8; size as usize]).expect("file");
        (p, size)
    })
    .collect()
}

/// The `[storage]` section of an agent that scans `tree` (once at start,
/// then for the campaign).
pub fn storage_toml(tree: &Path) -> String {
    format!(
        "enabled = true\nfirst_delay_ms = 0\ninterval_ms = 86400000\nbackground = false\nroots = [\"{}\"]",
        tree.display()
    )
}

async fn report(c: &Collector) -> Value {
    c.get(&format!("/api/v1/campaigns/{ID}/report")).await
}

/// Creates and starts a campaign over `groups`, waits for one host's
/// baseline, deletes `victim`, ends the campaign and waits for the final
/// count; returns the final report.
pub async fn run(c: &Collector, groups: &[&str], victim: &Path) -> Value {
    let now = sobre_tests::now_ms();
    let new = json!({
        "id": ID, "name": "Clean Up Day (InfluxDB test)",
        "starts_at_ms": now + 3_600_000, "ends_at_ms": now + 7_200_000,
        "scope": {"groups": groups}, "factor": "ccf-ssd", "rescan_interval_s": 60
    });
    let api = "/api/v1/campaigns";
    let r = c.post_admin(api, Some(&new)).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let r = c.post_admin(&format!("{api}/{ID}/start"), None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    wait_for("a campaign baseline", PATIENCE, || async {
        (report(c).await["hosts_with_baseline"] == 1).then_some(())
    })
    .await;
    std::fs::remove_file(victim).expect("delete a file during the campaign");
    let r = c.post_admin(&format!("{api}/{ID}/end"), None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    wait_for("the campaign's final count", PATIENCE, || async {
        let r = report(c).await;
        (r["complete"] == true).then_some(r)
    })
    .await
}
