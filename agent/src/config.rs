//! Agent configuration: TOML with documented defaults, unknown keys
//! refused, validated once at start-up.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod bounds;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Stable id of this agent, 1-64 of [A-Za-z0-9._-]. Default: the
    /// hostname and the first 8 characters of /etc/machine-id.
    pub agent_id: Option<String>,
    /// Labels sent with the inventory, to group hosts in the collector: a
    /// PUE per group, a department in campaign reports. Free text, at
    /// most 64 characters each.
    pub group: String,
    pub site: String,
    /// Time between two usage reports.
    pub interval_ms: u64,
    /// Time between two inventories (one is always sent at start).
    pub inventory_interval_ms: u64,
    /// Root under which /proc, /sys, /etc, /run and /dev are read; tests
    /// point it at fixture trees.
    pub root: PathBuf,
    pub transport: TransportConfig,
    pub spool: SpoolSettings,
    /// Coefficients of the power model, used when nothing is measured
    /// (sources in METHODOLOGY.md).
    pub power: crate::probe::ModelCoefficients,
    /// The storage scan (duplicates and bloat): see [`StorageConfig`].
    pub storage: StorageConfig,
    /// Where nudges from the collector are kept for `sobre-agent nudges`.
    /// Default: `nudges.jsonl` beside the spool directory.
    pub nudges_file: Option<PathBuf>,
    /// Enrolment with the collector: see [`EnrolConfig`].
    pub enrol: EnrolConfig,
}

/// Enrolment: a one-time token from the collector's admin, traded at the
/// first start for this agent's key, which then authenticates every
/// envelope (SECURITY.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrolConfig {
    /// The token (`sobre-collector enrol --agent ID`). Used once; it may be
    /// removed from the config afterwards.
    pub token: Option<String>,
    /// Where the key is kept, owner-only. Default: `credential` beside the
    /// spool directory.
    pub credential_file: Option<PathBuf>,
    /// The collector's gRPC address for enrolment. Default:
    /// `transport.grpc_endpoint` (also for MQTT agents).
    pub endpoint: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            agent_id: None,
            group: String::new(),
            site: String::new(),
            interval_ms: 10_000,
            inventory_interval_ms: 24 * 3_600_000,
            root: PathBuf::from("/"),
            transport: TransportConfig::default(),
            spool: SpoolSettings::default(),
            power: crate::probe::ModelCoefficients::default(),
            storage: StorageConfig::default(),
            nudges_file: None,
            enrol: EnrolConfig::default(),
        }
    }
}

/// How envelopes reach the collector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// "mqtt" or "grpc".
    pub kind: TransportKind,
    /// MQTT broker, `mqtt://host:port`.
    pub mqtt_broker: String,
    /// gRPC endpoint of the collector, `http://host:port`.
    pub grpc_endpoint: String,
    /// PEM file of the certificate authority that signed the collector's
    /// gRPC certificate; needed for an `https://` grpc_endpoint (TLS,
    /// rustls). Also used for enrolment.
    pub ca_file: Option<PathBuf>,
    /// Resend an envelope not acknowledged after this long.
    pub ack_timeout_ms: u64,
    /// Most envelopes sent and not yet acknowledged.
    pub max_inflight: usize,
    /// Reconnection backoff: doubles from min to max, with ±50 % jitter so
    /// a fleet does not reconnect in step after a collector restart.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// On shutdown, wait at most this long for pending envelopes to be
    /// acknowledged; what is left stays in the spool for the next start.
    pub drain_timeout_ms: u64,
}

impl TransportConfig {
    /// The CA file's PEM (checked readable by `validate`).
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.ca_file.as_ref().and_then(|p| std::fs::read(p).ok())
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            kind: TransportKind::Mqtt,
            mqtt_broker: "mqtt://127.0.0.1:1883".into(),
            grpc_endpoint: "http://127.0.0.1:50051".into(),
            ca_file: None,
            ack_timeout_ms: 30_000,
            max_inflight: 64,
            backoff_min_ms: 500,
            backoff_max_ms: 60_000,
            drain_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Mqtt,
    Grpc,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    /// Where envelopes wait for their ack.
    pub dir: PathBuf,
    /// Disk budget; when full the oldest envelopes are dropped and counted.
    /// 4 MiB holds about a week of 10 s reports.
    pub max_bytes: u64,
    /// fsync every append: survives power loss, costs one flush per report.
    pub fsync: bool,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            dir: crate::sys::state_dir().join("spool"),
            max_bytes: 4 * 1024 * 1024,
            fsync: true,
        }
    }
}

// ---- [storage]: the storage scan (agent/src/scan) ----

/// What the storage scan looks at, how hard it works and what leaves the
/// machine. Only aggregates are sent unless `send_paths` opts in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Scan on the agent's schedule (`sobre-agent scan` works either way).
    pub enabled: bool,
    /// Time between two scheduled scans: 24 h.
    pub interval_ms: u64,
    /// Delay before the first scheduled scan after start (1 min), so a
    /// booting machine is not slowed down.
    pub first_delay_ms: u64,
    /// Folders to scan. Empty: the users' home folders (as root, those of
    /// /etc/passwd's users with uid 1000-59999; otherwise $HOME).
    pub roots: Vec<PathBuf>,
    /// Left out: a name pattern (`*` and `?`, e.g. "node_modules") or an
    /// absolute path (starting with /).
    pub exclude: Vec<String>,
    /// Follow symbolic links (loops are detected). Off: links are counted,
    /// broken ones reported, never followed.
    pub follow_symlinks: bool,
    /// Stay on each root's filesystem (no network mounts under a home).
    pub one_file_system: bool,
    /// Readers per device, and walkers, for full-speed scans (background
    /// scans use one). Deep I/O queues pay on a cold cache: on the
    /// benchmark VM (virtio disk, 2 cores) 16 read the 200,000-file tree
    /// in 6.5 s against 17 s with 2; with a warm cache the count does not
    /// matter. See BENCHMARKS.md.
    pub threads: usize,
    /// The local index (paths, sizes, hashes), kept on this machine only.
    pub index_dir: PathBuf,
    /// Scheduled scans run gently: one reader per device, paced to
    /// `cpu_budget_percent` of one core.
    pub background: bool,
    pub cpu_budget_percent: f64,
    /// "cold": not modified for this many years.
    pub cold_years: u32,
    /// "old_downloads": in a downloads folder, not modified for this many
    /// days.
    pub old_download_days: u32,
    pub download_dirs: Vec<String>,
    /// "large": at least this many bytes (100 MiB).
    pub large_min_bytes: u64,
    /// "temp": file names matching one of these, or anything below a
    /// folder named like one of `cache_dirs`.
    pub temp_patterns: Vec<String>,
    pub cache_dirs: Vec<String>,
    /// 64 hex characters shared by the fleet: with it, large files are
    /// sent as keyed BLAKE3 fingerprints (to find the same content on
    /// several hosts). Without it, no fingerprint is sent.
    pub fingerprint_key: Option<String>,
    /// Files fingerprinted: at least this large (100 MiB), at most
    /// `max_fingerprints` of them, largest first.
    pub fingerprint_min_bytes: u64,
    pub max_fingerprints: usize,
    /// Send the paths of the largest files of each category (e.g. for
    /// shared drives), at most `max_paths`. Off: no name leaves the host.
    pub send_paths: bool,
    pub max_paths: usize,
}

/// Folders whose contents are caches ("temp"). On Windows also the
/// browsers' and Windows' own: `%TEMP%` (`AppData\Local\Temp`),
/// `INetCache`, Chromium's and Firefox's `Cache`/`cache2`, `GPUCache`,
/// `Code Cache`.
fn default_cache_dirs() -> Vec<String> {
    let mut d = vec![".cache", ".thumbnails", "__pycache__"];
    if cfg!(windows) {
        d.extend([
            "Temp",
            "INetCache",
            "Cache",
            "cache2",
            "GPUCache",
            "Code Cache",
        ]);
    }
    d.into_iter().map(String::from).collect()
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            enabled: true,
            interval_ms: 24 * 3_600_000,
            first_delay_ms: 60_000,
            roots: Vec::new(),
            exclude: Vec::new(),
            follow_symlinks: false,
            one_file_system: true,
            threads: 16,
            index_dir: crate::sys::state_dir().join("index"),
            background: true,
            cpu_budget_percent: 5.0,
            cold_years: 3,
            old_download_days: 90,
            download_dirs: vec!["Downloads".into(), "Téléchargements".into()],
            large_min_bytes: 100 * 1024 * 1024,
            temp_patterns: [
                "~$*",
                "*.tmp",
                "*.temp",
                "*.bak",
                "*~",
                ".~lock.*#",
                "Thumbs.db",
                ".DS_Store",
            ]
            .map(String::from)
            .to_vec(),
            cache_dirs: default_cache_dirs(),
            fingerprint_key: None,
            fingerprint_min_bytes: 100 * 1024 * 1024,
            max_fingerprints: 1000,
            send_paths: false,
            max_paths: 200,
        }
    }
}

impl StorageConfig {
    /// The checks that are not numeric ranges (those are in [`bounds`]:
    /// the collector accepts at most 2,000 fingerprints or 500 paths per
    /// summary, in a 64 KiB envelope).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(k) = &self.fingerprint_key
            && (k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("storage.fingerprint_key must be 64 hexadecimal characters".into());
        }
        if let Some(r) = self.roots.iter().find(|r| !r.is_absolute()) {
            return Err(format!(
                "storage.roots: {} is not an absolute path",
                r.display()
            ));
        }
        if self
            .exclude
            .iter()
            .chain(&self.temp_patterns)
            .any(String::is_empty)
        {
            return Err(
                "storage.exclude and storage.temp_patterns may not hold empty patterns".into(),
            );
        }
        Ok(())
    }
}

// ---- end [storage] ----

pub use sobre_base::config::{ConfigError, load_toml};

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_toml(path, "agent/sobre-agent.example.toml", Self::validate)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        sobre_base::config::parse_toml(text)
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(ca) = &self.transport.ca_file
            && let Err(e) = std::fs::read(ca)
        {
            return Err(format!(
                "cannot read transport.ca_file {}: {e}",
                ca.display()
            ));
        }
        if crate::transport::tls::is_tls(&self.transport.mqtt_broker)
            && self.transport.ca_file.is_none()
        {
            return Err(format!(
                "transport.mqtt_broker {} is TLS: set transport.ca_file to the PEM of the CA that signed the broker's certificate",
                self.transport.mqtt_broker
            ));
        }
        if self.transport.grpc_endpoint.starts_with("https://") && self.transport.ca_file.is_none()
        {
            return Err(format!(
                "transport.grpc_endpoint {} is https: set transport.ca_file to the PEM of the CA that signed the collector's certificate",
                self.transport.grpc_endpoint
            ));
        }
        if let Some(id) = &self.agent_id
            && !sobre_proto::topics::valid_agent_id(id)
        {
            return Err(format!(
                "agent_id {id:?} must be 1-64 characters of [A-Za-z0-9._-]"
            ));
        }
        for (key, v) in [("group", &self.group), ("site", &self.site)] {
            if v.len() > 64 {
                return Err(format!("{key} is {} bytes long; 64 at most", v.len()));
            }
        }
        let curve = &self.power.cpu_curve;
        if curve.len() < 2
            || curve.len() > 101
            || curve.iter().any(|&(l, f)| {
                !(0.0..=100.0).contains(&l) || !(0.0..=10.0).contains(&f) // NaN is in no range
            })
            || curve.windows(2).any(|w| w[0].0 >= w[1].0)
        {
            return Err("power.cpu_curve needs 2 to 101 [load %, fraction of TDP] points, loads from 0 to 100 and increasing, fractions from 0 to 10".into());
        }
        bounds::check_all(self)?;
        self.storage.validate()?;
        let t = &self.transport;
        if t.backoff_min_ms > t.backoff_max_ms {
            return Err(format!(
                "transport.backoff_min_ms = {} is above transport.backoff_max_ms = {}",
                t.backoff_min_ms, t.backoff_max_ms
            ));
        }
        match t.kind {
            TransportKind::Mqtt => {
                parse_mqtt_url(&t.mqtt_broker)?;
            }
            TransportKind::Grpc => {
                if !(t.grpc_endpoint.starts_with("http://")
                    || t.grpc_endpoint.starts_with("https://"))
                {
                    return Err(format!(
                        "transport.grpc_endpoint {:?} must start with http://",
                        t.grpc_endpoint
                    ));
                }
            }
        }
        Ok(())
    }

    /// Where nudges are kept.
    pub fn nudges_path(&self) -> PathBuf {
        self.nudges_file.clone().unwrap_or_else(|| {
            self.spool
                .dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("nudges.jsonl")
        })
    }

    /// Where the Windows service logs (it has no stderr): `agent.log`
    /// beside the spool directory.
    pub fn log_path(&self) -> PathBuf {
        self.spool
            .dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("agent.log")
    }

    /// Where the enrolment key is kept.
    pub fn credential_path(&self) -> PathBuf {
        self.enrol.credential_file.clone().unwrap_or_else(|| {
            self.spool
                .dir
                .parent()
                .unwrap_or(Path::new("."))
                .join("credential")
        })
    }

    /// The effective config as TOML, secrets (the enrolment token, the
    /// fingerprint key) replaced by a marker.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        let hide = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some("<secret: set, not shown>".into());
            }
        };
        hide(&mut shown.enrol.token);
        hide(&mut shown.storage.fingerprint_key);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

pub use sobre_base::mqtt_url::parse as parse_mqtt_url;

/// The agent id to use: the configured one, or `hostname-machineid8`
/// made topic-safe.
pub fn resolve_agent_id(cfg: &AgentConfig) -> String {
    if let Some(id) = &cfg.agent_id {
        return id.clone();
    }
    let read = |p: &str| {
        std::fs::read_to_string(cfg.root.join(p))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let host = read("proc/sys/kernel/hostname");
    let machine = read("etc/machine-id");
    let mut id: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let suffix: String = machine
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    if !suffix.is_empty() {
        if !id.is_empty() {
            id.push('-');
        }
        id.push_str(&suffix);
    }
    if id.is_empty() {
        id = "sobre-agent".into();
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let cfg = AgentConfig::parse(include_str!("../sobre-agent.example.toml")).expect("parses");
        cfg.validate().expect("valid");
        #[cfg_attr(unix, allow(unused_mut))]
        let mut expected = AgentConfig::default();
        // The example documents Linux's defaults; Windows adds its own
        // cache folders (see `default_cache_dirs`).
        #[cfg(windows)]
        {
            expected
                .storage
                .cache_dirs
                .truncate(cfg.storage.cache_dirs.len());
            // The example shows Linux's state folder; Windows' default is
            // %ProgramData%\Sobre (sys::state_dir).
            expected.spool.dir.clone_from(&cfg.spool.dir);
            expected
                .storage
                .index_dir
                .clone_from(&cfg.storage.index_dir);
        }
        assert_eq!(cfg, expected);
    }

    #[test]
    fn unknown_key_and_wrong_type_are_named() {
        let err = AgentConfig::parse("[transport]\nkind = \"mqtt\"\nbrokr = \"x\"\n")
            .expect_err("unknown");
        assert!(err.contains("brokr") && err.contains("line 3"), "{err}");
        let err = AgentConfig::parse("interval_ms = \"ten\"\n").expect_err("type");
        assert!(err.contains("interval_ms"), "{err}");
        let err =
            AgentConfig::parse("[transport]\nkind = \"carrier-pigeon\"\n").expect_err("variant");
        assert!(err.contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "agent_id = \"bad id\"\n").expect("write");
        let err = AgentConfig::load(&p).expect_err("invalid").to_string();
        assert!(
            err.contains("agent.toml") && err.contains("agent_id"),
            "{err}"
        );
    }

    #[test]
    fn default_id_from_hostname_and_machine_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("proc/sys/kernel/hostname"),
            "mairie pc#12\n",
        )
        .expect("w");
        std::fs::write(
            dir.path().join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .expect("w");
        let cfg = AgentConfig {
            root: dir.path().to_owned(),
            ..Default::default()
        };
        let id = resolve_agent_id(&cfg);
        assert_eq!(id, "mairie-pc-12-01234567");
        assert!(sobre_proto::topics::valid_agent_id(&id));
    }

    #[test]
    fn power_curve_is_checked() {
        let mut cfg = AgentConfig::default();
        cfg.power.cpu_curve = vec![(50.0, 0.5), (10.0, 0.3)];
        assert!(cfg.validate().expect_err("unsorted").contains("cpu_curve"));
        let cfg =
            AgentConfig::parse("[power]\nmemory_w_per_gb = 0.284\n").expect("partial override");
        assert_eq!(cfg.power.memory_w_per_gb, 0.284);
        assert_eq!(cfg.power.ssd_w_per_tb, 1.2, "the rest keeps its defaults");
    }

    #[test]
    fn storage_section_is_checked() {
        let cfg = AgentConfig::parse("[storage]\nroots = [\"/srv/partage\"]\nsend_paths = true\n")
            .expect("partial override");
        assert_eq!(cfg.storage.roots, [PathBuf::from("/srv/partage")]);
        assert_eq!(cfg.storage.cold_years, 3, "the rest keeps its defaults");
        let err = AgentConfig::parse("[storage]\nfollow_links = true\n").expect_err("unknown");
        assert!(err.contains("follow_links"), "{err}");
        for (text, needle) in [
            ("[storage]\nfingerprint_key = \"abc\"\n", "fingerprint_key"),
            (
                "[storage]\ncpu_budget_percent = 0.0\n",
                "cpu_budget_percent",
            ),
            ("[storage]\nthreads = 0\n", "threads"),
            ("[storage]\nroots = [\"relative\"]\n", "absolute"),
            ("[storage]\nmax_fingerprints = 5000\n", "max_fingerprints"),
        ] {
            let cfg = AgentConfig::parse(text).expect(text);
            assert!(cfg.validate().expect_err(text).contains(needle), "{text}");
        }
        let key = "0f".repeat(32);
        let cfg =
            AgentConfig::parse(&format!("[storage]\nfingerprint_key = \"{key}\"\n")).expect("key");
        cfg.validate().expect("a valid key");
    }

    #[test]
    fn mqtt_urls() {
        assert_eq!(parse_mqtt_url("mqtt://h:1"), Ok(("h".into(), 1)));
        assert!(parse_mqtt_url("http://h").is_err());
    }
}
