//! The store: the embedded SQLite file by default, or PostgreSQL for
//! several collectors (issue #9), both behind [`crate::db::Db`]. One
//! writer thread commits batches and then releases acks; a read side
//! serves the HTTP API; leases make periodic work run once per cluster.

pub mod campaigns;
#[doc(hidden)]
pub mod conformance;
pub mod dedup;
pub mod findings;
pub mod lease;
pub mod read;
mod rollup;
mod rows;
pub mod schema;
pub mod writer;

use crate::db::{self, Db, DbError};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use read::Reader;
pub use writer::{AckBatch, Writer};

/// A connection to the store, whichever the engine.
pub type Conn = Box<dyn Db>;

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
    #[error(
        "cannot create the store file {path} owner-only: {source}; check the data directory's owner and permissions"
    )]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the SQLite store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "cannot connect to the PostgreSQL store at {target}: {source}; check store.postgres_url and that the server is up"
    )]
    Connect { target: String, source: DbError },
    #[error(transparent)]
    Schema(#[from] schema::SchemaError),
    #[error("store query failed: {0}")]
    Query(#[from] DbError),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Query(DbError::Sqlite(e))
    }
}

/// File name of the store inside `data_dir`.
pub const FILE: &str = "sobre.sqlite";

/// Where the store lives, as the config says.
#[derive(Debug, Clone)]
pub struct Location {
    pub data_dir: PathBuf,
    pub sync_full: bool,
    /// `postgres://…`: the store is in PostgreSQL, shared by collectors.
    pub postgres_url: Option<sobre_base::Secret>,
}

impl Location {
    /// The embedded SQLite store in `data_dir` (tests, tools).
    pub fn sqlite(data_dir: &Path) -> Location {
        Location {
            data_dir: data_dir.to_owned(),
            sync_full: false,
            postgres_url: None,
        }
    }

    pub fn from_config(cfg: &crate::config::CollectorConfig) -> Location {
        Location {
            data_dir: cfg.data_dir.clone(),
            sync_full: cfg.store.sync_full,
            postgres_url: cfg.store.postgres_url.clone(),
        }
    }

    /// Opens a connection (creating and migrating the store if needed).
    pub fn open(&self) -> Result<Conn, StoreError> {
        match &self.postgres_url {
            Some(url) => connect_postgres(url.expose()),
            None => Ok(Box::new(open(&self.data_dir, self.sync_full)?)),
        }
    }

    /// A connection for readers: read-only on SQLite.
    pub fn open_reader(&self) -> Result<Conn, StoreError> {
        match &self.postgres_url {
            Some(url) => connect_postgres(url.expose()),
            None => Ok(Box::new(open_reader(&self.data_dir)?)),
        }
    }

    /// Where, for messages: the file, or the server without credentials.
    pub fn describe(&self) -> String {
        match &self.postgres_url {
            Some(url) => format!("PostgreSQL {}", redact_url(url.expose())),
            None => self.data_dir.join(FILE).display().to_string(),
        }
    }
}

/// `url` without its password, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(h) => h.clone(),
                    postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
            format!(
                "host={} port={} dbname={} user={}",
                hosts.join(","),
                ports.join(","),
                c.get_dbname().unwrap_or("-"),
                c.get_user().unwrap_or("-")
            )
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

fn connect_postgres(url: &str) -> Result<Conn, StoreError> {
    let pg = db::postgres::Postgres::connect(url).map_err(|source| StoreError::Connect {
        target: redact_url(url),
        source,
    })?;
    schema::migrate_postgres(&pg)?;
    Ok(Box::new(pg))
}

/// Opens (creating if needed) the SQLite store and brings its schema up
/// to date.
pub fn open(data_dir: &Path, sync_full: bool) -> Result<db::sqlite::Sqlite, StoreError> {
    private_data_dir(data_dir)?;
    let path = data_dir.join(FILE);
    let err = |source| StoreError::Open {
        path: path.clone(),
        source,
    };
    private_store_files(&path).map_err(|source| StoreError::CreateFile {
        path: path.clone(),
        source,
    })?;
    let mut conn = rusqlite::Connection::open(&path).map_err(err)?;
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
    Ok(db::sqlite::Sqlite::new(conn))
}

/// Creates `data_dir` owner-only, or takes group and other access away
/// from it: it holds the agents' keys and the admin token (issue #21).
pub fn private_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    sobre_base::files::create_private_dir(data_dir)
        .and_then(|()| sobre_base::files::tighten_dir(data_dir))
        .map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })
}

/// The store file exists 0600 before SQLite opens it: SQLite gives its
/// `-wal` and `-shm` the mode of the database file. Files an older
/// version left 0644 are tightened.
fn private_store_files(path: &Path) -> std::io::Result<()> {
    drop(
        sobre_base::files::private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?,
    );
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        sobre_base::files::tighten_file(Path::new(&p))?;
    }
    Ok(())
}

/// A second SQLite connection for readers; WAL lets it read while the
/// writer commits.
pub fn open_reader(data_dir: &Path) -> Result<db::sqlite::Sqlite, StoreError> {
    let path = data_dir.join(FILE);
    let err = |source| StoreError::Open {
        path: path.clone(),
        source,
    };
    let conn = rusqlite::Connection::open(&path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "query_only", true).map_err(err)?;
    Ok(db::sqlite::Sqlite::new(conn))
}

/// A fresh SQLite store in a temporary folder, for unit tests.
#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Conn) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn: Conn = Box::new(open(dir.path(), false).expect("store"));
    (dir, conn)
}
