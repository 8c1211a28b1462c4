//! Harness for Sobre's end-to-end tests: runs the real `sobre-collector`
//! and `sobre-agent` binaries, a real Mosquitto and a real PostgreSQL, on
//! free loopback ports, and waits on conditions (never on fixed sleeps).

pub mod browser;
pub mod postgres;
pub mod procs;
pub mod tls;

use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use self::postgres::Postgres;
pub mod wine;
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

/// A loopback port that is free now and that no other test of this run has
/// been given.
///
/// Ports come from outside the kernel's ephemeral range ([`server_ports`]),
/// so no outgoing connection can hold one as its local end: a port taken
/// from that range could be grabbed
/// by any client (an agent reconnecting to the collector it lost, or another
/// test's HTTP client) between a server's kill and its restart, and the
/// restart then failed to bind (`crash::collector_sigkill_mid_stream_grpc_…`
/// timed out once in CI). Each port handed out is claimed by creating a file
/// named after it in a folder per test run, so test processes running side
/// by side never share one.
pub fn free_port() -> u16 {
    // Read and created once per test process, not once per port.
    static PORTS: OnceLock<(RangeInclusive<u16>, PathBuf)> = OnceLock::new();
    let (ports, claims) = PORTS.get_or_init(|| (server_ports(), claims_dir()));
    for _ in 0..10_000 {
        let port = fastrand::u16(ports.clone());
        let claimed = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(claims.join(port.to_string()))
            .is_ok();
        if claimed && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port in {ports:?} after 10,000 tries (claims in {})",
        claims.display()
    )
}

/// Where test servers listen: the larger side of the kernel's ephemeral
/// range (`ip_local_port_range`, 32768–60999 by default) from 10000 up,
/// or all of 10000–65535 when neither side has 2,000 ports (a range set
/// to nearly everything), where a client may again take a server's port.
fn server_ports() -> RangeInclusive<u16> {
    let (start, end) = ephemeral_ports().into_inner();
    let below = 10_000..=start.saturating_sub(1);
    let above = end.saturating_add(1).max(10_000)..=65_535;
    let size = |r: &RangeInclusive<u16>| r.end().saturating_sub(*r.start());
    let best = if size(&below) >= size(&above) {
        below
    } else {
        above
    };
    if size(&best) >= 2_000 {
        best
    } else {
        ALL_PORTS
    }
}

/// The fallback of [`server_ports`].
const ALL_PORTS: RangeInclusive<u16> = 10_000..=65_535;

/// The kernel's ephemeral range, from which clients' connections take
/// their local ports (Linux's default when unreadable).
fn ephemeral_ports() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some(it.next()?.ok()?..=it.next()?.ok()?)
        })
        .unwrap_or(32_768..=60_999)
}

/// The folder where this run's tests claim their ports: one per nextest run
/// (`NEXTEST_RUN_ID`; nextest runs each test in a process of its own), else
/// one per process (`cargo test` runs them all as threads of one), under the
/// target directory. `tests/run` clears the old ones.
fn claims_dir() -> PathBuf {
    let run =
        std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.parent().expect("test executable's folder");
    let dir = target.join("test-ports").join(run);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
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
/// A `kB` figure of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Regression: a restarted collector could not bind its gRPC port,
    /// because a port from the ephemeral range had been taken meanwhile as
    /// the local end of some client's connection.
    #[test]
    fn restarted_servers_port_cannot_be_taken_by_a_client_connection() {
        let range = server_ports();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        assert!(
            ports.iter().all(|p| range.contains(p)),
            "{ports:?} vs {range:?}"
        );
        let unique: HashSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len(), "a port was given twice");
        // Clients take their local ports from the ephemeral range, which
        // the servers' ports stay out of (unless the kernel's range leaves
        // no room, the fallback).
        let server = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(server.local_addr().expect("addr")).expect("connect");
        let local = client.local_addr().expect("local addr").port();
        let ephemeral = ephemeral_ports();
        assert!(
            ephemeral.contains(&local),
            "client port {local}, {ephemeral:?}"
        );
        if range != ALL_PORTS {
            assert!(
                range.end() < ephemeral.start() || range.start() > ephemeral.end(),
                "{range:?} overlaps {ephemeral:?}"
            );
        }
    }
}
