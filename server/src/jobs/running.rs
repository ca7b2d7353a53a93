//! Owns what this process knows of one claimed job ([`Running`]: its lease, identity, stop
//! signal and task) and how its handler ended ([`Finished`], waiting for its queue's next
//! round).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::watch;

use super::error::{JobError, StopReason};
use super::types::Lease;

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

/// A handler that ended, waiting for its outcome to be recorded in the next round.
pub(crate) struct Finished {
    pub job: Arc<Running>,
    pub result: Result<(), JobError>,
}
