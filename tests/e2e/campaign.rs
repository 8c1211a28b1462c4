//! A Clean Up Day campaign end to end: real collector, real agents
//! scanning a tree from `gen_tree.py`, files deleted, moved and added
//! during the campaign; the report equals the ground truth the test
//! computes from the files it touched, a host offline at the start joins
//! when it reconnects, a host outside the scope gets nothing, and the
//! printable report passes the browser check.

use crate::PATIENCE;
use crate::browser::{MAX_BYTES, check};
use serde_json::{Value, json};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn gen_tree(dir: &Path, files: u32, seed: u32) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/gen_tree.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir)
        .args(["--files", &files.to_string(), "--seed", &seed.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "gen_tree.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Regular files under `root` with one link (hard links are not freed by
/// deleting one name), with their size, mtime and a content hash.
fn files(root: &Path) -> Vec<(PathBuf, u64, i64, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() && m.nlink() == 1 {
                let mut h = DefaultHasher::new();
                h.write(&std::fs::read(&p).expect("read"));
                out.push((p, m.len(), m.mtime(), h.finish()));
            }
        }
    }
    out.sort();
    out
}

fn agent(dir: &Path, id: &str, group: &str, tree: &Path, c: &Collector) -> Agent {
    let mut o = AgentOpts::new(id, Transport::Mqtt);
    o.interval_ms = 1000;
    o.extra_toml = format!("group = \"{group}\"");
    o.storage_toml = Some(format!(
        "enabled = true\nfirst_delay_ms = 0\ninterval_ms = 86400000\nbackground = false\nroots = [\"{}\"]",
        tree.display()
    ));
    Agent::start(&dir.join(id), &o, c.mqtt, c.grpc)
}

async fn report(c: &Collector) -> Value {
    c.get("/api/v1/campaigns/cud/report").await
}

fn host_listed(list: &Value, id: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|h| h["agent_id"] == id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_counts_exactly_what_was_deleted_and_only_in_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tree_a, tree_b, tree_c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    gen_tree(&tree_a, 1500, 7);
    gen_tree(&tree_b, 200, 8);
    gen_tree(&tree_c, 200, 9);
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            extra_toml: "[nudge]\ndispatch_interval_s = 1\nresend_after_s = 5\n".into(),
            ..Default::default()
        },
    )
    .await;
    let mut a = agent(dir.path(), "ws-a", "dsi", &tree_a, &c);
    let mut b = agent(dir.path(), "ws-b", "rh", &tree_b, &c);
    let mut late = agent(dir.path(), "ws-c", "dsi", &tree_c, &c);
    // Every host known with its group, then ws-c goes offline.
    wait_for("three inventories", PATIENCE, || async {
        let v = c.get("/api/v1/agents").await;
        let n = v
            .as_array()
            .map_or(0, |a| a.iter().filter(|h| !h["hostname"].is_null()).count());
        (n == 3).then_some(())
    })
    .await;
    assert!(late.stop().await.success());
    wait_for("ws-c offline", PATIENCE, || async {
        (c.get("/api/v1/agents/ws-c").await["online"] == false).then_some(())
    })
    .await;

    let api = "/api/v1/campaigns";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let new = json!({
        "id": "cud", "name": "Clean Up Day", "starts_at_ms": now + 3_600_000,
        "ends_at_ms": now + 7_200_000, "scope": {"groups": ["dsi"]},
        "rescan_interval_s": 60
    });
    // Writes need the admin token.
    let anonymous = sobre_tests::http_client()
        .post(format!("http://127.0.0.1:{}{api}", c.http))
        .json(&new)
        .send()
        .await
        .expect("anonymous create");
    assert_eq!(anonymous.status(), 401);
    let created = c.post_admin(api, Some(&new)).await;
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    let bad = c
        .post_admin(
            api,
            Some(&json!({"id": "x y", "name": "n", "starts_at_ms": 1, "ends_at_ms": 2})),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let started = c.post_admin(&format!("{api}/cud/start"), None).await;
    assert_eq!(started.status(), 200);

    // ws-a takes its baseline; ws-c, offline, is reported without one.
    let r = wait_for("ws-a's baseline", PATIENCE, || async {
        let r = report(&c).await;
        (r["hosts_with_baseline"] == 1).then_some(r)
    })
    .await;
    assert_eq!(r["hosts_in_scope"], 2, "{r}");
    assert!(host_listed(&r["hosts_without_baseline"], "ws-c"), "{r}");
    assert!(!host_listed(&r["hosts_without_baseline"], "ws-b"), "{r}");

    // A nudge for hosts in scope (the day before and during), none outside.
    let nudged = |id: &'static str| {
        let c = &c;
        async move {
            c.get(&format!("/api/v1/agents/{id}/nudges"))
                .await
                .as_array()
                .is_some_and(|a| a.iter().any(|n| n["kind"] == "campaign"))
        }
    };
    wait_for("a campaign nudge for ws-a", PATIENCE, || async {
        nudged("ws-a").await.then_some(())
    })
    .await;
    assert!(!nudged("ws-b").await, "a host outside the scope was nudged");

    // During the campaign: delete duplicates and others, move some, add some.
    let before = files(&tree_a);
    let mut by_content: HashMap<(u64, u64), usize> = HashMap::new();
    for f in &before {
        *by_content.entry((f.1, f.3)).or_default() += 1;
    }
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<_> = before
        .iter()
        .filter(|f| f.1 > 0 && by_content[&(f.1, f.3)] > 1 && seen.insert((f.1, f.3)))
        .take(15)
        .cloned()
        .collect();
    let unique: Vec<_> = before
        .iter()
        .filter(|f| by_content[&(f.1, f.3)] == 1)
        .cloned()
        .collect();
    let (others, moved) = (&unique[..25], &unique[25..35]);
    let mut deleted_bytes = 0;
    for f in dups.iter().chain(others) {
        std::fs::remove_file(&f.0).expect("rm");
        deleted_bytes += f.1;
    }
    let deleted_files = (dups.len() + others.len()) as u64;
    let dup_bytes: u64 = dups.iter().map(|f| f.1).sum();
    std::fs::create_dir_all(tree_a.join("Rangement")).expect("mkdir");
    for (i, f) in moved.iter().enumerate() {
        std::fs::rename(&f.0, tree_a.join(format!("Rangement/rangé-{i}"))).expect("mv");
    }
    for i in 0..5 {
        std::fs::write(
            tree_a.join(format!("nouveau-{i}.bin")),
            vec![i as u8; 100_000],
        )
        .expect("new file");
    }

    // ws-c comes back and joins; then the campaign ends.
    late.restart();
    wait_for("ws-c's baseline", PATIENCE, || async {
        (report(&c).await["hosts_with_baseline"] == 2).then_some(())
    })
    .await;
    let ended = c.post_admin(&format!("{api}/cud/end"), None).await;
    assert_eq!(ended.status(), 200);
    let r = wait_for("final counts", PATIENCE, || async {
        let r = report(&c).await;
        (r["complete"] == true).then_some(r)
    })
    .await;

    let t = &r["totals"];
    assert_eq!(t["files_deleted"], deleted_files, "{r}");
    assert_eq!(t["bytes_deleted"], deleted_bytes, "{r}");
    assert_eq!(
        t["files_moved"],
        moved.len() as u64,
        "moves are not deletions: {r}"
    );
    assert_eq!(t["files_added"], 5, "{r}");
    assert_eq!(t["bytes_added"], 500_000, "{r}");
    assert_eq!(r["participants"], 1, "{r}");
    let cats = r["by_category"].as_array().expect("categories");
    let sum: u64 = cats.iter().map(|c| c["bytes"].as_u64().unwrap_or(0)).sum();
    assert_eq!(sum, deleted_bytes, "categories add up: {r}");
    let dup_cat = cats.iter().find(|c| c["category"] == "duplicates");
    assert_eq!(
        dup_cat.map(|c| c["bytes"].clone()),
        Some(json!(dup_bytes)),
        "{r}"
    );
    assert!(
        r["hosts_without_baseline"]
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "{r}"
    );
    let co2 = &r["co2e"];
    assert_eq!(co2["factor"]["key"], "ccf-ssd");
    assert_eq!(co2["range"].as_array().map(Vec::len), Some(4), "{r}");

    // ws-b, outside the scope, was never asked anything.
    assert!(
        !dir.path().join("ws-b/index/campaigns").exists(),
        "a host outside the scope took a baseline"
    );
    assert!(!b.log().contains("campaign"), "{}", b.log());
    let rows = r["by_group"].as_array().expect("groups");
    assert!(rows.iter().all(|g| g["group"] == "dsi"), "{r}");

    // The reports an organiser publishes.
    let (status, csv) = c.get_status("/api/v1/campaigns/cud/report.csv").await;
    assert_eq!(status, 200);
    assert!(
        csv.contains(&format!("cud,dsi,2,2,1,{deleted_files},{deleted_bytes}")),
        "{csv}"
    );
    let (status, page) = c
        .get_status("/api/v1/campaigns/cud/report.html?lang=en")
        .await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("nouveau") && !page.contains("Rangement"),
        "no names"
    );
    let url = format!(
        "http://127.0.0.1:{}/api/v1/campaigns/cud/report.html",
        c.http
    );
    let checked = check(url, MAX_BYTES).await;
    let problems = checked.problems();
    assert!(problems.is_empty(), "{problems:#?}");

    // The command line gives the same CSV, and says what is wrong.
    let cli = |args: &[&str]| {
        std::process::Command::new(sobre_tests::bin("sobre-collector"))
            .arg("--config")
            .arg(c.dir.join("collector.toml"))
            .arg("campaign")
            .args(args)
            .output()
            .expect("run sobre-collector campaign")
    };
    let out = cli(&["report", "cud", "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        csv.trim_end()
    );
    let out = cli(&[
        "create",
        "--id",
        "next",
        "--name",
        "n",
        "--starts",
        "tomorrow",
        "--ends",
        "2030-01-01",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"tomorrow\" is not a date") && err.contains("YYYY-MM-DD"),
        "{err}"
    );
    let out = cli(&["end", "cud"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is ended: cannot end it"));

    for x in [&mut a, &mut b, &mut late] {
        assert!(x.stop().await.success());
    }
}
