//! The embedded SQLite store: one writer thread that commits batches and
//! then releases acks, and a read side for the HTTP API.

pub mod campaigns;
pub mod dedup;
pub mod findings;
pub mod read;
pub mod schema;
pub mod writer;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use read::Reader;
pub use writer::{AckBatch, Writer};

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create data directory {path}: {source}; check data_dir in the config and its permissions"
    )]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the SQLite store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    #[error("store query failed: {0}")]
    Query(#[from] rusqlite::Error),
}

/// File name of the store inside `data_dir`.
pub const FILE: &str = "sobre.sqlite";

/// Opens (creating if needed) the store and brings its schema up to date.
pub fn open(data_dir: &Path, sync_full: bool) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let path = data_dir.join(FILE);
    let err = |source| StoreError::Open {
        path: path.clone(),
        source,
    };
    let mut conn = Connection::open(&path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync_full { "FULL" } else { "NORMAL" },
    )
    .map_err(err)?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// A second connection for readers; WAL lets it read while the writer
/// commits.
pub fn open_reader(data_dir: &Path) -> Result<Connection, StoreError> {
    let path = data_dir.join(FILE);
    let err = |source| StoreError::Open {
        path: path.clone(),
        source,
    };
    let conn = Connection::open(&path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "query_only", true).map_err(err)?;
    Ok(conn)
}
