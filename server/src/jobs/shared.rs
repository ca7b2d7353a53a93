//! Owns the state every part of the running queue shares: [`Shared`] — the database, the
//! settings, the queues ([`QueueState`]), the periodic schedules, the jobs in flight, events,
//! metrics, the reaper's hint and the stop signal — and recording what happened to jobs
//! after a commit (counters, events, log lines, wake-ups). It does not know the handlers:
//! those are the registry's, handed to whoever starts jobs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{broadcast, watch, Notify};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::counters::Metrics;
use super::error::{JobsError, StopReason};
use super::periodic::Periodic;
use super::queue_state::QueueState;
use super::running::Running;
use super::store::{self, NewRow};
use super::types::{JobEvent, JobId, JobOutcome, INTERNAL_QUEUE, NEVER};
use crate::config::JobsConfig;
use crate::db::{now_ms, Db, DbResult};

pub(crate) struct Shared {
    pub db: Db,
    pub lease_ms: i64,
    pub backoff: Backoff,
    pub default_max_attempts: u32,
    /// The periodic jobs by kind (the registry's, the internal prune job included).
    pub periodic: HashMap<String, Periodic>,
    pub queues: BTreeMap<String, Arc<QueueState>>,
    pub events: broadcast::Sender<JobEvent>,
    pub metrics: Metrics,
    /// Jobs running in this process, to tell them to stop.
    pub(super) in_flight: Mutex<HashMap<JobId, Arc<Running>>>,
    /// The earliest lease expiry the reaper may have to act on.
    pub(super) lease_hint: AtomicI64,
    pub(super) reaper_wake: Notify,
    /// `Some(deadline of the grace period)` once shutting down.
    pub(super) stop: watch::Sender<Option<Instant>>,
    pub(super) started: AtomicBool,
    /// True while the loops run and accept work (between start and shutdown).
    pub(super) live: AtomicBool,
    pub(super) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(super) reads: AtomicU64,
}

impl Shared {
    /// The shared state over `db` with the queues and limits of `config`; every periodic
    /// job must name one of its queues.
    pub fn new(
        db: Db,
        config: &JobsConfig,
        periodic: HashMap<String, Periodic>,
    ) -> Result<Arc<Shared>, JobsError> {
        let mut queues = BTreeMap::new();
        for (name, &n) in &config.workers {
            queues.insert(name.clone(), Arc::new(QueueState::new(name, n as usize)));
        }
        queues.insert(
            INTERNAL_QUEUE.to_string(),
            Arc::new(QueueState::new(INTERNAL_QUEUE, 1)),
        );
        for p in periodic.values() {
            if !queues.contains_key(&p.queue) {
                return Err(JobsError::Invalid(format!(
                    "periodic job {:?} names queue {:?}, which is not in [jobs.workers]",
                    p.kind, p.queue
                )));
            }
        }
        let metrics = Metrics::new(queues.keys().map(String::as_str));
        Ok(Arc::new(Shared {
            db,
            lease_ms: (config.lease_secs * 1000) as i64,
            backoff: Backoff::new(
                Duration::from_millis(config.retry_base_ms),
                Duration::from_secs(config.retry_max_secs),
            ),
            default_max_attempts: config.max_attempts,
            periodic,
            queues,
            events: broadcast::channel(4096).0,
            metrics,
            in_flight: Mutex::new(HashMap::new()),
            lease_hint: AtomicI64::new(NEVER),
            reaper_wake: Notify::new(),
            stop: watch::channel(None).0,
            started: AtomicBool::new(false),
            live: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            reads: AtomicU64::new(0),
        }))
    }

    /// Reserves workers of `queue` for an enqueue to claim up to `due_now` jobs in its own
    /// transaction (direct dispatch: one commit from enqueue to start instead of two).
    pub fn reserve_direct(&self, queue: &str, due_now: usize) -> Option<(Arc<QueueState>, usize)> {
        if due_now == 0 || !self.live.load(Ordering::Acquire) {
            return None;
        }
        let q = self.queues.get(queue)?;
        let n = q.try_reserve(due_now);
        (n > 0).then(|| (q.clone(), n))
    }

    /// After a commit that made a job of `queue` available at `run_at`: wake its loop.
    pub fn enqueued(&self, queue: &str, run_at: i64, new_jobs: u64) {
        if let Some(q) = self.queues.get(queue) {
            q.next_due.fetch_min(run_at, Ordering::AcqRel);
            q.wake.notify_one();
        }
        if new_jobs > 0 {
            if let Some(m) = self.metrics.queue(queue) {
                m.enqueued.inc_by(new_jobs);
            }
        }
    }

    /// A lease now runs until `expires`: make sure the reaper looks by then.
    pub fn lease_granted(&self, expires: i64) {
        if expires < self.lease_hint.fetch_min(expires, Ordering::AcqRel) {
            self.reaper_wake.notify_one();
        }
    }

    pub fn signal_stop(&self, id: JobId, reason: StopReason) {
        if let Some(job) = self.lock_in_flight().get(&id) {
            job.signal(reason);
        }
    }

    pub(super) fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<Running>>> {
        // A panic while holding this lock leaves the map usable; take it regardless.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn queue_names(&self) -> Vec<(String, usize)> {
        self.queues
            .iter()
            .map(|(n, q)| (n.clone(), q.workers))
            .collect()
    }

    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    pub fn count_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Inside the transaction that finished a job of `kind` (done or failed): if it is
    /// periodic, store its next instance at the next tick after `now` of the schedule that
    /// `prev_run_at` was on. Returns (queue, run_at) to wake after the commit.
    pub fn schedule_next_periodic(
        &self,
        c: &Connection,
        kind: &str,
        prev_run_at: i64,
        now: i64,
    ) -> DbResult<Option<(String, i64)>> {
        let Some(p) = self.periodic.get(kind) else {
            return Ok(None);
        };
        self.insert_periodic(c, p, p.next_run_at(prev_run_at, now), now)
    }

    pub(crate) fn insert_periodic(
        &self,
        c: &Connection,
        p: &Periodic,
        run_at: i64,
        now: i64,
    ) -> DbResult<Option<(String, i64)>> {
        let row = NewRow {
            queue: p.queue.clone(),
            kind: p.kind.clone(),
            payload: p.payload.to_string(),
            priority: 0,
            run_at,
            max_attempts: i64::from(self.default_max_attempts),
            dedup_key: Some(Periodic::dedup_key(&p.kind)),
        };
        let out = store::insert(c, &row, now)?;
        Ok((!out.existing).then(|| (p.queue.clone(), run_at)))
    }

    /// Records an outcome after its commit: counters, the event, a log line, and wakes the
    /// queue of a periodic job's next instance.
    pub fn finished(&self, job: &Running, outcome: JobOutcome, next: Option<(String, i64)>) {
        if let Some(m) = self.metrics.queue(&job.queue) {
            let counter = match &outcome {
                JobOutcome::Done => {
                    m.attempts.observe(f64::from(job.attempt));
                    &m.done
                }
                JobOutcome::Retrying { .. } => &m.retried,
                JobOutcome::Failed { .. } => {
                    m.attempts.observe(f64::from(job.attempt));
                    &m.failed
                }
                JobOutcome::Cancelled => &m.cancelled,
                JobOutcome::LeaseLost => &m.lost,
                JobOutcome::Released => &m.released,
            };
            counter.inc();
        }
        let id = job.lease.job_id;
        match &outcome {
            JobOutcome::Done => {
                tracing::debug!(job.id = id, queue = %job.queue, kind = %job.kind, attempt = job.attempt, "job done")
            }
            JobOutcome::Retrying { run_at, error } => tracing::info!(
                job.id = id, queue = %job.queue, kind = %job.kind, attempt = job.attempt,
                max_attempts = job.max_attempts, retry_in_ms = run_at - now_ms(), error = %error,
                "job failed; will retry"
            ),
            JobOutcome::Failed { error } => tracing::warn!(
                job.id = id, queue = %job.queue, kind = %job.kind, attempt = job.attempt,
                max_attempts = job.max_attempts, error = %error, "job failed for good"
            ),
            other => tracing::info!(
                job.id = id, queue = %job.queue, kind = %job.kind, attempt = job.attempt,
                outcome = ?other, "job stopped"
            ),
        }
        let _ = self.events.send(JobEvent {
            id,
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            outcome,
        });
        if let Some((queue, run_at)) = next {
            self.enqueued(&queue, run_at, 1);
        }
    }

    /// After a committed cancel: counters, event, log line.
    pub fn cancelled(&self, id: JobId, queue: &str, kind: &str) {
        if let Some(m) = self.metrics.queue(queue) {
            m.cancelled.inc();
        }
        tracing::info!(job.id = id, queue, kind, "job cancelled");
        let _ = self.events.send(JobEvent {
            id,
            queue: Arc::from(queue),
            kind: Arc::from(kind),
            outcome: JobOutcome::Cancelled,
        });
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.borrow().is_some()
    }
}

/// Sleeps until `at`, or forever.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
