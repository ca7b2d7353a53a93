//! Owns what a handler is given: [`JobContext`] (identity of the job, heartbeat, progress,
//! the stop signal, and completing the job inside the handler's own transaction), and
//! [`complete_in`] for a write the caller makes itself.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rusqlite::Connection;

use super::error::{JobError, StopReason};
use super::running::Running;
use super::shared::Shared;
use super::store;
use super::types::{JobId, JobOutcome, Lease};
use crate::db::{now_ms, DbError, DbResult};

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
