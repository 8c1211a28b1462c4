//! The single writer: takes ingest events in batches, commits each batch
//! in one transaction, and only then hands out the acks.

use super::Conn;
use super::dedup::SeqWindow;
use super::rollup::Rollup;
use super::rows;
use crate::args;
use crate::db::{Db, DbError, Engine, OptionalExt, Value};
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
    /// What each agent reported dropped from its spool.
    spool_drops: spool_drops::SpoolDrops,
}

impl Writer {
    /// Loads every agent's dedup window from the store.
    pub fn new(conn: Conn, metrics: Arc<Metrics>, batch_max: usize) -> Result<Writer, DbError> {
        let mut agents = HashMap::new();
        if conn.engine() == Engine::Sqlite {
            agents.extend(conn.query_map(
                "SELECT id, agent_id, seq_window FROM agents",
                args![],
                agent_state,
            )?);
        }
        let spool_drops = spool_drops::SpoolDrops::load(&conn)?;
        Ok(Writer {
            conn,
            agents,
            spool_drops,
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
                lock_agents(tx, batch, cache, &mut staged)?;
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
        for ev in batch {
            if let Event::Envelope { env, .. } = ev {
                let rise = self.spool_drops.observe(env);
                self.metrics.agent_spool_dropped.fetch_add(rise, Relaxed);
            }
        }
        self.metrics.stored.fetch_add(stored, Relaxed);
        self.metrics.duplicates.fetch_add(dups, Relaxed);
        self.metrics.commits.fetch_add(1, Relaxed);
        Ok(acks)
    }
}

/// `(agent_id, state)` from a row `id, agent_id, seq_window`.
fn agent_state(r: &crate::db::Row) -> Result<(String, AgentState), DbError> {
    let (rowid, id) = (r.get::<i64>(0)?, r.get::<String>(1)?);
    let window = decode_window(&id, r.get::<Option<Vec<u8>>>(2)?.as_deref());
    Ok((id, AgentState { rowid, window }))
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

/// PostgreSQL, shared by collectors: creates the batch's new agents,
/// locks the rows of all its agents in agent-id order (so two collectors
/// cannot deadlock on them) and reads their windows as committed by
/// whichever collector came last. A redelivered envelope is then stored
/// once across the cluster. Two statements per [`rows::MAX_ROWS`] agents:
/// each is a round trip.
fn lock_agents(
    tx: &dyn Db,
    batch: &[Event],
    cache: &HashMap<String, AgentState>,
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
    for chunk in ids.chunks(rows::MAX_ROWS) {
        // Agents already seen exist: rows are never deleted.
        let new: Vec<Value<'_>> = chunk
            .iter()
            .filter(|(id, _)| !cache.contains_key(*id))
            .flat_map(|(id, at)| [Value::Text(id), Value::Int(*at), Value::Int(*at)])
            .collect();
        if !new.is_empty() {
            let created = tx.run(
                &format!(
                    "INSERT INTO agents (agent_id, first_seen_ms, last_seen_ms) VALUES {}
                     ON CONFLICT (agent_id) DO NOTHING RETURNING agent_id",
                    rows::values(new.len() / 3, 3)
                ),
                &new,
            )?;
            for r in &created.rows {
                tracing::info!(agent = %r.get::<String>(0)?, "new agent registered");
            }
        }
        let names: Vec<Value<'_>> = chunk.iter().map(|(id, _)| Value::Text(id)).collect();
        let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let locked = tx.query_map(
            &format!(
                "SELECT id, agent_id, seq_window FROM agents WHERE agent_id IN ({})
                 ORDER BY agent_id FOR UPDATE",
                marks.join(", ")
            ),
            &names,
            agent_state,
        )?;
        staged.extend(locked);
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
        // The batch's usage samples, inserted together at the end.
        let mut samples: Vec<Value<'_>> = Vec::new();
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
                        store_envelope(
                            tx,
                            state.rowid,
                            node,
                            env,
                            *received_ms,
                            &mut rollup,
                            &mut samples,
                        )?;
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
        super::rows::insert(tx, SAMPLES_HEAD, "", SAMPLE_COLS, &samples)?;
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

const SAMPLES_HEAD: &str = "INSERT INTO samples (agent, seq, sent_ms, received_ms, interval_ms,
    cpu_percent, mem_total, mem_available, swap_total, swap_used, disk_read, disk_written,
    net_rx, net_tx, load1, load5, load15, uptime_s, user_sessions, input_idle_s, user_active,
    agent_cpu_s, agent_rss, agent_sent, power_w, energy_j, power_source, node)";
const SAMPLE_COLS: usize = 28;

fn store_envelope<'n>(
    tx: &dyn Db,
    rowid: i64,
    node: Option<&'n str>,
    env: &Envelope,
    received_ms: i64,
    rollup: &mut Rollup,
    samples: &mut Vec<Value<'n>>,
) -> Result<(), DbError> {
    let fp = env.footprint.unwrap_or_default();
    match &env.body {
        Some(Body::Usage(u)) => {
            let (int, real) = (Value::Int, Value::Real);
            samples.extend_from_slice(&[
                int(rowid),
                int(env.seq as i64),
                int(env.sent_at_ms),
                int(received_ms),
                int(u.interval_ms.into()),
                real(u.cpu_percent.into()),
                int(u.mem_total_bytes as i64),
                int(u.mem_available_bytes as i64),
                int(u.swap_total_bytes as i64),
                int(u.swap_used_bytes as i64),
                int(u.disk_read_bytes as i64),
                int(u.disk_written_bytes as i64),
                int(u.net_rx_bytes as i64),
                int(u.net_tx_bytes as i64),
                real(u.load1.into()),
                real(u.load5.into()),
                real(u.load15.into()),
                int(u.uptime_s as i64),
                int(u.user_sessions.into()),
                u.input_idle_s.map_or(Value::Null, |v| int(v.into())),
                int(u.user_active.into()),
                real(fp.cpu_seconds),
                int(fp.rss_bytes as i64),
                int(fp.bytes_sent as i64),
                real(u.power_w.into()),
                real(u.energy_j),
                power_source_name(u.power_source()).map_or(Value::Null, Value::Text),
                node.map_or(Value::Null, Value::Text),
            ]);
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

mod spool_drops;
#[cfg(test)]
mod tests;
