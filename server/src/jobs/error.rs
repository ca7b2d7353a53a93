//! Owns the queue's errors: [`JobsError`] (what the queue's API answers) and [`JobError`]
//! with its [`StopReason`] (how a handler ends badly). The bottom of the module: it imports
//! nothing of the queue.

use std::fmt::Display;
use std::time::Duration;

use crate::db::DbError;

/// Errors of the queue's API. `Invalid` is the caller's fault and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("invalid job: {0}")]
    Invalid(String),
    /// No job has this id ([`JobId`](super::JobId)).
    #[error("no job with id {0}")]
    NotFound(i64),
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
