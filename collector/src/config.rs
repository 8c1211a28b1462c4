//! Collector configuration: TOML with documented defaults, unknown keys
//! refused, validated once at start-up.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything the collector can be told. Every field has a default, so an
/// empty file (or no file) is a working single-machine collector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Where the SQLite store lives.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub grpc: GrpcConfig,
    pub store: StoreConfig,
    pub limits: Limits,
    pub footprint: crate::footprint::FootprintConfig,
    pub detect: crate::detect::DetectConfig,
    pub nudge: crate::nudge::NudgeConfig,
    /// InfluxDB-compatible time-series server fed from the store (off by
    /// default); keys and defaults in `crate::sink::SinkConfig`.
    pub sink: crate::sink::SinkConfig,
    pub security: SecurityConfig,
    pub cluster: ClusterConfig,
    /// Every listener's connection cap and timeouts (`crate::limits`).
    pub listeners: crate::limits::ListenersConfig,
}

/// Several collectors on one PostgreSQL store (SCALING.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This collector's name among the others: on the samples it stores
    /// (its sink sends those) and on the leader lease. Default: the host
    /// name and a short hash of `data_dir`, so two collectors on one host
    /// differ and a restarted one keeps its name. Keep it stable.
    pub node: Option<String>,
    /// How long the leader lease lasts without renewal, in seconds: the
    /// periodic work moves to another collector within this time after
    /// its leader dies. Renewed every third of it.
    pub lease_s: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: None,
            lease_s: 30,
        }
    }
}

impl CollectorConfig {
    /// This collector's node name (see [`ClusterConfig::node`]).
    pub fn node(&self) -> String {
        if let Some(n) = &self.cluster.node {
            return n.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "collector".into());
        let dir = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        let hash = blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex();
        format!("{host}-{}", &hash[..8])
    }
}

/// Agent identity (SECURITY.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Refuse envelopes from agents that have not enrolled (no credential)
    /// or whose MAC does not verify. Enrol agents with a one-time token:
    /// `sobre-collector enrol --agent ID`, then `[enrol] token` in the
    /// agent's config.
    pub require_enrolment: bool,
    /// How long an enrolment token stays valid, in hours.
    pub enrol_token_ttl_hours: i64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            require_enrolment: true,
            enrol_token_ttl_hours: 24,
        }
    }
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            data_dir: PathBuf::from("sobre-data"),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            grpc: GrpcConfig::default(),
            store: StoreConfig::default(),
            limits: Limits::default(),
            security: SecurityConfig::default(),
            footprint: crate::footprint::FootprintConfig::default(),
            detect: crate::detect::DetectConfig::default(),
            nudge: crate::nudge::NudgeConfig::default(),
            sink: crate::sink::SinkConfig::default(),
            cluster: ClusterConfig::default(),
            listeners: crate::limits::ListenersConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP API (`/health`, `/metrics`, `/api/v1/...`).
    /// Port 0 picks a free port (printed at start).
    pub listen: SocketAddr,
    /// File holding the admin token (every write needs it: campaigns,
    /// findings, nudge opt-outs, enrolments). Generated at first start,
    /// owner-only. Default: `admin.token` in `data_dir`.
    pub admin_token_file: Option<PathBuf>,
    /// Optional file of read-only tokens, one per line (`#` comments).
    pub read_tokens_file: Option<PathBuf>,
    /// Whether reads (GET) are open without a token. Set to false when the
    /// API is reachable beyond a trusted network.
    pub open_read: bool,
    /// HTTPS (rustls): the certificate chain and private key, PEM. Both or
    /// neither; with them the API and the console are served over TLS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Host names the API and console answer to, besides `localhost`,
    /// this machine's name and any IP address: the names of a DNS alias or
    /// a reverse proxy, e.g. `["sobre.ville.fr"]`. A request for another
    /// name gets 421 (a page whose name an attacker pointed at this
    /// collector cannot read it: DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token_file: None,
            read_tokens_file: None,
            open_read: true,
            tls_cert: None,
            tls_key: None,
            allowed_hosts: Vec::new(),
        }
    }
}

/// How MQTT agents reach this collector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Run the embedded broker (rumqttd). Set to false and give `broker`
    /// to use an external one (Mosquitto, EMQX, VerneMQ).
    pub embedded: bool,
    /// Where agents connect to the embedded broker (MQTT 3.1.1): the
    /// guard (`ingest::guard`: topic ACL, per-agent rate), which relays to
    /// rumqttd on a loopback port of its own.
    pub listen: SocketAddr,
    /// External broker as `mqtt://host:port`, or `mqtts://host:port` for
    /// TLS (then `ca_file`); used when `embedded = false`. (The embedded
    /// broker's TLS is `tls_listen`.)
    pub broker: Option<String>,
    /// PEM of the CA that signed an `mqtts://` broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// TLS for the embedded broker: agents connect with `mqtts://` here;
    /// the collector terminates TLS (rustls) and hands the connection to
    /// the guard, as on `listen`. Needs `tls_cert` and `tls_key` (PEM).
    pub tls_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// MQTT client id of the collector on the broker. Default
    /// `sobre-collector`. With `share_group` set and this left at its
    /// default, each collector derives its own, stable across restarts:
    /// `sobre-collector-<host name>-<8 hex digits of a hash of data_dir>`
    /// (two collectors with one id would throw each other off the broker).
    /// Set it yourself only to a value unique to each collector.
    pub client_id: String,
    /// Scale out: several collectors on one external broker, each taking a
    /// share of the uplinks through the MQTT shared subscription
    /// `$share/<share_group>/sobre/v1/agents/+/up` (one group name for the
    /// whole cluster; SCALING.md). Presence (`.../status`) stays a normal
    /// subscription, so every collector sees every agent's status. With a
    /// group the collector's session is clean: a collector that dies
    /// leaves the group at once instead of having its share queued on the
    /// broker. Default: none (one collector; persistent session). Not with
    /// the embedded broker. 1 to 64 characters, none of `/ + #`, no
    /// control characters.
    pub share_group: Option<String>,
    /// Largest MQTT packet the broker and the collector's client accept.
    /// Bigger than `limits.max_envelope_bytes` on purpose, so that an
    /// oversized envelope reaches the collector and is refused with a
    /// reason instead of breaking the connection.
    pub max_packet_bytes: usize,
}

/// The collector's MQTT client id unless configured (see
/// `MqttConfig::client_id`).
pub const DEFAULT_MQTT_CLIENT_ID: &str = "sobre-collector";

impl MqttConfig {
    /// Checks `share_group`: MQTT 5 (4.8.2) forbids `/ + #` in a share
    /// name; control characters and long names are refused as mistakes.
    fn validate_share_group(&self) -> Result<(), String> {
        let Some(g) = &self.share_group else {
            return Ok(());
        };
        if self.embedded {
            return Err("mqtt.share_group is for several collectors on one external broker \
                 (mqtt.embedded = false, mqtt.broker = ...); the embedded broker lives in one collector"
                .into());
        }
        if g.is_empty() || g.len() > 64 {
            return Err(format!(
                "mqtt.share_group must be 1 to 64 bytes long, not {}",
                g.len()
            ));
        }
        if let Some(c) = g
            .chars()
            .find(|c| matches!(c, '/' | '+' | '#') || c.is_control())
        {
            return Err(format!(
                "mqtt.share_group {g:?} contains {c:?}: a share group name cannot contain / + # or control characters"
            ));
        }
        Ok(())
    }

    /// The TLS transport for an `mqtts://` broker, from `ca_file`.
    pub fn tls(&self) -> Result<rumqttc::Transport, String> {
        let ca = self.ca_file.as_ref().ok_or(
            "mqtt.broker is mqtts://: set mqtt.ca_file to the CA of the broker's certificate",
        )?;
        let pem = std::fs::read(ca)
            .map_err(|e| format!("cannot read mqtt.ca_file {}: {e}", ca.display()))?;
        let tls = sobre_base::mqtt_url::tls_client_config(&pem)
            .map_err(|e| format!("mqtt.ca_file {}: {e}", ca.display()))?;
        Ok(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ))
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            embedded: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            broker: None,
            ca_file: None,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            client_id: DEFAULT_MQTT_CLIENT_ID.into(),
            share_group: None,
            max_packet_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub enabled: bool,
    /// Address of the `sobre.v1.Telemetry` gRPC service.
    pub listen: SocketAddr,
    /// TLS (rustls): the server's certificate chain and private key, PEM.
    /// Both or neither; with them, agents must use `https://` endpoints.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl GrpcConfig {
    /// The TLS identity, read from the configured files; None without TLS.
    pub fn tls_identity(&self) -> Result<Option<tonic::transport::Identity>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => {
                let read = |p: &PathBuf, what: &str| {
                    std::fs::read(p)
                        .map_err(|e| format!("cannot read grpc.{what} {}: {e}", p.display()))
                };
                Ok(Some(tonic::transport::Identity::from_pem(
                    read(c, "tls_cert")?,
                    read(k, "tls_key")?,
                )))
            }
            _ => Err("grpc.tls_cert and grpc.tls_key go together: set both or neither".into()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Most envelopes committed in one SQLite transaction.
    pub batch_max: usize,
    /// Envelopes waiting for the writer before ingest pushes back on the
    /// broker or the gRPC streams (bounds memory under overload).
    pub queue: usize,
    /// `synchronous = FULL` (the default): a commit is on disk before its
    /// ack is sent, even across a power cut. `false` uses `NORMAL`, which
    /// survives a crash of the collector but may lose the last commits,
    /// already acked, on power loss.
    pub sync_full: bool,
    /// Keep the store in PostgreSQL instead of `data_dir`'s SQLite file:
    /// `postgres://user:password@host:5432/sobre` (the URL syntax of
    /// libpq). Several collectors can then share it (SCALING.md). The
    /// password is never logged; `--print-config` hides it.
    pub postgres_url: Option<sobre_base::Secret>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            batch_max: 4096,
            queue: 16384,
            sync_full: true,
            postgres_url: None,
        }
    }
}

/// Input limits applied to every envelope, whatever the transport.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest encoded envelope accepted (a usage report is ~150 B).
    pub max_envelope_bytes: usize,
    /// Largest number of disks or batteries in one inventory.
    pub max_repeated: usize,
    /// Longest string field.
    pub max_string_bytes: usize,
    /// Most large-file fingerprints (or opted-in paths) in one storage
    /// summary.
    pub max_fingerprints: usize,
    /// Envelopes per second one agent may send, sustained (an agent sends
    /// one every 10 s; a spool drain after an outage goes faster). Above
    /// it envelopes are refused unacked (`rate_limited`): the agent resends
    /// later, nothing is lost, and a flooding agent cannot starve others.
    /// The embedded broker's guard applies it too, per agent, to MQTT
    /// PUBLISH/SUBSCRIBE/UNSUBSCRIBE: over it, the agent's connection is
    /// not read until a token is back.
    pub max_envelopes_per_s: f64,
    /// Envelopes one agent may send in a burst above the sustained rate.
    pub burst: f64,
    /// Timestamps more than this far in the future (agent clock ahead) are
    /// refused (`bad_timestamp`).
    pub max_clock_ahead_s: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_bytes: 64 * 1024,
            max_repeated: 256,
            max_string_bytes: 1024,
            max_fingerprints: 2000,
            max_envelopes_per_s: 200.0,
            burst: 2000.0,
            max_clock_ahead_s: 86_400,
        }
    }
}

pub use sobre_base::config::ConfigError;

impl CollectorConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        sobre_base::config::load_toml(
            path,
            "collector/sobre-collector.example.toml",
            Self::validate,
        )
    }

    /// Parses TOML text; the error names the key, line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        sobre_base::config::parse_toml(text)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !self.mqtt.embedded && self.mqtt.broker.is_none() {
            return Err("mqtt.embedded = false needs mqtt.broker = \"mqtt://host:port\"".into());
        }
        if let Some(b) = &self.mqtt.broker {
            parse_broker_url(b)?;
            if sobre_base::mqtt_url::is_tls(b) {
                self.mqtt.tls()?;
            }
        }
        self.mqtt.validate_share_group()?;
        if self.store.batch_max == 0 || self.store.queue == 0 {
            return Err("store.batch_max and store.queue must be at least 1".into());
        }
        if let Some(url) = &self.store.postgres_url
            && url.expose().parse::<postgres::Config>().is_err()
        {
            return Err(
                "store.postgres_url is not a PostgreSQL URL: use postgres://user:password@host:5432/dbname"
                    .into(),
            );
        }
        if self.cluster.lease_s < 3 {
            return Err("cluster.lease_s must be at least 3 (it is renewed every third)".into());
        }
        if self
            .cluster
            .node
            .as_ref()
            .is_some_and(|n| n.trim().is_empty() || n.len() > 200)
        {
            return Err("cluster.node must be a non-empty name of at most 200 bytes".into());
        }
        self.footprint.validate()?;
        self.detect.validate()?;
        self.nudge.validate()?;
        self.sink.validate()?;
        self.listeners.validate()?;
        if let Some(path) = &self.footprint.grid_hourly_file {
            crate::footprint::GridIntensity::load(self.footprint.grid_g_per_kwh, path)
                .map_err(|e| e.to_string())?;
        }
        self.grpc.tls_identity()?;
        match (&self.http.tls_cert, &self.http.tls_key) {
            (None, None) => {}
            (Some(c), Some(k)) => {
                crate::tls::acceptor(c, k)?;
            }
            _ => {
                return Err(
                    "http.tls_cert and http.tls_key go together: set both or neither".into(),
                );
            }
        }
        if self.mqtt.tls_listen.is_some() {
            match (&self.mqtt.tls_cert, &self.mqtt.tls_key, self.mqtt.embedded) {
                (Some(c), Some(k), true) => {
                    crate::tls::acceptor(c, k)?;
                }
                (_, _, false) => {
                    return Err("mqtt.tls_listen is for the embedded broker; an external broker does its own TLS".into());
                }
                _ => return Err("mqtt.tls_listen needs mqtt.tls_cert and mqtt.tls_key".into()),
            }
        }
        if !(1..=2160).contains(&self.security.enrol_token_ttl_hours) {
            return Err(format!(
                "security.enrol_token_ttl_hours = {}: give 1 to 2160 (90 days)",
                self.security.enrol_token_ttl_hours
            ));
        }
        if !(self.limits.max_envelopes_per_s > 0.0 && self.limits.burst >= 1.0) {
            return Err("limits.max_envelopes_per_s must be > 0 and limits.burst >= 1".into());
        }
        if self.limits.max_envelope_bytes < 256 {
            return Err("limits.max_envelope_bytes must be at least 256".into());
        }
        if self.mqtt.max_packet_bytes < self.limits.max_envelope_bytes + 1024 {
            return Err(format!(
                "mqtt.max_packet_bytes ({}) must exceed limits.max_envelope_bytes ({}) by at least 1024, \
                 so oversized envelopes are refused with a reason instead of dropping the connection",
                self.mqtt.max_packet_bytes, self.limits.max_envelope_bytes
            ));
        }
        Ok(())
    }

    /// The config as TOML, defaults filled in (`--print-config`).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.store.postgres_url = shown
            .store
            .postgres_url
            .map(|u| u.shown_as(hide_password(u.expose())));
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// A PostgreSQL URL (or `key=value` string) with its password replaced.
pub fn hide_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, host) = match rest.rsplit_once('@') {
            Some(x) => x,
            None => return url.to_owned(),
        };
        return match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
            None => url.to_owned(),
        };
    }
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some(("password", _)) => "password=********".to_owned(),
            _ => kv.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `mqtt://host:port` → (host, port), as the agent reads it.
pub use sobre_base::mqtt_url::parse as parse_broker_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_config_hides_the_postgres_password() {
        let mut c = CollectorConfig::default();
        c.store.postgres_url = Some(sobre_base::Secret::new(
            "postgres://sobre:s3cret@db.example:5432/sobre",
        ));
        let t = c.to_toml();
        assert!(!t.contains("s3cret"), "{t}");
        assert!(
            t.contains("postgres://sobre:********@db.example:5432/sobre"),
            "{t}"
        );
        assert_eq!(
            hide_password("host=db user=sobre password=s3cret dbname=x"),
            "host=db user=sobre password=******** dbname=x"
        );
    }

    #[test]
    fn print_config_and_debug_no_longer_show_the_sink_password_or_token() {
        let mut c = CollectorConfig::default();
        c.sink.username = Some("telegraf".into());
        c.sink.password = Some(sobre_base::Secret::new("hunter2"));
        c.sink.token = Some(sobre_base::Secret::new("tok-secret"));
        c.store.postgres_url = Some(sobre_base::Secret::new("postgres://u:pg-pass@h/db"));
        for shown in [c.to_toml(), format!("{c:?}")] {
            for secret in ["hunter2", "tok-secret", "pg-pass"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        assert!(c.to_toml().contains("password = \"********\""));
    }

    #[test]
    fn example_file_parses_and_equals_defaults() {
        let text = include_str!("../sobre-collector.example.toml");
        let cfg = CollectorConfig::parse(text).expect("example parses");
        cfg.validate().expect("example is valid");
        assert_eq!(cfg, CollectorConfig::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = CollectorConfig::parse("[http]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .expect_err("unknown key");
        assert!(err.contains("listen_port"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err =
            CollectorConfig::parse("[store]\nbatch_max = \"many\"\n").expect_err("wrong type");
        assert!(err.contains("batch_max"), "{err}");
    }

    #[test]
    fn load_error_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "bogus = 1\n").expect("write");
        let err = CollectorConfig::load(&path).expect_err("bad").to_string();
        assert!(err.contains("c.toml") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn external_broker_needs_url() {
        let mut cfg = CollectorConfig::default();
        cfg.mqtt.embedded = false;
        assert!(cfg.validate().is_err());
        cfg.mqtt.broker = Some("mqtt://127.0.0.1:1884".into());
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn share_group_is_checked() {
        let mut cfg = CollectorConfig::default();
        cfg.mqtt.share_group = Some("sobre-collectors".into());
        let err = cfg.validate().expect_err("embedded broker");
        assert!(err.contains("external broker"), "{err}");
        cfg.mqtt.embedded = false;
        cfg.mqtt.broker = Some("mqtt://127.0.0.1:1884".into());
        cfg.validate().expect("a plain name is valid");
        for bad in ["", "a/b", "a+", "#", "tab\there", &"x".repeat(65)] {
            cfg.mqtt.share_group = Some(bad.into());
            assert!(cfg.validate().is_err(), "{bad:?} accepted");
        }
        let err = CollectorConfig::parse("[mqtt]\nshare_group = 3\n").expect_err("type");
        assert!(err.contains("share_group"), "{err}");
    }

    #[test]
    fn broker_urls() {
        assert_eq!(parse_broker_url("mqtt://h:1"), Ok(("h".into(), 1)));
        assert_eq!(parse_broker_url("mqtt://h"), Ok(("h".into(), 1883)));
        assert!(parse_broker_url("http://h:1").is_err());
        assert!(parse_broker_url("mqtt://h:x").is_err());
    }

    #[test]
    fn print_config_round_trips() {
        let cfg = CollectorConfig::default();
        assert_eq!(CollectorConfig::parse(&cfg.to_toml()), Ok(cfg));
    }
}
