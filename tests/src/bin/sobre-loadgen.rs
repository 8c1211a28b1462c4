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
///
/// TIMELINE
///   1. connect every agent, at most --connect-concurrency at a time (each
///      starts sending as soon as it is subscribed); bounded by
///      --connect-timeout;
///   2. --warmup seconds, not counted;
///   3. --duration seconds measured: `acked` counts acks received in this
///      window (`sent`: first transmissions in it), and only their latencies
///      go into the percentiles;
///   4. stop and print. The tool always stops by itself.
///
/// OUTPUT
///   One JSON line on stdout: {"mode","agents","window","duration_s","sent",
///   "acked","rate_per_s","p50_ms","p99_ms","max_ms", ...} with extra fields
///   (connected agents, resent envelopes, reconnects, mean envelope size).
///   Progress goes to stderr. Traffic only goes to loopback addresses.
///
/// EXAMPLES
///   sobre-loadgen mqtt --broker 127.0.0.1:1883 --agents 200 --window 16 --duration 20
///   sobre-loadgen grpc --grpc http://127.0.0.1:50051 --agents 200
///   sobre-loadgen reference --broker 127.0.0.1:1884 --agents 200 --payload-bytes 200
#[derive(Debug, Clone, Parser)]
#[command(name = "sobre-loadgen", verbatim_doc_comment)]
struct Args {
    /// What to load: a collector over MQTT or gRPC, or Mosquitto alone.
    #[arg(value_enum)]
    mode: Mode,
    /// Simulated agents (reference: publishers), each with its own connection.
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
    if args.agents == 0 || args.window == 0 || args.duration == 0 {
        bail!("--agents, --window and --duration must be at least 1");
    }
    if args.window > 4096 {
        bail!("--window is at most 4096");
    }
    if args.mode == Mode::Reference && args.payload_bytes < REF_HEADER {
        bail!("--payload-bytes is at least {REF_HEADER}");
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
    connecting: Arc<Semaphore>,
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
        connecting: Arc::new(Semaphore::new(args.connect_concurrency.max(1))),
        args,
    });
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks: Vec<JoinHandle<Stats>> = Vec::with_capacity(n + 1);
    match sh.args.mode {
        Mode::Mqtt => {
            for i in 0..n {
                tasks.push(tokio::spawn(mqtt_agent(i, sh.clone(), stop.clone())));
            }
        }
        Mode::Grpc => {
            for i in 0..n {
                tasks.push(tokio::spawn(grpc_agent(i, sh.clone(), stop.clone())));
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
    let started = Instant::now();
    let deadline = started + Duration::from_secs(sh.args.connect_timeout);
    let mut last_print = started;
    while sh.ready.load(Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            eprintln!("loadgen: {}/{n} agents connected", sh.ready.load(Relaxed));
        }
    }
    let connected = sh.ready.load(Relaxed);
    let connect_s = started.elapsed().as_secs_f64();
    eprintln!("loadgen: {connected}/{n} agents connected in {connect_s:.1} s");
    if connected == 0 {
        let _ = stop_tx.send(true);
        bail!(
            "no agent could connect to {} within {} s",
            target(&sh),
            sh.args.connect_timeout
        );
    }

    // 2. Warm up, 3. measure.
    let t0 = Instant::now() + Duration::from_secs(sh.args.warmup);
    let t1 = t0 + Duration::from_secs(sh.args.duration);
    sh.clock.t1.store(sh.clock.us(t1), Relaxed);
    sh.clock.t0.store(sh.clock.us(t0), Relaxed);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut prev = sh.progress.load(Relaxed);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(t1.into()) => break,
            _ = tick.tick() => {
                let now = sh.progress.load(Relaxed);
                let phase = if Instant::now() < t0 { "warm-up" } else { "measuring" };
                eprintln!("loadgen: {phase}: {} acked/s", now - prev);
                prev = now;
            }
        }
    }

    // 4. Stop and gather.
    let _ = stop_tx.send(true);
    let mut total = Stats::default();
    let gather_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(gather_deadline, t).await {
            Ok(Ok(s)) => total.merge(s),
            Ok(Err(_)) => total.errors += 1,
            Err(_) => abort.abort(),
        }
    }
    let duration = sh.args.duration as f64;
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
    Ok(serde_json::json!({
        "mode": sh.args.mode.name(),
        "agents": n,
        "window": sh.args.window,
        "duration_s": sh.args.duration,
        "sent": total.sent,
        "acked": total.acked,
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
    }))
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
}

impl Window {
    fn new(agent: SimAgent, max: usize, resend_ms: u64) -> Window {
        Window {
            agent,
            inflight: BTreeMap::new(),
            max,
            resend_after: Duration::from_millis(resend_ms),
        }
    }

    /// Builds the next envelope if the window has room.
    fn next(&mut self) -> Option<(u64, Envelope)> {
        if self.inflight.len() >= self.max {
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

async fn mqtt_agent(i: usize, sh: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Stats {
    let mut st = Stats::default();
    let Ok(permit) = sh.connecting.clone().acquire_owned().await else {
        return st;
    };
    let w = sh.args.window;
    let mut win = Window::new(SimAgent::new(&sh.args.id_prefix, i), w, sh.args.resend_ms);
    let id = win.agent.id.clone();
    let (client, eventloop) = mqtt_client(&sh, format!("sobre-loadgen-{id}"), w);
    let (tx, mut rx) = mpsc::channel(2 * w + 16);
    let poller = spawn_poller(
        eventloop,
        client.clone(),
        Some(topics::down(&id)),
        tx,
        Some(permit),
    );
    if !wait_ready(&mut rx, &mut stop, &mut st).await {
        poller.abort();
        return st;
    }
    sh.ready.fetch_add(1, Relaxed);
    let up = topics::up(&id);
    let mut check = tokio::time::interval(RESEND_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Fill the window. try_publish: the channel has room for the window,
        // so it only fails while disconnected; the next event retries.
        while let Some((_, env)) = win.next() {
            if client
                .try_publish(up.as_str(), QoS::AtLeastOnce, false, env.encode_to_vec())
                .is_err()
            {
                st.errors += 1;
                break;
            }
            win.sent(&sh, &mut st, env, Instant::now());
        }
        tokio::select! {
            _ = stop.changed() => break,
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
    st
}

async fn grpc_agent(i: usize, sh: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Stats {
    let mut st = Stats::default();
    let Ok(permit) = sh.connecting.clone().acquire_owned().await else {
        return st;
    };
    let w = sh.args.window;
    let mut win = Window::new(SimAgent::new(&sh.args.id_prefix, i), w, sh.args.resend_ms);
    let endpoint = match tonic::transport::Endpoint::from_shared(sh.args.grpc.clone()) {
        Ok(e) => e.tcp_nodelay(true).connect_timeout(Duration::from_secs(10)),
        Err(_) => {
            st.errors += 1;
            return st;
        }
    };
    let channel = loop {
        match endpoint.connect().await {
            Ok(c) => break c,
            Err(_) => {
                st.reconnects += 1;
                tokio::select! {
                    _ = stop.changed() => return st,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    let mut client = TelemetryClient::new(channel);
    // The stream never holds more than the window plus resends.
    let (tx, rx) = mpsc::channel::<Envelope>(2 * w + 16);
    let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(_) => {
            st.errors += 1;
            return st;
        }
    };
    drop(permit);
    sh.ready.fetch_add(1, Relaxed);
    let mut check = tokio::time::interval(RESEND_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while let Some((_, env)) = win.next() {
            if tx.try_send(env.clone()).is_err() {
                st.errors += 1;
                break;
            }
            win.sent(&sh, &mut st, env, Instant::now());
        }
        tokio::select! {
            _ = stop.changed() => break,
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
