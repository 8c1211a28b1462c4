//! The SQL seam under the store: one trait, [`Db`], with one required
//! method, implemented by the embedded SQLite (`sqlite.rs`) and by
//! PostgreSQL (`postgres.rs`). The store's modules write their SQL once, in
//! the subset both engines answer the same way (`?N` placeholders,
//! `ON CONFLICT … DO UPDATE`, `RETURNING`, `CASE` rather than two-argument
//! `max`, integers for flags), and the conformance suite
//! (`store/conformance.rs`) runs the same store operations on both.
//!
//! The few statements that cannot be shared branch on [`Db::engine`]
//! (row locks, which only PostgreSQL needs, because only it is shared by
//! several collectors).

pub mod postgres;
pub mod sqlite;

use std::fmt;

/// Which engine answers: the store branches on it only where the SQL or the
/// concurrency model differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One collector process owns the file.
    Sqlite,
    /// Several collectors may share the database.
    Postgres,
}

/// A statement argument, borrowed from the caller (no copy of text or
/// bytes on the way to the engine).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// One value of a result row, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value<'_> {
    /// The same value, owned.
    pub fn to_cell(&self) -> Cell {
        match *self {
            Value::Null => Cell::Null,
            Value::Int(v) => Cell::Int(v),
            Value::Real(v) => Cell::Real(v),
            Value::Text(s) => Cell::Text(s.to_owned()),
            Value::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

impl Cell {
    /// The same value, borrowed.
    pub fn as_value(&self) -> Value<'_> {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(v) => Value::Int(*v),
            Cell::Real(v) => Value::Real(*v),
            Cell::Text(s) => Value::Text(s),
            Cell::Blob(b) => Value::Blob(b),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Int(_) => "integer",
            Cell::Real(_) => "real",
            Cell::Text(_) => "text",
            Cell::Blob(_) => "blob",
        }
    }
}

/// What a statement gave back: its rows (none for most writes) and how
/// many rows it changed.
#[derive(Debug, Default)]
pub struct Output {
    pub rows: Vec<Row>,
    pub changed: u64,
}

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", pg_message(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error(
        "the connection to the database was lost in the middle of a transaction; it is retried whole"
    )]
    Closed,
    #[error("cannot start the database connection's thread: {0}")]
    Thread(std::io::Error),
    #[error("the query returned no row")]
    NoRows,
    #[error("column {column}: expected {expected}, found {found}")]
    Type {
        column: usize,
        expected: &'static str,
        found: &'static str,
    },
    #[error("column {0} is out of range for this row")]
    Column(usize),
    #[error("PostgreSQL column type {0} is not one the store reads; cast it in the query")]
    Unsupported(String),
}

/// The server's own words when it refused a statement (the client's
/// `Display` only says "db error").
fn pg_message(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// A connection to one store database.
///
/// Implementations take `&self` (the engines' clients are used from one
/// thread at a time, behind the store's own locks) and are `Send` so a
/// connection can live on the writer thread or behind a mutex.
pub trait Db: Send {
    /// Runs one statement with `?1…?N` placeholders bound to `args`.
    fn run(&self, sql: &str, args: &[Value<'_>]) -> Result<Output, DbError>;

    /// Runs a query and hands its rows to `f` one at a time, in order, as
    /// the engine reads them. For long reads on a hot path (the sink reads
    /// 5,000 samples of 27 columns a batch): an engine may then reuse one
    /// row's storage instead of keeping every row. This default collects
    /// them with [`Db::run`].
    fn each(
        &self,
        sql: &str,
        args: &[Value<'_>],
        f: &mut dyn FnMut(&Row) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        self.run(sql, args)?.rows.iter().try_for_each(f)
    }

    /// The engine behind this connection.
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }
}

impl<T: Db + ?Sized> Db for Box<T> {
    fn run(&self, sql: &str, args: &[Value<'_>]) -> Result<Output, DbError> {
        (**self).run(sql, args)
    }

    fn each(
        &self,
        sql: &str,
        args: &[Value<'_>],
        f: &mut dyn FnMut(&Row) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        (**self).each(sql, args, f)
    }

    fn engine(&self) -> Engine {
        (**self).engine()
    }
}

/// The conveniences the store uses, on any connection.
impl dyn Db + '_ {
    /// Runs a statement and returns how many rows it changed.
    pub fn execute(&self, sql: &str, args: &[Value<'_>]) -> Result<u64, DbError> {
        Ok(self.run(sql, args)?.changed)
    }

    /// The first row mapped by `f`, or [`DbError::NoRows`].
    pub fn query_row<T>(
        &self,
        sql: &str,
        args: &[Value<'_>],
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let out = self.run(sql, args)?;
        match out.rows.first() {
            Some(r) => f(r),
            None => Err(DbError::NoRows),
        }
    }

    /// Every row mapped by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        args: &[Value<'_>],
        f: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        self.run(sql, args)?.rows.iter().map(f).collect()
    }

    /// Runs `f` in a transaction: committed if it returns `Ok`, rolled
    /// back otherwise. Not re-entrant.
    ///
    /// On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): a
    /// transaction that reads and then writes would otherwise fail with
    /// "database is locked" (SQLITE_BUSY_SNAPSHOT, no busy wait) whenever
    /// another connection committed in between, which the store writer
    /// does all the time; taking the lock first waits its turn instead.
    pub fn transaction<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&dyn Db) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run(
            match self.engine() {
                Engine::Sqlite => "BEGIN IMMEDIATE",
                Engine::Postgres => "BEGIN",
            },
            &[],
        )?;
        match f(self) {
            Ok(v) => {
                self.run("COMMIT", &[])?;
                Ok(v)
            }
            Err(e) => {
                // The error that matters is the one that made us roll back.
                if let Err(rb) = self.run("ROLLBACK", &[]) {
                    tracing::warn!(error = %rb, "rollback failed");
                }
                Err(e)
            }
        }
    }
}

/// `.optional()` on a single-row query, as rusqlite spells it.
pub trait OptionalExt<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> OptionalExt<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One result row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    /// Column `i` converted to `T`.
    pub fn get<T: FromCell>(&self, i: usize) -> Result<T, DbError> {
        let c = self.0.get(i).ok_or_else(|| DbError::Column(i))?;
        // Built only on failure: an eagerly built error was made and
        // dropped for every cell the sink read (perf, bench/sink.sh).
        T::from_cell(c).ok_or_else(|| DbError::Type {
            column: i,
            expected: T::EXPECTED,
            found: c.kind(),
        })
    }

    /// Column `i` as text borrowed from the row (`None` when NULL): no
    /// copy, for reads that reuse their own strings.
    pub fn text(&self, i: usize) -> Result<Option<&str>, DbError> {
        match self.0.get(i).ok_or_else(|| DbError::Column(i))? {
            Cell::Null => Ok(None),
            Cell::Text(s) => Ok(Some(s)),
            c => Err(DbError::Type {
                column: i,
                expected: "text",
                found: c.kind(),
            }),
        }
    }
}

/// A Rust type a [`Cell`] converts to.
pub trait FromCell: Sized {
    const EXPECTED: &'static str;
    fn from_cell(c: &Cell) -> Option<Self>;
}

impl FromCell for i64 {
    const EXPECTED: &'static str = "integer";
    fn from_cell(c: &Cell) -> Option<i64> {
        match c {
            Cell::Int(v) => Some(*v),
            _ => None,
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl FromCell for $t {
            const EXPECTED: &'static str = "integer in range";
            fn from_cell(c: &Cell) -> Option<$t> {
                match c {
                    Cell::Int(v) => <$t>::try_from(*v).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
from_int!(i32, u32, u64, usize);

impl FromCell for bool {
    const EXPECTED: &'static str = "integer 0/1";
    fn from_cell(c: &Cell) -> Option<bool> {
        match c {
            Cell::Int(v) => Some(*v != 0),
            _ => None,
        }
    }
}

impl FromCell for f64 {
    const EXPECTED: &'static str = "number";
    fn from_cell(c: &Cell) -> Option<f64> {
        match c {
            Cell::Real(v) => Some(*v),
            // SQLite keeps a whole REAL as an integer in some results
            // (sums, literals): the value is the same.
            Cell::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
}

impl FromCell for String {
    const EXPECTED: &'static str = "text";
    fn from_cell(c: &Cell) -> Option<String> {
        match c {
            Cell::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromCell for Vec<u8> {
    const EXPECTED: &'static str = "blob";
    fn from_cell(c: &Cell) -> Option<Vec<u8>> {
        match c {
            Cell::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_cell(c: &Cell) -> Option<Option<T>> {
        match c {
            Cell::Null => Some(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// What can be a statement argument, borrowed.
pub trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

macro_rules! to_int {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value<'_> {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
to_int!(i64, i32, u32, u16, u8, bool);

impl ToValue for f64 {
    fn to_value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}
impl ToValue for f32 {
    fn to_value(&self) -> Value<'_> {
        Value::Real(f64::from(*self))
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl ToValue for Value<'_> {
    fn to_value(&self) -> Value<'_> {
        *self
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// Statement arguments, borrowed: `args![a, b]` is
/// `&[a.to_value(), b.to_value()]`. Use it inside the call that runs the
/// statement (its temporaries live as long as that call).
#[macro_export]
macro_rules! args {
    () => { &[] as &[$crate::db::Value<'_>] };
    ($($v:expr),+ $(,)?) => {
        &[$($crate::db::ToValue::to_value(&$v)),+] as &[$crate::db::Value<'_>]
    };
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "SQLite",
            Engine::Postgres => "PostgreSQL",
        })
    }
}
