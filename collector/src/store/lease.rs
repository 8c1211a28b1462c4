//! Leases: periodic work (detectors, nudges, campaign dispatch, the
//! sink's fleet-wide points) runs on one collector of a cluster at a time.
//! A lease is a row `(name, holder, expires_ms)`; taking it is one upsert
//! that succeeds only if the row is free, expired, or already ours, so the
//! database decides and no clock but the collectors' is involved. A holder
//! that dies stops renewing and another collector takes over when the
//! lease expires. On SQLite there is one collector, which always wins.

use crate::args;
use crate::db::{Db, DbError};

/// Takes or renews `name` for `holder` until `now_ms + ttl_ms`. True when
/// `holder` holds it after the call.
pub fn acquire(
    db: &dyn Db,
    name: &str,
    holder: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<bool, DbError> {
    // `since_ms` is kept when the holder renews: it says since when
    // this collector has done the work.
    let changed = db.execute(
        "INSERT INTO leases (name, holder, since_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET
            holder = excluded.holder,
            since_ms = CASE WHEN leases.holder = excluded.holder THEN leases.since_ms
                            ELSE excluded.since_ms END,
            expires_ms = excluded.expires_ms
         WHERE leases.holder = excluded.holder OR leases.expires_ms <= excluded.since_ms",
        args![name, holder, now_ms, now_ms + ttl_ms],
    )?;
    Ok(changed == 1)
}

/// Gives `name` up at once if `holder` has it (a clean stop), so another
/// collector need not wait for it to expire.
pub fn release(db: &dyn Db, name: &str, holder: &str) -> Result<(), DbError> {
    db.execute(
        "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
        args![name, holder],
    )?;
    Ok(())
}

/// Who holds `name` now, and since when: `None` when nobody does.
pub fn holder(db: &dyn Db, name: &str, now_ms: i64) -> Result<Option<(String, i64)>, DbError> {
    use crate::db::OptionalExt;
    db.query_row(
        "SELECT holder, since_ms FROM leases WHERE name = ?1 AND expires_ms > ?2",
        args![name, now_ms],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}
