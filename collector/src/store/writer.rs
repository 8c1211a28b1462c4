//! The single writer: takes ingest events in batches, commits each batch
//! in one transaction, and only then hands out the acks.

use super::Conn;
use super::dedup::SeqWindow;
use crate::args;
use crate::db::{Db, DbError, Engine, OptionalExt};
use crate::ingest::{Event, Reply};
use crate::metrics::Metrics;
use sobre_proto::v1::{Envelope, PowerSource, envelope::Body};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::mpsc;

/// Seqs of one agent committed in one batch, to ack the way they came.
#[derive(Debug)]
pub struct AckBatch {
    pub agent_id: String,
    pub reply: Reply,
    pub seqs: Vec<u64>,
}

/// What the writer knows of one agent between batches.
#[derive(Debug, Clone)]
struct AgentState {
    rowid: i64,
    window: SeqWindow,
}

pub struct Writer {
    conn: Conn,
    /// Cached dedup windows. Trusted between batches on SQLite, where this
    /// writer is the only one; on PostgreSQL other collectors write too,
    /// so each batch re-reads its agents' windows under a row lock.
    agents: HashMap<String, AgentState>,
    /// This collector's name, written on each sample on PostgreSQL so its
    /// own sink sends what it stored (`None` on SQLite).
    node: Option<String>,
    metrics: Arc<Metrics>,
    batch_max: usize,
    /// Woken after a commit that brought an agent online (queued nudges).
    online: Option<Arc<tokio::sync::Notify>>,
}

impl Writer {
    /// Loads every agent's dedup window from the store.
    pub fn new(conn: Conn, metrics: Arc<Metrics>, batch_max: usize) -> Result<Writer, DbError> {
        let mut agents = HashMap::new();
        if conn.engine() == Engine::Sqlite {
            let rows = conn.query_map(
                "SELECT id, agent_id, seq_window FROM agents",
                args![],
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        r.get::<String>(1)?,
                        r.get::<Option<Vec<u8>>>(2)?,
                    ))
                },
            )?;
            for (rowid, id, blob) in rows {
                let window = decode_window(&id, blob.as_deref());
                agents.insert(id, AgentState { rowid, window });
            }
        }
        Ok(Writer {
            conn,
            agents,
            node: None,
            metrics,
            batch_max,
            online: None,
        })
    }

    /// Names this collector on the samples it writes (PostgreSQL).
    pub fn node(mut self, node: Option<String>) -> Self {
        self.node = node;
        self
    }

    /// Wakes `n` after each commit in which an agent came online.
    pub fn notify_online(mut self, n: Arc<tokio::sync::Notify>) -> Self {
        self.online = Some(n);
        self
    }

    /// Runs until `events` is closed and drained, sending acks after each
    /// commit. Blocking: call it on its own thread.
    pub fn run(mut self, mut events: mpsc::Receiver<Event>, acks: mpsc::Sender<AckBatch>) {
        let mut batch = Vec::with_capacity(self.batch_max);
        while let Some(first) = events.blocking_recv() {
            batch.push(first);
            while batch.len() < self.batch_max {
                match events.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => break,
                }
            }
            let out = self.commit_with_retry(&batch);
            batch.clear();
            // Never wait for the ack router: it may itself be waiting for
            // the MQTT client, whose queue drains only when ingest polls,
            // which waits for this writer (a deadlock seen under overload).
            // An ack that does not fit is dropped and counted; the agent
            // resends and the store dedups.
            for ack in out {
                match acks.try_send(ack) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(a)) => {
                        self.metrics
                            .ack_dropped
                            .fetch_add(a.seqs.len() as u64, Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        tracing::debug!("ack router gone; agents will resend");
                    }
                }
            }
        }
        tracing::info!("store writer drained and stopped");
    }

    /// A failed commit (disk full, I/O error) is retried with backoff: the
    /// batch is neither lost nor acked, and ingest pushes back meanwhile.
    fn commit_with_retry(&mut self, batch: &[Event]) -> Vec<AckBatch> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.commit(batch) {
                Ok(acks) => return acks,
                Err(e) => {
                    self.metrics.commit_errors.fetch_add(1, Relaxed);
                    tracing::error!(
                        error = %e,
                        events = batch.len(),
                        retry_in_ms = delay.as_millis() as u64,
                        "store commit failed; nothing acked, retrying (free disk space or fix the store)"
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// One transaction for the whole batch. The in-memory dedup state only
    /// changes once the commit succeeded.
    pub fn commit(&mut self, batch: &[Event]) -> Result<Vec<AckBatch>, DbError> {
        let mut staged: HashMap<String, AgentState> = HashMap::new();
        let (mut stored, mut dups) = (0u64, 0u64);
        let cache = &self.agents;
        let node = self.node.as_deref();
        let acks = self.conn.transaction(|tx| {
            if tx.engine() == Engine::Postgres {
                lock_agents(tx, batch, &mut staged)?;
            }
            commit_events(tx, batch, cache, node, &mut staged, &mut stored, &mut dups)
        })?;
        if let Some(n) = &self.online
            && batch
                .iter()
                .any(|e| matches!(e, Event::Presence { online: true, .. }))
        {
            n.notify_one();
        }
        self.agents.extend(staged);
        self.metrics.stored.fetch_add(stored, Relaxed);
        self.metrics.duplicates.fetch_add(dups, Relaxed);
        self.metrics.commits.fetch_add(1, Relaxed);
        Ok(acks)
    }
}

/// The saved window of an agent, or an empty one (with a warning when the
/// bytes are damaged).
fn decode_window(agent: &str, blob: Option<&[u8]>) -> SeqWindow {
    match blob.map(SeqWindow::decode) {
        Some(Some(w)) => w,
        Some(None) => {
            tracing::warn!(agent, "corrupt dedup window in store; starting empty");
            SeqWindow::default()
        }
        None => SeqWindow::default(),
    }
}

/// PostgreSQL, shared by collectors: creates the batch's agents if new,
/// locks their rows in a fixed order (so two collectors cannot deadlock on
/// them) and reads their windows as committed by whichever collector came
/// last. A redelivered envelope is then stored once across the cluster.
fn lock_agents(
    tx: &dyn Db,
    batch: &[Event],
    staged: &mut HashMap<String, AgentState>,
) -> Result<(), DbError> {
    let mut ids: Vec<(&str, i64)> = batch
        .iter()
        .filter_map(|e| match e {
            Event::Envelope {
                env, received_ms, ..
            } => Some((env.agent_id.as_str(), *received_ms)),
            Event::Presence { .. } => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup_by(|a, b| a.0 == b.0);
    for (id, at_ms) in ids {
        insert_agent(tx, id, at_ms)?;
        let (rowid, blob) = tx.query_row(
            "SELECT id, seq_window FROM agents WHERE agent_id = ?1 FOR UPDATE",
            args![id],
            |r| Ok((r.get::<i64>(0)?, r.get::<Option<Vec<u8>>>(1)?)),
        )?;
        let window = decode_window(id, blob.as_deref());
        staged.insert(id.to_owned(), AgentState { rowid, window });
    }
    Ok(())
}

/// The body of a batch's transaction.
fn commit_events(
    tx: &dyn Db,
    batch: &[Event],
    cache: &HashMap<String, AgentState>,
    node: Option<&str>,
    staged: &mut HashMap<String, AgentState>,
    stored: &mut u64,
    dups: &mut u64,
) -> Result<Vec<AckBatch>, DbError> {
    {
        // agent -> (last seen, latest footprint as JSON)
        let mut touched: HashMap<String, (i64, Option<String>)> = HashMap::new();
        let mut acks: HashMap<String, Vec<AckBatch>> = HashMap::new();
        let mut rollup = Rollup::default();
        for ev in batch {
            match ev {
                Event::Envelope {
                    env,
                    reply,
                    received_ms,
                } => {
                    let state = match staged.get_mut(&env.agent_id) {
                        Some(s) => s,
                        None => {
                            let s = match cache.get(&env.agent_id) {
                                Some(s) => s.clone(),
                                None => AgentState {
                                    rowid: insert_agent(tx, &env.agent_id, *received_ms)?,
                                    window: SeqWindow::default(),
                                },
                            };
                            staged.entry(env.agent_id.clone()).or_insert(s)
                        }
                    };
                    let t = touched.entry(env.agent_id.clone()).or_default();
                    t.0 = t.0.max(*received_ms);
                    if state.window.is_new(env.seq) {
                        store_envelope(tx, state.rowid, node, env, *received_ms, &mut rollup)?;
                        state.window.insert(env.seq, env.spool_floor);
                        if let Some(fp) = &env.footprint {
                            t.1 = serde_json::to_string(fp).ok();
                        }
                        *stored += 1;
                    } else {
                        *dups += 1;
                    }
                    push_ack(
                        acks.entry(env.agent_id.clone()).or_default(),
                        &env.agent_id,
                        reply,
                        env.seq,
                    );
                }
                Event::Presence {
                    agent_id,
                    online,
                    transport,
                    at_ms,
                } => {
                    let n = tx.execute(
                        "UPDATE agents SET online = ?1, transport = ?2,
                            last_seen_ms = CASE WHEN last_seen_ms > ?3 THEN last_seen_ms ELSE ?3 END
                         WHERE agent_id = ?4",
                        args![*online, *transport, *at_ms, agent_id],
                    )?;
                    if n == 0 && *online {
                        let rowid = insert_agent(tx, agent_id, *at_ms)?;
                        tx.execute(
                            "UPDATE agents SET online = 1, transport = ?1 WHERE id = ?2",
                            args![*transport, rowid],
                        )?;
                        staged.entry(agent_id.clone()).or_insert(AgentState {
                            rowid,
                            window: SeqWindow::default(),
                        });
                    }
                }
            }
        }
        for (id, (seen, footprint)) in &touched {
            if let Some(s) = staged.get(id) {
                let window = s.window.encode();
                tx.execute(
                    "UPDATE agents SET
                        last_seen_ms = CASE WHEN last_seen_ms > ?1 THEN last_seen_ms ELSE ?1 END,
                        seq_window = ?2, footprint = coalesce(?3, footprint) WHERE id = ?4",
                    args![*seen, &window, footprint, s.rowid],
                )?;
            }
        }
        rollup.write(tx)?;
        Ok(acks.into_values().flatten().collect())
    }
}

/// The row id of `agent_id`, created if new (by this collector or, on
/// PostgreSQL, by another one at the same moment: the unique key decides).
fn insert_agent(tx: &dyn Db, agent_id: &str, at_ms: i64) -> Result<i64, DbError> {
    if let Some(id) = tx
        .query_row(
            "SELECT id FROM agents WHERE agent_id = ?1",
            args![agent_id],
            |r| r.get(0),
        )
        .optional()?
    {
        return Ok(id);
    }
    let created = tx
        .query_row(
            "INSERT INTO agents (agent_id, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?2)
             ON CONFLICT (agent_id) DO NOTHING RETURNING id",
            args![agent_id, at_ms],
            |r| r.get(0),
        )
        .optional()?;
    match created {
        Some(id) => {
            tracing::info!(agent = agent_id, "new agent registered");
            Ok(id)
        }
        None => tx.query_row(
            "SELECT id FROM agents WHERE agent_id = ?1",
            args![agent_id],
            |r| r.get(0),
        ),
    }
}

fn store_envelope(
    tx: &dyn Db,
    rowid: i64,
    node: Option<&str>,
    env: &Envelope,
    received_ms: i64,
    rollup: &mut Rollup,
) -> Result<(), DbError> {
    let fp = env.footprint.unwrap_or_default();
    match &env.body {
        Some(Body::Usage(u)) => {
            tx.execute(
                "INSERT INTO samples (agent, seq, sent_ms, received_ms, interval_ms, cpu_percent,
                    mem_total, mem_available, swap_total, swap_used, disk_read, disk_written,
                    net_rx, net_tx, load1, load5, load15, uptime_s, user_sessions, input_idle_s,
                    user_active, agent_cpu_s, agent_rss, agent_sent, power_w, energy_j,
                    power_source, node)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                    ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
                args![
                    rowid,
                    env.seq as i64,
                    env.sent_at_ms,
                    received_ms,
                    u.interval_ms,
                    f64::from(u.cpu_percent),
                    u.mem_total_bytes as i64,
                    u.mem_available_bytes as i64,
                    u.swap_total_bytes as i64,
                    u.swap_used_bytes as i64,
                    u.disk_read_bytes as i64,
                    u.disk_written_bytes as i64,
                    u.net_rx_bytes as i64,
                    u.net_tx_bytes as i64,
                    f64::from(u.load1),
                    f64::from(u.load5),
                    f64::from(u.load15),
                    u.uptime_s as i64,
                    u.user_sessions,
                    u.input_idle_s,
                    u.user_active,
                    fp.cpu_seconds,
                    fp.rss_bytes as i64,
                    fp.bytes_sent as i64,
                    f64::from(u.power_w),
                    u.energy_j,
                    power_source_name(u.power_source()),
                    node,
                ],
            )?;
            rollup.add(rowid, env.sent_at_ms, u);
        }
        Some(Body::Inventory(inv)) => {
            let json = serde_json::to_string(inv).unwrap_or_default();
            tx.execute(
                "UPDATE agents SET hostname = ?1, inventory = ?2, grp = ?3, site = ?4 WHERE id = ?5",
                args![&inv.hostname, &json, &inv.group, &inv.site, rowid],
            )?;
        }
        Some(Body::Storage(st)) => {
            let json = serde_json::to_string(st).unwrap_or_default();
            tx.execute(
                "INSERT INTO storage_summaries (agent, finished_ms, received_ms, summary)
                 VALUES (?1, ?2, ?3, ?4)",
                args![rowid, st.finished_at_ms, received_ms, &json],
            )?;
            // Keep the latest by scan time, whatever the arrival order.
            tx.execute(
                "UPDATE agents SET storage = ?1, storage_finished_ms = ?3 WHERE id = ?2
                    AND (storage IS NULL OR coalesce(storage_finished_ms, 0) <= ?3)",
                args![&json, rowid, st.finished_at_ms],
            )?;
        }
        Some(Body::NudgeReceipt(r)) => {
            // Only the agent a nudge was for can mark it delivered.
            tx.execute(
                "UPDATE nudges SET delivered_ms = coalesce(delivered_ms, ?1), how = coalesce(how, ?2)
                 WHERE id = ?3 AND agent_id = ?4",
                args![r.at_ms, &r.how, &r.nudge_id, &env.agent_id],
            )?;
        }
        Some(Body::Campaign(p)) => super::campaigns::record_progress(tx, &env.agent_id, p)?,
        // decode() refuses envelopes without a body.
        None => {}
    }
    Ok(())
}

/// The name stored for a power source; `None` for agents that do not
/// report power.
pub fn power_source_name(s: PowerSource) -> Option<&'static str> {
    match s {
        PowerSource::Rapl => Some("rapl"),
        PowerSource::Battery => Some("battery"),
        PowerSource::Model => Some("model"),
        PowerSource::Unspecified => None,
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Energy of one agent in one hour, accumulated over a batch and added to
/// `energy_hourly` with one upsert per (hour, agent).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct HourTotals {
    energy_j: f64,
    measured_j: f64,
    /// Time covered by samples with power.
    covered_ms: i64,
    samples: i64,
    /// Σ cpu_percent × ms: the hour's mean CPU is cpu_weighted ÷ usage_ms.
    cpu_weighted: f64,
    cpu_max: f64,
    net_bytes: i64,
    /// Time a person was active.
    active_ms: i64,
    mem_used_max: i64,
    /// Time covered by usage samples.
    usage_ms: i64,
}

#[derive(Debug, Default)]
struct Rollup(HashMap<(i64, i64), HourTotals>);

impl Rollup {
    /// Spreads a sample's energy over the hours its interval
    /// `[sent − interval, sent]` covers, in proportion to the time in each.
    fn add(&mut self, agent: i64, sent_ms: i64, u: &sobre_proto::v1::UsageReport) {
        let has_power = u.power_source() != PowerSource::Unspecified;
        let measured = matches!(u.power_source(), PowerSource::Rapl | PowerSource::Battery);
        let mem_used = u.mem_total_bytes.saturating_sub(u.mem_available_bytes) as i64;
        let net = (u.net_rx_bytes + u.net_tx_bytes) as f64;
        let len = i64::from(u.interval_ms);
        let start = sent_ms - len;
        let mut t = start;
        loop {
            let hour = t.div_euclid(HOUR_MS) * HOUR_MS;
            let end = (hour + HOUR_MS).min(sent_ms);
            let share = if len > 0 {
                (end - t) as f64 / len as f64
            } else {
                1.0
            };
            let ms = end - t;
            let h = self.0.entry((hour, agent)).or_default();
            if has_power {
                let e = u.energy_j * share;
                h.energy_j += e;
                if measured {
                    h.measured_j += e;
                }
                h.covered_ms += ms;
            }
            h.usage_ms += ms;
            h.cpu_weighted += f64::from(u.cpu_percent) * ms as f64;
            h.cpu_max = h.cpu_max.max(f64::from(u.cpu_percent));
            h.net_bytes += (net * share).round() as i64;
            if u.user_active {
                h.active_ms += ms;
            }
            h.mem_used_max = h.mem_used_max.max(mem_used);
            // A sample counts in the hour where it ends.
            if end == sent_ms {
                h.samples += 1;
            }
            if end >= sent_ms || len == 0 {
                break;
            }
            t = end;
        }
    }

    fn write(&self, tx: &dyn Db) -> Result<(), DbError> {
        for ((hour, agent), h) in &self.0 {
            tx.execute(
                "INSERT INTO energy_hourly AS e (hour_ms, agent, energy_j, measured_j, covered_ms,
                    samples, cpu_weighted, cpu_max, net_bytes, active_ms, mem_used_max, usage_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (hour_ms, agent) DO UPDATE SET
                    energy_j = e.energy_j + excluded.energy_j,
                    measured_j = e.measured_j + excluded.measured_j,
                    covered_ms = e.covered_ms + excluded.covered_ms,
                    samples = e.samples + excluded.samples,
                    cpu_weighted = e.cpu_weighted + excluded.cpu_weighted,
                    cpu_max = CASE WHEN e.cpu_max > excluded.cpu_max THEN e.cpu_max
                                   ELSE excluded.cpu_max END,
                    net_bytes = e.net_bytes + excluded.net_bytes,
                    active_ms = e.active_ms + excluded.active_ms,
                    mem_used_max = CASE WHEN e.mem_used_max > excluded.mem_used_max
                                        THEN e.mem_used_max ELSE excluded.mem_used_max END,
                    usage_ms = e.usage_ms + excluded.usage_ms",
                args![
                    *hour,
                    *agent,
                    h.energy_j,
                    h.measured_j,
                    h.covered_ms,
                    h.samples,
                    h.cpu_weighted,
                    h.cpu_max,
                    h.net_bytes,
                    h.active_ms,
                    h.mem_used_max,
                    h.usage_ms
                ],
            )?;
        }
        Ok(())
    }
}

/// Appends `seq` to this agent's ack for the same route (an agent may
/// have reached us over two routes in one batch, e.g. while reconnecting).
fn push_ack(acks: &mut Vec<AckBatch>, agent_id: &str, reply: &Reply, seq: u64) {
    let same_route = |a: &AckBatch| match (&a.reply, reply) {
        (Reply::Mqtt, Reply::Mqtt) => true,
        (Reply::Grpc(x), Reply::Grpc(y)) => x.same_channel(y),
        _ => false,
    };
    match acks.iter_mut().find(|a| same_route(a)) {
        Some(a) => a.seqs.push(seq),
        None => acks.push(AckBatch {
            agent_id: agent_id.to_owned(),
            reply: reply.clone(),
            seqs: vec![seq],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sobre_proto::v1::{Inventory, UsageReport};

    fn usage(agent: &str, seq: u64, floor: u64) -> Event {
        Event::Envelope {
            env: Envelope {
                agent_id: agent.into(),
                seq,
                version: 1,
                spool_floor: floor,
                sent_at_ms: seq as i64,
                body: Some(Body::Usage(UsageReport {
                    cpu_percent: 12.5,
                    ..Default::default()
                })),
                ..Default::default()
            },
            reply: Reply::Mqtt,
            received_ms: 1_000 + seq as i64,
        }
    }

    fn writer(dir: &std::path::Path) -> Writer {
        let conn: crate::store::Conn = Box::new(crate::store::open(dir, false).expect("open"));
        Writer::new(conn, Arc::new(Metrics::default()), 100).expect("writer")
    }

    fn stored(dir: &std::path::Path, agent: &str) -> Vec<u64> {
        let r =
            crate::store::Reader::new(Box::new(crate::store::open_reader(dir).expect("reader")));
        r.samples(agent, 0, 10_000)
            .expect("query")
            .unwrap_or_default()
            .iter()
            .map(|s| s.seq)
            .collect()
    }

    #[test]
    fn redelivered_envelopes_are_acked_but_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path());
        let acks = w
            .commit(&[usage("a", 1, 1), usage("a", 2, 1), usage("b", 1, 1)])
            .expect("commit");
        let mut acked: Vec<(String, Vec<u64>)> =
            acks.into_iter().map(|a| (a.agent_id, a.seqs)).collect();
        acked.sort();
        assert_eq!(acked, vec![("a".into(), vec![1, 2]), ("b".into(), vec![1])]);
        // The same envelopes again, in another batch, plus a new one.
        let acks = w
            .commit(&[usage("a", 2, 1), usage("a", 1, 1), usage("a", 3, 1)])
            .expect("commit");
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].seqs, vec![2, 1, 3], "duplicates are acked again");
        assert_eq!(stored(dir.path(), "a"), vec![1, 2, 3]);
        assert_eq!(w.metrics.duplicates.load(Relaxed), 2);
    }

    #[test]
    fn dedup_survives_a_restart_of_the_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        writer(dir.path())
            .commit(&[usage("a", 10, 10), usage("a", 11, 10)])
            .expect("commit");
        // A new process: the window is reloaded from the agents table.
        let mut w = writer(dir.path());
        w.commit(&[usage("a", 11, 10), usage("a", 12, 10)])
            .expect("commit");
        assert_eq!(stored(dir.path(), "a"), vec![10, 11, 12]);
    }

    #[test]
    fn inventory_updates_the_agent_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path());
        let inv = Event::Envelope {
            env: Envelope {
                agent_id: "a".into(),
                seq: 1,
                version: 1,
                body: Some(Body::Inventory(Inventory {
                    hostname: "mairie-01".into(),
                    cpu_threads: 8,
                    ..Default::default()
                })),
                ..Default::default()
            },
            reply: Reply::Mqtt,
            received_ms: 5,
        };
        w.commit(&[inv]).expect("commit");
        let r = crate::store::Reader::new(Box::new(
            crate::store::open_reader(dir.path()).expect("reader"),
        ));
        let a = r.agent("a").expect("query").expect("known");
        assert_eq!(a.summary.hostname.as_deref(), Some("mairie-01"));
        assert_eq!(a.inventory.expect("inventory")["cpu_threads"], 8);
    }

    #[test]
    fn energy_rolls_up_by_hour_split_at_the_boundary() {
        let mut r = Rollup::default();
        let report = |source: PowerSource, interval_ms: u32, energy_j: f64| UsageReport {
            interval_ms,
            energy_j,
            power_source: source as i32,
            ..Default::default()
        };
        // 10 s of model energy ending 4 s into hour 1: 6 s in hour 0, 4 s in hour 1.
        r.add(
            7,
            HOUR_MS + 4_000,
            &report(PowerSource::Model, 10_000, 100.0),
        );
        // 10 s measured, all in hour 1.
        r.add(
            7,
            HOUR_MS + 20_000,
            &report(PowerSource::Rapl, 10_000, 50.0),
        );
        // No power reported: not rolled up.
        r.add(
            7,
            HOUR_MS + 30_000,
            &report(PowerSource::Unspecified, 10_000, 0.0),
        );
        let h0 = r.0[&(0, 7)];
        let h1 = r.0[&(HOUR_MS, 7)];
        assert!((h0.energy_j - 60.0).abs() < 1e-9 && h0.covered_ms == 6_000 && h0.samples == 0);
        assert!((h1.energy_j - 90.0).abs() < 1e-9, "{h1:?}");
        assert!((h1.measured_j - 50.0).abs() < 1e-9);
        assert_eq!(
            (h1.covered_ms, h1.samples, h1.usage_ms),
            (14_000, 3, 24_000)
        );
    }

    #[test]
    fn rollup_accumulates_across_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path());
        let with_power = |seq: u64| {
            let mut ev = usage("a", seq, 1);
            if let Event::Envelope { env, .. } = &mut ev {
                env.sent_at_ms = 10_000 * seq as i64;
                if let Some(Body::Usage(u)) = &mut env.body {
                    u.interval_ms = 10_000;
                    u.energy_j = 200.0;
                    u.power_w = 20.0;
                    u.power_source = PowerSource::Model as i32;
                }
            }
            ev
        };
        w.commit(&[with_power(1), with_power(2)]).expect("commit");
        w.commit(&[with_power(3), with_power(3)])
            .expect("commit with a duplicate");
        let total: f64 = w
            .conn
            .query_row("SELECT sum(energy_j) FROM energy_hourly", args![], |r| {
                r.get(0)
            })
            .expect("sum");
        assert_eq!(total, 600.0, "the duplicate is not counted twice");
    }

    #[test]
    fn the_latest_storage_summary_wins_whatever_the_arrival_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path());
        let summary = |seq: u64, finished: i64, files: u64| Event::Envelope {
            env: Envelope {
                agent_id: "a".into(),
                seq,
                version: 1,
                body: Some(Body::Storage(sobre_proto::v1::StorageSummary {
                    finished_at_ms: finished,
                    files,
                    ..Default::default()
                })),
                ..Default::default()
            },
            reply: Reply::Mqtt,
            received_ms: 1,
        };
        // The newer scan arrives first (e.g. replayed from a spool).
        w.commit(&[summary(2, 2_000, 20)]).expect("commit");
        w.commit(&[summary(1, 1_000, 10)]).expect("commit");
        let r = crate::store::Reader::new(Box::new(
            crate::store::open_reader(dir.path()).expect("reader"),
        ));
        let latest = r
            .storage("a")
            .expect("query")
            .expect("agent")
            .expect("summary");
        assert_eq!(latest["files"], 20);
        let n: i64 = w
            .conn
            .query_row("SELECT count(*) FROM storage_summaries", args![], |r| {
                r.get(0)
            })
            .expect("count");
        assert_eq!(n, 2, "every summary is kept");
        assert_eq!(r.storage_fleet(None).expect("fleet").len(), 1);
    }

    #[test]
    fn presence_marks_online_and_offline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer(dir.path());
        let presence = |online| Event::Presence {
            agent_id: "a".into(),
            online,
            transport: "grpc",
            at_ms: 7,
        };
        w.commit(&[presence(true)]).expect("commit");
        let r = crate::store::Reader::new(Box::new(
            crate::store::open_reader(dir.path()).expect("reader"),
        ));
        assert!(r.agents().expect("agents")[0].online);
        w.commit(&[presence(false)]).expect("commit");
        assert!(!r.agents().expect("agents")[0].online);
    }
}
