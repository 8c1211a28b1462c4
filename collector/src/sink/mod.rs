//! InfluxDB sink: sends what the store committed to an InfluxDB-compatible
//! server (InfluxDB 1.x/2.x/3.x, VictoriaMetrics) as line protocol.
//!
//! The store is the durable buffer. A producer reads committed samples
//! after a persisted cursor (the last rowid the server answered for), in
//! batches of up to `batch_max` points, compresses them, and hands them to
//! one sender through a one-slot channel, so the next batch is prepared
//! while the current one is on the wire. The sender retries 429, 5xx and
//! network errors with exponential backoff and jitter, splits a batch on
//! 413, drops and counts points refused with another 4xx, and moves the
//! cursor only once the server has answered for a whole batch: a stop, a
//! crash or an outage replays from the cursor, and points carry the
//! sample's own timestamp, so a replayed point overwrites itself. Every
//! `snapshot_interval_ms` it also writes per-host points (lifetime,
//! embodied emissions), each host's latest storage summary, the
//! detectors' findings and the progress of Clean Up Day campaigns.
//! SCHEMA.md at the repository's root documents what is written.

pub mod batch;
pub mod body;
pub mod campaigns;
pub mod client;
pub mod config;
pub mod cursor;
pub mod findings;
pub mod points;
pub mod sender;
pub mod series;
pub mod source;

pub use config::{Api, Secret, SinkConfig};

use crate::footprint::{FootprintConfig, GridIntensity, Window, compute};
use crate::metrics::Metrics;
use batch::{Batch, Pool};
use client::Client;
use cursor::Cursor;
use points::{Carbon, HostTags, Lines};
use sender::Sender;
use source::Source;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Environment variable (benchmarks only): a directory where the sink also
/// writes each sample batch as plain line protocol, so that curl can post
/// exactly the same batches for comparison (bench/sink.sh).
pub const DUMP_ENV: &str = "SOBRE_SINK_DUMP_DIR";

pub struct Sink {
    cfg: SinkConfig,
    data_dir: PathBuf,
    footprint: FootprintConfig,
    grid: GridIntensity,
    metrics: Arc<Metrics>,
    client: Client,
    source: Source,
    store: crate::store::Location,
    cluster: crate::cluster::Cluster,
    /// Line buffers, handed back by the sender once a batch is delivered.
    pool: Pool,
}

impl Sink {
    /// Checks the settings and opens the store's read side; nothing is
    /// sent before [`Sink::run`].
    pub fn new(
        cfg: &SinkConfig,
        store: &crate::store::Location,
        cluster: crate::cluster::Cluster,
        footprint: FootprintConfig,
        grid: GridIntensity,
        metrics: Arc<Metrics>,
    ) -> Result<Sink, String> {
        cfg.validate()?;
        let client = Client::new(cfg)?;
        let source = Source::open(store, cluster.sample_node()).map_err(|e| e.to_string())?;
        Ok(Sink {
            cfg: cfg.clone(),
            data_dir: store.data_dir.clone(),
            store: store.clone(),
            cluster,
            footprint,
            grid,
            metrics,
            client,
            source,
            pool: Pool::default(),
        })
    }

    /// The sink's buffer pool (tests check that buffers come back).
    #[cfg(test)]
    pub(crate) fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// What the cursor is about: another target starts from the beginning.
    fn target(&self) -> String {
        let c = &self.cfg;
        match c.api {
            Api::V1 => format!(
                "v1 {} db={} rp={}",
                c.url,
                c.db,
                c.rp.as_deref().unwrap_or("")
            ),
            Api::V2 => format!("v2 {} org={} bucket={}", c.url, c.org, c.bucket),
            Api::V3 => format!("v3 {} db={}", c.url, c.db),
        }
    }

    /// Runs until `cancel`; then returns within about [`sender::STOP_GRACE`] plus
    /// the time of one store read, leaving the cursor on disk.
    pub async fn run(self, cancel: CancellationToken) {
        let cursor = Cursor::load(&self.data_dir, &self.target());
        tracing::info!(
            url = %self.client.url(),
            after_rowid = cursor.rowid,
            "InfluxDB sink started"
        );
        let max_rowid = Arc::new(AtomicI64::new(cursor.rowid));
        let (tx, rx) = mpsc::channel::<Batch>(1);
        let producer = Producer {
            source: self.source,
            after: cursor.rowid,
            cfg: self.cfg.clone(),
            footprint: self.footprint,
            grid: self.grid,
            metrics: self.metrics.clone(),
            max_rowid: max_rowid.clone(),
            committed: Arc::new(AtomicI64::new(cursor.rowid)),
            dump: std::env::var_os(DUMP_ENV)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            dumped: 0,
            keys: series::SeriesKeys::default(),
            pool: self.pool.clone(),
            encoder: body::Encoder::new(self.cfg.gzip),
            rows: Vec::new(),
            cluster: self.cluster.clone(),
        };
        let committed = producer.committed.clone();
        let (save, saver) = cursor.saver();
        let producer = tokio::spawn(producer.run(tx, cancel.clone()));
        let gauge = tokio::spawn(backlog_gauge(
            self.store.clone(),
            self.cluster.sample_node(),
            committed.clone(),
            max_rowid.clone(),
            self.metrics.clone(),
            cancel.clone(),
        ));
        let mut sender = Sender::new(self.client, self.cfg, self.metrics.clone());
        let mut rx = rx;
        loop {
            let batch = tokio::select! {
                b = rx.recv() => match b {
                    Some(b) => b,
                    None => break,
                },
                () = cancel.cancelled() => break,
            };
            if !sender.deliver(&batch, &cancel).await {
                break;
            }
            tracing::debug!(points = batch.len(), "sink batch delivered");
            if let Some(rowid) = batch.cursor {
                // Saved off the sending path (an fsync can take a long
                // time on a busy disk); the saver keeps only the latest.
                let _ = save.send(rowid);
                committed.store(rowid, Relaxed);
                if !self.cluster.shared {
                    let behind = (max_rowid.load(Relaxed) - rowid).max(0);
                    self.metrics.sink_backlog.store(behind as u64, Relaxed);
                }
            }
            // Its text buffer serves a later batch (3 MB for 5,000 lines:
            // allocated afresh, its page faults cost ~5 % of the CPU).
            self.pool.give(batch);
        }
        drop(rx);
        if producer.await.is_err() {
            tracing::error!("sink producer panicked");
        }
        gauge.abort();
        drop(save);
        let cursor = saver.await.unwrap_or_default();
        tracing::info!(after_rowid = cursor, "InfluxDB sink stopped");
    }
}

/// Keeps `sobre_sink_backlog_rows` current while the sender is stuck
/// retrying (the producer then waits and reads nothing). On SQLite the
/// rowids of the unsent samples are consecutive, so the backlog is a
/// difference; on PostgreSQL this collector's rowids interleave with the
/// others', so its unsent samples are counted (up to [`BACKLOG_CAP`], so
/// that a long outage does not make the gauge a scan of the backlog).
async fn backlog_gauge(
    store: crate::store::Location,
    node: Option<String>,
    committed: Arc<AtomicI64>,
    max_rowid: Arc<AtomicI64>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let conn = match store.open_reader() {
        Ok(c) => Arc::new(std::sync::Mutex::new(c)),
        Err(e) => {
            tracing::warn!(error = %e, "sink backlog gauge: cannot open the store");
            return;
        }
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = cancel.cancelled() => return,
        }
        let (conn, n) = (conn.clone(), node.clone());
        let after = committed.load(Relaxed);
        let got = tokio::task::spawn_blocking(move || {
            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
            match &n {
                None => c.query_row(
                    "SELECT coalesce(max(rowid), 0) FROM samples",
                    crate::args![],
                    |r| r.get::<i64>(0),
                ),
                Some(n) => c.query_row(
                    "SELECT count(*) FROM (SELECT 1 FROM samples
                        WHERE node = ?1 AND rowid > ?2 LIMIT ?3) unsent",
                    crate::args![n, after, BACKLOG_CAP],
                    |r| r.get::<i64>(0),
                ),
            }
        })
        .await;
        match (got, &node) {
            (Ok(Ok(max)), None) => {
                max_rowid.fetch_max(max, Relaxed);
                let behind = (max - committed.load(Relaxed)).max(0);
                metrics.sink_backlog.store(behind as u64, Relaxed);
            }
            (Ok(Ok(unsent)), Some(_)) => metrics.sink_backlog.store(unsent as u64, Relaxed),
            _ => {}
        }
    }
}

/// Most unsent samples the backlog gauge counts on a shared store.
const BACKLOG_CAP: i64 = 1_000_000;

/// Reads the store and prepares batches.
struct Producer {
    source: Source,
    /// Last rowid handed to the sender.
    after: i64,
    cfg: SinkConfig,
    footprint: FootprintConfig,
    grid: GridIntensity,
    metrics: Arc<Metrics>,
    max_rowid: Arc<AtomicI64>,
    /// Last rowid the server answered for (for the backlog gauge).
    committed: Arc<AtomicI64>,
    dump: Option<PathBuf>,
    dumped: u64,
    keys: series::SeriesKeys,
    pool: Pool,
    /// Bodies are encoded here (one gzip stream kept across batches;
    /// compressed bodies go into buffers from `pool`).
    encoder: body::Encoder,
    /// The rows of the last read, kept for their allocation.
    rows: Vec<points::SampleRow>,
    /// Fleet-wide snapshots come from the leader only.
    cluster: crate::cluster::Cluster,
}

/// What a read of the store produced.
enum Read {
    Batch(Batch, bool),
    Empty,
}

impl Producer {
    async fn run(mut self, tx: mpsc::Sender<Batch>, cancel: CancellationToken) {
        let period = self.cfg.snapshot_interval_ms as i64;
        let mut next_snapshot = crate::ingest::now_ms().div_euclid(period) * period;
        let flush = Duration::from_millis(self.cfg.flush_interval_ms);
        let mut store_failures = 0u32;
        loop {
            let now = crate::ingest::now_ms();
            if now >= next_snapshot {
                let at = now.div_euclid(period) * period;
                let Some((me, res)) = self.blocking(move |p| p.snapshot(at)).await else {
                    return;
                };
                self = me;
                match res {
                    Ok(Some(b)) => {
                        if !send(&tx, b, &cancel).await {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "sink snapshot failed; next one as planned")
                    }
                }
                next_snapshot = at + period;
            }
            // Send everything that is committed, full batches first.
            loop {
                let Some((me, res)) = self.blocking(Producer::read).await else {
                    return;
                };
                self = me;
                match res {
                    Ok(Read::Batch(b, full)) => {
                        store_failures = 0;
                        if !send(&tx, b, &cancel).await {
                            return;
                        }
                        if !full {
                            break;
                        }
                    }
                    Ok(Read::Empty) => break,
                    Err(e) => {
                        store_failures += 1;
                        if store_failures.is_power_of_two() {
                            tracing::error!(error = %e, failures = store_failures, "sink cannot read the store; retrying");
                        }
                        break;
                    }
                }
            }
            let until_snapshot =
                Duration::from_millis((next_snapshot - crate::ingest::now_ms()).max(0) as u64);
            tokio::select! {
                () = tokio::time::sleep(flush.min(until_snapshot)) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Runs `f` on the blocking pool (SQLite, encoding), handing the
    /// producer there and back; `None` if the runtime is shutting down.
    async fn blocking<T: Send + 'static>(
        self,
        f: impl FnOnce(&mut Producer) -> T + Send + 'static,
    ) -> Option<(Producer, T)> {
        let joined = tokio::task::spawn_blocking(move || {
            let mut p = self;
            let r = f(&mut p);
            (p, r)
        })
        .await;
        match joined {
            Ok(v) => Some(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }

    /// The next batch of committed samples after `self.after`.
    fn read(&mut self) -> Result<Read, crate::store::StoreError> {
        let (min, max) = self.source.bounds()?;
        self.max_rowid.store(max, Relaxed);
        if !self.cluster.shared {
            let behind = (max - self.committed.load(Relaxed)).max(0);
            self.metrics.sink_backlog.store(behind as u64, Relaxed);
        }
        if max < self.after {
            tracing::warn!(
                cursor = self.after,
                max_rowid = max,
                "the store has fewer samples than the sink's cursor (a new or restored store?); sending it from the start"
            );
            self.after = 0;
        }
        if min > self.after + 1 && self.after > 0 {
            // Samples expired from the store before they were sent.
            let lost = (min - self.after - 1) as u64;
            self.metrics.sink_dropped.fetch_add(lost, Relaxed);
            tracing::warn!(
                lost,
                "samples left the store before the sink could send them (server unreachable for longer than the store keeps samples)"
            );
            self.after = min - 1;
        }
        let t0 = Instant::now();
        let mut rows = std::mem::take(&mut self.rows);
        let read = self
            .source
            .samples_after(self.after, self.cfg.batch_max, &mut rows);
        let batch = read.and_then(|()| self.prepare(&rows, t0));
        self.rows = rows;
        batch
    }

    /// Lines, body and timings of the rows just read (started at `t0`).
    fn prepare(
        &mut self,
        rows: &[points::SampleRow],
        t0: Instant,
    ) -> Result<Read, crate::store::StoreError> {
        let Some(last) = rows.last().map(|r| r.rowid) else {
            return Ok(Read::Empty);
        };
        let t1 = Instant::now();
        let full = rows.len() >= self.cfg.batch_max;
        let carbon = Carbon {
            footprint: &self.footprint,
            grid: &self.grid,
        };
        let mut lines = self.pool.take(rows.len());
        for r in rows {
            let (tags, generation) = self.source.tags(r.agent, t1)?;
            self.keys.sample(&mut lines, tags, generation, r, &carbon);
        }
        self.after = last;
        if let Some(dir) = &self.dump {
            self.dumped += 1;
            let path = dir.join(format!("batch-{:06}.lp", self.dumped));
            let written = sobre_base::files::create_private(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &lines.buf));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "cannot dump a sink batch");
            }
        }
        let t2 = Instant::now();
        let bytes = lines.buf.len();
        let batch = Batch::new(lines, &mut self.encoder, &self.pool, Some(last));
        // Where the sink's CPU goes, per batch (bench/sink.sh sums these).
        tracing::debug!(
            points = rows.len(),
            bytes,
            body_bytes = batch.body.len(),
            read_us = (t1 - t0).as_micros() as u64,
            build_us = (t2 - t1).as_micros() as u64,
            encode_us = t2.elapsed().as_micros() as u64,
            "sink batch prepared"
        );
        Ok(Read::Batch(batch, full))
    }

    /// Per-host and storage points for the period that ends at `at_ms`.
    fn snapshot(&mut self, at_ms: i64) -> Result<Option<Batch>, crate::store::StoreError> {
        if !self.cluster.is_leader() {
            // Another collector of the cluster sends the fleet's points.
            return Ok(None);
        }
        let period = self.cfg.snapshot_interval_ms as i64;
        let agents = self.source.agents()?;
        let by_id: HashMap<&str, &source::AgentRow> = agents
            .values()
            .map(|a| (a.tags.agent.as_str(), a))
            .collect();
        let hosts = self.source.reader.footprint_hosts(None, None)?;
        let report = compute(
            &self.footprint,
            &self.grid,
            &hosts,
            &[],
            Window {
                from_ms: at_ms - period,
                to_ms: at_ms,
                step_ms: None,
                now_ms: at_ms,
            },
        );
        let mut lines = Lines::with_capacity(hosts.len() * 4);
        for h in &report.hosts {
            if let Some(a) = by_id.get(h.id.as_str()) {
                points::host(&mut lines, &a.tags, h, a.online, at_ms);
            }
        }
        let storage = self.source.reader.storage_fleet(None)?;
        for s in &storage {
            if let Some(a) = by_id.get(s.agent_id.as_str()) {
                points::storage(&mut lines, &a.tags, &s.summary, at_ms);
            }
        }
        if !storage.is_empty() {
            points::storage_fleet(&mut lines, &crate::storage::fleet(&storage, 100), at_ms);
        }
        for f in self.source.findings()? {
            // A host the store no longer lists keeps its agent id.
            let tags = f.agent_id.as_deref().map(|id| {
                by_id.get(id).map_or_else(
                    || HostTags {
                        agent: id.to_owned(),
                        ..Default::default()
                    },
                    |a| a.tags.clone(),
                )
            });
            findings::finding(&mut lines, tags.as_ref(), &f, at_ms);
        }
        // The factors as the API's report computes them (jobs.rs).
        let grid = self.grid.at(at_ms);
        for r in self
            .source
            .campaign_reports(grid, self.footprint.pue_server, at_ms)?
        {
            campaigns::campaign(&mut lines, &r, at_ms);
        }
        if lines.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch::new(lines, &mut self.encoder, &self.pool, None)))
    }
}

/// Hands a batch to the sender; false when stopping.
async fn send(tx: &mpsc::Sender<Batch>, b: Batch, cancel: &CancellationToken) -> bool {
    tokio::select! {
        r = tx.send(b) => r.is_ok(),
        () = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests;
