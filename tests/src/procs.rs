//! The processes under test: collector, agent and Mosquitto, each in its
//! own temp directory with its log kept for assertions and post-mortems.

use crate::{bin, free_port, sigterm, wait_for};
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let err = out.try_clone().expect("log file");
    cmd.stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .stdin(Stdio::null())
        .env(
            "SOBRE_LOG",
            "info,sobre_collector=debug,sobre_agent=debug,rumqttd=warn,rumqttc=warn",
        )
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Waits for a process to exit within `timeout`.
pub async fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    wait_for("process exit", timeout, || {
        let r = child.try_wait().expect("try_wait");
        async move { r }
    })
    .await
}

#[derive(Debug, Clone, Default)]
pub struct CollectorOpts {
    /// `None`: embedded broker; `Some(port)`: external broker on that port.
    pub external_broker: Option<u16>,
    /// Where the store lives; default: `data` in the collector's folder.
    pub data_dir: Option<PathBuf>,
    pub extra_toml: String,
    /// More keys for the `[http]` section.
    pub http_toml: String,
    /// Require agents to enrol (the collector's default). Off unless a
    /// test is about enrolment: the harness's agents do not enrol.
    pub enrolment: bool,
    /// More keys for the `[grpc]` section (e.g. TLS files).
    pub grpc_toml: String,
    /// The external broker speaks TLS, with a certificate from this CA.
    pub mqtt_tls_ca: Option<PathBuf>,
    /// More keys for the `[mqtt]` section (embedded or external broker,
    /// e.g. `share_group`).
    pub mqtt_toml: String,
    /// The `[listeners]` section (`None`: [`LISTENERS_TOML`]).
    pub listeners_toml: Option<String>,
}

/// The harness's `[listeners]`: the defaults, but failed sign-ins are not
/// limited per source. Every test's clients come from 127.0.0.1, and its
/// agents retry every 50-500 ms (real ones back off to a minute): one
/// test's deliberately unenrolled agent would soon have the others
/// refused too. `e2e/listeners.rs` tests the limit itself.
pub const LISTENERS_TOML: &str = "failed_auth_burst = 10000\nfailed_auth_refill_s = 1\n";

/// A `sobre-collector` process. Ports are chosen once, so a restart comes
/// back where the agents expect it.
pub struct Collector {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub http: u16,
    pub mqtt: u16,
    pub grpc: u16,
    child: Option<Child>,
    http_client: reqwest::Client,
}

impl Collector {
    pub async fn start(dir: &Path, opts: CollectorOpts) -> Collector {
        let (http, grpc) = (free_port(), free_port());
        let mqtt = opts.external_broker.unwrap_or_else(free_port);
        let broker = match opts.external_broker {
            None => format!(
                "embedded = true\nlisten = \"127.0.0.1:{mqtt}\"\n{}",
                opts.mqtt_toml
            ),
            Some(p) => match &opts.mqtt_tls_ca {
                None => format!(
                    "embedded = false\nbroker = \"mqtt://127.0.0.1:{p}\"\n{}",
                    opts.mqtt_toml
                ),
                Some(ca) => format!(
                    "embedded = false\nbroker = \"mqtts://127.0.0.1:{p}\"\nca_file = \"{}\"\n{}",
                    ca.display(),
                    opts.mqtt_toml
                ),
            },
        };
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| dir.join("data"));
        let cfg = format!(
            "data_dir = \"{}\"\n{}\n[http]\nlisten = \"127.0.0.1:{http}\"\n{}\n[mqtt]\n{broker}\n[grpc]\nlisten = \"127.0.0.1:{grpc}\"\n{}\n[security]\nrequire_enrolment = {}\n[listeners]\n{}\n",
            data_dir.display(),
            opts.extra_toml,
            opts.http_toml,
            opts.grpc_toml,
            opts.enrolment,
            opts.listeners_toml.as_deref().unwrap_or(LISTENERS_TOML),
        );
        std::fs::create_dir_all(dir).expect("collector dir");
        std::fs::write(dir.join("collector.toml"), cfg).expect("write config");
        let mut c = Collector {
            dir: dir.to_owned(),
            data_dir,
            http,
            mqtt,
            grpc,
            child: None,
            http_client: crate::http_client(),
        };
        c.restart().await;
        c
    }

    /// (Re)starts the process and waits for `/health`.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "collector already running");
        let mut cmd = Command::new(bin("sobre-collector"));
        cmd.arg("--config").arg(self.dir.join("collector.toml"));
        self.child = Some(spawn_logged(&mut cmd, &self.dir.join("collector.log")));
        let url = format!("http://127.0.0.1:{}/health", self.http);
        let client = self.http_client.clone();
        let (child, log) = (&mut self.child, self.dir.join("collector.log"));
        wait_for("collector /health", Duration::from_secs(30), || {
            // A collector that exited will never answer: say why at once.
            if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("the collector exited ({status}) before answering /health:\n{log}");
            }
            let (client, url) = (client.clone(), url.clone());
            async move {
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL collector");
            c.wait().expect("reap collector");
        }
    }

    /// SIGTERM, and the exit status of the orderly shutdown.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("collector running");
        sigterm(c.id());
        wait_exit(&mut c, Duration::from_secs(30)).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("collector.log")).unwrap_or_default()
    }

    /// A `kB` figure of the running process's `/proc/PID/status`
    /// (`VmRSS`, `VmHWM`, ...).
    pub fn status_kb(&self, field: &str) -> u64 {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .expect("collector running");
        crate::proc_status_kb(pid, field)
    }

    pub async fn get(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.http);
        let r = self.http_client.get(&url).send().await.expect("GET");
        r.json().await.expect("JSON body")
    }

    /// The admin API token the collector generated in its data_dir.
    pub fn admin_token(&self) -> String {
        let path = self.data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// POST `path` with the admin token (and a JSON body if given).
    pub async fn post_admin(&self, path: &str, body: Option<&Value>) -> reqwest::Response {
        let url = format!("http://127.0.0.1:{}{path}", self.http);
        let mut req = self.http_client.post(&url).bearer_auth(self.admin_token());
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("POST")
    }

    pub async fn get_status(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.http);
        let r = self.http_client.get(&url).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Seqs of the stored usage samples of one agent, in sample order.
    /// Every sample stored for `agent` (none if it is unknown).
    pub async fn samples(&self, agent: &str) -> Vec<Value> {
        let (status, body) = self
            .get_status(&format!(
                "/api/v1/agents/{agent}/samples?since=0&limit=10000"
            ))
            .await;
        if status == 404 {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&body).expect("samples JSON");
        v.as_array().expect("array").clone()
    }

    pub async fn sample_seqs(&self, agent: &str) -> Vec<u64> {
        self.samples(agent)
            .await
            .iter()
            .map(|s| s["seq"].as_u64().expect("seq"))
            .collect()
    }

    pub async fn wait_samples(&self, agent: &str, n: usize, timeout: Duration) -> Vec<u64> {
        wait_for(
            &format!("{n} samples from {agent}"),
            timeout,
            || async move {
                let s = self.sample_seqs(agent).await;
                (s.len() >= n).then_some(s)
            },
        )
        .await
    }

    /// A counter from `/metrics`, by its full name with labels.
    pub async fn metric(&self, name: &str) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.http);
        let text = self
            .http_client
            .get(&url)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Mqtt,
    Grpc,
}

#[derive(Debug, Clone)]
pub struct AgentOpts {
    pub id: String,
    pub transport: Transport,
    pub interval_ms: u64,
    pub ack_timeout_ms: u64,
    pub extra_toml: String,
    /// The `[storage]` section; default: scans off.
    pub storage_toml: Option<String>,
    /// The `[enrol]` section (token, credential_file...); default: none.
    pub enrol_toml: String,
    /// Replaces `http://127.0.0.1:{grpc port}` (e.g. `https://`).
    pub grpc_scheme: &'static str,
    /// Replaces `mqtt://127.0.0.1:{mqtt port}` (e.g. `mqtts://`).
    pub mqtt_scheme: &'static str,
    /// More keys for the `[transport]` section (e.g. `ca_file`).
    pub transport_toml: String,
    /// Run `sobre-agent.exe` under Wine instead (see [`crate::wine`]).
    pub windows: bool,
}

impl AgentOpts {
    pub fn new(id: &str, transport: Transport) -> Self {
        AgentOpts {
            id: id.into(),
            transport,
            interval_ms: 50,
            ack_timeout_ms: 2_000,
            extra_toml: String::new(),
            storage_toml: None,
            enrol_toml: String::new(),
            grpc_scheme: "http",
            mqtt_scheme: "mqtt",
            transport_toml: String::new(),
            windows: false,
        }
    }
}

/// A path as the agent sees it: under Wine, on its `Z:` drive (the
/// Linux root), in TOML's escaping.
fn path_for(p: &Path, windows: bool) -> String {
    if windows {
        crate::wine::path(p).replace('\\', "\\\\")
    } else {
        p.display().to_string()
    }
}

/// A `sobre-agent` process reading the real host.
pub struct Agent {
    pub dir: PathBuf,
    pub id: String,
    child: Option<Child>,
    windows: bool,
}

impl Agent {
    /// Starts an agent pointed at `mqtt_port` or `grpc_port`.
    pub fn start(dir: &Path, opts: &AgentOpts, mqtt_port: u16, grpc_port: u16) -> Agent {
        let kind = match opts.transport {
            Transport::Mqtt => "mqtt",
            Transport::Grpc => "grpc",
        };
        let cfg = format!(
            "agent_id = \"{id}\"\ninterval_ms = {iv}\n{extra}\n[transport]\nkind = \"{kind}\"\nmqtt_broker = \"{mqtt_scheme}://127.0.0.1:{mqtt_port}\"\ngrpc_endpoint = \"{scheme}://127.0.0.1:{grpc_port}\"\n{transport}\nack_timeout_ms = {ack}\nbackoff_min_ms = 50\nbackoff_max_ms = 500\ndrain_timeout_ms = 10000\n[spool]\ndir = \"{spool}\"\nfsync = false\n[storage]\nindex_dir = \"{index}\"\n{storage}\n[enrol]\n{enrol}\n",
            id = opts.id,
            iv = opts.interval_ms,
            extra = opts.extra_toml,
            ack = opts.ack_timeout_ms,
            spool = path_for(&dir.join("spool"), opts.windows),
            index = path_for(&dir.join("index"), opts.windows),
            storage = opts.storage_toml.as_deref().unwrap_or("enabled = false"),
            enrol = opts.enrol_toml,
            scheme = opts.grpc_scheme,
            mqtt_scheme = opts.mqtt_scheme,
            transport = opts.transport_toml,
        );
        std::fs::create_dir_all(dir).expect("agent dir");
        std::fs::write(dir.join("agent.toml"), cfg).expect("write agent config");
        let mut a = Agent {
            dir: dir.to_owned(),
            id: opts.id.clone(),
            child: None,
            windows: opts.windows,
        };
        a.restart();
        a
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let config = self.dir.join("agent.toml");
        let mut cmd = if self.windows {
            let mut c = crate::wine::command(&crate::wine::agent_exe());
            c.arg("--config").arg(crate::wine::path(&config));
            c
        } else {
            let mut c = Command::new(bin("sobre-agent"));
            c.arg("--config").arg(config);
            c
        };
        self.child = Some(spawn_logged(&mut cmd, &self.dir.join("agent.log")));
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL agent");
            c.wait().expect("reap agent");
        }
    }

    /// SIGTERM and the exit status; the agent drains for up to 10 s.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("agent running");
        sigterm(c.id());
        wait_exit(&mut c, Duration::from_secs(30)).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A real Mosquitto broker on a free loopback port.
pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    pub async fn start(dir: &Path) -> Mosquitto {
        Mosquitto::start_with(dir, "").await
    }

    /// A broker whose only listener is TLS, with the certificate of `pki`.
    pub async fn start_tls(dir: &Path, pki: &crate::tls::Pki) -> Mosquitto {
        let tls = format!(
            "cafile {}\ncertfile {}\nkeyfile {}\n",
            pki.ca.display(),
            pki.cert.display(),
            pki.key.display()
        );
        Mosquitto::start_with(dir, &tls).await
    }

    /// `listener_conf`: more lines for the listener (e.g. TLS files).
    async fn start_with(dir: &Path, listener_conf: &str) -> Mosquitto {
        let port = free_port();
        std::fs::create_dir_all(dir).expect("mosquitto dir");
        std::fs::write(
            dir.join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\n{listener_conf}allow_anonymous true\npersistence false\nmax_queued_messages 100000\nlog_dest stdout\n"
            ),
        )
        .expect("mosquitto.conf");
        let mut m = Mosquitto {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        m.restart().await;
        m
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "mosquitto already running");
        let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto is not installed: apt-get install mosquitto (tests/run does it)");
        let mut cmd = Command::new(exe);
        cmd.arg("-c").arg(self.dir.join("mosquitto.conf"));
        self.child = Some(spawn_logged(&mut cmd, &self.dir.join("mosquitto.log")));
        let port = self.port;
        wait_for(
            "mosquitto to listen",
            Duration::from_secs(10),
            || async move {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL mosquitto");
            c.wait().expect("reap mosquitto");
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill9();
    }
}
