//! `sobre-agent service`: the agent as a Windows service. What is the same
//! everywhere lives here and is tested on Linux: the install properties a
//! GPO or SCCM passes (`COLLECTOR=… ENROL_TOKEN=…`, as an MSI's), the
//! `agent.toml` they make, where things go. The service control manager's
//! side is in `windows.rs`.

use crate::config::AgentConfig;
use std::path::{Path, PathBuf};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{install, run, uninstall};

/// The service's name for `sc.exe` and the registry.
pub const NAME: &str = "SobreAgent";
/// What the Services console shows.
pub const DISPLAY_NAME: &str = "Sobre agent";
pub const DESCRIPTION: &str = "Sobre: this machine's usage, power, inventory and storage, \
     reported to the IT department's Sobre collector (responsible digital).";
/// The service log's cap (twice this on disk at most: one older file).
pub const LOG_CAP_BYTES: u64 = 1024 * 1024;

/// `sobre-agent service …`
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub command: ServiceCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Install the agent for this machine (from an elevated prompt, a GPO
    /// startup script or SCCM): copy it to %ProgramFiles%\Sobre, write
    /// %ProgramData%\Sobre\agent.toml from the properties, register the
    /// "SobreAgent" service (automatic, delayed start; restarted on
    /// failure) and start it. Run again to upgrade: the config is kept.
    ///
    /// Properties, as an MSI's:
    ///   COLLECTOR=mqtt://host:1883 | mqtts://… | http(s)://host:50051 (gRPC)
    ///   ENROL_TOKEN=…       one-time token from `sobre-collector enrol`
    ///   ENROL_ENDPOINT=…    the collector's gRPC address for enrolment
    ///   CA_FILE=C:\…\ca.pem the CA of the collector's TLS certificate
    ///   GROUP=…  SITE=…     labels for the collector's reports
    ///   AGENT_ID=…          default: the hostname and machine GUID
    ///
    /// Example:
    ///   sobre-agent service install COLLECTOR=mqtts://sobre.ville.fr:8883 \
    ///     CA_FILE=\\ville\netlogon\sobre-ca.pem ENROL_TOKEN=… GROUP=mairie
    #[command(verbatim_doc_comment)]
    Install {
        /// PROPERTY=VALUE, as listed above.
        properties: Vec<String>,
        /// Rewrite agent.toml from the properties even if one exists.
        #[arg(long)]
        replace_config: bool,
    },
    /// Stop and remove the service and the installed binary. The state in
    /// %ProgramData%\Sobre (reports not yet sent, the key) stays, unless
    /// --purge.
    Uninstall {
        #[arg(long)]
        purge: bool,
    },
    /// Run as the service (the service manager starts this; not for people).
    #[command(hide = true)]
    Run,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "unknown property {0:?}: use COLLECTOR, ENROL_TOKEN, ENROL_ENDPOINT, CA_FILE, GROUP, SITE or AGENT_ID"
    )]
    UnknownProperty(String),
    /// Only its position is said: a stray word may be a token's value
    /// (`ENROL_TOKEN= abc`), and errors go to install logs.
    #[error(
        "argument {0} is not PROPERTY=VALUE (e.g. COLLECTOR=mqtt://sobre.example:1883; quote a value with spaces)"
    )]
    NotAProperty(usize),
    #[error(
        "COLLECTOR= is missing: a first install (or --replace-config) writes agent.toml from it, e.g. COLLECTOR=mqtts://sobre.example:8883"
    )]
    NoCollector,
    #[error("COLLECTOR={0:?}: give mqtt://, mqtts://, http:// (gRPC) or https:// (gRPC over TLS)")]
    Collector(String),
    #[error("the properties make an invalid agent.toml: {0}")]
    Config(String),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("installing or removing a service takes an elevated prompt (Run as administrator)")]
    NotElevated,
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the service manager: {0}")]
    Manager(String),
}

/// Where the installed agent lives.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// `%ProgramFiles%\Sobre\sobre-agent.exe`
    pub exe: PathBuf,
    /// `%ProgramData%\Sobre`: config, spool, index, key, log.
    pub state: PathBuf,
}

impl Layout {
    pub fn config(&self) -> PathBuf {
        self.state.join("agent.toml")
    }

    pub fn log(&self) -> PathBuf {
        self.state.join("agent.log")
    }

    /// The arguments the service manager starts the agent with.
    pub fn launch_arguments(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--config".into(),
            self.config().into_os_string(),
            "service".into(),
            "run".into(),
        ]
    }
}

/// The install properties, parsed and checked.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Properties {
    pairs: Vec<(&'static str, String)>,
}

const KNOWN: [&str; 7] = [
    "COLLECTOR",
    "ENROL_TOKEN",
    "ENROL_ENDPOINT",
    "CA_FILE",
    "GROUP",
    "SITE",
    "AGENT_ID",
];

impl Properties {
    /// Parses `NAME=VALUE` arguments (names in any case; the last of a
    /// name wins, as with msiexec).
    pub fn parse(args: &[String]) -> Result<Properties, ServiceError> {
        let mut p = Properties::default();
        for (i, a) in args.iter().enumerate() {
            let (k, v) = a.split_once('=').ok_or(ServiceError::NotAProperty(i + 1))?;
            let k = KNOWN
                .iter()
                .find(|n| n.eq_ignore_ascii_case(k.trim()))
                .ok_or_else(|| ServiceError::UnknownProperty(k.to_owned()))?;
            p.pairs.retain(|(n, _)| n != k);
            p.pairs.push((k, v.trim().to_owned()));
        }
        Ok(p)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The `agent.toml` an install writes (a first one, or
    /// `--replace-config`): as [`Properties::agent_toml`], and with a
    /// collector, for an agent installed without one would report nowhere.
    pub fn config_to_write(&self, state: &Path) -> Result<String, ServiceError> {
        if self.get("COLLECTOR").is_none() {
            return Err(ServiceError::NoCollector);
        }
        self.agent_toml(state)
    }

    /// The `agent.toml` these properties make, with the state under
    /// `state`; checked by parsing it as the agent will.
    pub fn agent_toml(&self, state: &Path) -> Result<String, ServiceError> {
        let mut t = toml::Table::new();
        let mut transport = toml::Table::new();
        if let Some(c) = self.get("COLLECTOR") {
            let (kind, key) = if c.starts_with("mqtt://") || c.starts_with("mqtts://") {
                ("mqtt", "mqtt_broker")
            } else if c.starts_with("http://") || c.starts_with("https://") {
                ("grpc", "grpc_endpoint")
            } else {
                return Err(ServiceError::Collector(c.to_owned()));
            };
            transport.insert("kind".into(), kind.into());
            transport.insert(key.into(), c.into());
        }
        if let Some(ca) = self.get("CA_FILE") {
            transport.insert("ca_file".into(), ca.into());
        }
        for (prop, key) in [
            ("AGENT_ID", "agent_id"),
            ("GROUP", "group"),
            ("SITE", "site"),
        ] {
            if let Some(v) = self.get(prop) {
                t.insert(key.into(), v.into());
            }
        }
        let path = |p: PathBuf| toml::Value::from(p.to_string_lossy().into_owned());
        let mut spool = toml::Table::new();
        spool.insert("dir".into(), path(state.join("spool")));
        let mut storage = toml::Table::new();
        storage.insert("index_dir".into(), path(state.join("index")));
        let mut enrol = toml::Table::new();
        enrol.insert("credential_file".into(), path(state.join("credential")));
        if let Some(v) = self.get("ENROL_TOKEN") {
            enrol.insert("token".into(), v.into());
        }
        if let Some(v) = self.get("ENROL_ENDPOINT") {
            enrol.insert("endpoint".into(), v.into());
        }
        t.insert("nudges_file".into(), path(state.join("nudges.jsonl")));
        if !transport.is_empty() {
            t.insert("transport".into(), transport.into());
        }
        t.insert("spool".into(), spool.into());
        t.insert("storage".into(), storage.into());
        t.insert("enrol".into(), enrol.into());
        let body = toml::to_string(&t).map_err(|e| ServiceError::Config(e.to_string()))?;
        let text = format!(
            "# Written by `sobre-agent service install` from its properties.\n\
             # Every setting and its default: `sobre-agent --print-config`.\n\
             # The enrolment token is used once; it may be removed afterwards.\n\n{body}"
        );
        let cfg = AgentConfig::parse(&text).map_err(ServiceError::Config)?;
        cfg.validate().map_err(ServiceError::Config)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(a: &[&str]) -> Result<Properties, ServiceError> {
        Properties::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn properties_make_an_agent_toml_the_agent_reads() {
        let state = Path::new("/state");
        let p = props(&[
            "COLLECTOR=http://sobre.example:50051",
            "enrol_token=abc123",
            "GROUP=mairie",
            "SITE=Hôtel de ville",
        ])
        .expect("valid");
        let cfg = AgentConfig::parse(&p.agent_toml(state).expect("valid")).expect("valid");
        assert_eq!(cfg.transport.kind, crate::config::TransportKind::Grpc);
        assert_eq!(cfg.transport.grpc_endpoint, "http://sobre.example:50051");
        assert_eq!(cfg.enrol.token.as_deref(), Some("abc123"));
        assert_eq!(
            (cfg.group.as_str(), cfg.site.as_str()),
            ("mairie", "Hôtel de ville")
        );
        assert_eq!(cfg.spool.dir, state.join("spool"));
        assert_eq!(cfg.storage.index_dir, state.join("index"));
        assert_eq!(cfg.credential_path(), state.join("credential"));
        assert_eq!(cfg.nudges_path(), state.join("nudges.jsonl"));
        assert_eq!(cfg.log_path(), state.join("agent.log"));
    }

    #[test]
    fn an_mqtt_collector_and_no_properties_at_all() {
        let p = props(&["COLLECTOR=mqtt://10.0.0.5:1883"]).expect("valid");
        let cfg =
            AgentConfig::parse(&p.agent_toml(Path::new("/s")).expect("valid")).expect("valid");
        assert_eq!(cfg.transport.kind, crate::config::TransportKind::Mqtt);
        assert_eq!(cfg.transport.mqtt_broker, "mqtt://10.0.0.5:1883");
        let none = props(&[]).expect("valid");
        assert!(none.is_empty());
        AgentConfig::parse(&none.agent_toml(Path::new("/s")).expect("valid")).expect("valid");
    }

    #[test]
    fn a_config_is_written_only_with_a_collector() {
        let state = Path::new("/s");
        for p in [&[][..], &["GROUP=mairie"], &["COLLECTOR="]] {
            let e = props(p)
                .expect("valid")
                .config_to_write(state)
                .expect_err("refused");
            assert!(matches!(e, ServiceError::NoCollector), "{p:?}: {e}");
        }
        let p = props(&["COLLECTOR=mqtt://10.0.0.5:1883"]).expect("valid");
        assert_eq!(
            p.config_to_write(state).expect("valid"),
            p.agent_toml(state).expect("valid")
        );
    }

    #[test]
    fn bad_properties_are_refused_by_name() {
        let e = props(&["COLECTOR=mqtt://x"]).expect_err("refused");
        assert!(e.to_string().contains("COLECTOR"), "{e}");
        let e = props(&["mqtt://x"]).expect_err("refused");
        assert!(matches!(e, ServiceError::NotAProperty(1)), "{e}");
        // A token's value split from its name is not echoed (install logs).
        let e =
            props(&["COLLECTOR=mqtt://x", "ENROL_TOKEN=", "s3cret-value"]).expect_err("refused");
        assert!(matches!(e, ServiceError::NotAProperty(3)), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = props(&["COLLECTOR=ftp://x"])
            .expect("valid")
            .agent_toml(Path::new("/s"))
            .expect_err("refused");
        assert!(matches!(e, ServiceError::Collector(_)), "{e}");
        // TLS without its CA: the agent's own check, said at install.
        let e = props(&["COLLECTOR=mqtts://x:8883"])
            .expect("valid")
            .agent_toml(Path::new("/s"))
            .expect_err("refused");
        assert!(e.to_string().contains("ca_file"), "{e}");
    }

    #[test]
    fn a_quote_or_newline_in_a_value_stays_a_value() {
        let p = props(&["GROUP=a\"\nb = 1", "SITE=x"]).expect("valid");
        let cfg =
            AgentConfig::parse(&p.agent_toml(Path::new("/s")).expect("valid")).expect("valid");
        assert_eq!(cfg.group, "a\"\nb = 1");
    }

    #[test]
    fn the_service_starts_the_agent_with_its_config() {
        let l = Layout {
            exe: PathBuf::from("/pf/sobre-agent.exe"),
            state: PathBuf::from("/pd/Sobre"),
        };
        let args: Vec<String> = l
            .launch_arguments()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let config = l.config().to_string_lossy().into_owned();
        assert_eq!(args, ["--config", config.as_str(), "service", "run"]);
        assert!(config.ends_with("agent.toml"), "{config}");
    }
}
