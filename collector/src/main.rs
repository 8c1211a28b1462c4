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
