//! The agent's life: sample on a timer, spool every envelope before it is
//! sent, send over a transport, and delete from the spool only what the
//! collector acknowledged after its commit.

use crate::config::{AgentConfig, resolve_agent_id};
use crate::probe::{
    FootprintProbe, InventoryProbe, PowerProbe, Probe, ProbeError, Roots, UsageProbe, monitors,
};
use crate::spool::{Spool, SpoolConfig, SpoolError};
use crate::transport::{Link, Transport};
use prost::Message;
use sobre_proto::v1::{self, Downlink, Envelope, command, downlink, envelope::Body};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// State shared by the sampler and the sender.
struct Shared {
    agent_id: String,
    nudges: crate::nudges::NudgeBox,
    spool: Mutex<Spool>,
    bytes_sent: AtomicU64,
    /// The highest peak RSS of a scan process so far (scans in a process
    /// of their own: `scan::child`).
    scan_peak_rss: AtomicU64,
    /// Something new is in the spool.
    wake: Notify,
    /// The collector asked for an inventory.
    inventory_wanted: Notify,
    /// Campaign commands from the downlink, for the campaign loop.
    campaigns: tokio::sync::mpsc::Sender<v1::CampaignCommand>,
    /// Held during any storage scan: scheduled scans and campaign counts
    /// write the same index.
    scan_lock: Arc<tokio::sync::Mutex<()>>,
    /// The enrolment key envelopes are signed with when sent.
    key: crate::enrol::KeyHolder,
    /// Enrolling: the sender does not connect until the key arrives.
    awaiting_key: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        // The spool's own state stays consistent if a holder panicked.
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the agent until `cancel`, then drains what it can within
/// `transport.drain_timeout_ms`; the rest stays spooled.
pub async fn run<T: Transport>(
    cfg: AgentConfig,
    transport: T,
    key: crate::enrol::KeyHolder,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let spool = Spool::open(SpoolConfig {
        dir: cfg.spool.dir.clone(),
        max_bytes: cfg.spool.max_bytes,
        fsync: cfg.spool.fsync,
    })?;
    let stats = spool.stats();
    let agent_id = resolve_agent_id(&cfg);
    tracing::info!(
        agent_id,
        pending = stats.pending,
        dropped_total = stats.dropped_total,
        spool = %cfg.spool.dir.display(),
        "agent starting"
    );
    let roots = Roots::under(&cfg.root);
    let mut inventory = InventoryProbe::new(roots.clone());
    // The power model needs to know the hardware.
    let hw = inventory.sample(Duration::ZERO).unwrap_or_default();
    let power = PowerProbe::with_coefficients(roots.clone(), &hw, cfg.power.clone());
    let (tdp_w, tdp_source) = power.cpu_tdp();
    tracing::info!(tdp_w, tdp_source, chassis = %hw.chassis, "power model ready");
    let mut sampler = Sampler {
        usage: UsageProbe::new(roots.clone()),
        inventory,
        footprint: FootprintProbe::new(roots.clone()),
        power,
        roots,
        labels: (cfg.group.clone(), cfg.site.clone()),
    };
    // Fail early and clearly if the machine cannot be read at all.
    sampler.usage.sample(Duration::ZERO)?;
    let (campaign_tx, campaign_rx) = tokio::sync::mpsc::channel(16);
    let shared = Arc::new(Shared {
        agent_id,
        nudges: crate::nudges::NudgeBox::new(cfg.nudges_path()),
        spool: Mutex::new(spool),
        bytes_sent: AtomicU64::new(0),
        scan_peak_rss: AtomicU64::new(0),
        wake: Notify::new(),
        inventory_wanted: Notify::new(),
        campaigns: campaign_tx,
        scan_lock: Arc::new(tokio::sync::Mutex::new(())),
        key,
        awaiting_key: std::sync::atomic::AtomicBool::new(false),
    });
    let enrolling = start_enrolment(&cfg, &shared, &cancel);
    let stop_sampling = cancel.child_token();
    let sampling = tokio::spawn(sample_loop(
        sampler,
        shared.clone(),
        cfg.clone(),
        stop_sampling.clone(),
    ));
    let scanning = cfg.storage.enabled.then(|| {
        tokio::spawn(scan_loop(
            shared.clone(),
            cfg.clone(),
            stop_sampling.clone(),
        ))
    });
    let campaigns = tokio::spawn(crate::campaign::run(
        campaign_ctx(&cfg, &shared),
        campaign_rx,
        stop_sampling.clone(),
    ));
    send_loop(&transport, &shared, &cfg, &cancel).await;
    stop_sampling.cancel();
    let _ = sampling.await;
    let _ = campaigns.await;
    if let Some(e) = enrolling {
        e.abort();
    }
    if let Some(s) = scanning {
        let _ = s.await;
    }
    let pending = shared.spool().stats().pending;
    if pending > 0 {
        tracing::info!(
            pending,
            "agent stopped; envelopes stay spooled and are sent at next start"
        );
    } else {
        tracing::info!("agent stopped; spool empty");
    }
    Ok(())
}

struct Sampler {
    usage: UsageProbe,
    inventory: InventoryProbe,
    footprint: FootprintProbe,
    power: PowerProbe,
    roots: Roots,
    /// (group, site) from the config.
    labels: (String, String),
}

impl Sampler {
    fn envelope(&mut self, shared: &Shared, body: Body) {
        let mut footprint = match self.footprint.sample(Duration::ZERO) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read own footprint");
                v1::AgentFootprint::default()
            }
        };
        footprint.bytes_sent = shared.bytes_sent.load(Relaxed);
        // The agent's peak is that of its scan processes too.
        footprint.peak_rss_bytes = footprint
            .peak_rss_bytes
            .max(shared.scan_peak_rss.load(Relaxed));
        append(shared, body, Some(footprint));
    }

    fn inventory(&mut self, shared: &Shared) {
        match self.inventory.sample(Duration::ZERO) {
            Ok(mut inv) => {
                (inv.group, inv.site) = self.labels.clone();
                inv.monitors = monitors(&self.roots);
                let (tdp_w, tdp_source) = self.power.cpu_tdp();
                inv.cpu_tdp_w = tdp_w;
                inv.cpu_tdp_source = tdp_source.to_owned();
                self.envelope(shared, Body::Inventory(inv));
            }
            Err(e) => tracing::warn!(error = %e, "cannot take the inventory"),
        }
    }

    /// Usage over `interval`, with the machine's power over the same time.
    fn usage(&mut self, interval: Duration) -> Result<v1::UsageReport, ProbeError> {
        let mut u = self.usage.sample(interval)?;
        self.power.sample(interval, u.cpu_percent).fill(&mut u);
        Ok(u)
    }
}

/// Spools an envelope (the footprint gets the spool's own figures) and
/// wakes the sender.
fn append(shared: &Shared, body: Body, footprint: Option<v1::AgentFootprint>) {
    let mut spool = shared.spool();
    let stats = spool.stats();
    let footprint = footprint.map(|mut f| {
        f.spool_dropped = stats.dropped_total;
        f.spool_pending = stats.pending;
        f
    });
    let res = spool.append(|seq, floor| {
        Envelope {
            agent_id: shared.agent_id.clone(),
            seq,
            sent_at_ms: now_ms(),
            version: v1::VERSION,
            spool_floor: floor,
            footprint,
            body: Some(body),
            mac: Vec::new(),
        }
        .encode_to_vec()
    });
    drop(spool);
    match res {
        Ok(_) => shared.wake.notify_one(),
        Err(e) => tracing::error!(error = %e, "cannot spool an envelope; it is lost"),
    }
}

/// Loads the enrolment key, or starts enrolling with `[enrol] token`
/// (envelopes wait in the spool meanwhile).
fn start_enrolment(
    cfg: &AgentConfig,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    match crate::enrol::load(&cfg.credential_path()) {
        Ok(Some(key)) => {
            if let Ok(mut k) = shared.key.write() {
                *k = Some(key);
            }
            return None;
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "cannot use the enrolment key"),
    }
    let Some(token) = cfg.enrol.token.clone() else {
        tracing::info!(
            "not enrolled ([enrol] token unset): reports are unsigned; a collector that requires enrolment refuses them"
        );
        return None;
    };
    shared.awaiting_key.store(true, Relaxed);
    let (cfg, shared, cancel) = (cfg.clone(), shared.clone(), cancel.clone());
    Some(tokio::spawn(async move {
        let key = crate::enrol::enrol(&cfg, &shared.agent_id, &token, &cancel).await;
        if let (Some(key), Ok(mut k)) = (key, shared.key.write()) {
            *k = Some(key);
        }
        shared.awaiting_key.store(false, Relaxed);
        shared.wake.notify_one();
    }))
}

/// What the campaign loop needs: where its book lives, how to scan (or
/// why it cannot), and the spool.
fn campaign_ctx(cfg: &AgentConfig, shared: &Arc<Shared>) -> crate::campaign::Ctx {
    let scan = if cfg.storage.enabled {
        crate::scan::ScanConfig::from_storage(&cfg.storage).map_err(|e| e.to_string())
    } else {
        Err(
            "storage scans are disabled on this host (storage.enabled = false in the agent's \
             config): it cannot take part in campaigns"
                .into(),
        )
    };
    let s = shared.clone();
    crate::campaign::Ctx {
        dir: cfg.storage.index_dir.join("campaigns"),
        scan,
        scan_lock: shared.scan_lock.clone(),
        send: Box::new(move |body| append(&s, body, None)),
    }
}

/// Scheduled storage scans: the first after `first_delay_ms`, then every
/// `interval_ms`; each summary goes through the spool like any report.
/// Each scan runs in a process of its own when the binary asked for it
/// (`scan::child`), so its memory is given back when it ends. Stopping the
/// agent stops a scan in progress (its index keeps what it did, the next
/// scan resumes from it).
async fn scan_loop(shared: Arc<Shared>, cfg: AgentConfig, cancel: CancellationToken) {
    let st = &cfg.storage;
    // Checked once here, so a bad section is said at start, not daily.
    if let Err(e) = crate::scan::ScanConfig::from_storage(st) {
        tracing::error!(error = %e, "storage scans disabled: fix [storage] in the config");
        return;
    }
    let mut wait = Duration::from_millis(st.first_delay_ms);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_millis(st.interval_ms.max(60_000));
        let _scanning = shared.scan_lock.lock().await;
        let stop = Arc::new(crate::scan::child::Stop::default());
        let job = tokio::task::spawn_blocking({
            let (st, stop) = (st.clone(), stop.clone());
            move || crate::scan::child::scan_summary(&st, &stop)
        });
        let stopper = {
            let (cancel, stop) = (cancel.clone(), stop.clone());
            tokio::spawn(async move {
                cancel.cancelled().await;
                stop.stop();
            })
        };
        let result = job.await;
        stopper.abort();
        match result {
            Ok(Ok(scanned)) => {
                let summary = scanned.summary;
                shared
                    .scan_peak_rss
                    .fetch_max(scanned.peak_rss_bytes, Relaxed);
                tracing::info!(
                    files = summary.files,
                    bytes = summary.bytes,
                    complete = summary.complete,
                    scan_peak_rss_bytes = scanned.peak_rss_bytes,
                    "storage summary spooled"
                );
                append(&shared, Body::Storage(summary), None);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "storage scan failed; next one at the next interval")
            }
            Err(e) => tracing::error!(error = %e, "storage scan panicked"),
        }
    }
}

async fn sample_loop(
    mut s: Sampler,
    shared: Arc<Shared>,
    cfg: AgentConfig,
    cancel: CancellationToken,
) {
    let every = Duration::from_millis(cfg.interval_ms);
    let inventory_every = Duration::from_millis(cfg.inventory_interval_ms.max(1));
    s.inventory(&shared);
    let mut last_inventory = Instant::now();
    let mut last = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = shared.inventory_wanted.notified() => {
                s.inventory(&shared);
                last_inventory = Instant::now();
            }
            _ = tick.tick() => {
                let now = Instant::now();
                match s.usage(now - last) {
                    Ok(u) => s.envelope(&shared, Body::Usage(u)),
                    Err(e) => tracing::warn!(error = %e, "cannot sample usage"),
                }
                last = now;
                if last_inventory.elapsed() >= inventory_every {
                    s.inventory(&shared);
                    last_inventory = Instant::now();
                }
            }
        }
    }
}

/// Exponential backoff with ±50 % jitter.
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
        }
    }
    fn reset(&mut self) {
        self.next = self.min;
    }
    fn step(&mut self) -> Duration {
        let d = self.next.mul_f64(0.5 + fastrand::f64());
        self.next = (self.next * 2).min(self.max);
        d
    }
}

async fn send_loop<T: Transport>(
    transport: &T,
    shared: &Shared,
    cfg: &AgentConfig,
    cancel: &CancellationToken,
) {
    let t = &cfg.transport;
    let mut backoff = Backoff::new(
        Duration::from_millis(t.backoff_min_ms),
        Duration::from_millis(t.backoff_max_ms),
    );
    // Enrolling: connect once the key is known (a broker that checks
    // agents would refuse us before, and reports wait in the spool anyway).
    while shared.awaiting_key.load(Relaxed) {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.wake.notified() => {}
        }
    }
    loop {
        let link = tokio::select! {
            _ = cancel.cancelled() => return,
            l = transport.connect() => l,
        };
        let mut link = match link {
            Ok(l) => {
                tracing::info!("connected to the collector");
                backoff.reset();
                l
            }
            Err(e) => {
                let wait = backoff.step();
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot connect; reports stay spooled");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let mut session = Session::new(cfg);
        match session.drive(&mut link, shared, cancel).await {
            Outcome::Lost => {
                let wait = backoff.step();
                tracing::warn!(
                    retry_in_ms = wait.as_millis() as u64,
                    "connection lost; reconnecting"
                );
                link.close(Duration::from_millis(100)).await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Outcome::Cancelled => {
                let drain = Duration::from_millis(t.drain_timeout_ms);
                let drained = tokio::time::timeout(drain, session.drain(&mut link, shared)).await;
                if let Ok(true) = drained {
                    tracing::info!("spool drained before exit");
                }
                link.close(Duration::from_secs(2)).await;
                return;
            }
        }
    }
}

enum Outcome {
    Lost,
    Cancelled,
}

/// What is in flight on one connection.
struct Session {
    inflight: HashMap<u64, Instant>,
    max_inflight: usize,
    ack_timeout: Duration,
}

impl Session {
    fn new(cfg: &AgentConfig) -> Self {
        Session {
            inflight: HashMap::new(),
            max_inflight: cfg.transport.max_inflight,
            ack_timeout: Duration::from_millis(cfg.transport.ack_timeout_ms),
        }
    }

    async fn drive(
        &mut self,
        link: &mut Link,
        shared: &Shared,
        cancel: &CancellationToken,
    ) -> Outcome {
        let mut check = self.check_interval();
        loop {
            if !self.fill(link, shared).await {
                return Outcome::Lost;
            }
            tokio::select! {
                _ = cancel.cancelled() => return Outcome::Cancelled,
                _ = shared.wake.notified() => {}
                _ = check.tick() => self.expire(),
                dl = link.down.recv() => match dl {
                    Some(dl) => self.on_downlink(dl, shared),
                    None => return Outcome::Lost,
                },
            }
        }
    }

    /// Sends what is pending until the spool is empty, resending what is
    /// not acked in time; false if the link broke first.
    async fn drain(&mut self, link: &mut Link, shared: &Shared) -> bool {
        let mut check = self.check_interval();
        loop {
            if shared.spool().stats().pending == 0 {
                return true;
            }
            if !self.fill(link, shared).await {
                return false;
            }
            tokio::select! {
                _ = check.tick() => self.expire(),
                dl = link.down.recv() => match dl {
                    Some(dl) => self.on_downlink(dl, shared),
                    None => return false,
                },
            }
        }
    }

    fn check_interval(&self) -> tokio::time::Interval {
        let mut check =
            tokio::time::interval((self.ack_timeout / 4).max(Duration::from_millis(50)));
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        check
    }

    /// Forgets sends that were not acked in time, so `fill` resends them.
    fn expire(&mut self) {
        let timeout = self.ack_timeout;
        let before = self.inflight.len();
        self.inflight.retain(|_, sent| sent.elapsed() < timeout);
        let n = before - self.inflight.len();
        if n > 0 {
            tracing::debug!(resend = n, "no ack in time; resending");
        }
    }

    /// Sends pending envelopes, oldest first, up to the in-flight window.
    async fn fill(&mut self, link: &Link, shared: &Shared) -> bool {
        let room = self.max_inflight.saturating_sub(self.inflight.len());
        if room == 0 {
            return true;
        }
        let key = shared.key.read().ok().and_then(|k| *k);
        let batch: Vec<(u64, Vec<u8>)> = {
            let spool = shared.spool();
            spool
                .pending_iter()
                .filter(|s| !self.inflight.contains_key(s))
                .take(room)
                .filter_map(|seq| match spool.read(seq) {
                    Ok(Some(b)) => Some((seq, b)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!(seq, error = %e, "cannot read a spooled envelope");
                        None
                    }
                })
                .collect()
        };
        for (seq, bytes) in batch {
            let bytes = match key {
                // Spooled bytes are our own encoding: decoding cannot fail.
                Some(k) => crate::enrol::sign(&k, &bytes).unwrap_or(bytes),
                None => bytes,
            };
            let len = bytes.len() as u64;
            if link.up.send(bytes).await.is_err() {
                return false;
            }
            shared.bytes_sent.fetch_add(len, Relaxed);
            self.inflight.insert(seq, Instant::now());
        }
        true
    }

    fn on_downlink(&mut self, dl: Downlink, shared: &Shared) {
        // Once enrolled, only downlinks signed with our key count: anyone
        // who can publish on our topic could otherwise fake an ack (and
        // make us delete unsent reports) or a command.
        let key = shared.key.read().ok().and_then(|k| *k);
        let dl = match key {
            Some(k) => match crate::enrol::verify_downlink(&k, dl) {
                Some(dl) => dl,
                None => {
                    tracing::warn!("downlink without a valid signature dropped");
                    return;
                }
            },
            None => dl,
        };
        match dl.body {
            Some(downlink::Body::Ack(ack)) => {
                for s in &ack.seqs {
                    self.inflight.remove(s);
                }
                if let Err(e) = shared.spool().ack(&ack.seqs) {
                    tracing::error!(error = %e, "cannot record acks in the spool; envelopes will be sent again");
                }
            }
            Some(downlink::Body::Command(c)) => match c.kind {
                Some(command::Kind::SendInventory(_)) => shared.inventory_wanted.notify_one(),
                Some(command::Kind::Campaign(c)) => {
                    // Full only if the collector floods: it sends again.
                    if shared.campaigns.try_send(c).is_err() {
                        tracing::warn!("campaign commands are piling up; dropping one");
                    }
                }
                None => tracing::warn!("ignoring an unknown command"),
            },
            Some(downlink::Body::Nudge(n)) => {
                match shared.nudges.add(&n, now_ms()) {
                    Ok(new) => {
                        if new {
                            tracing::info!(kind = %n.kind, title = %n.title, "nudge received; `sobre-agent nudges` shows it");
                        }
                        // Acknowledged again if it came again: the first
                        // receipt may have been lost.
                        let receipt = v1::NudgeReceipt {
                            nudge_id: n.id.clone(),
                            how: "kept".into(),
                            at_ms: now_ms(),
                        };
                        append(shared, Body::NudgeReceipt(receipt), None);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot keep a nudge; the collector will send it again")
                    }
                }
            }
            None => tracing::debug!("empty downlink"),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs the agent over the transport its config names.
pub async fn run_configured(cfg: AgentConfig, cancel: CancellationToken) -> Result<(), AgentError> {
    use crate::config::{TransportKind, parse_mqtt_url};
    use crate::transport::{grpc::GrpcTransport, mqtt::MqttTransport};
    // A downlink is small; 256 KiB leaves room for long nudges.
    const MAX_DOWNLINK: usize = 256 * 1024;
    let key = crate::enrol::KeyHolder::default();
    match cfg.transport.kind {
        TransportKind::Mqtt => {
            let broker = cfg.transport.mqtt_broker.clone();
            // validate() checked the URL.
            let (host, port) = parse_mqtt_url(&broker).unwrap_or(("127.0.0.1".into(), 1883));
            let t = MqttTransport {
                agent_id: resolve_agent_id(&cfg),
                broker,
                host,
                port,
                max_packet_bytes: MAX_DOWNLINK,
                ca_pem: cfg.transport.ca_pem(),
                key: key.clone(),
            };
            run(cfg, t, key, cancel).await
        }
        TransportKind::Grpc => {
            let t = GrpcTransport {
                endpoint: cfg.transport.grpc_endpoint.clone(),
                max_message_bytes: MAX_DOWNLINK,
                ca_pem: cfg.transport.ca_pem(),
            };
            run(cfg, t, key, cancel).await
        }
    }
}
