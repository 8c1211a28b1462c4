//! [`Db`] on PostgreSQL, through the synchronous `postgres` client (pure
//! Rust, no libpq). Statements are written with SQLite's `?N`
//! placeholders, rewritten once to `$N` and prepared once per connection.
//!
//! The client runs its own small runtime, so it must be called from a
//! thread that is not driving async tasks: the writer thread, or
//! `spawn_blocking`, which is how the store is used everywhere.

use super::{Cell, Db, DbError, Engine, Output, Row, Value};
use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};
use std::cell::{Cell as Flag, RefCell};
use std::collections::HashMap;
use std::error::Error as StdError;

/// One PostgreSQL connection, reopened after the server went away (never
/// in the middle of a transaction: that one fails, and is retried whole by
/// its caller).
pub struct Postgres {
    config: postgres::Config,
    client: RefCell<Option<Client>>,
    statements: RefCell<HashMap<String, Statement>>,
    in_tx: Flag<bool>,
}

impl Postgres {
    /// Connects to `url` (`postgres://user:password@host:port/db`).
    pub fn connect(url: &str) -> Result<Postgres, DbError> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_application_name().is_none() {
            config.application_name("sobre-collector");
        }
        let client = config.connect(NoTls)?;
        Ok(Postgres {
            config,
            client: RefCell::new(Some(client)),
            statements: RefCell::new(HashMap::new()),
            in_tx: Flag::new(false),
        })
    }

    /// Runs several statements without arguments (migrations).
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        self.with_client(|c| c.batch_execute(sql))?;
        Ok(())
    }

    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            if self.in_tx.get() {
                // Reconnecting now would run the rest of the transaction
                // outside it: fail, the caller rolls back and retries.
                return Err(DbError::Closed);
            }
            self.statements.borrow_mut().clear();
            *slot = None;
            *slot = Some(self.config.connect(NoTls)?);
        }
        let client = slot
            .as_mut()
            .expect("invariant: the slot was filled just above");
        Ok(f(client)?)
    }

    fn statement(&self, client: &mut Client, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(&dollar_placeholders(sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl Db for Postgres {
    fn run(&self, sql: &str, args: &[Value<'_>]) -> Result<Output, DbError> {
        match sql {
            "BEGIN" | "COMMIT" | "ROLLBACK" => {
                let r = if sql == "ROLLBACK" && self.in_tx.get() {
                    // A dead connection has rolled back by itself.
                    let alive = self
                        .client
                        .borrow()
                        .as_ref()
                        .is_some_and(|c| !c.is_closed());
                    if alive {
                        self.with_client(|c| c.batch_execute(sql))
                    } else {
                        Ok(())
                    }
                } else {
                    self.with_client(|c| c.batch_execute(sql))
                };
                self.in_tx.set(sql == "BEGIN" && r.is_ok());
                r?;
                return Ok(Output::default());
            }
            _ => {}
        }
        self.with_client(|c| {
            let stmt = self.statement(c, sql)?;
            let params: Vec<&(dyn ToSql + Sync)> =
                args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            if stmt.columns().is_empty() {
                let changed = c.execute(&stmt, &params)?;
                return Ok(Ok(Output {
                    rows: Vec::new(),
                    changed,
                }));
            }
            let rows = c.query(&stmt, &params)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                match row(r) {
                    Ok(row) => out.push(row),
                    Err(e) => return Ok(Err(e)),
                }
            }
            let changed = out.len() as u64;
            Ok(Ok(Output { rows: out, changed }))
        })?
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
