//! Owns the single write connection: one OS thread takes write operations from a bounded
//! channel and folds whatever is queued (up to `max_batch`) into one `BEGIN IMMEDIATE`
//! transaction — group commit — then answers every caller after COMMIT. When each COMMIT
//! costs an fsync (`synchronous = FULL`), a busy batch first waits a few tens of
//! microseconds for more operations, so closed-loop callers share one fsync.
//!
//! Invariants: no caller hears "ok" before its changes are durable; one failing operation
//! never takes its batch-mates down with it and leaves no change of its own behind; if
//! COMMIT itself fails, or SQLite rolls the whole transaction back (OR ROLLBACK, a full
//! disk, an I/O error) even after a re-run, every operation of the batch is told so and
//! no operation ever runs outside the batch's transaction.
//!
//! How a failing operation is isolated — optimistically, because a per-operation SAVEPOINT
//! costs more than a one-row insert (every page the operation touches is first copied into
//! the savepoint journal): a batch first runs its operations back to back. An operation
//! that fails having changed nothing (SQLite undoes a failed statement by itself) simply
//! fails. One that fails after changing rows (`total_changes` moved) sends the batch back:
//! ROLLBACK, and the whole batch runs again with each operation in its own SAVEPOINT. That
//! is why operations are `FnMut`: one may run twice, and only the run that commits counts.
//! `total_changes` counts rows changed by INSERT, UPDATE and DELETE (triggers and cascades
//! included) but not schema changes: an operation that runs DDL must not fail after it
//! (none does; migrations run before the writer starts).
//!
//! An operation may carry a `then` ([`Writer::submit_then`]) that runs on this thread once
//! its batch has ended, with the outcome its caller is about to get — so work that must
//! follow the commit (starting a job an enqueue claimed) does not wait for the caller's
//! thread to wake up. It must be short and never block: it delays the rest of the batch's
//! answers and the next batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::Nudge;
use super::{DbError, DbResult};

/// A type-erased write operation: run inside the batch (again, if the batch is re-run),
/// then told how the batch ended.
trait WriteOp: Send {
    /// Runs the operation bare; `Err(())` if it failed after changing rows, so the batch
    /// must be rolled back and re-run with savepoints.
    fn run_bare(&mut self, conn: &Connection) -> Result<(), ()>;
    /// Runs the operation in its own SAVEPOINT, undone alone if it fails.
    fn run_isolated(&mut self, conn: &Connection);
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

/// What runs on the writer thread after an operation's batch ended, before its caller is
/// answered (see [`Writer::submit_then`]).
type Then<T> = Box<dyn FnOnce(&mut DbResult<T>) + Send>;

struct Typed<T, F> {
    f: F,
    result: Option<DbResult<T>>,
    then: Option<Then<T>>,
    reply: oneshot::Sender<DbResult<T>>,
}

impl<T, F> WriteOp for Typed<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> DbResult<T> + Send + 'static,
{
    fn run_bare(&mut self, conn: &Connection) -> Result<(), ()> {
        let before = conn.total_changes();
        let result = (self.f)(conn);
        // No transaction any more (SQLite rolled it back: OR ROLLBACK, a full disk, an I/O
        // error — even if the operation swallowed the error): nothing may run bare after
        // this, so the batch is redone.
        let partial = conn.is_autocommit() || (result.is_err() && conn.total_changes() != before);
        self.result = Some(result);
        if partial {
            Err(())
        } else {
            Ok(())
        }
    }

    fn run_isolated(&mut self, conn: &Connection) {
        // Cached statements: a re-run batch runs these for every operation.
        let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
        if let Err(e) = run("SAVEPOINT op") {
            self.result = Some(Err(e.into()));
            return;
        }
        let result = (self.f)(conn);
        let closed = if result.is_ok() {
            run("RELEASE op")
        } else {
            run("ROLLBACK TO op").and_then(|_| run("RELEASE op"))
        };
        self.result = Some(match (result, closed) {
            (Ok(_), Err(e)) => Err(DbError::from(e)),
            (r, _) => r,
        });
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let Typed {
            result,
            then,
            reply,
            ..
        } = *self;
        let mut outcome = match (result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(DbError::CommitFailed(e)),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (None, Ok(())) => Err(DbError::WriterGone),
        };
        if let Some(then) = then {
            then(&mut outcome);
        }
        // The caller may have gone away (request cancelled); the write stands regardless.
        let _ = reply.send(outcome);
    }
}

/// A cheap, cloneable handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Box<dyn WriteOp>>,
    stats: Arc<Stats>,
}

/// The outcome of a submitted write, available after its transaction commits.
pub struct Pending<T>(oneshot::Receiver<DbResult<T>>);

impl<T> std::future::Future for Pending<T> {
    type Output = DbResult<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(DbError::WriterGone)))
    }
}

/// Counters of the writer's work since start (for metrics and tests).
#[derive(Debug, Default)]
struct Stats {
    transactions: AtomicU64,
    operations: AtomicU64,
    reruns: AtomicU64,
}

/// A snapshot of [`Writer`] counters: how many transactions carried how many operations,
/// and how many batches had to be re-run with savepoints (an operation failed after
/// changing rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    pub transactions: u64,
    pub operations: u64,
    pub reruns: u64,
}

impl Writer {
    /// Starts the writer thread that owns `conn`. After each commit it nudges
    /// `after_commit` (the checkpoint thread), if given, without ever waiting on it. With
    /// `gather`, a busy batch waits up to 300 µs for more operations (see [`gather_more`]).
    pub fn start(
        conn: Connection,
        max_batch: usize,
        gather: bool,
        after_commit: Option<Nudge>,
    ) -> DbResult<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn WriteOp>>(4096);
        let stats = Arc::new(Stats::default());
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                writer_loop(
                    conn,
                    rx,
                    max_batch.max(1),
                    gather,
                    &thread_stats,
                    after_commit,
                )
            })
            .map_err(|e| DbError::Open(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer { tx, stats })
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            transactions: self.stats.transactions.load(Ordering::Relaxed),
            operations: self.stats.operations.load(Ordering::Relaxed),
            reruns: self.stats.reruns.load(Ordering::Relaxed),
        }
    }

    /// Queues `f` for the next batch and waits for the batch's COMMIT.
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.submit(f).await?.await
    }

    /// Queues `f` and returns at once (after waiting only for room in the queue) with a
    /// future of its outcome after COMMIT. Operations submitted in order by one caller run
    /// in that order, so a caller can pipeline writes and still see them commit in order.
    pub async fn submit<T, F>(&self, f: F) -> DbResult<Pending<T>>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> DbResult<T> + Send + 'static,
    {
        self.send(f, None).await
    }

    /// Like [`Writer::submit`], and `then` runs on the writer thread as soon as the batch has
    /// ended — after COMMIT, or after the batch failed — with the outcome the caller is about
    /// to receive (it may take parts of it), before the caller is answered. For work that
    /// must follow the commit without waiting for the caller's thread to wake up (the job
    /// queue starts the jobs an enqueue claimed). `then` delays every later operation, so it
    /// must be short and never block. If the writer stops before running the operation,
    /// `then` is dropped without being called.
    pub async fn submit_then<T, F, G>(&self, f: F, then: G) -> DbResult<Pending<T>>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> DbResult<T> + Send + 'static,
        G: FnOnce(&mut DbResult<T>) + Send + 'static,
    {
        self.send(f, Some(Box::new(then))).await
    }

    async fn send<T, F>(&self, f: F, then: Option<Then<T>>) -> DbResult<Pending<T>>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> DbResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Box::new(Typed {
            f,
            result: None,
            then,
            reply,
        });
        self.tx.send(op).await.map_err(|_| DbError::WriterGone)?;
        Ok(Pending(answer))
    }
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn WriteOp>>,
    max_batch: usize,
    gather: bool,
    stats: &Stats,
    after_commit: Option<Nudge>,
) {
    let mut batch: Vec<Box<dyn WriteOp>> = Vec::with_capacity(max_batch);
    let mut answered = 0usize;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if gather && answered >= GATHER_MIN {
            gather_more(&mut rx, &mut batch, max_batch);
        }
        answered = batch.len();
        let committed = run_batch(&conn, &mut batch, stats);
        stats.transactions.fetch_add(1, Ordering::Relaxed);
        stats
            .operations
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match &committed {
            Ok(()) => {
                if let Some(nudge) = &after_commit {
                    nudge.after_commit();
                }
            }
            Err(e) => tracing::error!(error = %e, ops = batch.len(), "write batch failed"),
        }
        for op in batch.drain(..) {
            op.finish(committed.clone());
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// Gathering starts only after a batch of at least this many operations: a sign that many
/// callers are writing, not one at a time (a lone write never waits).
const GATHER_MIN: usize = 8;
/// Gathering stops once no operation arrived for this long ...
const GATHER_GAP: Duration = Duration::from_micros(30);
/// ... or after this long in all.
const GATHER_MAX: Duration = Duration::from_micros(300);

/// Under `synchronous = FULL` every COMMIT waits for an fsync (~0.5-1 ms here), so the
/// writer, after a busy batch, waits briefly for the callers it just answered to come back
/// and commits them together with those already queued: 64 callers writing one row at a
/// time form one transaction of ~64 instead of two alternating ones of ~32 (Postgres's
/// `commit_delay` does the same). Not used under NORMAL, where a commit costs no fsync and
/// the writer's time is better spent writing.
fn gather_more(
    rx: &mut mpsc::Receiver<Box<dyn WriteOp>>,
    batch: &mut Vec<Box<dyn WriteOp>>,
    max_batch: usize,
) {
    let start = Instant::now();
    let mut last = start;
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(op) => {
                batch.push(op);
                last = Instant::now();
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                let now = Instant::now();
                if now - last > GATHER_GAP || now - start > GATHER_MAX {
                    break;
                }
                std::thread::yield_now();
            }
            Err(_) => break,
        }
    }
}

/// Runs the batch bare; if an operation failed after changing rows, rolls back and runs it
/// again with every operation in its own SAVEPOINT (see the module comment). If SQLite
/// rolls the whole transaction back during that re-run, the batch fails as a whole and
/// the operations after that point do not run (they would each commit on their own).
fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn WriteOp>],
    stats: &Stats,
) -> Result<(), String> {
    // A transaction an earlier failed ROLLBACK left open is ended before starting.
    rollback_if_open(conn)?;
    begin(conn)?;
    if batch.iter_mut().any(|op| op.run_bare(conn).is_err()) {
        stats.reruns.fetch_add(1, Ordering::Relaxed);
        rollback_if_open(conn)?;
        begin(conn)?;
        for op in batch.iter_mut() {
            op.run_isolated(conn);
            if conn.is_autocommit() {
                return Err("the transaction was rolled back by SQLite".into());
            }
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = rollback_if_open(conn);
            Err(e.to_string())
        }
    }
}

fn begin(conn: &Connection) -> Result<(), String> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())
}

/// Rolls back the open transaction, if SQLite has not already.
fn rollback_if_open(conn: &Connection) -> Result<(), String> {
    if conn.is_autocommit() {
        return Ok(());
    }
    conn.execute_batch("ROLLBACK").map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer_on(dir: &tempfile::TempDir) -> (Writer, std::path::PathBuf) {
        writer_with(dir, false)
    }

    fn writer_with(dir: &tempfile::TempDir, gather: bool) -> (Writer, std::path::PathBuf) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER UNIQUE);")
            .expect("schema");
        (Writer::start(conn, 256, gather, None).expect("start"), path)
    }

    /// 64 callers each writing one row at a time, `rounds` times; returns the mean number of
    /// operations per transaction after checking every row is there.
    async fn closed_loop(gather: bool, rounds: i64) -> f64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, path) = writer_with(&dir, gather);
        let mut tasks = Vec::new();
        for caller in 0..64i64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..rounds {
                    let x = caller * rounds + i;
                    w.write(move |c| Ok(c.execute("INSERT INTO t(x) VALUES (?1)", [x])?))
                        .await
                        .expect("write");
                }
            }));
        }
        for t in tasks {
            t.await.expect("join");
        }
        let n: i64 = Connection::open(&path)
            .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .expect("count");
        assert_eq!(n, 64 * rounds, "every answered write is there");
        let stats = w.stats();
        stats.operations as f64 / stats.transactions as f64
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gathering_folds_closed_loop_callers_into_one_transaction() {
        // How many callers meet in a transaction depends on the scheduler: on a machine with
        // CPU steal one try can fall short, so the property must show in one of three tries
        // (without gathering it stays near the plain figure, ~33 or less).
        let mut tries = Vec::new();
        for _ in 0..3 {
            let plain = closed_loop(false, 50).await;
            let gathered = closed_loop(true, 50).await;
            eprintln!("per transaction: plain {plain:.1}, gathered {gathered:.1}");
            tries.push((gathered, plain));
            if gathered > 48.0 {
                return;
            }
        }
        panic!(
            "64 callers should mostly share one transaction: (gathered, plain) per try {tries:.1?}"
        );
    }

    #[tokio::test]
    async fn a_failing_operation_does_not_undo_its_batch_mates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, path) = writer_on(&dir);
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let w = w.clone();
            // Every tenth operation inserts a duplicate and must fail alone.
            let x = if i % 10 == 9 { i - 1 } else { i };
            tasks.push(tokio::spawn(async move {
                w.write(move |c| {
                    c.execute("INSERT INTO t(x) VALUES (?1)", [x])?;
                    Ok(x)
                })
                .await
            }));
        }
        let mut ok = 0;
        let mut dup = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(_) => ok += 1,
                Err(e) if e.is_unique_violation() => dup += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!((ok, dup), (180, 20));
        let stats = w.stats();
        assert_eq!(stats.operations, 200);
        assert!(
            stats.transactions < stats.operations,
            "concurrent writes share transactions: {stats:?}"
        );
        let conn = Connection::open(&path).expect("open");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 180);
    }

    #[tokio::test]
    async fn an_operation_failing_after_a_change_is_undone_alone_by_a_rerun_with_savepoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, path) = writer_on(&dir);
        // Submitted back to back so they share batches; every fifth inserts its row and
        // then fails, which only a savepoint (or the batch's rollback) can undo.
        let mut pending = Vec::new();
        for i in 0..100i64 {
            let p = w
                .submit(move |c| {
                    c.execute("INSERT INTO t(x) VALUES (?1)", [i])?;
                    if i % 5 == 4 {
                        return Err(DbError::Aborted(format!("op {i} gives up after writing")));
                    }
                    Ok(i)
                })
                .await
                .expect("submit");
            pending.push(p);
        }
        let mut ok = Vec::new();
        for (i, p) in pending.into_iter().enumerate() {
            match p.await {
                Ok(v) => ok.push(v),
                Err(e) => assert_eq!(i % 5, 4, "only the failing ones fail: {e}"),
            }
        }
        assert_eq!(ok.len(), 80);
        assert_eq!(
            rows_of(&path),
            ok,
            "the failing operations left nothing; the others all stand"
        );
        let stats = w.stats();
        assert!(
            stats.reruns >= 1,
            "a partial failure re-runs its batch: {stats:?}"
        );
        assert!(
            stats.reruns <= stats.transactions,
            "at most one re-run per batch: {stats:?}"
        );
    }

    /// Holds the writer thread for a moment (returning once the hold has begun), so the
    /// operations submitted next share the batch after it.
    async fn hold(w: &Writer) -> Pending<()> {
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = started.clone();
        let pending = w
            .submit(move |_| {
                flag.store(true, Ordering::Release);
                std::thread::sleep(Duration::from_millis(200));
                Ok(())
            })
            .await
            .expect("submit");
        while !started.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        pending
    }

    fn rows_of(path: &std::path::Path) -> Vec<i64> {
        Connection::open(path)
            .and_then(|c| {
                c.prepare("SELECT x FROM t ORDER BY x")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .expect("rows")
    }

    fn insert(x: i64) -> impl FnMut(&Connection) -> DbResult<usize> + Send + 'static {
        move |c| Ok(c.execute("INSERT INTO t(x) VALUES (?1)", [x])?)
    }

    type TestOp = Box<dyn FnMut(&Connection) -> DbResult<()> + Send>;

    /// Commits row 1, then submits `ops` as one batch behind a hold; returns their outcomes
    /// (whether each was answered ok) and the rows after the next ordinary write (99).
    async fn batch_after_row_1(ops: Vec<TestOp>) -> (Vec<bool>, Vec<i64>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, path) = writer_on(&dir);
        w.write(insert(1)).await.expect("setup");
        let held = hold(&w).await;
        let mut pending = Vec::new();
        for op in ops {
            pending.push(w.submit(op).await.expect("submit"));
        }
        held.await.expect("held");
        let mut ok = Vec::new();
        for p in pending {
            ok.push(p.await.is_ok());
        }
        w.write(insert(99)).await.expect("the writer goes on");
        (ok, rows_of(&path))
    }

    #[tokio::test]
    async fn a_transaction_sqlite_rolls_back_is_never_half_committed() {
        // An operation that makes SQLite roll the whole transaction back and swallows the
        // error, then two ordinary ones (the second fails after writing).
        let (ok, rows) = batch_after_row_1(vec![
            Box::new(|c| {
                let _ = c.execute("INSERT OR ROLLBACK INTO t(x) VALUES (1)", []);
                Ok(())
            }),
            Box::new(|c| insert(2)(c).map(drop)),
            Box::new(|c| {
                insert(3)(c)?;
                Err(DbError::Aborted("gives up after writing".into()))
            }),
        ])
        .await;
        assert_eq!(ok, vec![false, false, false]);
        assert_eq!(
            rows,
            vec![1, 99],
            "nothing of the batch stands, nothing twice"
        );
    }

    #[tokio::test]
    async fn a_rollback_during_the_rerun_fails_the_batch_and_runs_nothing_after_it() {
        let (ok, rows) = batch_after_row_1(vec![
            Box::new(|c| insert(10)(c).map(drop)),
            Box::new(|c| {
                c.execute("INSERT OR ROLLBACK INTO t(x) VALUES (1)", [])?;
                Ok(())
            }),
            Box::new(|c| insert(30)(c).map(drop)),
        ])
        .await;
        assert_eq!(ok, vec![false, false, false]);
        assert_eq!(
            rows,
            vec![1, 99],
            "no operation ran on its own after the rollback"
        );
    }

    #[tokio::test]
    async fn a_failure_that_changed_nothing_needs_no_rerun() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, _path) = writer_on(&dir);
        w.write(insert(1)).await.expect("first");
        let dup = w.write(insert(1)).await;
        assert!(dup.expect_err("duplicate").is_unique_violation());
        assert_eq!(w.stats().reruns, 0);
    }

    #[tokio::test]
    async fn then_runs_after_the_commit_and_before_the_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, path) = writer_on(&dir);
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let p = path.clone();
        let pending = w
            .submit_then(
                |c| Ok(c.execute("INSERT INTO t(x) VALUES (7)", [])?),
                move |out: &mut DbResult<usize>| {
                    // Committed: a new connection already sees the row.
                    let visible: i64 = Connection::open(&p)
                        .and_then(|c| {
                            c.query_row("SELECT count(*) FROM t WHERE x = 7", [], |r| r.get(0))
                        })
                        .expect("read");
                    let _ = seen_tx.send((visible, out.as_ref().ok().copied()));
                    if let Ok(n) = out {
                        *n += 100;
                    }
                },
            )
            .await
            .expect("submit");
        assert_eq!(
            pending.await.expect("write"),
            101,
            "the caller gets what then left"
        );
        assert_eq!(seen.recv().expect("then ran"), (1, Some(1)));
        // A failed operation: then sees the error the caller gets.
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let pending = w
            .submit_then(
                |c| Ok(c.execute("INSERT INTO t(x) VALUES (7)", [])?),
                move |out: &mut DbResult<usize>| {
                    let _ = seen_tx.send(out.as_ref().err().map(DbError::is_unique_violation));
                },
            )
            .await
            .expect("submit");
        assert!(pending.await.expect_err("duplicate").is_unique_violation());
        assert_eq!(seen.recv().expect("then ran"), Some(true));
    }

    #[tokio::test]
    async fn an_answer_means_the_row_is_visible_to_a_new_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, path) = writer_on(&dir);
        w.write(|c| Ok(c.execute("INSERT INTO t(x) VALUES (42)", [])?))
            .await
            .expect("write");
        let conn = Connection::open(&path).expect("open");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t WHERE x = 42", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1);
    }
}
