//! `sobre-agent`: command line, logging and signals around the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sobre_agent::config::AgentConfig;
use sobre_agent::probe::{InventoryProbe, PowerProbe, Probe, Roots, UsageProbe, monitors};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Sobre agent: reports this machine's usage, inventory and its own cost
/// to a Sobre collector over MQTT or gRPC. Every report is written to an
/// on-disk spool first and deleted only once the collector has committed
/// it, so nothing is lost while the collector is away.
///
/// Examples:
///   sobre-agent --config /etc/sobre/agent.toml
///   sobre-agent once              # what would be sent, as JSON, and exit
///   sobre-agent --print-config    # every setting with its default
#[derive(Debug, Parser)]
#[command(name = "sobre-agent", version, verbatim_doc_comment)]
struct Cli {
    /// Configuration file (TOML). Unknown keys are refused.
    #[arg(short, long, global = true, env = "SOBRE_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration, defaults filled in, and exit.
    #[arg(long, global = true)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// List the nudges received from the collector: what to do, and what
    /// it saves.
    Nudges {
        /// Print them as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Find duplicates and bloat: a summary, biggest wins first (nothing
    /// is sent). The index it keeps lets `cleanup` act and rescans go fast.
    Scan(sobre_agent::scan::cli::ScanArgs),
    /// Review what the last scan found and move the chosen duplicates and
    /// bloat to the trash (never a hard delete); --undo puts them back.
    Cleanup(sobre_agent::cleanup::cli::CleanupArgs),
    /// Take an inventory and one usage sample over 1 s, print them as
    /// JSON, send nothing.
    Once,
    /// Measure what the probes cost: run each one N times back to back,
    /// print the CPU time per sample and the share of one core it comes to
    /// at the configured interval. Sends nothing.
    Cost {
        /// Samples per probe.
        #[arg(long, default_value_t = 2000)]
        samples: u32,
    },
    /// A scheduled scan in a process of its own, started by the agent
    /// (`scan::child`): not for people.
    #[command(name = "scan-child", hide = true)]
    ScanChild,
    /// Install, remove or run the agent as a Windows service
    /// (`service install --help` lists the install properties).
    #[cfg(windows)]
    Service(sobre_agent::service::ServiceArgs),
}

fn main() -> anyhow::Result<()> {
    // Everything Sobre and its libraries create is owner-only (SECURITY.md).
    sobre_base::files::restrict_umask();
    let cli = Cli::parse();
    let cfg = match &cli.config {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    if cli.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    let command = cli.command.unwrap_or(Command::Run);
    #[cfg(windows)]
    let to_stderr = !matches!(command, Command::Service(_));
    #[cfg(unix)]
    let to_stderr = true;
    if to_stderr {
        // (The Windows service logs to a file of its own: no stderr there.)
        sobre_agent::shutdown::init_logging("info,rumqttc=warn");
    }
    match command {
        Command::Once => once(&cfg),
        Command::Scan(args) => sobre_agent::scan::cli::run(&cfg, args, cli.config.is_some()),
        Command::Cleanup(args) => sobre_agent::cleanup::cli::run(&cfg, args, cli.config.is_some()),
        Command::Nudges { json } => nudges(&cfg, json),
        Command::Cost { samples } => cost(&cfg, samples.max(1)),
        Command::ScanChild => Ok(sobre_agent::scan::child::serve()?),
        Command::Run => {
            // Scheduled scans in a process of their own: what they take is
            // given back when they end (issue 23).
            match std::env::current_exe() {
                Ok(exe) => sobre_agent::scan::child::use_child_process(exe),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot find the agent's binary; scans run in the agent")
                }
            }
            // One thread: the agent is idle nearly all the time.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async move {
                let cancel = CancellationToken::new();
                tokio::spawn(sobre_agent::shutdown::cancel_on_signal(cancel.clone()));
                sobre_agent::run_configured(cfg, cancel).await
            })?;
            Ok(())
        }
        #[cfg(windows)]
        Command::Service(args) => service(cfg, args),
    }
}

#[cfg(windows)]
fn service(cfg: AgentConfig, args: sobre_agent::service::ServiceArgs) -> anyhow::Result<()> {
    use sobre_agent::service::{self, ServiceCommand};
    match args.command {
        ServiceCommand::Install {
            properties,
            replace_config,
        } => {
            let props = service::Properties::parse(&properties)?;
            service::install(&props, replace_config)?;
        }
        ServiceCommand::Uninstall { purge } => service::uninstall(purge)?,
        ServiceCommand::Run => service::run(cfg)?,
    }
    Ok(())
}

fn nudges(cfg: &AgentConfig, json: bool) -> anyhow::Result<()> {
    let kept = sobre_agent::nudges::NudgeBox::new(cfg.nudges_path()).list()?;
    if json {
        for k in &kept {
            println!("{}", serde_json::to_string(k)?);
        }
        return Ok(());
    }
    if kept.is_empty() {
        println!(
            "No nudge yet. (They are kept in {}.)",
            cfg.nudges_path().display()
        );
    }
    for k in kept.iter().rev() {
        println!(
            "• {}\n  {}\n  → {}\n",
            k.nudge.title, k.nudge.body, k.nudge.action
        );
    }
    Ok(())
}

fn once(cfg: &AgentConfig) -> anyhow::Result<()> {
    let roots = Roots::under(&cfg.root);
    let mut inventory = InventoryProbe::new(roots.clone()).sample(Duration::ZERO)?;
    let mut power = PowerProbe::with_coefficients(roots.clone(), &inventory, cfg.power.clone());
    (inventory.cpu_tdp_w, inventory.cpu_tdp_source) = {
        let (w, s) = power.cpu_tdp();
        (w, s.to_owned())
    };
    inventory.monitors = monitors(&roots);
    (inventory.group, inventory.site) = (cfg.group.clone(), cfg.site.clone());
    let mut usage = UsageProbe::new(roots);
    usage.sample(Duration::ZERO)?;
    power.sample(Duration::ZERO, 0.0);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let elapsed = start.elapsed();
    let mut usage = usage.sample(elapsed)?;
    power.sample(elapsed, usage.cpu_percent).fill(&mut usage);
    let out = serde_json::json!({
        "agent_id": sobre_agent::config::resolve_agent_id(cfg),
        "inventory": inventory,
        "usage": usage,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn cost(cfg: &AgentConfig, n: u32) -> anyhow::Result<()> {
    use sobre_agent::probe::FootprintProbe;
    let roots = Roots::under(&cfg.root);
    let mut me = FootprintProbe::new(Roots::host());
    let mut cpu = || -> anyhow::Result<f64> { Ok(me.sample(Duration::ZERO)?.cpu_seconds) };
    let inventory = InventoryProbe::new(roots.clone()).sample(Duration::ZERO)?;
    let mut usage = UsageProbe::new(roots.clone());
    let mut power = PowerProbe::with_coefficients(roots.clone(), &inventory, cfg.power.clone());
    let interval = Duration::from_millis(cfg.interval_ms);
    let mut rows = Vec::new();
    // The power probe alone, as the runtime calls it (with a CPU load).
    let t0 = cpu()?;
    let w0 = Instant::now();
    for i in 0..n {
        power.sample(interval, (i % 100) as f32);
    }
    rows.push(("power", cpu()? - t0, w0.elapsed()));
    let t0 = cpu()?;
    let w0 = Instant::now();
    for _ in 0..n {
        usage.sample(interval)?;
    }
    rows.push(("usage", cpu()? - t0, w0.elapsed()));
    // The agent's own footprint, read for every envelope.
    let mut probe = FootprintProbe::new(roots.clone());
    let t0 = cpu()?;
    let w0 = Instant::now();
    for _ in 0..n {
        probe.sample(Duration::ZERO)?;
    }
    rows.push(("footprint", cpu()? - t0, w0.elapsed()));
    let per_core = |cpu_s: f64| cpu_s / f64::from(n) / interval.as_secs_f64() * 100.0;
    println!(
        "probe     samples  CPU µs/sample  wall µs/sample  share of one core at {} ms",
        cfg.interval_ms
    );
    for (name, cpu_s, wall) in rows {
        println!(
            "{name:<9} {n:>7}  {:>13.1}  {:>14.1}  {:.5} %",
            cpu_s / f64::from(n) * 1e6,
            wall.as_secs_f64() / f64::from(n) * 1e6,
            per_core(cpu_s)
        );
    }
    println!("(CPU time from /proc/self/stat at 10 ms resolution: use enough samples.)");
    Ok(())
}
