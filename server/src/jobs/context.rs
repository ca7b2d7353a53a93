//! Owns what a handler gets and gives back: [`JobContext`] (identity of the job, heartbeat,
//! progress, the stop signal, and completing the job inside the handler's own transaction)
//! and [`JobError`] (retry, fail for good, or stopped).

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::watch;

use super::shared::Shared;
use super::{store, JobId, JobOutcome};
use crate::db::{now_ms, DbError, DbResult};

/// The proof that a worker holds a running job: its id and the token of this claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub job_id: JobId,
    pub token: i64,
}

/// Why a handler is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone cancelled the job.
    Cancelled,
    /// The lease expired and the reaper took the job back (or another worker holds it).
    LeaseLost,
    /// The process is shutting down and the grace period is over.
    Shutdown,
}

impl Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Cancelled => "the job was cancelled",
            StopReason::LeaseLost => "the job's lease was lost",
            StopReason::Shutdown => "the queue is shutting down",
        })
    }
}

/// How a handler ends badly.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// Try again after the backoff (or `after`, when given), while attempts remain.
    #[error("{message}")]
    Retry {
        message: String,
        after: Option<Duration>,
    },
    /// Fail for good, whatever attempts remain.
    #[error("{message}")]
    Fail { message: String },
    /// The job was taken away (cancelled, lease lost, shutdown): there is nothing to record.
    #[error("{0}")]
    Stopped(StopReason),
}

impl JobError {
    pub fn retry(e: impl Display) -> JobError {
        JobError::Retry {
            message: e.to_string(),
            after: None,
        }
    }

    pub fn retry_after(e: impl Display, after: Duration) -> JobError {
        JobError::Retry {
            message: e.to_string(),
            after: Some(after),
        }
    }

    pub fn fail(e: impl Display) -> JobError {
        JobError::Fail {
            message: e.to_string(),
        }
    }
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        JobError::retry(e)
    }
}

/// The per-claim state shared by the worker loop and the handler's context.
pub(crate) struct Running {
    pub lease: Lease,
    pub queue: Arc<str>,
    pub kind: Arc<str>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: i64,
    /// Set once the handler completed the job itself (`complete_with`).
    pub completed: AtomicBool,
    pub stop: watch::Sender<Option<StopReason>>,
    /// The handler's task, to abort it when the shutdown grace is over.
    pub abort: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// Set when the handler starts (a job claimed ahead waits for a worker first).
    pub started: AtomicBool,
}

impl Running {
    pub fn signal(&self, reason: StopReason) {
        self.stop.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// What a handler is given. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub(crate) job: Arc<Running>,
    pub(crate) shared: Arc<Shared>,
}

impl JobContext {
    pub fn id(&self) -> JobId {
        self.job.lease.job_id
    }

    pub fn queue(&self) -> &str {
        &self.job.queue
    }

    pub fn kind(&self) -> &str {
        &self.job.kind
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.job.attempt
    }

    pub fn max_attempts(&self) -> u32 {
        self.job.max_attempts
    }

    /// The lease of this claim, for calls inside a transaction such as [`complete_in`].
    pub fn lease(&self) -> Lease {
        self.job.lease
    }

    /// Extends the lease by `jobs.lease_secs` from now. Fails with [`JobError::Stopped`] if
    /// the job is no longer ours (cancelled, or the lease already lapsed and was reclaimed).
    pub async fn heartbeat(&self) -> Result<(), JobError> {
        self.touch(None).await
    }

    /// Records `progress` (any JSON) and extends the lease, like [`Self::heartbeat`].
    pub async fn progress(&self, progress: serde_json::Value) -> Result<(), JobError> {
        self.touch(Some(progress.to_string())).await
    }

    async fn touch(&self, progress: Option<String>) -> Result<(), JobError> {
        if let Some(reason) = self.stop_reason() {
            return Err(JobError::Stopped(reason));
        }
        let lease = self.job.lease;
        let lease_ms = self.shared.lease_ms;
        let held = self
            .shared
            .db
            .write(move |c| store::heartbeat(c, lease, now_ms(), lease_ms, progress.as_deref()))
            .await?;
        if held {
            self.shared.lease_granted(now_ms() + lease_ms);
            Ok(())
        } else {
            self.job.signal(StopReason::LeaseLost);
            Err(JobError::Stopped(
                self.stop_reason().unwrap_or(StopReason::LeaseLost),
            ))
        }
    }

    /// True once the job should stop (cancelled, lease lost, shutdown after the grace period).
    pub fn is_cancelled(&self) -> bool {
        self.job.stop.borrow().is_some()
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        *self.job.stop.borrow()
    }

    /// Resolves when the job should stop; for `tokio::select!` in long handlers.
    pub async fn cancelled(&self) -> StopReason {
        let mut rx = self.job.stop.subscribe();
        let reason = rx.wait_for(|r| r.is_some()).await.map(|r| *r);
        match reason {
            Ok(r) => r.unwrap_or(StopReason::Shutdown),
            Err(_) => std::future::pending().await,
        }
    }

    /// Runs `effect` and marks this job done in ONE transaction: both commit or neither does.
    /// If the lease is no longer held, `effect` does not run and the answer is
    /// [`JobError::Stopped`]; if `effect` fails, its changes are rolled back, the job stays
    /// running, and the error comes back as a retryable [`JobError`]. Like every write,
    /// `effect` may run more than once in the writer; only the run that commits counts.
    pub async fn complete_with<T, F>(&self, mut effect: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> DbResult<T> + Send + 'static,
    {
        if let Some(reason) = self.stop_reason() {
            return Err(JobError::Stopped(reason));
        }
        let lease = self.job.lease;
        let shared = self.shared.clone();
        let kind = self.job.kind.clone();
        let run_at = self.job.run_at;
        let out = self
            .shared
            .db
            .write(move |c| {
                let now = now_ms();
                if !store::holds(c, lease)? {
                    return Ok(None);
                }
                let value = effect(c)?;
                complete_in(c, lease)?;
                let next = shared.schedule_next_periodic(c, &kind, run_at, now)?;
                Ok(Some((value, next)))
            })
            .await?;
        match out {
            Some((value, next)) => {
                self.job.completed.store(true, Ordering::Release);
                self.shared.finished(&self.job, JobOutcome::Done, next);
                Ok(value)
            }
            None => {
                self.job.signal(StopReason::LeaseLost);
                Err(JobError::Stopped(
                    self.stop_reason().unwrap_or(StopReason::LeaseLost),
                ))
            }
        }
    }
}

/// Marks the job of `lease` done inside a write the caller is making, failing (so that the
/// caller's transaction rolls back) if the lease no longer holds. Prefer
/// [`JobContext::complete_with`], which also records the outcome in this process.
pub fn complete_in(conn: &Connection, lease: Lease) -> DbResult<()> {
    if store::complete(conn, lease, now_ms())? {
        Ok(())
    } else {
        Err(DbError::Aborted(format!(
            "job {} is no longer held by this lease",
            lease.job_id
        )))
    }
}
