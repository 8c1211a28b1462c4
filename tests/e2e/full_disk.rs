//! A full disk under the collector's store: commits fail, nothing is
//! acked and nothing lost; once space is back, every report is stored
//! exactly once.

use crate::{PATIENCE, assert_once_in_order};
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport, wait_for};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tmpfs, unmounted on drop. Mounting needs root, which CI and
/// this project's machines have; elsewhere the test says so and fails.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes until the file system refuses; returns the ballast's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_under_the_store_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&dir.path().join("disk"), "8m");
    let c_dir = dir.path().join("collector");
    let mut c = Collector::start(
        &c_dir,
        CollectorOpts {
            data_dir: Some(disk.0.join("data")),
            ..Default::default()
        },
    )
    .await;
    let opts = AgentOpts::new("full-disk", Transport::Mqtt);
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    c.wait_samples(&agent.id, 20, PATIENCE).await;

    let ballast = fill(&disk.0);
    wait_for("a failed commit", PATIENCE, || async {
        (c.metric("sobre_store_commit_errors_total").await > 0).then_some(())
    })
    .await;
    assert!(c.log().contains("store commit failed"), "{}", c.log());
    // Nothing stored while full means nothing acked: the agent holds it.
    std::fs::remove_file(&ballast).expect("free the disk");
    let before = c.sample_seqs(&agent.id).await.len();
    c.wait_samples(&agent.id, before + 20, PATIENCE).await;
    assert!(agent.stop().await.success());
    assert!(agent.log().contains("spool drained"), "{}", agent.log());
    assert_once_in_order(&c.sample_seqs(&agent.id).await);
    let status = c.stop().await;
    assert!(status.success());
}
