//! Scheduled scans in a process of their own (`sobre-agent scan-child`),
//! so that everything a scan touches (its records, the hash stages' slots,
//! the index it streams and writes, its threads' allocator arenas, and the
//! code pages of the walk and BLAKE3) is given back to the system when it
//! ends, whatever the allocator does with freed memory. The workspace
//! denies `unsafe`, which rules out glibc's `malloc_trim`; a child process
//! needs none, also returns what fragmentation would keep, and its peak
//! (VmHWM) is the scan's own, measured apart from the agent's.
//!
//! The protocol, over the child's pipes: the agent writes the `[storage]`
//! section as TOML, prefixed by its length (u32, little endian), and keeps
//! the pipe open; closing it (or the agent dying) stops the scan, which
//! then saves what it hashed, as a cancelled scan does. The child writes
//! its peak RSS in bytes (u64, little endian) and the `StorageSummary`
//! (protobuf) on stdout, and exits 0; its log lines and errors go to the
//! agent's stderr. Its CPU time is counted in the agent's own
//! (`cutime`/`cstime` of `/proc/self/stat`, see `probe::footprint`).
//!
//! Without [`use_child_process`] (tests, the collector's in-process
//! quickstart agent) scans run in the calling process, as before.

use super::{ScanConfig, ScanError};
use crate::config::StorageConfig;
use prost::Message;
use sobre_proto::v1::StorageSummary;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "scan-child";

/// The largest `[storage]` section a child accepts (it is a few KB).
const MAX_CONFIG: u32 = 1 << 20;

static EXE: OnceLock<PathBuf> = OnceLock::new();

/// Scheduled scans run as `exe scan-child` from now on (the agent's binary
/// calls this with its own path at start).
pub fn use_child_process(exe: PathBuf) {
    let _ = EXE.set(exe);
}

/// A scan's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Scanned {
    pub summary: StorageSummary,
    /// The scan process's peak RSS (VmHWM); 0 when the scan ran in the
    /// agent.
    pub peak_rss_bytes: u64,
    /// Of its RSS at the end, the pages of files (its binary, the C
    /// library): the part of the peak that is code, not data, and that
    /// depends on the build (a debug build's is twice a release's).
    pub file_rss_bytes: u64,
}

/// Stops a scan, in this process or in a child.
#[derive(Debug, Default)]
pub struct Stop {
    flag: AtomicBool,
    pipe: Mutex<Option<ChildStdin>>,
}

impl Stop {
    pub fn stop(&self) {
        self.flag.store(true, Relaxed);
        // Closing the pipe is the child's signal to stop.
        drop(self.lock().take());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ChildStdin>> {
        self.pipe.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Scans as configured, in a child process when [`use_child_process`] was
/// called, else here. Blocking.
pub fn scan_summary(storage: &StorageConfig, stop: &Stop) -> Result<Scanned, ScanError> {
    if let Some(exe) = EXE.get() {
        match in_child(exe, storage, stop) {
            Err(Failed::Start(e)) => {
                // E.g. the binary was replaced by an upgrade under a
                // running agent: scan here rather than not at all.
                tracing::warn!(exe = %exe.display(), error = %e, "cannot start a scan process; scanning in the agent");
            }
            done => return done.map_err(ScanError::from),
        }
    }
    let cfg = ScanConfig::from_storage(storage)?;
    Ok(Scanned {
        summary: super::scan_summary(&cfg, &stop.flag)?,
        peak_rss_bytes: 0,
        file_rss_bytes: 0,
    })
}

/// Why a scan in a child process failed.
#[derive(Debug)]
pub enum Failed {
    /// The process could not be started.
    Start(io::Error),
    Scan(ScanError),
}

impl From<Failed> for ScanError {
    fn from(f: Failed) -> ScanError {
        match f {
            Failed::Start(e) => child_error("cannot start the scan process", e),
            Failed::Scan(e) => e,
        }
    }
}

fn child_error(what: &str, e: impl std::fmt::Display) -> ScanError {
    ScanError::Child(format!("{what}: {e}"))
}

/// Runs `exe scan-child` and reads its answer.
pub fn in_child(exe: &Path, storage: &StorageConfig, stop: &Stop) -> Result<Scanned, Failed> {
    let toml = toml::to_string(storage)
        .map_err(|e| Failed::Scan(child_error("cannot encode [storage]", e)))?;
    let mut child = Command::new(exe)
        .arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Failed::Start)?;
    let pid = child.id();
    tracing::debug!(pid, "scan: child process started");
    if let Some(mut stdin) = child.stdin.take() {
        let mut framed = (toml.len() as u32).to_le_bytes().to_vec();
        framed.extend_from_slice(toml.as_bytes());
        // A child that died at once shows in its exit status below.
        if stdin.write_all(&framed).is_ok() {
            let mut pipe = stop.lock();
            if !stop.flag.load(Relaxed) {
                *pipe = Some(stdin);
            }
        }
    }
    let mut out = Vec::new();
    let read = child
        .stdout
        .take()
        .map_or(Ok(0), |mut s| s.read_to_end(&mut out));
    let status = child
        .wait()
        .map_err(|e| Failed::Scan(child_error("cannot wait for the scan process", e)))?;
    drop(stop.lock().take());
    read.map_err(|e| Failed::Scan(child_error("cannot read the scan process's answer", e)))?;
    if !status.success() {
        return Err(Failed::Scan(ScanError::Child(format!(
            "the scan process (pid {pid}) failed: {status}; its error is in the log above"
        ))));
    }
    decode(&out).map_err(Failed::Scan)
}

fn decode(out: &[u8]) -> Result<Scanned, ScanError> {
    let truncated = || ScanError::Child("the scan process's answer is truncated".into());
    let (peak, rest) = out.split_first_chunk::<8>().ok_or_else(truncated)?;
    let (file, summary) = rest.split_first_chunk::<8>().ok_or_else(truncated)?;
    let summary = StorageSummary::decode(summary)
        .map_err(|e| child_error("the scan process's summary does not decode", e))?;
    Ok(Scanned {
        summary,
        peak_rss_bytes: u64::from_le_bytes(*peak),
        file_rss_bytes: u64::from_le_bytes(*file),
    })
}

/// The child's side (`sobre-agent scan-child`): reads the `[storage]`
/// section on stdin, scans (stopping when stdin closes), writes the answer
/// on stdout.
pub fn serve() -> Result<(), ScanError> {
    let mut stdin = io::stdin().lock();
    let mut len = [0u8; 4];
    stdin
        .read_exact(&mut len)
        .map_err(|e| child_error("no [storage] section on stdin", e))?;
    let len = u32::from_le_bytes(len);
    if len > MAX_CONFIG {
        return Err(ScanError::Child(format!(
            "a [storage] section of {len} bytes"
        )));
    }
    let mut toml = vec![0u8; len as usize];
    stdin
        .read_exact(&mut toml)
        .map_err(|e| child_error("truncated [storage] section on stdin", e))?;
    drop(stdin);
    let storage: StorageConfig = std::str::from_utf8(&toml)
        .map_err(|e| child_error("[storage] section", e))
        .and_then(|s| toml::from_str(s).map_err(|e| child_error("[storage] section", e)))?;
    let cfg = ScanConfig::from_storage(&storage)?;
    let cancel = std::sync::Arc::new(AtomicBool::new(false));
    // The agent closes the pipe to stop the scan (or died): either way,
    // stop and save what was hashed.
    let stopper = cancel.clone();
    std::thread::Builder::new()
        .name("sobre-scan-stop".into())
        .spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
            stopper.store(true, Relaxed);
        })
        .map_err(ScanError::Threads)?;
    let summary = super::scan_summary(&cfg, &cancel)?;
    let (peak, file) = own_memory();
    let mut out = peak.to_le_bytes().to_vec();
    out.extend_from_slice(&file.to_le_bytes());
    summary
        .encode(&mut out)
        .map_err(|e| child_error("encode", e))?;
    io::stdout()
        .lock()
        .write_all(&out)
        .map_err(|e| child_error("cannot answer the agent", e))
}

/// (VmHWM, RssFile) of this process, in bytes (0 if unknown).
fn own_memory() -> (u64, u64) {
    use crate::probe::footprint::status_bytes;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (
        status_bytes(&status, "VmHWM"),
        status_bytes(&status, "RssFile"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_round_trips_and_truncation_is_an_error() {
        let summary = StorageSummary {
            files: 42,
            bytes: 4242,
            complete: true,
            ..StorageSummary::default()
        };
        let mut out = 7_000_000u64.to_le_bytes().to_vec();
        out.extend_from_slice(&3_000_000u64.to_le_bytes());
        summary.encode(&mut out).expect("encode");
        assert_eq!(
            decode(&out).expect("decode"),
            Scanned {
                summary,
                peak_rss_bytes: 7_000_000,
                file_rss_bytes: 3_000_000,
            }
        );
        assert!(matches!(decode(&out[..5]), Err(ScanError::Child(_))));
    }

    #[test]
    fn stop_before_a_scan_stops_it_in_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), b"x").expect("write");
        let storage = StorageConfig {
            roots: vec![dir.path().to_owned()],
            index_dir: dir.path().join("index"),
            ..StorageConfig::default()
        };
        let stop = Stop::default();
        stop.stop();
        let s = scan_summary(&storage, &stop).expect("scan");
        assert!(!s.summary.complete, "a stopped scan says so");
    }
}
