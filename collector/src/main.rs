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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = match &cli.config {
        Some(path) => CollectorConfig::load(path)?,
        None => CollectorConfig::default(),
    };
    if cli.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(cfg).await,
            Command::Quickstart {
                data_dir,
                http,
                interval,
            } => quickstart(data_dir, http, interval).await,
        }
    })
}

async fn run(cfg: CollectorConfig) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let running = sobre_collector::start(cfg, cancel.clone()).await?;
    println!("sobre-collector listening: http://{}", running.http_addr);
    if let Some(a) = running.mqtt_addr {
        println!("  MQTT broker: mqtt://{a}");
    }
    if let Some(a) = running.grpc_addr {
        println!("  gRPC:        http://{a}");
    }
    tokio::spawn(cancel_on_signal(cancel));
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
    let agent_id = sobre_agent::config::resolve_agent_id(&agent);
    let agent_cancel = CancellationToken::new();
    let agent_task = tokio::spawn(sobre_agent::run_configured(agent, agent_cancel.clone()));
    let url = format!("http://{}", running.http_addr);
    println!(
        "\nSobre is running on this machine.\n\n  Open   {url}\n  API    {url}/api/v1/agents\n         {url}/api/v1/agents/{agent_id}/samples\n\n  Broker mqtt://{broker} (embedded)   Store {}\n  The first usage report arrives after {interval_s} s. Ctrl-C stops.\n",
        data_dir.join(sobre_collector::store::FILE).display()
    );
    let signals = CancellationToken::new();
    tokio::spawn(cancel_on_signal(signals.clone()));
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

/// SIGINT or SIGTERM starts an orderly shutdown; a second one exits now.
async fn cancel_on_signal(cancel: CancellationToken) {
    wait_signal().await;
    tracing::info!("signal received; draining (send it again to exit at once)");
    cancel.cancel();
    wait_signal().await;
    tracing::warn!("second signal: exiting without draining");
    std::process::exit(130);
}

async fn wait_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SOBRE_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,rumqttd=warn,rumqttd::server::broker=off,rumqttc=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
