//! Owns the durable job queue: jobs stored in SQLite (`jobs` table, its SQL in `store.rs`),
//! handlers registered by kind ([`Registry`]), workers per queue that claim jobs under a
//! fenced lease, retries with backoff, a reaper for expired leases, periodic jobs, pruning,
//! graceful shutdown, metrics and the admin commands behind `securechat jobs`.
//!
//! The queue knows nothing of what a job does (files, messages) and never imports warp.
//!
//! Life of a job: `available` → (claim) `running` → `done` | `failed` (for good) |
//! `cancelled`; a retry, an expired lease or a crash sends a running job back to
//! `available`. Every transition of a running job names its lease token: a worker whose lease
//! was taken away can neither finish, fail, heartbeat nor release the job.
//!
//! Invariants:
//! - every write goes through the database's single writer (group commit), so an answer
//!   means the change is durable; the claim and the acks of finished jobs share one
//!   transaction per round;
//! - no timer and no statement runs while nothing is due: workers wake on a notification
//!   from `enqueue` or on one timer per queue for its earliest `run_at`, the reaper on one
//!   timer for the earliest lease expiry;
//! - at most one live (available or running) job per dedup key (a partial unique index).

mod admin;
mod backoff;
mod context;
pub mod metrics;
mod prune;
mod reaper;
mod registry;
mod runner;
mod shared;
mod store;
mod task;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

pub use admin::render_list;
pub use backoff::Backoff;
pub use context::{complete_in, JobContext, JobError, Lease, StopReason};
pub use registry::{Periodic, Registry};
pub use runner::{ShutdownReport, StartReport};
pub use store::{CancelOutcome, JobRecord, QueueCounts};

use crate::config::JobsConfig;
use crate::db::{now_ms, Db, DbError, DbResult};

/// A job's id (the row id).
pub type JobId = i64;

/// Largest payload accepted, in bytes of JSON.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Longest dedup key accepted, in bytes.
pub const MAX_DEDUP_KEY_BYTES: usize = 256;
/// The queue the internal maintenance jobs (prune) run on; not configurable, one worker.
pub const INTERNAL_QUEUE: &str = "_jobs";

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Available,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Available,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Live jobs hold their dedup key and may still run.
    pub fn is_live(self) -> bool {
        matches!(self, JobState::Available | JobState::Running)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = JobsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                JobsError::Invalid(format!(
                    "unknown job state {s:?}; one of available, running, done, failed, cancelled"
                ))
            })
    }
}

/// A job to enqueue. `NewJob::new(kind, payload)` fills the defaults; the fields are public
/// so a struct literal with `..NewJob::default()` works too.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// A queue named in `[jobs.workers]`; "default" unless set.
    pub queue: String,
    /// The handler that runs it (see [`Registry::register`]).
    pub kind: String,
    /// Handed to the handler, which deserializes it into its own type.
    pub payload: serde_json::Value,
    /// Lower runs first; ties go to the earlier `run_at`, then the older job.
    pub priority: i32,
    /// Not before this time (ms since the Unix epoch); `None` = now.
    pub run_at: Option<i64>,
    /// `None` = `jobs.max_attempts` from the config.
    pub max_attempts: Option<u32>,
    /// While a live job holds this key, enqueueing another returns that job's id.
    pub dedup_key: Option<String>,
}

impl Default for NewJob {
    fn default() -> Self {
        NewJob {
            queue: "default".into(),
            kind: String::new(),
            payload: serde_json::Value::Null,
            priority: 0,
            run_at: None,
            max_attempts: None,
            dedup_key: None,
        }
    }
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload,
            ..NewJob::default()
        }
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub fn run_at(mut self, ms_since_epoch: i64) -> Self {
        self.run_at = Some(ms_since_epoch);
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.run_at = Some(now_ms().saturating_add(delay.as_millis() as i64));
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
}

/// The answer to an enqueue: the job's id, and whether it is a live job that already held
/// the dedup key (then nothing new was stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: JobId,
    pub existing: bool,
}

/// Errors of the queue's API. `Invalid` is the caller's fault and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("no job with id {0}")]
    NotFound(JobId),
    #[error("{0}")]
    Conflict(String),
    #[error("the job queue is already started")]
    AlreadyStarted,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for JobsError {
    fn from(e: rusqlite::Error) -> Self {
        JobsError::Db(DbError::Sqlite(e))
    }
}

/// The job queue: a cheap, cloneable handle kept in `AppState`.
///
/// [`Queue::new`] only prepares; [`Queue::start`] recovers orphans and starts the workers
/// (a process that only inspects or edits jobs, like the CLI, never starts it).
#[derive(Clone)]
pub struct Queue {
    shared: Arc<shared::Shared>,
}

impl Queue {
    /// A queue over `db` with the queues and limits of `config` and the handlers of `registry`.
    /// The internal prune job is added to the registry here.
    pub fn new(db: Db, config: &JobsConfig, registry: Registry) -> Result<Queue, JobsError> {
        let shared = shared::Shared::new(db, config, registry)?;
        Ok(Queue { shared })
    }

    /// Requeues every `running` row (orphans of the last process), makes sure every periodic
    /// job has its live instance, and starts one worker loop per queue and the reaper.
    pub async fn start(&self) -> Result<StartReport, JobsError> {
        runner::start(&self.shared).await
    }

    /// Stops claiming, lets running handlers finish for up to `grace`, then tells the rest to
    /// stop and releases their leases (they run again at the next start, the attempt not
    /// counted). Waits for every worker loop to end.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        runner::shutdown(&self.shared, grace).await
    }

    /// Stores one job (durable when this returns). A duplicate dedup key returns the live
    /// job's id with `existing: true`. If the job is due and its queue has a free worker,
    /// the same transaction claims it and it starts right after the commit (it may start
    /// before this returns).
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, JobsError> {
        let row = self.shared.prepare(job)?;
        let mut out = self.enqueue_rows(vec![row]).await?;
        out.pop()
            .ok_or_else(|| JobsError::Invalid("nothing was enqueued".into()))
    }

    /// Stores many jobs in one transaction: all of them or (on an error) none.
    pub async fn enqueue_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, JobsError> {
        let rows = jobs
            .into_iter()
            .enumerate()
            .map(|(i, j)| {
                self.shared.prepare(j).map_err(|e| match e {
                    JobsError::Invalid(m) => JobsError::Invalid(format!("job #{i}: {m}")),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.enqueue_rows(rows).await
    }

    async fn enqueue_rows(&self, rows: Vec<store::NewRow>) -> Result<Vec<Enqueued>, JobsError> {
        let now = now_ms();
        // Direct dispatch when every job goes to one queue and some are due now; the claimed
        // jobs run on the enqueuer's runtime.
        let queue = rows[0].queue.clone();
        let one_queue = rows.iter().all(|r| r.queue == queue);
        let due = rows.iter().filter(|r| r.run_at <= now).count();
        let direct = match tokio::runtime::Handle::try_current() {
            Ok(rt) if one_queue => self
                .shared
                .reserve_direct(&queue, due)
                .map(|(q, n)| (q, n, rt)),
            _ => None,
        };
        // The writer runs `after` on its own thread right after COMMIT (count, wake the
        // workers, start the directly claimed jobs, give back unused reservations): a claimed
        // job does not wait for this task to be woken, and a cancelled caller strands no
        // claimed job and no worker. Dropped unrun, it gives the reservations back.
        let rows = Arc::new(rows);
        let after = shared::AfterEnqueue::new(self.shared.clone(), rows.clone(), direct, now);
        let reserved = after.reserved();
        let lease_ms = self.shared.lease_ms;
        let pending = self
            .shared
            .db
            .writer()
            .submit_then(
                move |c| {
                    let outs = rows
                        .iter()
                        .map(|r| store::insert(c, r, now))
                        .collect::<Result<Vec<_>, _>>()?;
                    let claimed = store::claim(c, &queue, reserved, now, lease_ms)?;
                    Ok((outs, claimed))
                },
                move |outcome: &mut DbResult<shared::EnqueueResult>| after.run(outcome),
            )
            .await?;
        let (outs, _) = pending.await?;
        Ok(outs)
    }

    /// Enqueues inside a write the caller is already making (`Db::write`), so the job exists
    /// if and only if the caller's transaction commits. Workers are woken at once; if the
    /// transaction rolls back they find nothing. If the writer re-runs the caller's batch
    /// (db/writer.rs), the `enqueued` counter counts this job once per run.
    pub fn enqueue_in(&self, conn: &Connection, job: NewJob) -> Result<Enqueued, JobsError> {
        let row = self.shared.prepare(job)?;
        let out = store::insert(conn, &row, now_ms())?;
        if !out.existing {
            self.shared.enqueued(&row.queue, row.run_at, 1);
        }
        Ok(out)
    }

    /// Cancels an available or running job. A running handler in this process is told at
    /// once ([`JobContext::is_cancelled`]); one elsewhere learns it at its next heartbeat, and
    /// its completion is refused either way.
    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome, JobsError> {
        let now = now_ms();
        let (out, queue, kind) = self
            .shared
            .db
            .write(move |c| Ok(store::cancel(c, id, now)))
            .await??;
        if let CancelOutcome::Cancelled { was_running } = out {
            if was_running {
                self.shared.signal_stop(id, StopReason::Cancelled);
            }
            self.shared.cancelled(id, &queue, &kind);
        }
        Ok(out)
    }

    /// Gives a failed or cancelled job a fresh set of attempts, to run now.
    pub async fn retry(&self, id: JobId) -> Result<(), JobsError> {
        let now = now_ms();
        let queue = self
            .shared
            .db
            .write(move |c| Ok(store::retry(c, id, now)))
            .await??;
        self.shared.enqueued(&queue, now, 0);
        Ok(())
    }

    /// One job, or `None`.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRecord>, JobsError> {
        self.shared.count_read();
        Ok(self.shared.db.read(move |c| store::get(c, id)).await?)
    }

    /// The newest jobs first, optionally of one state and queue.
    pub async fn list(
        &self,
        state: Option<JobState>,
        queue: Option<String>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, JobsError> {
        let limit = limit.clamp(1, 10_000);
        self.shared.count_read();
        Ok(self
            .shared
            .db
            .read(move |c| store::list(c, state, queue.as_deref(), limit))
            .await?)
    }

    /// Jobs per queue and state, and the age of each queue's oldest due job.
    pub async fn counts(&self) -> Result<Vec<QueueCounts>, JobsError> {
        let now = now_ms();
        self.shared.count_read();
        Ok(self.shared.db.read(move |c| store::counts(c, now)).await?)
    }

    /// Events after each job outcome is committed (done, retry, failed, lost, cancelled);
    /// a receiver that falls more than 4096 events behind misses some (`Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<JobEvent> {
        self.shared.events.subscribe()
    }

    /// In-memory counters since start (no SQL): enqueued, started, done, retried, failed.
    pub fn totals(&self) -> metrics::Totals {
        self.shared.metrics.totals()
    }

    /// In-memory counters of one queue since start, if it exists.
    pub fn totals_of(&self, queue: &str) -> Option<metrics::Totals> {
        self.shared.metrics.queue_totals(queue)
    }

    /// The queues this process knows, with their worker counts (the internal one included).
    pub fn queues(&self) -> Vec<(String, usize)> {
        self.shared.queue_names()
    }

    /// Read statements the queue itself has issued (lists, counts, metrics); together with
    /// the writer's counters this shows that an idle queue runs no SQL.
    pub fn reads_issued(&self) -> u64 {
        self.shared.reads()
    }

    pub fn db(&self) -> &Db {
        &self.shared.db
    }
}

/// What became of a job, sent to [`Queue::subscribe`] receivers after the commit.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub id: JobId,
    pub queue: Arc<str>,
    pub kind: Arc<str>,
    pub outcome: JobOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Done,
    /// Back to `available`, to run again at `run_at`.
    Retrying {
        run_at: i64,
        error: String,
    },
    Failed {
        error: String,
    },
    Cancelled,
    /// The completion was refused: the lease had been taken away (expired, cancelled).
    LeaseLost,
    /// Released at shutdown, not counted as an attempt.
    Released,
}
