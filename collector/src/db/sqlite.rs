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
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                cells.push(match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            out.push(Row(cells));
        }
        drop(rows);
        // A write with RETURNING changed as many rows as it returned.
        let changed = if stmt.readonly() { 0 } else { out.len() as u64 };
        Ok(Output { rows: out, changed })
    }
}
