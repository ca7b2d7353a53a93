//! Owns WAL checkpoints: a background thread with its own connection copies committed WAL
//! frames into the database file, so the single writer never stalls on a checkpoint's
//! reads, writes and fsync.
//!
//! Invariants: it runs only after commits (the writer nudges it), at most once per
//! `storage.checkpoint_delay_ms` after a nudge, so an idle database sees no statement at
//! all; checkpoints are PASSIVE and never block the writer or readers. The writer keeps a
//! high `wal_autocheckpoint` as a safety net in case this thread falls behind.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use rusqlite::Connection;

use super::{DbError, DbResult};

/// WAL pages after which the writer checkpoints inline (256 MiB at 4 KiB pages).
///
/// This is also what starts the WAL over under steady writes: SQLite restarts the WAL only
/// when a write finds every frame already copied, which a background PASSIVE checkpoint
/// racing a busy writer rarely leaves behind, so the WAL grows until the writer's own
/// checkpoint (little left to copy, but two fsyncs and the new header's) resets it. At
/// 16,384 pages the relay at 10,000 msg/s (~33,000 WAL frames/s) paid that several-ms stall
/// twice a second, a p99 of 8-10 ms; at 65,536, once every two seconds, p99 3.7-5.2 ms
/// (BENCHMARKS.md). The WAL file keeps its largest size, so up to ~256 MiB of disk.
pub const WRITER_AUTOCHECKPOINT_PAGES: i64 = 65_536;

/// Starts the checkpoint thread; the returned sender is the writer's nudge. The thread
/// ends when the sender is dropped.
pub fn spawn(path: &Path, delay: Duration) -> DbResult<SyncSender<()>> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let (tx, rx) = sync_channel(1);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || run(conn, rx, delay))
        .map_err(|e| DbError::Startup(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(tx)
}

fn run(conn: Connection, rx: Receiver<()>, delay: Duration) {
    while rx.recv().is_ok() {
        std::thread::sleep(delay);
        match rx.try_recv() {
            Ok(()) | Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => {
                checkpoint(&conn);
                break;
            }
        }
        checkpoint(&conn);
    }
}

fn checkpoint(conn: &Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match result {
        Ok((_, log, done)) => tracing::trace!(log, done, "wal checkpoint"),
        Err(e) => tracing::warn!(error = %e, "wal checkpoint failed"),
    }
}
