//! Owns the SQLite database: opening it (pragmas, WAL asserted), migrations, the read pool,
//! the single writer, and — one module per table — all SQL the core runs.
//!
//! Invariants: this module never imports warp; every write goes through [`Writer`]
//! (one connection, one thread, group commit); a caller is answered only after COMMIT.
//!
//! SQL convention (here and in `jobs/store.rs`): a bound row limit is written `LIMIT +?N`,
//! never `LIMIT ?N`. The bundled SQLite (built with STAT4) recompiles a statement whose
//! LIMIT is a bare parameter every time a new value is bound, which made the job claim
//! cost 38 µs instead of 10 µs; the unary `+` keeps the value out of the planner's sight
//! and the plan is the same. `store::tests` checks that the claim is not recompiled.

pub mod admin;
pub mod backup;
mod checkpoint;
pub mod files;
mod message_ids;
pub mod messages;
mod migrate;
pub mod sessions;
pub mod users;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use deadpool_sqlite::{Hook, HookError, Pool, Runtime};
use rusqlite::Connection;

pub use migrate::{latest_version, migrate_file};
pub use writer::{Pending, Writer, WriterStats};

use crate::config::StorageConfig;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("pool: {0}")]
    Pool(String),
    #[error("the database writer has stopped")]
    WriterGone,
    /// The database could not be opened, migrated or started (start-up only).
    #[error("{0}")]
    Open(String),
    /// The transaction the operation ran in did not commit: none of it was written.
    #[error("transaction failed to commit: {0}")]
    CommitFailed(String),
    /// The operation gave up on purpose (its changes roll back with it), saying why.
    #[error("{0}")]
    Aborted(String),
}

impl DbError {
    /// True when the statement failed on a UNIQUE or PRIMARY KEY constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Milliseconds since the Unix epoch; the one clock every table uses.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The database handle passed around in `AppState`: a pool for reads, the writer for writes.
#[derive(Clone)]
pub struct Db {
    reader: Pool,
    writer: Writer,
    path: PathBuf,
    /// The filter of stored message ids that goes with the writer's connection; only the
    /// writes of `messages` use it (see `message_ids`).
    known_ids: Arc<message_ids::KnownIds>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, migrates it, and starts the writer.
    pub async fn open(path: &Path, storage: &StorageConfig) -> DbResult<Db> {
        let conn = open_write_connection(path, storage)?;
        // Under FULL every commit fsyncs the WAL, and preallocated (unwritten) blocks made
        // those fsyncs slower (docs/bench-results-tail.md): only under NORMAL.
        let preallocate =
            storage.preallocate_wal && storage.synchronous == crate::config::Synchronous::Normal;
        let wal_of = path.to_owned();
        let (conn, known, preallocated) = tokio::task::spawn_blocking(move || -> DbResult<_> {
            let mut conn = conn;
            migrate::migrate(&mut conn)?;
            let buffered = message_ids::open_id_buffer(&conn)?;
            let known = message_ids::KnownIds::load(&conn)?;
            tracing::debug!(buffered, "message id buffer and filter ready");
            let preallocated = if preallocate {
                preallocate_wal(&conn, &wal_of)?
            } else {
                None
            };
            Ok((conn, known, preallocated))
        })
        .await
        .map_err(|e| DbError::Open(format!("migration task failed: {e}")))??;
        let checkpointer = checkpoint::spawn(
            path,
            std::time::Duration::from_millis(storage.checkpoint_delay_ms),
            storage.checkpoint_pages,
            preallocated,
        )?;
        // Under FULL a commit waits for an fsync: worth gathering a busy batch (see writer.rs).
        let gather = storage.synchronous == crate::config::Synchronous::Full;
        let writer = Writer::start(conn, storage.max_batch, gather, Some(checkpointer))?;
        let reader = deadpool_sqlite::Config::new(path)
            .builder(Runtime::Tokio1)
            .map_err(|e| DbError::Pool(e.to_string()))?
            .max_size(storage.read_pool_size)
            .post_create(Hook::async_fn(|obj, _| {
                Box::pin(async move {
                    obj.interact(|c| {
                        c.set_prepared_statement_cache_capacity(64);
                        c.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;")
                    })
                    .await
                    .map_err(|e| HookError::message(e.to_string()))?
                    .map_err(HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| DbError::Pool(e.to_string()))?;
        Ok(Db {
            reader,
            writer,
            path: path.to_owned(),
            known_ids: Arc::new(known),
        })
    }

    /// Runs `f` on a pooled read-only connection, off the async workers.
    pub async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> DbResult<T> + Send + 'static,
    {
        let conn = self
            .reader
            .get()
            .await
            .map_err(|e| DbError::Pool(e.to_string()))?;
        conn.interact(move |c| f(c))
            .await
            .map_err(|e| DbError::Pool(e.to_string()))?
    }

    /// Runs `f` inside the writer's next transaction; resolves after COMMIT.
    /// `f` is atomic on its own: if it returns an error, its changes are rolled back and the
    /// rest of the batch commits. `f` may run more than once (see `writer`); only the run
    /// that commits counts, so it must not act outside the transaction.
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens the one write connection with the pragmas the design relies on, and asserts WAL.
pub fn open_write_connection(path: &Path, storage: &StorageConfig) -> DbResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Auth, messages and jobs share this connection: keep all their statements prepared.
    conn.set_prepared_statement_cache_capacity(128);
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Open(format!(
            "SQLite refused WAL mode (journal_mode is {mode:?}); is the data dir on a network or read-only filesystem?"
        )));
    }
    // A larger page cache keeps the indexes the writer touches in memory.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;          PRAGMA cache_size = -32768;",
        storage.synchronous.pragma_value(),
    ))?;
    // Checkpoints run on their own thread (see `checkpoint`); the WAL hook tells it how
    // large the WAL is, and checkpoints inline only if that thread falls far behind.
    checkpoint::install_wal_hook(&conn);
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if fk != 1 {
        return Err(DbError::Open("SQLite did not enable foreign keys".into()));
    }
    Ok(conn)
}

/// Preallocates the WAL of the database at `path` (see `checkpoint::preallocate_wal`). Run
/// after a write: SQLite deletes a WAL it finds beside an empty database file, and creates
/// one only when it first needs it. The page size when it was preallocated.
fn preallocate_wal(conn: &Connection, path: &Path) -> DbResult<Option<u64>> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let page_size = u64::try_from(page_size).unwrap_or(4096);
    match checkpoint::preallocate_wal(path, page_size) {
        Ok(len) => {
            tracing::debug!(len, "wal file preallocated");
            Ok(Some(page_size))
        }
        // Some filesystems cannot preallocate; the WAL then grows as it is written.
        Err(e) => {
            tracing::info!(error = %e, "wal file not preallocated");
            Ok(None)
        }
    }
}

/// Test fixture: users 1, 2, 3 (alice, bob, carol) with placeholder keys, for the SQL
/// modules' unit tests.
#[cfg(test)]
fn insert_test_users(c: &Connection) {
    for (id, name) in [(1, "alice"), (2, "bob"), (3, "carol")] {
        c.execute(
            "INSERT INTO users (id, username, auth_hash, kdf_alg, kdf_iterations, kdf_salt, \
             key_version, enc_public_key, sign_public_key, bundle_iv, bundle_ct, self_sig, \
             fingerprint, created_at) VALUES (?1, ?2, '', '', 1, '', 1, '', '', '', '', '', '', 0)",
            rusqlite::params![id, name],
        )
        .expect("user");
    }
}
