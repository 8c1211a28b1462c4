//! [`Db`] on PostgreSQL, through the synchronous `postgres` client (pure
//! Rust, no libpq). Statements are written with SQLite's `?N`
//! placeholders, rewritten once to `$N` and prepared once per connection.
//!
//! The client drives its own small runtime, which must never run inside
//! the collector's (tokio refuses to nest them, when connecting, querying
//! or even closing). So each connection lives on its own thread; [`run`]
//! hands it the statement (arguments copied) and waits for the answer,
//! which is what a blocking store call does anyway.
//!
//! [`run`]: Db::run

use super::{Cell, Db, DbError, Engine, Output, Row, Value};
use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::mpsc;

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// One PostgreSQL connection, on its own thread, reopened after the server
/// went away (never in the middle of a transaction: that one fails, and
/// is retried whole by its caller).
pub struct Postgres {
    jobs: mpsc::Sender<Job>,
}

/// The connection's state, owned by its thread.
struct Session {
    config: postgres::Config,
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    in_tx: bool,
}

impl Postgres {
    /// Connects to `url` (`postgres://user:password@host:port/db`).
    pub fn connect(url: &str) -> Result<Postgres, DbError> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_application_name().is_none() {
            config.application_name("sobre-collector");
        }
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let mut session = Session {
                    config,
                    client: None,
                    statements: HashMap::new(),
                    in_tx: false,
                };
                // Ends when the last sender (the Postgres) is dropped.
                while let Ok(job) = rx.recv() {
                    job(&mut session);
                }
            })
            .map_err(DbError::Thread)?;
        let pg = Postgres { jobs };
        pg.call(|s| s.with_client(|_| Ok(())))?;
        Ok(pg)
    }

    /// Runs several statements without arguments (migrations).
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        let sql = sql.to_owned();
        self.call(move |s| s.with_client(|c| c.batch_execute(&sql)))
    }

    /// Runs `f` on the connection's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| DbError::Closed)?;
        rx.recv().map_err(|_| DbError::Closed)?
    }
}

impl Session {
    fn closed(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }

    fn with_client<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            if self.in_tx {
                // Reconnecting now would run the rest of the transaction
                // outside it: fail, the caller rolls back and retries.
                return Err(DbError::Closed);
            }
            self.statements.clear();
            self.client = None;
            self.client = Some(self.config.connect(NoTls)?);
        }
        let client = self
            .client
            .as_mut()
            .expect("invariant: the slot was filled just above");
        Ok(f(client)?)
    }

    fn run(&mut self, sql: &str, args: &[Cell]) -> Result<Output, DbError> {
        if let "BEGIN" | "COMMIT" | "ROLLBACK" = sql {
            let r = if sql == "ROLLBACK" && self.client.as_ref().is_none_or(Client::is_closed) {
                // A dead connection has rolled back by itself.
                Ok(())
            } else {
                self.with_client(|c| c.batch_execute(sql))
            };
            self.in_tx = sql == "BEGIN" && r.is_ok();
            r?;
            return Ok(Output::default());
        }
        // Reconnect first if the server went away: that empties the
        // statement cache, whose statements belonged to the old session.
        self.with_client(|_| Ok(()))?;
        let stmt = match self.statements.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = self.with_client(|c| c.prepare(&dollar_placeholders(sql)))?;
                self.statements.insert(sql.to_owned(), s.clone());
                s
            }
        };
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        if stmt.columns().is_empty() {
            let changed = self.with_client(|c| c.execute(&stmt, &params))?;
            return Ok(Output {
                rows: Vec::new(),
                changed,
            });
        }
        let rows = self.with_client(|c| c.query(&stmt, &params))?;
        let rows = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
        Ok(Output {
            changed: rows.len() as u64,
            rows,
        })
    }
}

impl Db for Postgres {
    fn run(&self, sql: &str, args: &[Value<'_>]) -> Result<Output, DbError> {
        let sql = sql.to_owned();
        let args: Vec<Cell> = args.iter().map(Value::to_cell).collect();
        self.call(move |s| {
            let first = s.run(&sql, &args);
            // A server that restarted closed our connection; the client
            // learns it from the first statement that fails. Outside a
            // transaction that statement is simply run again on a new
            // connection; inside one, the caller retries the whole.
            match first {
                Err(DbError::Postgres(_)) if !s.in_tx && s.closed() => s.run(&sql, &args),
                other => other,
            }
        })
    }

    fn engine(&self) -> Engine {
        Engine::Postgres
    }
}

fn row(r: &postgres::Row) -> Result<Row, DbError> {
    let mut cells = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let cell = match *ty {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
            Type::INT4 => r.try_get::<_, Option<i32>>(i)?.map(|v| Cell::Int(v.into())),
            Type::INT2 => r.try_get::<_, Option<i16>>(i)?.map(|v| Cell::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Cell::Int(v.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Cell::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Cell::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                r.try_get::<_, Option<String>>(i)?.map(Cell::Text)
            }
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob),
            _ => return Err(DbError::Unsupported(ty.name().to_owned())),
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

/// `?N` → `$N`, outside quoted strings and identifiers.
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

impl ToSql for Cell {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        self.as_value().to_sql(ty, out)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match (*self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Value::Int(v), &Type::INT4) => i32::try_from(v)?.to_sql(ty, out),
            (Value::Int(v), &Type::INT2) => i16::try_from(v)?.to_sql(ty, out),
            (Value::Int(v), &Type::BOOL) => (v != 0).to_sql(ty, out),
            (Value::Int(v), &Type::FLOAT8) => (v as f64).to_sql(ty, out),
            (Value::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Value::Real(v), &Type::FLOAT4) => (v as f32).to_sql(ty, out),
            (Value::Text(s), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                s.to_sql(ty, out)
            }
            (Value::Blob(b), &Type::BYTEA) => b.to_sql(ty, out),
            // The value itself is not shown: it may be a key or a token.
            (v, ty) => Err(format!(
                "a {} argument cannot be bound to a {} parameter",
                kind(&v),
                ty.name()
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Int(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Blob(_) => "blob",
    }
}

#[cfg(test)]
mod tests {
    use super::dollar_placeholders;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d > ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d > $12"
        );
        assert_eq!(dollar_placeholders("SELECT ? FROM t"), "SELECT ? FROM t");
    }
}
