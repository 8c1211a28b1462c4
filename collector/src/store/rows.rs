//! Multi-row statements. On PostgreSQL every statement is a round trip,
//! so the writer sends a batch's samples and roll-ups as a few INSERTs of
//! up to [`MAX_ROWS`] rows each; SQLite, in process, runs the same rows
//! through one cached single-row statement (nothing to save, and one
//! statement text instead of one per row count).

use crate::db::{Db, DbError, Engine, Value};

/// Most rows in one PostgreSQL statement (its limit is 65,535 arguments).
pub const MAX_ROWS: usize = 256;

/// `(?1, ?2, ?3), (?4, ?5, ?6)` for `rows` rows of `cols` columns.
pub fn values(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('?');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

/// Runs `head VALUES … tail` for every row of `args` (`cols` values each,
/// one row after the other).
pub fn insert(
    tx: &dyn Db,
    head: &str,
    tail: &str,
    cols: usize,
    args: &[Value<'_>],
) -> Result<(), DbError> {
    debug_assert_eq!(args.len() % cols, 0);
    if args.is_empty() {
        return Ok(());
    }
    let per = match tx.engine() {
        Engine::Sqlite => 1,
        Engine::Postgres => MAX_ROWS,
    };
    let mut last: Option<(usize, String)> = None;
    for chunk in args.chunks(per * cols) {
        let rows = chunk.len() / cols;
        let sql = match &last {
            Some((n, sql)) if *n == rows => sql,
            _ => {
                let sql = format!("{head} VALUES {} {tail}", values(rows, cols));
                &last.insert((rows, sql)).1
            }
        };
        tx.execute(sql, chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(values(1, 2), "(?1, ?2)");
        assert_eq!(values(2, 3), "(?1, ?2, ?3), (?4, ?5, ?6)");
    }
}
