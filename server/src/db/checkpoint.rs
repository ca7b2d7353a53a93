//! Owns WAL checkpoints: a background thread with its own connection copies committed WAL
//! frames into the database file, so the single writer never stalls on a checkpoint's
//! reads, writes and fsync; and the write connection's WAL hook, which tells that thread
//! how large the WAL has grown and is the writer's last-resort inline checkpoint.
//!
//! Invariants: the thread checkpoints only after commits: once `storage.checkpoint_pages`
//! frames have been added since its last checkpoint (after a further
//! `storage.checkpoint_delay_ms`), or once the writer has been quiet for
//! [`IDLE_CHECKPOINT`]; so an idle database sees no statement at all, and a slow trickle
//! of commits is not followed by a checkpoint each. Checkpoints are PASSIVE and never
//! block the writer or readers. The writer wakes the thread only when it has something to
//! do (the first commit after a checkpoint, or the threshold crossed); every other commit
//! just records the WAL's size and its time in atomics — no system call, no thread switch.
//!
//! Why not after every commit: a completed checkpoint makes the next commit start the WAL
//! over, and under `synchronous` FULL or NORMAL that commit also fsyncs the new WAL header.
//! Checkpointing after every commit put that extra fsync on one commit in two at 200
//! commits/s (the job queue's enqueue-to-start p99, BENCHMARKS.md).
//!
//! Deleted content leaves the WAL too: a commit that deleted a message's ciphertext (see
//! `messages::scrubbing`) marks the WAL for a scrub, and the next idle checkpoint is a
//! TRUNCATE instead of a PASSIVE one. The WAL file still holds the page images written when
//! the message was stored (a WAL is reused from its start, so frames past the newest
//! commit's linger); truncating it to zero bytes drops them, and the WAL is preallocated
//! again where it was. Only after deletions, and only once the writer has been quiet for
//! [`IDLE_CHECKPOINT`], so a busy relay never waits on it.
//!
//! Under `synchronous = normal` the WAL file is preallocated at start-up
//! ([`preallocate_wal`], `storage.preallocate_wal`; issue #12, docs/bench-results-tail.md):
//! while the WAL grows into new blocks, a commit's WAL writes must reserve them under the
//! inode's block-map lock, which this thread's fsync of the WAL holds while it allocates the
//! blocks written before — the writer was seen blocked there (`ext4_da_get_block_prep`) for
//! up to 39 ms at a time. Not under FULL: there every commit fsyncs the WAL itself, and with
//! preallocated (unwritten) blocks that fsync also waits for their conversion to written
//! extents; the paced tail was worse in every pair measured.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::hooks::Wal;
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

/// Frames the WAL file is preallocated for ([`preallocate_wal`]): the inline checkpoint's
/// threshold plus room for the batch that crosses it.
const PREALLOCATED_FRAMES: u64 = WRITER_AUTOCHECKPOINT_PAGES as u64 + 4096;

/// Size of a WAL header and of a frame's header, in bytes (SQLite's WAL format).
const WAL_HEADER: u64 = 32;
const FRAME_HEADER: u64 = 24;

/// The WAL file that goes with the database at `db_path`.
pub fn wal_path(db_path: &Path) -> PathBuf {
    let mut wal = db_path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Allocates the disk blocks of the WAL of `db_path` (which must exist) for
/// [`PREALLOCATED_FRAMES`] frames of `page_size` bytes; returns the length allocated.
///
/// Why: while the WAL grows, each commit's `pwrite`s past its last allocated block must
/// reserve blocks (ext4's delayed allocation takes the inode's block-map lock to do so),
/// and the checkpoint thread's fsync of the WAL holds that lock while it allocates the
/// blocks written before it — the writer was seen blocked there for 18-39 ms at a time
/// (`/proc/<pid>/task/<tid>/stack`: `ext4_da_get_block_prep`). Into preallocated blocks
/// a write only fills the page cache. The file's length becomes the allocated length:
/// SQLite reads a WAL only up to its first frame whose salt or checksum does not match,
/// and a zero-filled tail never matches, so the extra length is never read as frames.
pub fn preallocate_wal(db_path: &Path, page_size: u64) -> std::io::Result<u64> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(wal_path(db_path))?;
    let len = WAL_HEADER + PREALLOCATED_FRAMES * (FRAME_HEADER + page_size);
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len)?;
    Ok(len)
}

/// How long the writer must have been quiet before the frames it left in the WAL (fewer
/// than `storage.checkpoint_pages`) are checkpointed anyway.
pub const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

thread_local! {
    /// Frames in the WAL after the last commit on this thread's connection, as SQLite's WAL
    /// hook reports them. rusqlite's hook is a plain function (no state of its own), and the
    /// write connection lives on one thread, so the hook leaves the count here for
    /// [`Nudge::after_commit`] on the same thread to read.
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
    /// Set by a write that deleted content on this thread's connection ([`request_scrub`]);
    /// [`Nudge::after_commit`] hands it to the checkpoint thread.
    static SCRUB: Cell<bool> = const { Cell::new(false) };
}

/// Asks for the WAL to be truncated at the next idle checkpoint after this thread's next
/// commit: the transaction running on this thread deleted content whose older page images
/// the WAL may still hold. Called by the writes that delete ciphertext.
pub fn request_scrub() {
    SCRUB.with(|s| s.set(true));
}

/// Installs the WAL hook on a write connection. It replaces SQLite's own autocheckpoint
/// (which is itself a WAL hook) and keeps its rule at [`WRITER_AUTOCHECKPOINT_PAGES`].
pub fn install_wal_hook(conn: &Connection) {
    conn.wal_hook(Some(on_commit));
}

fn on_commit(wal: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(u32::try_from(frames).unwrap_or(0)));
    if i64::from(frames) >= WRITER_AUTOCHECKPOINT_PAGES {
        // What sqlite3_wal_autocheckpoint does: a PASSIVE checkpoint; its failure (a busy
        // reader) is not the commit's.
        if let Err(e) = wal.checkpoint() {
            tracing::warn!(error = %e, "inline wal checkpoint failed");
        }
    }
    Ok(())
}

/// What the writer and the checkpoint thread share.
struct Shared {
    /// Frames in the WAL after the latest commit.
    frames: AtomicU32,
    /// Frames the last checkpoint left copied in the current WAL (0: all of them).
    copied: AtomicU32,
    /// Time of the latest commit, in µs since `epoch`.
    last_commit_us: AtomicU64,
    epoch: Instant,
    /// Commits happened since the thread last began a checkpoint (else it sleeps without a
    /// timeout and the next commit must wake it).
    dirty: AtomicBool,
    /// The writer has woken the thread for the threshold; cleared after the checkpoint.
    over: AtomicBool,
    /// A commit deleted content: the next idle checkpoint truncates the WAL.
    scrub: AtomicBool,
    /// Wake-ups the writer sent (for tests).
    wakeups: AtomicU64,
}

impl Shared {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// How long the writer has been quiet since its latest commit.
    fn quiet(&self) -> Duration {
        Duration::from_micros(
            self.now_us()
                .saturating_sub(self.last_commit_us.load(Ordering::Acquire)),
        )
    }

    /// Frames added since the last checkpoint (all of them if the WAL was started over).
    fn new_frames(&self) -> u32 {
        let (frames, copied) = (
            self.frames.load(Ordering::Acquire),
            self.copied.load(Ordering::Acquire),
        );
        if frames >= copied {
            frames - copied
        } else {
            frames
        }
    }
}

/// The writer's side of the checkpoint thread: told after each commit, never waits.
pub struct Nudge {
    tx: SyncSender<()>,
    shared: Arc<Shared>,
    pages: u32,
}

impl Nudge {
    /// Called on the writer's thread right after a COMMIT.
    pub fn after_commit(&self) {
        let s = &self.shared;
        s.frames
            .store(WAL_FRAMES.with(Cell::get), Ordering::Release);
        s.last_commit_us.store(s.now_us(), Ordering::Release);
        if SCRUB.with(|f| f.replace(false)) {
            s.scrub.store(true, Ordering::Release);
        }
        let first = !s.dirty.load(Ordering::Acquire) && !s.dirty.swap(true, Ordering::AcqRel);
        let over = s.new_frames() >= self.pages
            && !s.over.load(Ordering::Acquire)
            && !s.over.swap(true, Ordering::AcqRel);
        if first || over {
            s.wakeups.fetch_add(1, Ordering::Relaxed);
            // Full means the thread has a wake-up to read already.
            let _ = self.tx.try_send(());
        }
    }

    #[cfg(test)]
    fn wakeups(&self) -> u64 {
        self.shared.wakeups.load(Ordering::Relaxed)
    }
}

/// Starts the checkpoint thread; the returned [`Nudge`] is the writer's. The thread ends
/// (with a last checkpoint) when the nudge is dropped. `preallocated`: the page size, when
/// the WAL was preallocated at start-up (a scrub preallocates it again).
pub fn spawn(
    path: &Path,
    delay: Duration,
    pages: u32,
    preallocated: Option<u64>,
) -> DbResult<Nudge> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(CHECKPOINT_BUSY_WAIT)?;
    let (tx, rx) = sync_channel(1);
    let pages = pages.max(1);
    let shared = Arc::new(Shared {
        frames: AtomicU32::new(0),
        copied: AtomicU32::new(0),
        last_commit_us: AtomicU64::new(0),
        epoch: Instant::now(),
        dirty: AtomicBool::new(false),
        over: AtomicBool::new(false),
        scrub: AtomicBool::new(false),
        wakeups: AtomicU64::new(0),
    });
    let thread_shared = shared.clone();
    let wal = WalFile {
        db_path: path.to_owned(),
        preallocated,
    };
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || run(conn, rx, &thread_shared, delay, pages, &wal))
        .map_err(|e| DbError::Open(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(Nudge { tx, shared, pages })
}

/// How long the checkpoint connection waits for a lock.
const CHECKPOINT_BUSY_WAIT: Duration = Duration::from_secs(5);
/// How long a scrub waits for readers and the writer before it gives up until later.
const SCRUB_BUSY_WAIT: Duration = Duration::from_millis(50);

/// The WAL the thread checkpoints, for a scrub.
struct WalFile {
    db_path: PathBuf,
    preallocated: Option<u64>,
}

fn run(
    conn: Connection,
    rx: Receiver<()>,
    shared: &Shared,
    delay: Duration,
    pages: u32,
    wal: &WalFile,
) {
    loop {
        let next = if shared.dirty.load(Ordering::Acquire) {
            // Quiet for IDLE_CHECKPOINT since the latest commit? Else sleep the rest of it.
            match IDLE_CHECKPOINT.checked_sub(shared.quiet()) {
                Some(rest) if !rest.is_zero() => rx.recv_timeout(rest),
                _ => Err(RecvTimeoutError::Timeout),
            }
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match next {
            Ok(()) => {
                if shared.new_frames() < pages {
                    // The first commit after a checkpoint (now wait for idle or the
                    // threshold), or a threshold wake-up that a WAL restart overtook: let the
                    // writer wake the thread for the threshold again.
                    shared.over.store(false, Ordering::Release);
                    continue;
                }
                std::thread::sleep(delay);
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.quiet() < IDLE_CHECKPOINT {
                    continue;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if shared.dirty.load(Ordering::Acquire) {
                    checkpoint(&conn);
                }
                break;
            }
        }
        // Cleared before the checkpoint: a commit from here on wakes the thread again.
        shared.dirty.store(false, Ordering::Release);
        if shared.quiet() >= IDLE_CHECKPOINT
            && shared.scrub.swap(false, Ordering::AcqRel)
            && !scrub(&conn, wal)
        {
            // A reader or the writer was busy: try again at the next idle moment, no sooner
            // than a second from now (a long read must not make this spin).
            shared.scrub.store(true, Ordering::Release);
            shared.dirty.store(true, Ordering::Release);
            std::thread::sleep(IDLE_CHECKPOINT);
        }
        shared.copied.store(checkpoint(&conn), Ordering::Release);
        shared.over.store(false, Ordering::Release);
    }
}

/// Copies the whole WAL into the database and truncates it to zero bytes, so no page image
/// of deleted content is left in it; then preallocates it again if it was. Whether it was
/// done (false when a reader or writer kept it from finishing).
fn scrub(conn: &Connection, wal: &WalFile) -> bool {
    // A TRUNCATE checkpoint holds the write lock while it waits for readers: wait only
    // briefly, so the writer is never held up for long; a busy moment is tried again later.
    let _ = conn.busy_timeout(SCRUB_BUSY_WAIT);
    let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    let _ = conn.busy_timeout(CHECKPOINT_BUSY_WAIT);
    match result {
        Ok(0) => {
            if let Some(page_size) = wal.preallocated {
                if let Err(e) = preallocate_wal(&wal.db_path, page_size) {
                    tracing::info!(error = %e, "wal file not preallocated again after a scrub");
                }
            }
            tracing::debug!("wal truncated after a deletion");
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "wal scrub failed");
            false
        }
    }
}

/// Runs one PASSIVE checkpoint; returns the frames it leaves copied in the current WAL.
fn checkpoint(conn: &Connection) -> u32 {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match result {
        Ok((log, done)) => {
            tracing::trace!(log, done, "wal checkpoint");
            if done >= log {
                0
            } else {
                u32::try_from(done).unwrap_or(0)
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "wal checkpoint failed");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::config::StorageConfig;
    use crate::db::Db;

    /// Size of the database file itself: it grows only when a checkpoint copies pages in.
    fn db_file_len(db: &Db) -> u64 {
        std::fs::metadata(db.path()).expect("db file").len()
    }

    /// Commits `pages` pages' worth of new rows, one commit.
    async fn write_pages(db: &Db, pages: usize) {
        db.write(move |c| {
            c.execute_batch("CREATE TABLE IF NOT EXISTS filler(b BLOB)")?;
            for _ in 0..pages {
                c.execute("INSERT INTO filler(b) VALUES (zeroblob(4000))", [])?;
            }
            Ok(())
        })
        .await
        .expect("write");
    }

    async fn wait_until_len_exceeds(db: &Db, len: u64, within: Duration) -> Duration {
        let start = Instant::now();
        while db_file_len(db) <= len {
            assert!(start.elapsed() < within, "no checkpoint within {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }

    /// Opens a database checkpointed every `pages`, waits out any idle checkpoint, and
    /// returns it with its file's size then.
    async fn open_settled(dir: &tempfile::TempDir, pages: u32) -> (Db, u64) {
        let storage = StorageConfig {
            checkpoint_pages: pages,
            ..StorageConfig::default()
        };
        let db = Db::open(&dir.path().join("c.db"), &storage)
            .await
            .expect("open");
        tokio::time::sleep(IDLE_CHECKPOINT + Duration::from_millis(500)).await;
        let len = db_file_len(&db);
        (db, len)
    }

    #[tokio::test]
    async fn a_few_small_commits_are_checkpointed_only_once_the_writer_is_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, before) = open_settled(&dir, 1000).await;
        for _ in 0..5 {
            write_pages(&db, 10).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            db_file_len(&db),
            before,
            "50 pages are under the threshold: no checkpoint before the writer is idle"
        );
        let took = wait_until_len_exceeds(&db, before, Duration::from_secs(10)).await;
        assert!(
            took + Duration::from_millis(400) >= IDLE_CHECKPOINT,
            "{took:?}"
        );
    }

    #[test]
    fn commits_wake_the_thread_once_until_it_has_checkpointed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.db");
        Connection::open(&path)
            .and_then(|c| c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)))
            .expect("wal");
        let nudge = spawn(&path, Duration::ZERO, 1000, None).expect("spawn");
        for _ in 0..1000 {
            nudge.after_commit();
        }
        assert_eq!(nudge.wakeups(), 1, "only the first commit wakes the thread");
        // Once it has checkpointed (after a quiet second), the next commit wakes it again.
        let start = Instant::now();
        while nudge.shared.dirty.load(Ordering::Acquire) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no idle checkpoint"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(start.elapsed() + Duration::from_millis(200) >= IDLE_CHECKPOINT);
        nudge.after_commit();
        assert_eq!(nudge.wakeups(), 2);
    }

    /// Bytes of disk allocated to the WAL of the database at `path`.
    fn wal_allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(wal_path(path))
            .expect("wal file")
            .blocks()
            * 512
    }

    #[tokio::test]
    async fn the_wal_is_preallocated_under_normal_unless_off_and_never_under_full() {
        use crate::config::Synchronous;
        let full = WAL_HEADER + PREALLOCATED_FRAMES * (FRAME_HEADER + 4096);
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = |synchronous, preallocate_wal| StorageConfig {
            synchronous,
            preallocate_wal,
            ..StorageConfig::default()
        };
        let on = dir.path().join("on.db");
        let db = Db::open(&on, &storage(Synchronous::Normal, true))
            .await
            .expect("open");
        assert!(
            wal_allocated(&on) >= full,
            "{} < {full}",
            wal_allocated(&on)
        );
        // SQLite reads the WAL up to its last valid frame, not to the end of the file.
        write_pages(&db, 50).await;
        let n: i64 = db
            .read(|c| Ok(c.query_row("SELECT count(*) FROM filler", [], |r| r.get(0))?))
            .await
            .expect("read");
        assert_eq!(n, 50);

        for (name, synchronous, preallocate) in [
            ("off.db", Synchronous::Normal, false),
            ("full.db", Synchronous::Full, true),
        ] {
            let path = dir.path().join(name);
            let _db = Db::open(&path, &storage(synchronous, preallocate))
                .await
                .expect("open");
            assert!(
                wal_allocated(&path) < full / 10,
                "{name}: {}",
                wal_allocated(&path)
            );
        }
    }

    #[tokio::test]
    async fn writing_more_than_the_threshold_is_checkpointed_without_waiting_for_idle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, before) = open_settled(&dir, 100).await;
        // Keep writing (never idle for a second) until the file grows: that checkpoint can
        // only have come from the threshold.
        let start = Instant::now();
        while db_file_len(&db) <= before {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no checkpoint after {:?} of writes",
                start.elapsed()
            );
            write_pages(&db, 30).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
