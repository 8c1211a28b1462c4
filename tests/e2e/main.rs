//! End-to-end tests: the real binaries, a real Mosquitto, real SQLite and
//! PostgreSQL.
//! One test binary for the whole suite (see tests/run).

mod bad_input;
mod browser;
mod campaign;
mod cluster;
mod cluster_influx;
mod config;
mod console;
mod crash;
mod delivery;
mod flood;
mod footprint;
mod full_disk;
mod hardening;
mod identity;
mod influx;
mod listeners;
mod nudges;
mod quickstart;
mod security;
mod siege;
mod spool_damage;
mod storage;
mod store;
mod tls;
mod windows;

use std::time::Duration;

/// Generous bound for conditions that normally hold within a second: the
/// machine running the tests is shared and may be slow.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Every seq exactly once, consecutive, in increasing order.
pub fn assert_once_in_order(seqs: &[u64]) {
    assert!(!seqs.is_empty(), "no samples stored");
    for w in seqs.windows(2) {
        assert!(
            w[1] == w[0] + 1,
            "seqs must be consecutive and unique: {} followed by {} (of {} samples)",
            w[0],
            w[1],
            seqs.len()
        );
    }
}

/// Waits for a child process to exit (bounded by [`PATIENCE`]).
pub async fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
    sobre_tests::procs::wait_exit(child, PATIENCE).await
}
