//! `sobre-loadgen`: simulates a fleet of Sobre agents to measure how fast a
//! collector stores and acknowledges envelopes, or how fast Mosquitto alone
//! passes messages (the reference). `bench/ingest.sh` drives it.

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use prost::Message;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use sobre_proto::topics;
use sobre_proto::v1::telemetry_client::TelemetryClient;
use sobre_proto::v1::{AgentFootprint, Downlink, Envelope, UsageReport, downlink, envelope};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
// tonic re-exports tokio-stream for generated clients: no extra dependency.
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// Load generator for Sobre's ingest benchmarks (bench/ingest.sh runs it).
///
/// It simulates many agents, each with its own connection, and measures what
/// a fleet cares about: how many envelopes per second the collector commits
/// AND acknowledges, and how long an agent waits for the ack of each envelope
/// (publish -> Downlink ack, end to end, which includes the SQLite commit).
///
/// MODES
///   mqtt       N agents, each its own MQTT connection (client id
///              sobre-loadgen-<agent id>, clean session), publishing a
///              sobre.v1.Envelope of about 175 bytes (a UsageReport with every
///              field set, and an AgentFootprint) with QoS 1 on
///              sobre/v1/agents/<id>/up, subscribed to .../down, and counting
///              the seqs acknowledged in Downlink{ack}.
///   grpc       The same over N Telemetry/Connect streams, one HTTP/2
///              connection each (as N real agents would open).
///   reference  Mosquitto alone, no collector: N publishers (QoS 1,
///              --payload-bytes each) to ONE subscriber (QoS 1) on the
///              wildcard sobre-bench/<prefix>/+. A message counts when the
///              subscriber has it; latency is publish -> receive. This is the
///              ceiling a collector sitting behind a broker is compared to.
///
/// CLOSED LOOP
///   Each agent keeps at most --window envelopes sent and not yet acked
///   (reference: not yet received by the subscriber), like the real agent's
///   transport.max_inflight. The offered load adapts to what the system can
///   take, so the rate measured is its capacity and the latency is what an
///   agent sees at that rate. To overload a collector, raise --agents and
///   --window: the queues in the collector are then what holds the excess.
///   An envelope not acked within --resend-ms is published again with the
///   same seq (the collector must store it once and ack it again), as the
///   agent does after ack_timeout_ms.
///   --interval-ms paces each agent like a real one (one new envelope per
///   interval, sent when the window has room) instead of as fast as acks
///   come back; --count bounds the envelopes each agent sends.
///
/// FLOOD
///   --abusive N adds N agents (ids <prefix>-abuse-NNNNN-<8 hex>) that send
///   as fast as their connection takes: open loop, up to
///   --abusive-inflight publishes not yet accepted by the broker (gRPC:
///   queued on the stream), never slowing down when the collector refuses
///   them (refused envelopes are not acked) and never resending. They start
///   when every agent is connected and stop at --abusive-count or at the
///   end of the run. The well-behaved agents' figures stay the top-level
///   fields; the abusive ones' are under "abusive".
///
/// TIMELINE
///   1. connect every agent, at most --connect-concurrency at a time (each
///      starts sending as soon as it is subscribed; with --count or
///      --abusive, all start together once connected); bounded by
///      --connect-timeout;
///   2. --warmup seconds, not counted;
///   3. --duration seconds measured: `acked` counts acks received in this
///      window (`sent`: first transmissions in it), and only their latencies
///      go into the percentiles; with --count, the run ends earlier once
///      every well-behaved agent has had all its envelopes acked;
///   4. stop and print. The tool always stops by itself.
///
/// OUTPUT
///   One JSON line on stdout: {"mode","agents","window","duration_s","sent",
///   "acked","rate_per_s","p50_ms","p99_ms","max_ms", ...} with extra fields
///   (connected agents, resent envelopes, reconnects, mean envelope size,
///   `unacked`: envelopes sent and still without an ack at the end,
///   `measured_s`: the measured window, shorter than --duration when
///   --count ended the run; rate_per_s = acked / measured_s).
///   Progress goes to stderr. Traffic only goes to loopback addresses.
///
/// EXAMPLES
///   sobre-loadgen mqtt --broker 127.0.0.1:1883 --agents 200 --window 16 --duration 20
///   sobre-loadgen grpc --grpc http://127.0.0.1:50051 --agents 200
///   sobre-loadgen reference --broker 127.0.0.1:1884 --agents 200 --payload-bytes 200
///   sobre-loadgen mqtt --agents 100 --interval-ms 1000 --abusive 1   (bench/flood.sh)
#[derive(Debug, Clone, Parser)]
#[command(name = "sobre-loadgen", verbatim_doc_comment)]
struct Args {
    /// What to load: a collector over MQTT or gRPC, or Mosquitto alone.
    #[arg(value_enum)]
    mode: Mode,
    /// Simulated agents (reference: publishers), each with its own
    /// connection. 0 with --abusive: only the flood (its own process).
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// Most envelopes per agent sent and not yet acknowledged.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds of load before measuring (caches, queues, SQLite warm up).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// MQTT broker (mqtt and reference modes): host:port or mqtt://host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// Collector gRPC endpoint (grpc mode).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// Payload size of the reference messages (bytes, at least 24).
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Publish an unacknowledged envelope again after this long (ms).
    #[arg(long, default_value_t = 5000)]
    resend_ms: u64,
    /// Give up waiting for the remaining agents to connect after this long (s).
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// Runtime worker threads; 0: one per CPU.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Agent ids are <prefix>-00000-<8 hex>, <prefix>-00001-<8 hex>, ...
    #[arg(long, default_value = "loadgen")]
    id_prefix: String,
    /// Each agent sends one new envelope per interval (ms), as a real agent
    /// does; 0: as fast as its window allows (closed loop).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Envelopes each well-behaved agent sends; 0: no limit. The run ends
    /// when all are acked (or at the end of --duration).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Abusive agents flooding beside the --agents well-behaved ones (mqtt
    /// and grpc modes).
    #[arg(long, default_value_t = 0)]
    abusive: usize,
    /// Envelopes each abusive agent keeps in flight (MQTT: not yet PUBACKed
    /// by the broker; gRPC: queued on its stream).
    #[arg(long, default_value_t = 1024)]
    abusive_inflight: usize,
    /// Envelopes each abusive agent sends at most; 0: until the run ends.
    #[arg(long, default_value_t = 0)]
    abusive_count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Mqtt,
    Grpc,
    Reference,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Mqtt => "mqtt",
            Mode::Grpc => "grpc",
            Mode::Reference => "reference",
        }
    }
}

/// Largest MQTT packet either way; far above what is sent.
const MAX_PACKET: usize = 64 * 1024;
/// How often each agent looks for envelopes to resend.
const RESEND_CHECK: Duration = Duration::from_millis(500);
/// Reference payload header: publisher index (u32), send time (u64 us).
const REF_HEADER: usize = 12;

fn main() -> Result<()> {
    let args = Args::parse();
    if (args.agents == 0 && args.abusive == 0) || args.window == 0 || args.duration == 0 {
        bail!("--agents (or --abusive), --window and --duration must be at least 1");
    }
    if args.window > 4096 {
        bail!("--window is at most 4096");
    }
    if args.mode == Mode::Reference && args.payload_bytes < REF_HEADER {
        bail!("--payload-bytes is at least {REF_HEADER}");
    }
    if args.abusive > 0 && args.mode == Mode::Reference {
        bail!("--abusive needs a collector (mqtt or grpc mode)");
    }
    if args.abusive_inflight == 0 || args.abusive_inflight > 65_000 {
        bail!("--abusive-inflight is 1 to 65000");
    }
    if args.id_prefix.len() > 40 || !topics::valid_agent_id(&args.id_prefix) {
        bail!("--id-prefix must be 1-40 characters of [A-Za-z0-9._-]");
    }
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(run(args))?;
    println!("{out}");
    // Tasks still connecting are not waited for.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Microseconds since `base`, and the measured window in those units.
struct Clock {
    base: Instant,
    t0: AtomicU64,
    t1: AtomicU64,
}

impl Clock {
    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_micros() as u64
    }

    fn in_window(&self, t: Instant) -> bool {
        let us = self.us(t);
        us >= self.t0.load(Relaxed) && us < self.t1.load(Relaxed)
    }
}

/// What the tasks share.
struct Shared {
    args: Args,
    broker: SocketAddr,
    clock: Clock,
    /// Agents connected and subscribed, ready to send.
    ready: AtomicUsize,
    /// Acks received so far, for the progress line.
    progress: AtomicU64,
    /// Well-behaved agents that sent all of --count and had them acked.
    done: AtomicUsize,
    /// Envelopes sent by the abusive agents, for the progress line.
    flood: AtomicU64,
    connecting: Arc<Semaphore>,
}

impl Shared {
    /// Whether agents wait for every connection before sending.
    fn start_together(&self) -> bool {
        self.args.count > 0 || self.args.abusive > 0
    }
}

/// What one agent (or the reference subscriber) measured.
#[derive(Debug, Default)]
struct Stats {
    sent: u64,
    acked: u64,
    resent: u64,
    duplicate_acks: u64,
    reconnects: u64,
    errors: u64,
    bytes: u64,
    envelopes: u64,
    /// Sent and not acked when the agent stopped.
    unacked: u64,
    lat_us: Vec<u32>,
}

impl Stats {
    fn record_ack(&mut self, sh: &Shared, sent_at: Instant, now: Instant) {
        sh.progress.fetch_add(1, Relaxed);
        if sh.clock.in_window(now) {
            self.acked += 1;
            let us = now.saturating_duration_since(sent_at).as_micros();
            self.lat_us.push(u32::try_from(us).unwrap_or(u32::MAX));
        }
    }

    fn merge(&mut self, o: Stats) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.resent += o.resent;
        self.duplicate_acks += o.duplicate_acks;
        self.reconnects += o.reconnects;
        self.errors += o.errors;
        self.bytes += o.bytes;
        self.envelopes += o.envelopes;
        self.unacked += o.unacked;
        self.lat_us.extend(o.lat_us);
    }
}

async fn run(args: Args) -> Result<serde_json::Value> {
    let broker = loopback_addr(&args.broker, "mqtt://").context("--broker")?;
    if args.mode == Mode::Grpc {
        loopback_addr(&args.grpc, "http://").context("--grpc")?;
    }
    let n = args.agents;
    let sh = Arc::new(Shared {
        broker,
        clock: Clock {
            base: Instant::now(),
            t0: AtomicU64::new(u64::MAX),
            t1: AtomicU64::new(u64::MAX),
        },
        ready: AtomicUsize::new(0),
        progress: AtomicU64::new(0),
        done: AtomicUsize::new(0),
        flood: AtomicU64::new(0),
        connecting: Arc::new(Semaphore::new(args.connect_concurrency.max(1))),
        args,
    });
    let (stop_tx, stop) = watch::channel(false);
    // Sending starts at once, or when every agent is connected.
    let (go_tx, go) = watch::channel(!sh.start_together());
    let mut tasks: Vec<JoinHandle<Stats>> = Vec::with_capacity(n + 1);
    let mut flooders: Vec<JoinHandle<Stats>> = Vec::with_capacity(sh.args.abusive);
    match sh.args.mode {
        Mode::Mqtt => {
            for i in 0..n {
                let t = mqtt_agent(i, sh.clone(), stop.clone(), go.clone());
                tasks.push(tokio::spawn(t));
            }
            for i in 0..sh.args.abusive {
                let t = mqtt_flooder(i, sh.clone(), stop.clone(), go.clone());
                flooders.push(tokio::spawn(t));
            }
        }
        Mode::Grpc => {
            for i in 0..n {
                let t = grpc_agent(i, sh.clone(), stop.clone(), go.clone());
                tasks.push(tokio::spawn(t));
            }
            for i in 0..sh.args.abusive {
                let t = grpc_flooder(i, sh.clone(), stop.clone(), go.clone());
                flooders.push(tokio::spawn(t));
            }
        }
        Mode::Reference => {
            let windows: Arc<Vec<Semaphore>> =
                Arc::new((0..n).map(|_| Semaphore::new(sh.args.window)).collect());
            let (sub_ready, subscribed) = oneshot::channel();
            tasks.push(tokio::spawn(ref_subscriber(
                sh.clone(),
                windows.clone(),
                sub_ready,
                stop.clone(),
            )));
            tokio::time::timeout(Duration::from_secs(10), subscribed)
                .await
                .context("the reference subscriber did not subscribe within 10 s")?
                .context("the reference subscriber stopped")?;
            for i in 0..n {
                tasks.push(tokio::spawn(ref_publisher(
                    i,
                    sh.clone(),
                    windows.clone(),
                    stop.clone(),
                )));
            }
        }
    }

    // 1. Connect.
    let all = n + sh.args.abusive;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(sh.args.connect_timeout);
    let mut last_print = started;
    while sh.ready.load(Relaxed) < all && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            eprintln!("loadgen: {}/{all} agents connected", sh.ready.load(Relaxed));
        }
    }
    let connected = sh.ready.load(Relaxed);
    let connect_s = started.elapsed().as_secs_f64();
    eprintln!("loadgen: {connected}/{all} agents connected in {connect_s:.1} s");
    if connected == 0 {
        let _ = stop_tx.send(true);
        bail!(
            "no agent could connect to {} within {} s",
            target(&sh),
            sh.args.connect_timeout
        );
    }

    // 2. Warm up, 3. measure.
    let go_at = Instant::now();
    let t0 = go_at + Duration::from_secs(sh.args.warmup);
    let t1 = t0 + Duration::from_secs(sh.args.duration);
    sh.clock.t1.store(sh.clock.us(t1), Relaxed);
    sh.clock.t0.store(sh.clock.us(t0), Relaxed);
    let _ = go_tx.send(true);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut prev, mut prev_flood) = (sh.progress.load(Relaxed), 0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(t1.into()) => break,
            _ = tick.tick() => {
                let now = sh.progress.load(Relaxed);
                let phase = if Instant::now() < t0 { "warm-up" } else { "measuring" };
                let flood = sh.flood.load(Relaxed);
                if sh.args.abusive > 0 {
                    eprintln!("loadgen: {phase}: {} acked/s, abusive sent {}/s", now - prev, flood - prev_flood);
                } else {
                    eprintln!("loadgen: {phase}: {} acked/s", now - prev);
                }
                (prev, prev_flood) = (now, flood);
                if sh.args.count > 0 && sh.done.load(Relaxed) >= n {
                    eprintln!("loadgen: every envelope of the {n} agents acked");
                    break;
                }
            }
        }
    }
    let stopped = Instant::now();
    let measured_s = stopped.saturating_duration_since(t0).as_secs_f64();

    // 4. Stop and gather.
    let _ = stop_tx.send(true);
    let gather_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut total = gather(tasks, gather_deadline).await;
    let flood = gather(flooders, gather_deadline).await;
    let duration = match sh.args.count {
        0 => sh.args.duration as f64,
        _ => measured_s.clamp(0.001, sh.args.duration as f64),
    };
    let mut lat = std::mem::take(&mut total.lat_us);
    lat.sort_unstable();
    let pct = |p: usize| -> Option<f64> {
        if lat.is_empty() {
            return None;
        }
        let idx = ((lat.len() * p).div_ceil(100)).saturating_sub(1);
        Some(ms(lat[idx.min(lat.len() - 1)]))
    };
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let mut out = serde_json::json!({
        "mode": sh.args.mode.name(),
        "agents": n,
        "window": sh.args.window,
        "duration_s": sh.args.duration,
        "measured_s": round(duration),
        "interval_ms": sh.args.interval_ms,
        "count": sh.args.count,
        "sent": total.sent,
        "acked": total.acked,
        "unacked": total.unacked,
        "rate_per_s": round(total.acked as f64 / duration),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": lat.last().map(|&v| ms(v)),
        "connected": connected,
        "connect_s": round(connect_s),
        "warmup_s": sh.args.warmup,
        "resent": total.resent,
        "duplicate_acks": total.duplicate_acks,
        "reconnects": total.reconnects,
        "errors": total.errors,
        "mean_envelope_bytes": if total.envelopes > 0 { round(total.bytes as f64 / total.envelopes as f64) } else { 0.0 },
        "target": target(&sh),
    });
    if sh.args.abusive > 0 {
        let secs = stopped
            .saturating_duration_since(go_at)
            .as_secs_f64()
            .max(0.001);
        out["abusive"] = serde_json::json!({
            "agents": sh.args.abusive,
            "inflight": sh.args.abusive_inflight,
            "count": sh.args.abusive_count,
            "sent": flood.envelopes,
            "acked": flood.acked,
            "not_acked": flood.envelopes.saturating_sub(flood.acked),
            "sent_per_s": round(flood.envelopes as f64 / secs),
            "acked_per_s": round(flood.acked as f64 / secs),
            "flood_s": round(secs),
            "reconnects": flood.reconnects,
            "errors": flood.errors,
        });
    }
    Ok(out)
}

/// Merges what the tasks measured; those still running at `deadline` are
/// aborted (counted as errors).
async fn gather(tasks: Vec<JoinHandle<Stats>>, deadline: tokio::time::Instant) -> Stats {
    let mut total = Stats::default();
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(s)) => total.merge(s),
            Ok(Err(_)) => total.errors += 1,
            Err(_) => {
                abort.abort();
                total.errors += 1;
            }
        }
    }
    total
}

fn ms(us: u32) -> f64 {
    (f64::from(us) / 10.0).round() / 100.0
}

fn target(sh: &Shared) -> String {
    match sh.args.mode {
        Mode::Grpc => sh.args.grpc.clone(),
        _ => format!("mqtt://{}", sh.broker),
    }
}

/// Parses `host:port` (with an optional scheme) and refuses anything but a
/// loopback address: a benchmark must never load someone else's server.
fn loopback_addr(s: &str, scheme: &str) -> Result<SocketAddr> {
    let rest = s.strip_prefix(scheme).unwrap_or(s).trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .with_context(|| format!("{s:?} is not host:port"))?;
    let port: u16 = port.parse().with_context(|| format!("bad port in {s:?}"))?;
    let ip: IpAddr = match host.trim_matches(['[', ']']) {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .parse()
            .with_context(|| format!("{h:?} is not an IP address (use 127.0.0.1)"))?,
    };
    if !ip.is_loopback() {
        bail!("{s:?} is not a loopback address: sobre-loadgen only loads 127.0.0.1 / ::1");
    }
    Ok(SocketAddr::new(ip, port))
}

/// One simulated agent's identity and plausible readings.
struct SimAgent {
    id: String,
    next_seq: u64,
    rng: u64,
    cpu_seconds: f64,
    bytes_sent: u64,
    uptime_s: u64,
    mem_total: u64,
}

impl SimAgent {
    fn new(prefix: &str, i: usize) -> SimAgent {
        let mut a = SimAgent {
            id: String::new(),
            next_seq: 1,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            cpu_seconds: 0.0,
            bytes_sent: 0,
            uptime_s: 0,
            mem_total: 0,
        };
        // Like the agent's default id: a host name and 8 hex digits of
        // /etc/machine-id.
        a.id = format!("{prefix}-{i:05}-{:08x}", a.rand() as u32);
        a.uptime_s = 3_600 + a.rand() % 2_000_000;
        a.mem_total = [4u64, 8, 16, 32][(a.rand() % 4) as usize] << 30;
        a
    }

    /// xorshift64*: plenty for varied field values.
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// A 10 s usage report as a real agent would send it, every field set.
    fn envelope(&mut self, seq: u64, spool_floor: u64, pending: usize) -> Envelope {
        let r = [self.rand(), self.rand(), self.rand(), self.rand()];
        self.uptime_s += 10;
        self.cpu_seconds += 0.002 + (r[0] % 100) as f64 / 100_000.0;
        let cpu = (r[0] % 10_000) as f32 / 100.0;
        let load1 = (r[1] % 400) as f32 / 100.0;
        let usage = UsageReport {
            interval_ms: 10_000,
            cpu_percent: cpu,
            mem_total_bytes: self.mem_total,
            mem_available_bytes: self.mem_total / 4 + r[1] % (self.mem_total / 2),
            swap_total_bytes: 2 << 30,
            swap_used_bytes: r[2] % (64 << 20),
            disk_read_bytes: r[2] % (50 << 20),
            disk_written_bytes: r[3] % (20 << 20),
            net_rx_bytes: r[3] % (100 << 20),
            net_tx_bytes: r[0] % (10 << 20),
            load1,
            load5: load1 * 0.8,
            load15: load1 * 0.6,
            uptime_s: self.uptime_s,
            user_sessions: 1 + (r[1] % 2) as u32,
            input_idle_s: Some((r[2] % 900) as u32),
            user_active: !r[3].is_multiple_of(4),
            power_w: 20.0 + cpu * 0.5,
            energy_j: f64::from(20.0 + cpu * 0.5) * 10.0,
            power_source: sobre_proto::v1::PowerSource::Model as i32,
            power_parts: Vec::new(),
        };
        let footprint = AgentFootprint {
            cpu_seconds: self.cpu_seconds,
            peak_rss_bytes: 4_200_000 + r[1] % 300_000,
            rss_bytes: 3_900_000 + r[2] % 300_000,
            bytes_sent: self.bytes_sent,
            spool_dropped: 0,
            spool_pending: pending as u64,
        };
        let env = Envelope {
            mac: Vec::new(),
            agent_id: self.id.clone(),
            seq,
            sent_at_ms: unix_ms(),
            version: sobre_proto::v1::VERSION,
            spool_floor,
            footprint: Some(footprint),
            body: Some(envelope::Body::Usage(usage)),
        };
        self.bytes_sent += env.encoded_len() as u64;
        env
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An envelope sent and not yet acknowledged.
struct Pending {
    first: Instant,
    last: Instant,
    env: Envelope,
}

/// The window of one simulated agent: what is in flight, and the lowest
/// unacknowledged seq (its spool floor).
struct Window {
    agent: SimAgent,
    inflight: BTreeMap<u64, Pending>,
    max: usize,
    resend_after: Duration,
    /// First transmissions still allowed (--count; u64::MAX: no limit).
    remaining: u64,
    /// Whether this agent was counted in `Shared::done`.
    reported_done: bool,
}

impl Window {
    fn new(agent: SimAgent, args: &Args) -> Window {
        Window {
            agent,
            inflight: BTreeMap::new(),
            max: args.window,
            resend_after: Duration::from_millis(args.resend_ms),
            remaining: match args.count {
                0 => u64::MAX,
                c => c,
            },
            reported_done: false,
        }
    }

    /// Builds the next envelope if the window has room.
    fn next(&mut self) -> Option<(u64, Envelope)> {
        if self.inflight.len() >= self.max || self.remaining == 0 {
            return None;
        }
        let seq = self.agent.next_seq;
        let floor = self.inflight.keys().next().copied().unwrap_or(seq);
        let env = self.agent.envelope(seq, floor, self.inflight.len() + 1);
        Some((seq, env))
    }

    /// Records that `env` (from [`next`](Self::next)) was handed over.
    fn sent(&mut self, sh: &Shared, st: &mut Stats, env: Envelope, now: Instant) {
        let seq = self.agent.take_seq();
        debug_assert_eq!(seq, env.seq);
        self.remaining = self.remaining.saturating_sub(1);
        st.envelopes += 1;
        st.bytes += env.encoded_len() as u64;
        if sh.clock.in_window(now) {
            st.sent += 1;
        }
        self.inflight.insert(
            seq,
            Pending {
                first: now,
                last: now,
                env,
            },
        );
    }

    fn on_downlink(&mut self, sh: &Shared, st: &mut Stats, dl: Downlink) {
        if let Some(downlink::Body::Ack(ack)) = dl.body {
            let now = Instant::now();
            for seq in ack.seqs {
                match self.inflight.remove(&seq) {
                    Some(p) => st.record_ack(sh, p.first, now),
                    None => st.duplicate_acks += 1,
                }
            }
        }
        if self.remaining == 0 && self.inflight.is_empty() && !self.reported_done {
            self.reported_done = true;
            sh.done.fetch_add(1, Relaxed);
        }
    }

    /// Envelopes due for a resend (same seq, same content).
    fn due(&mut self, now: Instant) -> Vec<Envelope> {
        let after = self.resend_after;
        self.inflight
            .values_mut()
            .filter(|p| now.saturating_duration_since(p.last) >= after)
            .map(|p| {
                p.last = now;
                p.env.clone()
            })
            .collect()
    }
}

/// When a well-behaved agent may send: at once (closed loop), or one new
/// envelope per --interval-ms, the first ones spread over one interval so
/// that the agents do not send in step. Envelopes due while the window is
/// full wait for room, as they would in the agent's spool.
struct Pacer {
    interval: Option<tokio::time::Interval>,
    due: u64,
}

impl Pacer {
    fn new(args: &Args, i: usize) -> Pacer {
        let interval = (args.interval_ms > 0).then(|| {
            let period = Duration::from_millis(args.interval_ms);
            let phase = period.mul_f64(i as f64 / args.agents.max(1) as f64);
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            t
        });
        Pacer { interval, due: 0 }
    }

    fn may_send(&self) -> bool {
        self.interval.is_none() || self.due > 0
    }

    fn took(&mut self) {
        self.due = self.due.saturating_sub(1);
    }

    /// The next interval; never, in closed loop.
    async fn tick(&mut self) {
        match &mut self.interval {
            Some(t) => {
                t.tick().await;
                self.due += 1;
            }
            None => std::future::pending().await,
        }
    }
}

/// Waits for the signal to start sending; false if stopped first.
async fn wait_go(go: &mut watch::Receiver<bool>, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        if *go.borrow_and_update() {
            return true;
        }
        tokio::select! {
            _ = stop.changed() => return false,
            r = go.changed() => if r.is_err() { return false },
        }
    }
}

/// What a connection's poller tells its agent.
enum Net {
    /// Connected and subscribed (again, after a reconnect).
    Ready,
    Publish(Publish),
    Lost,
}

fn mqtt_client(sh: &Shared, client_id: String, inflight: usize) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(client_id, sh.broker.ip().to_string(), sh.broker.port());
    o.set_keep_alive(Duration::from_secs(5));
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    // rumqttc's own limits must never be what throttles the benchmark: as
    // many QoS 1 publishes in flight as the window allows, and a request
    // channel with room for the window plus resends.
    o.set_inflight(u16::try_from(inflight + 8).unwrap_or(u16::MAX));
    let (client, mut eventloop) = AsyncClient::new(o, 2 * inflight + 16);
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(30);
    eventloop.set_network_options(net);
    (client, eventloop)
}

/// Drives one MQTT connection: polls its event loop (which writes what the
/// client queued and reads what arrives), subscribes after each CONNACK,
/// and forwards what matters. Never cancelled mid-poll; aborted at the end.
fn spawn_poller(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filter: Option<String>,
    tx: mpsc::Sender<Net>,
    mut permit: Option<OwnedSemaphorePermit>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let msg = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    permit.take();
                    match &filter {
                        Some(f) => {
                            if client.try_subscribe(f.clone(), QoS::AtLeastOnce).is_err() {
                                Net::Lost
                            } else {
                                continue;
                            }
                        }
                        None => Net::Ready,
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => Net::Ready,
                Ok(Event::Incoming(Packet::Publish(p))) => Net::Publish(p),
                Ok(_) => continue,
                Err(_) => {
                    permit.take();
                    if tx.send(Net::Lost).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    })
}

/// Waits for the first `Ready`; false if stopped first.
async fn wait_ready(
    rx: &mut mpsc::Receiver<Net>,
    stop: &mut watch::Receiver<bool>,
    st: &mut Stats,
) -> bool {
    loop {
        tokio::select! {
            _ = stop.changed() => return false,
            m = rx.recv() => match m {
                Some(Net::Ready) => return true,
                Some(Net::Lost) => st.reconnects += 1,
                Some(Net::Publish(_)) => {}
                None => return false,
            },
        }
    }
}

/// Connects one simulated agent over MQTT (`inflight` QoS 1 publishes
/// at most), subscribed to its downlink; counts it ready and waits for the
/// signal to send. None if stopped first.
async fn mqtt_connect(
    sh: &Shared,
    id: &str,
    inflight: usize,
    permit: OwnedSemaphorePermit,
    stop: &mut watch::Receiver<bool>,
    go: &mut watch::Receiver<bool>,
    st: &mut Stats,
) -> Option<(AsyncClient, mpsc::Receiver<Net>, JoinHandle<()>)> {
    let (client, eventloop) = mqtt_client(sh, format!("sobre-loadgen-{id}"), inflight);
    let (tx, mut rx) = mpsc::channel(2 * inflight + 16);
    let down = Some(topics::down(id));
    let poller = spawn_poller(eventloop, client.clone(), down, tx, Some(permit));
    if !wait_ready(&mut rx, stop, st).await {
        poller.abort();
        return None;
    }
    sh.ready.fetch_add(1, Relaxed);
    if !wait_go(go, stop).await {
        poller.abort();
        return None;
    }
    Some((client, rx, poller))
}

async fn mqtt_agent(
    i: usize,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut go: watch::Receiver<bool>,
) -> Stats {
    let mut st = Stats::default();
    let Ok(permit) = sh.connecting.clone().acquire_owned().await else {
        return st;
    };
    let mut win = Window::new(SimAgent::new(&sh.args.id_prefix, i), &sh.args);
    let id = win.agent.id.clone();
    let link = mqtt_connect(
        &sh,
        &id,
        sh.args.window,
        permit,
        &mut stop,
        &mut go,
        &mut st,
    );
    let Some((client, mut rx, poller)) = link.await else {
        return st;
    };
    let up = topics::up(&id);
    let mut check = tokio::time::interval(RESEND_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pacer = Pacer::new(&sh.args, i);
    loop {
        // Fill the window. try_publish: the channel has room for the window,
        // so it only fails while disconnected; the next event retries.
        while pacer.may_send()
            && let Some((_, env)) = win.next()
        {
            if client
                .try_publish(up.as_str(), QoS::AtLeastOnce, false, env.encode_to_vec())
                .is_err()
            {
                st.errors += 1;
                break;
            }
            win.sent(&sh, &mut st, env, Instant::now());
            pacer.took();
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = pacer.tick() => {}
            m = rx.recv() => match m {
                Some(Net::Publish(p)) => match Downlink::decode(&p.payload[..]) {
                    Ok(dl) => win.on_downlink(&sh, &mut st, dl),
                    Err(_) => st.errors += 1,
                },
                Some(Net::Ready) => {}
                Some(Net::Lost) => st.reconnects += 1,
                None => break,
            },
            _ = check.tick() => {
                for env in win.due(Instant::now()) {
                    if client
                        .try_publish(up.as_str(), QoS::AtLeastOnce, false, env.encode_to_vec())
                        .is_ok()
                    {
                        st.resent += 1;
                    }
                }
            }
        }
    }
    poller.abort();
    st.unacked = win.inflight.len() as u64;
    st
}

/// Opens one agent's `Telemetry/Connect` stream on its own HTTP/2
/// connection, retrying the connection until `stop`; `cap` envelopes may
/// wait in the stream's queue.
async fn grpc_connect(
    sh: &Shared,
    stop: &mut watch::Receiver<bool>,
    st: &mut Stats,
    cap: usize,
) -> Option<(mpsc::Sender<Envelope>, tonic::Streaming<Downlink>)> {
    let endpoint = match tonic::transport::Endpoint::from_shared(sh.args.grpc.clone()) {
        Ok(e) => e.tcp_nodelay(true).connect_timeout(Duration::from_secs(10)),
        Err(_) => {
            st.errors += 1;
            return None;
        }
    };
    let channel = loop {
        match endpoint.connect().await {
            Ok(c) => break c,
            Err(_) => {
                st.reconnects += 1;
                tokio::select! {
                    _ = stop.changed() => return None,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    let mut client = TelemetryClient::new(channel);
    let (tx, rx) = mpsc::channel::<Envelope>(cap);
    match client.connect(ReceiverStream::new(rx)).await {
        Ok(r) => Some((tx, r.into_inner())),
        Err(_) => {
            st.errors += 1;
            None
        }
    }
}

async fn grpc_agent(
    i: usize,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut go: watch::Receiver<bool>,
) -> Stats {
    let mut st = Stats::default();
    let Ok(permit) = sh.connecting.clone().acquire_owned().await else {
        return st;
    };
    let w = sh.args.window;
    let mut win = Window::new(SimAgent::new(&sh.args.id_prefix, i), &sh.args);
    // The stream never holds more than the window plus resends.
    let Some((tx, mut inbound)) = grpc_connect(&sh, &mut stop, &mut st, 2 * w + 16).await else {
        return st;
    };
    drop(permit);
    sh.ready.fetch_add(1, Relaxed);
    if !wait_go(&mut go, &mut stop).await {
        return st;
    }
    let mut check = tokio::time::interval(RESEND_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pacer = Pacer::new(&sh.args, i);
    loop {
        while pacer.may_send()
            && let Some((_, env)) = win.next()
        {
            if tx.try_send(env.clone()).is_err() {
                st.errors += 1;
                break;
            }
            win.sent(&sh, &mut st, env, Instant::now());
            pacer.took();
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = pacer.tick() => {}
            m = inbound.message() => match m {
                Ok(Some(dl)) => win.on_downlink(&sh, &mut st, dl),
                // The collector closed the stream: this agent is done.
                Ok(None) | Err(_) => {
                    st.errors += 1;
                    break;
                }
            },
            _ = check.tick() => {
                for env in win.due(Instant::now()) {
                    if tx.try_send(env).is_ok() {
                        st.resent += 1;
                    }
                }
            }
        }
    }
    st.unacked = win.inflight.len() as u64;
    st
}

/// An abusive agent's identity and the envelopes it floods with: realistic
/// ones, each with a new seq and a spool floor at that seq (it gives up on
/// what is refused, so the collector need not remember older seqs).
struct Flood {
    agent: SimAgent,
    limit: u64,
}

impl Flood {
    fn new(sh: &Shared, i: usize) -> Flood {
        Flood {
            agent: SimAgent::new(&format!("{}-abuse", sh.args.id_prefix), i),
            limit: match sh.args.abusive_count {
                0 => u64::MAX,
                c => c,
            },
        }
    }

    /// The next envelope, unless --abusive-count were all sent.
    fn next(&mut self, st: &Stats) -> Option<Envelope> {
        (st.envelopes < self.limit).then(|| {
            let seq = self.agent.take_seq();
            self.agent.envelope(seq, seq, 0)
        })
    }

    fn sent(sh: &Shared, st: &mut Stats, bytes: usize) {
        st.envelopes += 1;
        st.bytes += bytes as u64;
        sh.flood.fetch_add(1, Relaxed);
    }

    /// Counts the acks of what the collector accepted (within the limit).
    fn on_downlink(st: &mut Stats, dl: Downlink) {
        if let Some(downlink::Body::Ack(ack)) = dl.body {
            st.acked += ack.seqs.len() as u64;
        }
    }
}

/// An abusive agent over MQTT: publishes as fast as the broker accepts
/// (QoS 1, up to --abusive-inflight not yet PUBACKed), reads its acks, and
/// never waits for them.
async fn mqtt_flooder(
    i: usize,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut go: watch::Receiver<bool>,
) -> Stats {
    let mut st = Stats::default();
    let Ok(permit) = sh.connecting.clone().acquire_owned().await else {
        return st;
    };
    let mut flood = Flood::new(&sh, i);
    let id = flood.agent.id.clone();
    let inflight = sh.args.abusive_inflight;
    let link = mqtt_connect(&sh, &id, inflight, permit, &mut stop, &mut go, &mut st);
    let Some((client, mut rx, poller)) = link.await else {
        return st;
    };
    let up = topics::up(&id);
    let mut payload: Option<Vec<u8>> = None;
    loop {
        if payload.is_none() {
            payload = flood.next(&st).map(|e| e.encode_to_vec());
        }
        // Acks first, so that the poller never waits on this task while
        // this task waits for room in the client's queue.
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = rx.recv() => match m {
                Some(Net::Publish(p)) => match Downlink::decode(&p.payload[..]) {
                    Ok(dl) => Flood::on_downlink(&mut st, dl),
                    Err(_) => st.errors += 1,
                },
                Some(Net::Ready) => {}
                Some(Net::Lost) => st.reconnects += 1,
                None => break,
            },
            r = client.publish(up.as_str(), QoS::AtLeastOnce, false, payload.clone().unwrap_or_default()),
                if payload.is_some() => match r {
                Ok(()) => {
                    let len = payload.take().map_or(0, |p| p.len());
                    Flood::sent(&sh, &mut st, len);
                }
                // The event loop is gone: nothing more can be sent.
                Err(_) => {
                    st.errors += 1;
                    break;
                }
            },
        }
    }
    poller.abort();
    st
}

/// An abusive agent over gRPC: keeps its stream's queue full, reads its
/// acks, never waits for them.
async fn grpc_flooder(
    i: usize,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut go: watch::Receiver<bool>,
) -> Stats {
    let mut st = Stats::default();
    let Ok(permit) = sh.connecting.clone().acquire_owned().await else {
        return st;
    };
    let mut flood = Flood::new(&sh, i);
    let cap = sh.args.abusive_inflight;
    let Some((tx, mut inbound)) = grpc_connect(&sh, &mut stop, &mut st, cap).await else {
        return st;
    };
    drop(permit);
    sh.ready.fetch_add(1, Relaxed);
    if !wait_go(&mut go, &mut stop).await {
        return st;
    }
    let mut next = flood.next(&st);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = inbound.message() => match m {
                Ok(Some(dl)) => Flood::on_downlink(&mut st, dl),
                Ok(None) | Err(_) => {
                    st.errors += 1;
                    break;
                }
            },
            slot = tx.reserve(), if next.is_some() => match (slot, next.take()) {
                (Ok(slot), Some(env)) => {
                    let len = env.encoded_len();
                    slot.send(env);
                    Flood::sent(&sh, &mut st, len);
                    next = flood.next(&st);
                }
                _ => {
                    st.errors += 1;
                    break;
                }
            },
        }
    }
    st
}

/// Reference publisher: sends while its window (returned by the subscriber
/// on receipt) has room.
async fn ref_publisher(
    i: usize,
    sh: Arc<Shared>,
    windows: Arc<Vec<Semaphore>>,
    mut stop: watch::Receiver<bool>,
) -> Stats {
    let mut st = Stats::default();
    let Ok(permit) = sh.connecting.clone().acquire_owned().await else {
        return st;
    };
    let w = sh.args.window;
    let (client, eventloop) = mqtt_client(&sh, format!("sobre-loadgen-ref-pub-{i}"), w);
    let (tx, mut rx) = mpsc::channel(2 * w + 16);
    let poller = spawn_poller(eventloop, client.clone(), None, tx, Some(permit));
    if !wait_ready(&mut rx, &mut stop, &mut st).await {
        poller.abort();
        return st;
    }
    sh.ready.fetch_add(1, Relaxed);
    let topic = format!("sobre-bench/{}/{i}", sh.args.id_prefix);
    let mut payload = vec![0u8; sh.args.payload_bytes];
    payload[..4].copy_from_slice(&(i as u32).to_le_bytes());
    for (k, b) in payload[REF_HEADER..].iter_mut().enumerate() {
        *b = b'a' + (k % 26) as u8;
    }
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            m = rx.recv() => match m {
                Some(Net::Lost) => st.reconnects += 1,
                Some(_) => {}
                None => break,
            },
            p = windows[i].acquire() => {
                let Ok(p) = p else { break };
                let now = Instant::now();
                payload[4..REF_HEADER].copy_from_slice(&sh.clock.us(now).to_le_bytes());
                if client
                    .try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone())
                    .is_ok()
                {
                    p.forget();
                    st.envelopes += 1;
                    st.bytes += payload.len() as u64;
                    if sh.clock.in_window(now) {
                        st.sent += 1;
                    }
                } else {
                    st.errors += 1;
                    drop(p);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    poller.abort();
    st
}

/// Reference subscriber: one connection on the wildcard, counting what it
/// receives and giving each publisher its window back.
async fn ref_subscriber(
    sh: Arc<Shared>,
    windows: Arc<Vec<Semaphore>>,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Stats {
    let mut st = Stats::default();
    let (client, eventloop) = mqtt_client(&sh, "sobre-loadgen-ref-sub".into(), 1024);
    let (tx, mut rx) = mpsc::channel(4096);
    let filter = format!("sobre-bench/{}/+", sh.args.id_prefix);
    let poller = spawn_poller(eventloop, client, Some(filter), tx, None);
    if !wait_ready(&mut rx, &mut stop, &mut st).await {
        poller.abort();
        return st;
    }
    let _ = ready.send(());
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            m = rx.recv() => match m {
                Some(Net::Publish(p)) if p.payload.len() >= REF_HEADER => {
                    let now = Instant::now();
                    let mut idx = [0u8; 4];
                    idx.copy_from_slice(&p.payload[..4]);
                    let mut at = [0u8; 8];
                    at.copy_from_slice(&p.payload[4..REF_HEADER]);
                    let sent = sh.clock.base + Duration::from_micros(u64::from_le_bytes(at));
                    st.record_ack(&sh, sent, now);
                    if let Some(w) = windows.get(u32::from_le_bytes(idx) as usize) {
                        w.add_permits(1);
                    }
                }
                Some(Net::Publish(_)) => st.errors += 1,
                Some(Net::Ready) => {}
                Some(Net::Lost) => st.reconnects += 1,
                None => break,
            },
        }
    }
    poller.abort();
    st
}
