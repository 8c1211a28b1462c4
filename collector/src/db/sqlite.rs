//! [`Db`] on the embedded SQLite (rusqlite): statements are prepared once
//! and cached by their text, arguments are bound without copies.

use super::{Cell, Db, DbError, Output, Row, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

/// Statements kept prepared per connection (the store has about a hundred).
const CACHE: usize = 256;

/// One SQLite connection.
pub struct Sqlite(Connection);

impl Sqlite {
    pub fn new(conn: Connection) -> Sqlite {
        conn.set_prepared_statement_cache_capacity(CACHE);
        Sqlite(conn)
    }

    /// The rusqlite connection, for what only SQLite has (pragmas,
    /// migrations, the offline tools).
    pub fn conn(&self) -> &Connection {
        &self.0
    }

    pub fn into_inner(self) -> Connection {
        self.0
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(v),
            Value::Real(v) => ValueRef::Real(v),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Db for Sqlite {
    fn run(&self, sql: &str, args: &[Value<'_>]) -> Result<Output, DbError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        if columns == 0 {
            let changed = stmt.execute(rusqlite::params_from_iter(args.iter()))?;
            return Ok(Output {
                rows: Vec::new(),
                changed: changed as u64,
            });
        }
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Row(Vec::with_capacity(columns));
            fill(&mut row, r, columns)?;
            out.push(row);
        }
        drop(rows);
        // A write with RETURNING changed as many rows as it returned.
        let changed = if stmt.readonly() { 0 } else { out.len() as u64 };
        Ok(Output { rows: out, changed })
    }

    /// One [`Row`] refilled for every row read: no allocation per row, and
    /// a text column reuses the previous row's string.
    fn each(
        &self,
        sql: &str,
        args: &[Value<'_>],
        f: &mut dyn FnMut(&Row) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
        let mut row = Row(Vec::with_capacity(columns));
        while let Some(r) = rows.next()? {
            fill(&mut row, r, columns)?;
            f(&row)?;
        }
        Ok(())
    }
}

/// Makes `row` hold the `columns` values of `r`, reusing its cells' text
/// and blob buffers where the same column held one before.
fn fill(row: &mut Row, r: &rusqlite::Row<'_>, columns: usize) -> Result<(), DbError> {
    row.0.resize(columns, Cell::Null);
    for (i, cell) in row.0.iter_mut().enumerate() {
        match (r.get_ref(i)?, cell) {
            (ValueRef::Null, cell) => *cell = Cell::Null,
            (ValueRef::Integer(v), cell) => *cell = Cell::Int(v),
            (ValueRef::Real(v), cell) => *cell = Cell::Real(v),
            (ValueRef::Text(t), Cell::Text(s)) => {
                s.clear();
                s.push_str(&String::from_utf8_lossy(t));
            }
            (ValueRef::Text(t), cell) => {
                *cell = Cell::Text(String::from_utf8_lossy(t).into_owned())
            }
            (ValueRef::Blob(b), Cell::Blob(v)) => {
                v.clear();
                v.extend_from_slice(b);
            }
            (ValueRef::Blob(b), cell) => *cell = Cell::Blob(b.to_vec()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hands_over_the_same_rows_as_run_while_reusing_one_row() {
        let db = Sqlite::new(Connection::open_in_memory().expect("sqlite"));
        let conn: &dyn Db = &db;
        conn.execute("CREATE TABLE t (i INTEGER, x)", &[])
            .expect("create");
        // Text then NULL then shorter text, a blob where text was, a real
        // where a blob was: every cell kind replaces every other.
        for (i, x) in [
            (1, Value::Text("a long power source")),
            (2, Value::Null),
            (3, Value::Text("ab")),
            (4, Value::Blob(&[0, 1, 2])),
            (5, Value::Real(2.5)),
            (6, Value::Text("ünïcode")),
        ] {
            conn.execute("INSERT INTO t VALUES (?1, ?2)", &[Value::Int(i), x])
                .expect("insert");
        }
        let sql = "SELECT i, x FROM t WHERE i > ?1 ORDER BY i";
        let all = conn.run(sql, &[Value::Int(0)]).expect("run").rows;
        let mut streamed = Vec::new();
        conn.each(sql, &[Value::Int(0)], &mut |r| {
            streamed.push(r.clone());
            Ok(())
        })
        .expect("each");
        assert_eq!(streamed, all);
        assert_eq!(all.len(), 6);
        assert_eq!(all[2].text(1).expect("text"), Some("ab"));
        assert_eq!(all[1].text(1).expect("null"), None);
        assert!(all[3].text(1).is_err(), "a blob is not text");
        // An error from the callback stops the read and is returned.
        let mut seen = 0;
        let stopped = conn.each(sql, &[Value::Int(0)], &mut |_| {
            seen += 1;
            Err(DbError::NoRows)
        });
        assert!(matches!(stopped, Err(DbError::NoRows)));
        assert_eq!(seen, 1);
    }
}
