//! The store's schema and its versioned migrations, for SQLite
//! (`PRAGMA user_version`) and for PostgreSQL (table `sobre_schema`). The
//! two lists are versioned apart: PostgreSQL's first version is SQLite's
//! seventh, and a change adds one entry to each.
//!
//! Layout for sobriety (see DESIGN.md): samples are appended in arrival
//! order (rowid) and indexed only by arrival time, which also grows in
//! arrival order, so every insert touches the right edge of both b-trees.
//! Deduplication is not an index on (agent, seq) — that index is written
//! at random places when many agents interleave — but a small per-agent
//! window kept on the agent's row (see `dedup.rs`).

use crate::db::postgres::Postgres;
use crate::db::{Db, DbError};
use rusqlite::Connection;

/// Each entry brings the schema from version i to i + 1.
const MIGRATIONS: &[&str] = &[
    // 1: agents and samples.
    "CREATE TABLE agents (
        id            INTEGER PRIMARY KEY,
        agent_id      TEXT NOT NULL UNIQUE,
        hostname      TEXT,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms  INTEGER NOT NULL,
        online        INTEGER NOT NULL DEFAULT 0,
        transport     TEXT,
        inventory     TEXT,
        footprint     TEXT,
        seq_window    BLOB
    );
    CREATE TABLE samples (
        agent          INTEGER NOT NULL,
        seq            INTEGER NOT NULL,
        sent_ms        INTEGER NOT NULL,
        received_ms    INTEGER NOT NULL,
        interval_ms    INTEGER,
        cpu_percent    REAL,
        mem_total      INTEGER,
        mem_available  INTEGER,
        swap_total     INTEGER,
        swap_used      INTEGER,
        disk_read      INTEGER,
        disk_written   INTEGER,
        net_rx         INTEGER,
        net_tx         INTEGER,
        load1          REAL,
        load5          REAL,
        load15         REAL,
        uptime_s       INTEGER,
        user_sessions  INTEGER,
        input_idle_s   INTEGER,
        user_active    INTEGER,
        agent_cpu_s    REAL,
        agent_rss      INTEGER,
        agent_sent     INTEGER
    );
    CREATE INDEX samples_by_arrival ON samples(received_ms);",
    // 2: power on every sample, and the hourly energy roll-up. The roll-up
    // is keyed (hour, agent) so that the current hour, where nearly all
    // writes go, is the right edge of the b-tree.
    "ALTER TABLE samples ADD COLUMN power_w REAL;
    ALTER TABLE samples ADD COLUMN energy_j REAL;
    ALTER TABLE samples ADD COLUMN power_source TEXT;
    CREATE TABLE energy_hourly (
        hour_ms     INTEGER NOT NULL,
        agent       INTEGER NOT NULL,
        energy_j    REAL NOT NULL,
        measured_j  REAL NOT NULL,
        covered_ms  INTEGER NOT NULL,
        samples     INTEGER NOT NULL,
        PRIMARY KEY (hour_ms, agent)
    ) WITHOUT ROWID;",
    // 3: storage scan summaries: the latest on the agent's row, every one
    // in arrival order for history (one per scan, a few per day).
    "ALTER TABLE agents ADD COLUMN storage TEXT;
    CREATE TABLE storage_summaries (
        agent        INTEGER NOT NULL,
        finished_ms  INTEGER NOT NULL,
        received_ms  INTEGER NOT NULL,
        summary      TEXT NOT NULL
    );",
    // 4: the hourly roll-up also keeps what detectors need (CPU, network,
    // activity, memory); findings with their lifecycle; nudges with their
    // delivery state; per-host opt-outs.
    "ALTER TABLE energy_hourly ADD COLUMN cpu_weighted REAL NOT NULL DEFAULT 0;
    ALTER TABLE energy_hourly ADD COLUMN cpu_max REAL NOT NULL DEFAULT 0;
    ALTER TABLE energy_hourly ADD COLUMN net_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE energy_hourly ADD COLUMN active_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE energy_hourly ADD COLUMN mem_used_max INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE energy_hourly ADD COLUMN usage_ms INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE findings (
        id               TEXT PRIMARY KEY,
        kind             TEXT NOT NULL,
        agent_id         TEXT,
        subject          TEXT NOT NULL,
        state            TEXT NOT NULL,
        first_seen_ms    INTEGER NOT NULL,
        last_seen_ms     INTEGER NOT NULL,
        resolved_ms      INTEGER,
        snoozed_until_ms INTEGER,
        saving_kwh_year  REAL,
        saving_kg_year   REAL,
        saving_bytes     INTEGER,
        evidence         TEXT NOT NULL
    );
    CREATE TABLE nudges (
        id           TEXT PRIMARY KEY,
        agent_id     TEXT NOT NULL,
        finding_id   TEXT,
        kind         TEXT NOT NULL,
        lang         TEXT NOT NULL,
        title        TEXT NOT NULL,
        body         TEXT NOT NULL,
        action       TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        sent_ms      INTEGER,
        delivered_ms INTEGER,
        how          TEXT
    );
    CREATE INDEX nudges_by_agent ON nudges(agent_id, created_ms);
    CREATE TABLE nudge_optout (
        agent_id TEXT NOT NULL,
        kind     TEXT NOT NULL,
        PRIMARY KEY (agent_id, kind)
    ) WITHOUT ROWID;",
    // 5: Clean Up Day campaigns, each host's latest count, and the history
    // of counts (appended in arrival order).
    "CREATE TABLE campaigns (
        id                TEXT PRIMARY KEY,
        name              TEXT NOT NULL,
        starts_ms         INTEGER NOT NULL,
        ends_ms           INTEGER NOT NULL,
        scope             TEXT NOT NULL,
        factor            TEXT NOT NULL,
        state             TEXT NOT NULL,
        rescan_interval_s INTEGER NOT NULL,
        created_ms        INTEGER NOT NULL,
        started_ms        INTEGER,
        ended_ms          INTEGER
    );
    CREATE TABLE campaign_hosts (
        campaign_id     TEXT NOT NULL,
        agent_id        TEXT NOT NULL,
        command_sent_ms INTEGER,
        baseline_ms     INTEGER,
        counted_ms      INTEGER,
        final           INTEGER NOT NULL DEFAULT 0,
        error           TEXT,
        progress        TEXT,
        PRIMARY KEY (campaign_id, agent_id)
    ) WITHOUT ROWID;
    CREATE TABLE campaign_progress (
        campaign_id   TEXT NOT NULL,
        agent_id      TEXT NOT NULL,
        counted_ms    INTEGER NOT NULL,
        files_deleted INTEGER NOT NULL,
        bytes_deleted INTEGER NOT NULL
    );
    CREATE INDEX campaign_progress_by_campaign ON campaign_progress(campaign_id, counted_ms);",
    // 6: agent credentials (the key of each agent's envelope MACs) and
    // one-time enrolment tokens (stored as BLAKE3 hashes only).
    "CREATE TABLE credentials (
        agent_id   TEXT PRIMARY KEY,
        key        BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE enrol_tokens (
        token_hash BLOB PRIMARY KEY,
        agent_id   TEXT,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        used_ms    INTEGER,
        used_by    TEXT
    ) WITHOUT ROWID;",
    // 7: what the store used to dig out of JSON (group, site, the latest
    // scan's time) as plain columns, so that PostgreSQL answers the same
    // SQL; the leases that make periodic work run once per cluster.
    "ALTER TABLE agents ADD COLUMN grp TEXT NOT NULL DEFAULT '';
    ALTER TABLE agents ADD COLUMN site TEXT NOT NULL DEFAULT '';
    ALTER TABLE agents ADD COLUMN storage_finished_ms INTEGER;
    UPDATE agents SET grp = coalesce(json_extract(inventory, '$.group'), ''),
        site = coalesce(json_extract(inventory, '$.site'), '')
        WHERE inventory IS NOT NULL;
    UPDATE agents SET storage_finished_ms = json_extract(storage, '$.finished_at_ms')
        WHERE storage IS NOT NULL;
    ALTER TABLE samples ADD COLUMN node TEXT;
    CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        since_ms   INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 8: enrolment tokens for a group, used up to `uses_max` times,
    // revocable, and who used each (bulk roll-out, issue #18).
    "ALTER TABLE enrol_tokens ADD COLUMN grp TEXT;
    ALTER TABLE enrol_tokens ADD COLUMN uses_max INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE enrol_tokens ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE enrol_tokens ADD COLUMN revoked_ms INTEGER;
    UPDATE enrol_tokens SET uses = 1 WHERE used_ms IS NOT NULL;
    CREATE TABLE enrolments (
        token_hash BLOB NOT NULL,
        agent_id   TEXT NOT NULL,
        at_ms      INTEGER NOT NULL,
        PRIMARY KEY (token_hash, at_ms, agent_id)
    ) WITHOUT ROWID;",
];

/// PostgreSQL's migrations. Types are the 64-bit ones SQLite's INTEGER and
/// REAL stand for, flags are integers, JSON is text, and the tables whose
/// arrival order matters have an identity column named `rowid`, so that
/// the store's SQL reads the same on both engines.
const PG_MIGRATIONS: &[&str] = &[
    // 1: SQLite's schema 7, plus `samples.node`: the collector that wrote
    // a sample, whose sink sends it on.
    "CREATE TABLE agents (
        id                  BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        agent_id            TEXT NOT NULL UNIQUE,
        hostname            TEXT,
        first_seen_ms       BIGINT NOT NULL,
        last_seen_ms        BIGINT NOT NULL,
        online              BIGINT NOT NULL DEFAULT 0,
        transport           TEXT,
        inventory           TEXT,
        footprint           TEXT,
        seq_window          BYTEA,
        storage             TEXT,
        grp                 TEXT NOT NULL DEFAULT '',
        site                TEXT NOT NULL DEFAULT '',
        storage_finished_ms BIGINT
    );
    CREATE TABLE samples (
        rowid          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        node           TEXT,
        agent          BIGINT NOT NULL,
        seq            BIGINT NOT NULL,
        sent_ms        BIGINT NOT NULL,
        received_ms    BIGINT NOT NULL,
        interval_ms    BIGINT,
        cpu_percent    DOUBLE PRECISION,
        mem_total      BIGINT,
        mem_available  BIGINT,
        swap_total     BIGINT,
        swap_used      BIGINT,
        disk_read      BIGINT,
        disk_written   BIGINT,
        net_rx         BIGINT,
        net_tx         BIGINT,
        load1          DOUBLE PRECISION,
        load5          DOUBLE PRECISION,
        load15         DOUBLE PRECISION,
        uptime_s       BIGINT,
        user_sessions  BIGINT,
        input_idle_s   BIGINT,
        user_active    BIGINT,
        agent_cpu_s    DOUBLE PRECISION,
        agent_rss      BIGINT,
        agent_sent     BIGINT,
        power_w        DOUBLE PRECISION,
        energy_j       DOUBLE PRECISION,
        power_source   TEXT
    );
    CREATE INDEX samples_by_arrival ON samples(received_ms);
    CREATE INDEX samples_by_node ON samples(node, rowid);
    CREATE TABLE energy_hourly (
        hour_ms      BIGINT NOT NULL,
        agent        BIGINT NOT NULL,
        energy_j     DOUBLE PRECISION NOT NULL,
        measured_j   DOUBLE PRECISION NOT NULL,
        covered_ms   BIGINT NOT NULL,
        samples      BIGINT NOT NULL,
        cpu_weighted DOUBLE PRECISION NOT NULL DEFAULT 0,
        cpu_max      DOUBLE PRECISION NOT NULL DEFAULT 0,
        net_bytes    BIGINT NOT NULL DEFAULT 0,
        active_ms    BIGINT NOT NULL DEFAULT 0,
        mem_used_max BIGINT NOT NULL DEFAULT 0,
        usage_ms     BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (hour_ms, agent)
    );
    CREATE TABLE storage_summaries (
        agent        BIGINT NOT NULL,
        finished_ms  BIGINT NOT NULL,
        received_ms  BIGINT NOT NULL,
        summary      TEXT NOT NULL
    );
    CREATE TABLE findings (
        id               TEXT PRIMARY KEY,
        kind             TEXT NOT NULL,
        agent_id         TEXT,
        subject          TEXT NOT NULL,
        state            TEXT NOT NULL,
        first_seen_ms    BIGINT NOT NULL,
        last_seen_ms     BIGINT NOT NULL,
        resolved_ms      BIGINT,
        snoozed_until_ms BIGINT,
        saving_kwh_year  DOUBLE PRECISION,
        saving_kg_year   DOUBLE PRECISION,
        saving_bytes     BIGINT,
        evidence         TEXT NOT NULL
    );
    CREATE TABLE nudges (
        id           TEXT PRIMARY KEY,
        agent_id     TEXT NOT NULL,
        finding_id   TEXT,
        kind         TEXT NOT NULL,
        lang         TEXT NOT NULL,
        title        TEXT NOT NULL,
        body         TEXT NOT NULL,
        action       TEXT NOT NULL,
        created_ms   BIGINT NOT NULL,
        sent_ms      BIGINT,
        delivered_ms BIGINT,
        how          TEXT
    );
    CREATE INDEX nudges_by_agent ON nudges(agent_id, created_ms);
    CREATE TABLE nudge_optout (
        agent_id TEXT NOT NULL,
        kind     TEXT NOT NULL,
        PRIMARY KEY (agent_id, kind)
    );
    CREATE TABLE campaigns (
        id                TEXT PRIMARY KEY,
        name              TEXT NOT NULL,
        starts_ms         BIGINT NOT NULL,
        ends_ms           BIGINT NOT NULL,
        scope             TEXT NOT NULL,
        factor            TEXT NOT NULL,
        state             TEXT NOT NULL,
        rescan_interval_s BIGINT NOT NULL,
        created_ms        BIGINT NOT NULL,
        started_ms        BIGINT,
        ended_ms          BIGINT
    );
    CREATE TABLE campaign_hosts (
        campaign_id     TEXT NOT NULL,
        agent_id        TEXT NOT NULL,
        command_sent_ms BIGINT,
        baseline_ms     BIGINT,
        counted_ms      BIGINT,
        final           BIGINT NOT NULL DEFAULT 0,
        error           TEXT,
        progress        TEXT,
        PRIMARY KEY (campaign_id, agent_id)
    );
    CREATE TABLE campaign_progress (
        rowid         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        campaign_id   TEXT NOT NULL,
        agent_id      TEXT NOT NULL,
        counted_ms    BIGINT NOT NULL,
        files_deleted BIGINT NOT NULL,
        bytes_deleted BIGINT NOT NULL
    );
    CREATE INDEX campaign_progress_by_campaign ON campaign_progress(campaign_id, counted_ms);
    CREATE TABLE credentials (
        agent_id   TEXT PRIMARY KEY,
        key        BYTEA NOT NULL,
        created_ms BIGINT NOT NULL,
        revoked_ms BIGINT
    );
    CREATE TABLE enrol_tokens (
        token_hash BYTEA PRIMARY KEY,
        agent_id   TEXT,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        used_ms    BIGINT,
        used_by    TEXT
    );
    CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        since_ms   BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    );",
    // 2: SQLite's 8 (group enrolment tokens and who used them).
    "ALTER TABLE enrol_tokens ADD COLUMN grp TEXT;
    ALTER TABLE enrol_tokens ADD COLUMN uses_max BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE enrol_tokens ADD COLUMN uses BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE enrol_tokens ADD COLUMN revoked_ms BIGINT;
    UPDATE enrol_tokens SET uses = 1 WHERE used_ms IS NOT NULL;
    CREATE TABLE enrolments (
        token_hash BYTEA NOT NULL,
        agent_id   TEXT NOT NULL,
        at_ms      BIGINT NOT NULL,
        PRIMARY KEY (token_hash, at_ms, agent_id)
    );",
];

/// Schema version this build writes on PostgreSQL.
pub const PG_VERSION: u32 = PG_MIGRATIONS.len() as u32;

/// Arbitrary key of the advisory lock that serialises migrations when
/// several collectors start at once ("sobre" in ASCII).
const MIGRATION_LOCK: i64 = 0x0073_6f62_7265;

/// Applies the PostgreSQL migrations this database has not seen, under an
/// advisory lock, each in its own transaction.
pub fn migrate_postgres(pg: &Postgres) -> Result<(), SchemaError> {
    let err = |to| move |source| SchemaError::MigratePg { to, source };
    pg.batch(&format!(
        "CREATE TABLE IF NOT EXISTS sobre_schema (version BIGINT NOT NULL);
         SELECT pg_advisory_lock({MIGRATION_LOCK});"
    ))
    .map_err(err(0))?;
    let result = (|| {
        let db: &dyn Db = pg;
        let found: Option<i64> = db
            .query_row("SELECT max(version) FROM sobre_schema", &[], |r| r.get(0))
            .map_err(err(0))?;
        let found = found.unwrap_or(0) as u32;
        if found > PG_VERSION {
            return Err(SchemaError::TooNew {
                found,
                knows: PG_VERSION,
            });
        }
        for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(found as usize) {
            let to = i as u32 + 1;
            pg.batch(&format!(
                "BEGIN; {sql}; DELETE FROM sobre_schema; INSERT INTO sobre_schema VALUES ({to}); COMMIT;"
            ))
            .map_err(err(to))?;
            tracing::info!(version = to, "PostgreSQL store migrated");
        }
        Ok(())
    })();
    if let Err(e) = pg.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")) {
        tracing::warn!(error = %e, "could not release the migration lock; it goes with the connection");
    }
    result
}

/// Schema version this build writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the store was written by a newer Sobre (schema {found}, this build knows {knows}); upgrade the collector or point the store elsewhere"
    )]
    TooNew { found: u32, knows: u32 },
    #[error("migrating the store to schema {to}: {source}")]
    Migrate { to: u32, source: rusqlite::Error },
    #[error("migrating the PostgreSQL store to schema {to}: {source}")]
    MigratePg { to: u32, source: DbError },
}

/// Applies the migrations this database has not seen, each in its own
/// transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let found: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| SchemaError::Migrate { to: 0, source })?;
    if found > VERSION {
        return Err(SchemaError::TooNew {
            found,
            knows: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = i as u32 + 1;
        let err = |source| SchemaError::Migrate { to, source };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", to).map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let mut c = Connection::open_in_memory().expect("open");
        migrate(&mut c).expect("first");
        migrate(&mut c).expect("idempotent");
        let v: u32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, VERSION);
        c.pragma_update(None, "user_version", VERSION + 1)
            .expect("bump");
        assert!(matches!(migrate(&mut c), Err(SchemaError::TooNew { .. })));
    }
}
