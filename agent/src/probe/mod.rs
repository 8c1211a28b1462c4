//! Probes: everything the agent learns about the machine (usage, inventory)
//! and about itself (footprint), read from Linux `/proc`, `/sys`, `/etc`,
//! `/run` and `/dev` under configurable [`Roots`] so tests use fixture trees.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

// Linux's /proc and /sys readers; on Windows only a few of their
// helpers are used (chassis names, `status_bytes` for the scan child).
#[cfg_attr(windows, allow(dead_code))]
mod cpuinfo;
pub mod display;
#[cfg_attr(windows, allow(dead_code))]
pub(crate) mod footprint;
#[cfg_attr(windows, allow(dead_code))]
mod hardware;
#[cfg(unix)]
mod inventory;
pub mod power;
#[cfg_attr(windows, allow(dead_code))]
mod procfs;
#[cfg_attr(windows, allow(dead_code))]
mod sessions;
#[cfg(unix)]
mod usage;
#[cfg(any(windows, test))]
mod windows;

#[cfg(test)]
pub(crate) mod fixture;

pub use display::monitors;
#[cfg(unix)]
pub use footprint::FootprintProbe;
#[cfg(unix)]
pub use inventory::InventoryProbe;
pub use power::{ModelCoefficients, PowerProbe, PowerSample};
#[cfg(unix)]
pub use usage::UsageProbe;
#[cfg(windows)]
pub use windows::{FootprintProbe, InventoryProbe, UsageProbe};

/// Where the probes find the kernel's and the OS's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
    pub run: PathBuf,
    pub dev: PathBuf,
}

impl Roots {
    /// The running host: `/proc`, `/sys`, `/etc`, `/run`, `/dev`.
    pub fn host() -> Self {
        Self::under(Path::new("/"))
    }

    /// A tree mounted or built under `base` (`base/proc`, `base/sys`, ...),
    /// e.g. the host's filesystems bind-mounted into a container at `/host`.
    pub fn under(base: &Path) -> Self {
        Self {
            proc: base.join("proc"),
            sys: base.join("sys"),
            etc: base.join("etc"),
            run: base.join("run"),
            dev: base.join("dev"),
        }
    }
}

/// Why a probe could not produce a sample.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A file the probe cannot work without could not be read.
    #[error(
        "cannot read {}: check that procfs/sysfs is mounted there and that \
         the probe roots point at it",
        path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file the probe cannot work without does not have the expected format.
    #[error(
        "cannot parse {}: {what}; the kernel format is not the one this agent \
         knows, please report it with the file's contents",
        path.display()
    )]
    Parse { path: PathBuf, what: String },
}

/// The seam between the agent runtime and what it measures.
pub trait Probe {
    /// What one sample is.
    type Output;

    /// Takes one sample. `interval` is the time since the previous sample as
    /// the caller measured it (probes that report a snapshot ignore it).
    fn sample(&mut self, interval: Duration) -> Result<Self::Output, ProbeError>;
}

/// Reads a file the probe cannot work without.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) fn read_required(path: &Path) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|source| ProbeError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Optional files: a file that cannot be read leaves its fields empty and is
/// logged once (at debug) per probe, not at every sample.
#[derive(Debug, Default)]
pub(crate) struct Optional {
    logged: HashSet<PathBuf>,
}

impl Optional {
    /// The file's contents, or `None` (logged once) when it cannot be read.
    pub(crate) fn read(&mut self, path: &Path) -> Option<String> {
        let text = std::fs::read_to_string(path);
        self.ok_or_log(path, text)
    }

    /// The file's raw bytes, or `None` (logged once) when it cannot be read.
    pub(crate) fn read_bytes(&mut self, path: &Path) -> Option<Vec<u8>> {
        let bytes = std::fs::read(path);
        self.ok_or_log(path, bytes)
    }

    /// The entries of directory `path` as (name, path), sorted by name;
    /// empty (logged once) when it cannot be listed.
    pub(crate) fn list_dir(&mut self, path: &Path) -> Vec<(String, PathBuf)> {
        let entries = std::fs::read_dir(path).map(|dir| {
            let mut entries: Vec<(String, PathBuf)> = dir
                .filter_map(Result::ok)
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect();
            entries.sort();
            entries
        });
        self.ok_or_log(path, entries).unwrap_or_default()
    }

    fn ok_or_log<T>(&mut self, path: &Path, result: io::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                if self.logged.insert(path.to_path_buf()) {
                    tracing::debug!(
                        path = %path.display(),
                        error = %err,
                        "optional probe file unreadable, its fields stay empty"
                    );
                }
                None
            }
        }
    }

    /// The file's contents trimmed of surrounding whitespace (sysfs
    /// attributes end with a newline), or `None`.
    pub(crate) fn read_trimmed(&mut self, path: &Path) -> Option<String> {
        self.read(path).map(|s| s.trim().to_owned())
    }

    /// The file's contents parsed as an unsigned integer, or `None`.
    pub(crate) fn read_u64(&mut self, path: &Path) -> Option<u64> {
        self.read_trimmed(path).and_then(|s| s.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_under_joins_each_tree() {
        let roots = Roots::under(Path::new("/host"));
        assert_eq!(roots.proc, PathBuf::from("/host/proc"));
        assert_eq!(roots.sys, PathBuf::from("/host/sys"));
        assert_eq!(roots.etc, PathBuf::from("/host/etc"));
        assert_eq!(roots.run, PathBuf::from("/host/run"));
        assert_eq!(roots.dev, PathBuf::from("/host/dev"));
        assert_eq!(Roots::host().proc, PathBuf::from("/proc"));
        assert_eq!(Roots::host().dev, PathBuf::from("/dev"));
    }

    #[test]
    fn optional_missing_file_is_none_and_logged_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let mut optional = Optional::default();
        assert_eq!(optional.read(&missing), None);
        assert_eq!(optional.read(&missing), None);
        assert_eq!(optional.logged.len(), 1);
        std::fs::write(&missing, " 42\n").expect("write");
        assert_eq!(optional.read_u64(&missing), Some(42));
    }

    #[test]
    fn read_error_names_the_file() {
        let err = read_required(Path::new("/definitely/not/here/stat"))
            .expect_err("missing file must fail");
        let msg = err.to_string();
        assert!(msg.contains("/definitely/not/here/stat"), "{msg}");
        assert!(msg.contains("mounted"), "{msg}");
    }

    #[test]
    fn host_probes_sample() {
        let mut usage = UsageProbe::new(Roots::host());
        let first = usage.sample(Duration::ZERO).expect("first usage sample");
        let second = usage
            .sample(Duration::from_millis(1))
            .expect("second usage sample");
        assert!(first.mem_total_bytes > 0);
        assert!(second.mem_total_bytes > 0);
        assert!((0.0..=100.0).contains(&second.cpu_percent));
        assert_eq!(second.interval_ms, 1);

        let inventory = InventoryProbe::new(Roots::host())
            .sample(Duration::ZERO)
            .expect("inventory");
        assert!(inventory.cpu_threads >= 1);
        assert!(inventory.cpu_cores >= 1);
        assert!(!inventory.hostname.is_empty());
        assert!(!inventory.kernel.is_empty());
        assert!(inventory.mem_total_bytes > 0);

        let footprint = FootprintProbe::new(Roots::host())
            .sample(Duration::ZERO)
            .expect("footprint");
        assert!(footprint.rss_bytes > 0);
        assert!(footprint.peak_rss_bytes >= footprint.rss_bytes);
    }
}
