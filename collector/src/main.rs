//! `sobre-collector`: command line, logging and signals around the
//! library's `start`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sobre_collector::config::CollectorConfig;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Sobre collector: receives what sobre-agents report (MQTT or gRPC),
/// stores it once in SQLite, acknowledges each envelope after commit, and
/// serves it over HTTP.
///
/// Without a config file it runs with defaults: embedded MQTT broker on
/// 127.0.0.1:1883, gRPC on 127.0.0.1:50051, HTTP API on 127.0.0.1:8080,
/// store in ./sobre-data. See `--print-config` and
/// collector/sobre-collector.example.toml.
#[derive(Debug, Parser)]
#[command(name = "sobre-collector", version, verbatim_doc_comment)]
struct Cli {
    /// Configuration file (TOML). Unknown keys are refused.
    #[arg(short, long, global = true, env = "SOBRE_COLLECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration, defaults filled in, and exit.
    #[arg(long, global = true)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector (the default).
    Run,
    /// List findings (idle servers, machines left on, bloat...) from the
    /// store in `data_dir`, biggest savings first. Works while the
    /// collector runs.
    Findings {
        /// Only this kind: idle_server, left_on, consolidation, redundant,
        /// bloat, past_lifetime, battery_worn.
        #[arg(long)]
        kind: Option<String>,
        /// Only this state: open, acknowledged, snoozed, resolved.
        #[arg(long)]
        state: Option<String>,
        /// Only this agent id.
        #[arg(long)]
        host: Option<String>,
        /// Run a detection pass first (nudges it queues are delivered by
        /// the running collector).
        #[arg(long)]
        run: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Clean Up Day campaigns: create, list, start, end, archive, report.
    /// Works on the store in `data_dir`, also while the collector runs.
    Campaign {
        #[command(subcommand)]
        cmd: sobre_collector::campaign::cli::CampaignCmd,
    },
    /// Issue an enrolment token (printed once): for one agent id, or for a
    /// whole group that many agents may use during a window, e.g.
    /// `enrol --group dsi --uses 500 --expires 7d`; each agent still gets
    /// its own key. Put it in the agents' config as `[enrol] token =
    /// "..."`. `--list` shows the tokens and their uses, `--revoke ID`
    /// stops one.
    Enrol {
        /// Bind the token to this agent id (one use; it may re-enrol that
        /// agent, rotating its key).
        #[arg(long, conflicts_with_all = ["group", "uses"])]
        agent: Option<String>,
        /// A group or site label for a roll-out token.
        #[arg(long)]
        group: Option<String>,
        /// How many agents may enrol with the token (1 to 100000).
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid: 30m, 12h, 7d, 2w (at most 90 days);
        /// default: security.enrol_token_ttl_hours.
        #[arg(long, value_parser = sobre_base::duration::parse)]
        expires: Option<std::time::Duration>,
        /// List the latest tokens (never the tokens themselves) and exit.
        #[arg(long, conflicts_with_all = ["agent", "group", "revoke"])]
        list: bool,
        /// Revoke the token with this id (from --list): agents it enrolled
        /// keep their keys.
        #[arg(long, value_name = "ID")]
        revoke: Option<String>,
    },
    /// Revoke an agent's credential: its reports are refused until it is
    /// enrolled again. Takes effect when the collector (re)starts; use
    /// `DELETE /api/v1/agents/{id}/credential` on a running collector.
    Revoke { agent: String },
    /// Benchmark: one detection pass over a synthetic fleet (hourly
    /// roll-up of HOSTS × DAYS) in a temporary store; prints its time and
    /// the process's peak memory.
    BenchDetect {
        #[arg(long, default_value_t = 10_000)]
        hosts: usize,
        #[arg(long, default_value_t = 14)]
        days: i64,
    },
    /// Try Sobre on this machine, no setup: a collector with its embedded
    /// broker and store, plus an agent for this machine reporting to it.
    /// Prints the address to open; Ctrl-C stops both cleanly.
    Quickstart {
        /// Where the store and the agent's spool live.
        #[arg(long, default_value = "sobre-data")]
        data_dir: PathBuf,
        /// HTTP address; if taken, a free port is used instead.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
        /// Seconds between two usage reports of the local agent.
        #[arg(long, default_value_t = 10)]
        interval: u64,
    },
}

/// `sobre-collector enrol`: issue, list or revoke enrolment tokens.
fn enrol_cmd(
    conn: &dyn sobre_collector::db::Db,
    agent: Option<String>,
    group: Option<String>,
    uses: u32,
    ttl_ms: i64,
    list: bool,
    revoke: Option<String>,
) -> anyhow::Result<()> {
    use sobre_collector::ingest::enrol_tokens;
    let now = sobre_collector::ingest::now_ms();
    if list {
        println!(
            "{:<16}  {:<24}  {:>11}  {:<8}  expires (UTC ms)",
            "id", "for", "uses", "state"
        );
        for t in enrol_tokens::list(conn, 1000)? {
            let who = enrol_tokens::audience(t.agent_id.as_deref(), t.group.as_deref());
            let state = match (t.revoked_ms, t.expires_ms <= now, t.uses >= t.uses_max) {
                (Some(_), ..) => "revoked",
                (_, true, _) => "expired",
                (_, _, true) => "used up",
                _ => "valid",
            };
            let left_h = (t.expires_ms - now).max(0) / 3_600_000;
            println!(
                "{:<16}  {:<24}  {:>11}  {:<8}  {left_h} h",
                t.id,
                who,
                format!("{}/{}", t.uses, t.uses_max),
                state
            );
        }
        return Ok(());
    }
    if let Some(id) = revoke {
        enrol_tokens::revoke(conn, &id, now)?;
        eprintln!("token {id} revoked: agents it enrolled keep their keys");
        return Ok(());
    }
    let spec = enrol_tokens::Spec {
        agent_id: agent,
        group,
        uses,
        ttl_ms,
    };
    let (token, id) = enrol_tokens::issue(conn, &spec, now)?;
    println!("{token}");
    eprintln!(
        "enrolment token {id} for {}, {} use(s), valid {} h: set it as [enrol] token in the agents' config",
        enrol_tokens::audience(spec.agent_id.as_deref(), spec.group.as_deref()),
        spec.uses,
        ttl_ms / 3_600_000
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // Everything Sobre and its libraries create is owner-only (SECURITY.md).
    sobre_base::files::restrict_umask();
    let cli = Cli::parse();
    let cfg = match &cli.config {
        Some(path) => CollectorConfig::load(path)?,
        None => CollectorConfig::default(),
    };
    if cli.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    sobre_base::shutdown::init_logging(
        "info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(cfg).await,
            Command::Findings {
                kind,
                state,
                host,
                run,
                json,
            } => findings(&cfg, kind, state, host, run, json),
            Command::Campaign { cmd } => {
                let jobs = offline_jobs(&cfg)?;
                sobre_collector::campaign::cli::run(&jobs, cmd, sobre_collector::ingest::now_ms())?;
                Ok(())
            }
            Command::Enrol {
                agent,
                group,
                uses,
                expires,
                list,
                revoke,
            } => {
                let conn = offline_store(&cfg)?;
                let ttl_ms = expires.map_or(cfg.security.enrol_token_ttl_hours * 3_600_000, |d| {
                    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
                });
                enrol_cmd(conn.as_ref(), agent, group, uses, ttl_ms, list, revoke)
            }
            Command::Revoke { agent } => {
                use sobre_collector::ingest::credentials::Credentials;
                let conn = offline_store(&cfg)?;
                Credentials::load(conn.as_ref(), true)?.revoke(
                    conn.as_ref(),
                    &agent,
                    sobre_collector::ingest::now_ms(),
                )?;
                eprintln!("{agent} revoked; a running collector applies it at its next start (or use DELETE /api/v1/agents/{agent}/credential)");
                Ok(())
            }
            Command::BenchDetect { hosts, days } => {
                let dir =
                    std::env::temp_dir().join(format!("sobre-bench-detect-{}", std::process::id()));
                let line = sobre_collector::bench::detect(
                    &dir,
                    hosts,
                    days,
                    sobre_collector::ingest::now_ms(),
                );
                let _ = std::fs::remove_dir_all(&dir);
                println!("{}", line?);
                Ok(())
            }
            Command::Quickstart {
                data_dir,
                http,
                interval,
            } => quickstart(data_dir, http, interval).await,
        }
    })
}

/// The store of a collector that ran before (maybe running now).
fn offline_store(cfg: &CollectorConfig) -> anyhow::Result<sobre_collector::store::Conn> {
    use sobre_collector::store;
    let location = store::Location::from_config(cfg);
    if location.postgres_url.is_none() && !cfg.data_dir.join(store::FILE).exists() {
        anyhow::bail!(
            "no store in {}: run the collector first, or pass --config with its data_dir",
            cfg.data_dir.display()
        );
    }
    Ok(location.open()?)
}

/// The periodic jobs over an existing store, without a running collector
/// (commands they queue leave with the running collector's next pass).
fn offline_jobs(cfg: &CollectorConfig) -> anyhow::Result<sobre_collector::jobs::Jobs> {
    let conn = offline_store(cfg)?;
    let grid = match &cfg.footprint.grid_hourly_file {
        Some(p) => {
            sobre_collector::footprint::GridIntensity::load(cfg.footprint.grid_g_per_kwh, p)?
        }
        None => sobre_collector::footprint::GridIntensity::flat(cfg.footprint.grid_g_per_kwh),
    };
    let settings = std::sync::Arc::new(sobre_collector::http::footprint_api::Settings {
        cfg: cfg.footprint.clone(),
        grid,
    });
    Ok(sobre_collector::jobs::Jobs::new(
        conn,
        // The CLI acts as the leader: it runs what an admin asked for.
        sobre_collector::cluster::Cluster::single(cfg.node()),
        cfg.detect.clone(),
        cfg.nudge.clone(),
        settings,
        Default::default(),
    ))
}

fn findings(
    cfg: &CollectorConfig,
    kind: Option<String>,
    state: Option<String>,
    host: Option<String>,
    run: bool,
    json: bool,
) -> anyhow::Result<()> {
    use sobre_collector::store::findings as f;
    if let Some(k) = &kind
        && sobre_collector::detect::Kind::parse(k).is_none()
    {
        anyhow::bail!("--kind {k:?} is not a finding kind; see --help");
    }
    let jobs = offline_jobs(cfg)?;
    let conn = offline_store(cfg)?;
    if run {
        let r = jobs.pass(sobre_collector::ingest::now_ms())?;
        eprintln!(
            "pass: {} findings ({} new, {} resolved) on {} hosts, {} nudges queued, {} ms",
            r.findings, r.opened, r.resolved, r.hosts, r.nudges, r.millis
        );
    }
    let list = f::list(
        &conn,
        &f::FindingFilter {
            kind,
            state,
            agent_id: host,
        },
    )?;
    for x in &list {
        if json {
            println!("{}", serde_json::to_string(x)?);
            continue;
        }
        let saving = match (x.saving_kg_year, x.saving_kwh_year, x.saving_bytes) {
            (Some(kg), Some(kwh), _) => format!("{kwh:.0} kWh/yr, {kg:.1} kgCO2e/yr"),
            (Some(kg), None, _) => format!("{kg:.1} kgCO2e/yr"),
            (_, _, Some(b)) => format!("{:.1} GB", b as f64 / 1e9),
            _ => String::new(),
        };
        println!(
            "{:<13} {:<14} {:<28} {saving}\n  id {}",
            x.state, x.kind, x.subject, x.id
        );
    }
    if list.is_empty() && !json {
        println!("No findings. (A pass runs every detect.interval_s; --run runs one now.)");
    }
    Ok(())
}

async fn run(cfg: CollectorConfig) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let running = sobre_collector::start(cfg, cancel.clone()).await?;
    say(&format!(
        "sobre-collector listening: {}://{}",
        if running.https { "https" } else { "http" },
        running.http_addr
    ));
    if let Some(a) = running.mqtt_addr {
        say(&format!("  MQTT broker: mqtt://{a}"));
    }
    if let Some(a) = running.mqtt_tls_addr {
        say(&format!("  MQTT TLS:    mqtts://{a}"));
    }
    if let Some(a) = running.grpc_addr {
        say(&format!("  gRPC:        http://{a}"));
    }
    tokio::spawn(sobre_base::shutdown::cancel_on_signal(cancel));
    running.stopped().await;
    Ok(())
}

async fn quickstart(
    data_dir: PathBuf,
    http: std::net::SocketAddr,
    interval_s: u64,
) -> anyhow::Result<()> {
    use sobre_agent::config::{AgentConfig, TransportKind};
    let mut cfg = CollectorConfig {
        data_dir: data_dir.clone(),
        ..Default::default()
    };
    // Free ports for the broker and gRPC, so an existing Mosquitto on 1883
    // is no obstacle; the preferred HTTP port unless it is taken.
    cfg.mqtt.listen = "127.0.0.1:0".parse()?;
    cfg.grpc.listen = "127.0.0.1:0".parse()?;
    cfg.http.listen = match std::net::TcpListener::bind(http) {
        Ok(_) => http,
        Err(_) => {
            tracing::info!(%http, "address taken; using a free port");
            "127.0.0.1:0".parse()?
        }
    };
    let collector_cancel = CancellationToken::new();
    let running = sobre_collector::start(cfg, collector_cancel.clone()).await?;
    let broker = running
        .mqtt_addr
        .context("the embedded broker did not report its address")?;
    let mut agent = AgentConfig {
        interval_ms: interval_s.max(1) * 1000,
        ..Default::default()
    };
    agent.transport.kind = TransportKind::Mqtt;
    agent.transport.mqtt_broker = format!("mqtt://{broker}");
    agent.spool.dir = data_dir.join("agent-spool");
    // Scans the current user's home folder, gently, a minute after start.
    agent.storage.index_dir = data_dir.join("agent-index");
    let agent_id = sobre_agent::config::resolve_agent_id(&agent);
    // The local agent enrols like any other (unless it already has a key
    // from an earlier quick start): a one-time token, traded over gRPC.
    if !agent.credential_path().exists() {
        let conn = sobre_collector::store::open(&data_dir, true)?;
        agent.enrol.token = Some(sobre_collector::ingest::credentials::Credentials::issue(
            &conn as &dyn sobre_collector::db::Db,
            Some(&agent_id),
            3_600_000,
            sobre_collector::ingest::now_ms(),
        )?);
    }
    if let Some(grpc) = running.grpc_addr {
        agent.transport.grpc_endpoint = format!("http://{grpc}");
    }
    let agent_cancel = CancellationToken::new();
    let agent_task = tokio::spawn(sobre_agent::run_configured(agent, agent_cancel.clone()));
    let url = format!("http://{}", running.http_addr);
    // Printed to this terminal only (never to the logs): writes need it.
    let (token, _) = sobre_collector::http::auth::admin_token(&running.admin_token_file)?;
    say(&format!(
        "\nSobre is running on this machine.\n\n  Open   {url}\n  API    {url}/api/v1/agents\n         {url}/api/v1/agents/{agent_id}/samples\n\n  Admin  token {token}\n         (writes need it: Authorization: Bearer <token>; kept in {}, owner-only)\n\n  Broker mqtt://{broker} (embedded)   Store {}\n  The first usage report arrives after {interval_s} s. Ctrl-C stops.\n",
        running.admin_token_file.display(),
        data_dir.join(sobre_collector::store::FILE).display()
    ));
    let signals = CancellationToken::new();
    tokio::spawn(sobre_base::shutdown::cancel_on_signal(signals.clone()));
    let mut agent_task = agent_task;
    let agent_result = tokio::select! {
        _ = signals.cancelled() => {
            // The agent first, so its last reports reach the store.
            agent_cancel.cancel();
            (&mut agent_task).await
        }
        r = &mut agent_task => r,
    };
    collector_cancel.cancel();
    running.stopped().await;
    match agent_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::Error::new(e).context("the local agent stopped")),
        Err(e) => Err(anyhow::Error::new(e).context("the local agent task failed")),
    }
}

/// Prints to stdout, ignoring a closed stdout: whoever started us may have
/// read the banner and gone away (a `| head`, a test harness), which must
/// not stop the collector (`println!` would panic on the broken pipe).
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|_| out.flush());
}
