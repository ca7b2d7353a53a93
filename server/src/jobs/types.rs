//! Owns the queue's vocabulary: plain data every layer shares — ids, states, the job to
//! enqueue and the answer to it, leases, what became of a job, and the records the admin
//! commands and metrics read. No SQL and no running state here.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::JobsError;
use crate::db::now_ms;

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
    /// The handler that runs it (see [`Registry::register`](super::Registry::register)).
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

/// No time: "nothing due", "no lease to watch".
pub(crate) const NEVER: i64 = i64::MAX;

/// The proof that a worker holds a running job: its id and the token of this claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub job_id: JobId,
    pub token: i64,
}

/// A job as the admin commands and metrics see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: JobId,
    pub queue: String,
    pub kind: String,
    pub state: JobState,
    pub priority: i64,
    pub run_at: i64,
    pub attempt: u32,
    pub max_attempts: u32,
    pub dedup_key: Option<String>,
    pub progress: Option<String>,
    pub last_error: Option<String>,
    pub payload: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub lease_expires_at: Option<i64>,
}

/// Jobs of one queue per state, and how long its oldest due job has waited.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueCounts {
    pub queue: String,
    pub available: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// ms since the oldest available job became due (0 when none is due).
    pub oldest_available_age_ms: i64,
}

/// What [`Queue::cancel`](super::Queue::cancel) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled {
        was_running: bool,
    },
    /// It had already finished; nothing changed.
    AlreadyFinished(JobState),
}

/// What became of a job, sent to [`Queue::subscribe`](super::Queue::subscribe) receivers
/// after the commit.
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
