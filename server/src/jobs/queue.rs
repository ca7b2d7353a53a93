//! Owns the queue's handle, [`Queue`]: what the rest of the crate calls to start and stop
//! the queue, enqueue, cancel, retry and read jobs. It holds the shared state and the
//! handlers and hands the work to the files below it.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::counters::Totals;
use super::enqueue;
use super::error::{JobsError, StopReason};
use super::prune;
use super::registry::Registry;
use super::runner::{self, ShutdownReport, StartReport};
use super::shared::Shared;
use super::store;
use super::types::{
    CancelOutcome, Enqueued, JobEvent, JobId, JobRecord, JobState, NewJob, QueueCounts,
};
use crate::config::JobsConfig;
use crate::db::{now_ms, Db};

/// The job queue: a cheap, cloneable handle kept in `AppState`.
///
/// [`Queue::new`] only prepares; [`Queue::start`] recovers orphans and starts the workers
/// (a process that only inspects or edits jobs, like the CLI, never starts it).
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
}

impl Queue {
    /// A queue over `db` with the queues and limits of `config` and the handlers of `registry`.
    /// The internal prune job is added to the registry here.
    pub fn new(db: Db, config: &JobsConfig, mut registry: Registry) -> Result<Queue, JobsError> {
        prune::register(&mut registry, &db, config)?;
        let shared = Shared::new(db, config, registry.periodic.clone())?;
        Ok(Queue {
            shared,
            registry: Arc::new(registry),
        })
    }

    /// Requeues every `running` row (orphans of the last process), makes sure every periodic
    /// job has its live instance, and starts one worker loop per queue and the reaper.
    pub async fn start(&self) -> Result<StartReport, JobsError> {
        runner::start(&self.shared, &self.registry).await
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
        let row = enqueue::check(&self.shared, &self.registry, job)?;
        let mut out = enqueue::enqueue_rows(&self.shared, &self.registry, vec![row]).await?;
        out.pop()
            .ok_or_else(|| JobsError::Invalid("nothing was enqueued".into()))
    }

    /// Stores many jobs in one transaction: all of them or (on an error) none.
    pub async fn enqueue_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, JobsError> {
        let rows = jobs
            .into_iter()
            .enumerate()
            .map(|(i, j)| {
                enqueue::check(&self.shared, &self.registry, j).map_err(|e| match e {
                    JobsError::Invalid(m) => JobsError::Invalid(format!("job #{i}: {m}")),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        enqueue::enqueue_rows(&self.shared, &self.registry, rows).await
    }

    /// Enqueues inside a write the caller is already making (`Db::write`), so the job exists
    /// if and only if the caller's transaction commits. Workers are woken at once; if the
    /// transaction rolls back they find nothing. If the writer re-runs the caller's batch
    /// (db/writer.rs), the `enqueued` counter counts this job once per run.
    pub fn enqueue_in(&self, conn: &Connection, job: NewJob) -> Result<Enqueued, JobsError> {
        enqueue::enqueue_in(&self.shared, &self.registry, conn, job)
    }

    /// Cancels an available or running job. A running handler in this process is told at
    /// once ([`JobContext::is_cancelled`](super::JobContext::is_cancelled)); one elsewhere
    /// learns it at its next heartbeat, and its completion is refused either way.
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
    pub fn totals(&self) -> Totals {
        self.shared.metrics.totals()
    }

    /// In-memory counters of one queue since start, if it exists.
    pub fn totals_of(&self, queue: &str) -> Option<Totals> {
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

    /// The state the running queue shares (for the metrics text).
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}
