//! Harness for Sobre's end-to-end tests: runs the real `sobre-collector`
//! and `sobre-agent` binaries, a real Mosquitto and a real PostgreSQL, on
//! free loopback ports, and waits on conditions (never on fixed sleeps).

pub mod browser;
pub mod postgres;
pub mod procs;
pub mod tls;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

pub use self::postgres::Postgres;
pub use procs::{Agent, AgentOpts, Collector, CollectorOpts, Mosquitto, Transport};

/// A binary built from this workspace, next to the test executable's
/// `deps/` folder. `tests/run` builds them first (`cargo build --bins`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --bins` (tests/run does it)",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `timeout`. Each poll is a real observation (HTTP call, file, process
/// state): this is waiting on a condition, not sleeping to synchronise.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}

/// Sends SIGTERM (via kill(1), so the workspace needs no unsafe code).
pub fn sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -TERM {pid} failed");
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An HTTP client for the tests. The workspace builds reqwest with
/// rustls and no default crypto provider (the collector's sink picks
/// ring), so install ring once before building one.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
