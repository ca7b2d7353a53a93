//! Owns the state every part of the running queue shares: [`Shared`] (the database, the
//! handlers, the queues, the jobs in flight, events, metrics, the stop signal), each queue's
//! [`QueueState`] (its workers, places and wake-up), checking jobs before they are stored,
//! what happens after an enqueue commits (wake-ups, direct dispatch), and recording outcomes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{broadcast, watch, Notify, Semaphore};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::context::{JobContext, Running, StopReason};
use super::metrics::Metrics;
use super::prune::{self, PruneSettings};
use super::registry::{check_kind, Periodic, Registry};
use super::runner::Finished;
use super::store::{self, NewRow};
use super::task::spawn_claimed;
use super::{
    JobEvent, JobId, JobOutcome, JobsError, NewJob, INTERNAL_QUEUE, MAX_DEDUP_KEY_BYTES,
    MAX_PAYLOAD_BYTES,
};
use crate::config::JobsConfig;
use crate::db::{now_ms, Db, DbResult};

/// Jobs claimed ahead per queue, as a multiple of its workers, while its handlers are fast
/// (mean run time under [`PREFETCH_BELOW_US`]): while a round commits, the jobs claimed ahead
/// run, so the database and the handlers work at the same time, and each round carries more
/// jobs (at concurrency 8: ~21,000 → ~53,000 no-op jobs/s). Slow handlers gain nothing from
/// it, so their queues claim only for free workers. A job claimed ahead waits for a worker in
/// this process, renewing its lease every third of it, and renews it once more before it
/// starts if the last renewal is over a quarter of the lease old (it does not start if the
/// lease is gone). Shutdown releases it at once, its attempt not counted.
pub(super) const PREFETCH: usize = 2;
const PREFETCH_BELOW_US: u64 = 2_000;

/// No time: "nothing due", "no lease to watch".
pub(super) const NEVER: i64 = i64::MAX;

/// One queue's worker loop state visible to the rest of the process.
pub(crate) struct QueueState {
    pub name: Arc<str>,
    pub workers: usize,
    /// Mean handler run time (µs, moving average); `u64::MAX` until one has finished.
    pub(super) mean_run_us: AtomicU64,
    /// Handlers running at once (`workers` permits).
    pub(super) slots: Arc<Semaphore>,
    /// The earliest `run_at` the loop may have missed; enqueues lower it, rounds reset it.
    pub next_due: AtomicI64,
    /// Claimed and not finished (running, waiting for a worker, or being claimed).
    pub(super) busy: AtomicUsize,
    /// Handlers that ended, waiting for the next round to record their outcome.
    pub(super) completions: Mutex<Vec<Finished>>,
    pub wake: Notify,
}

pub(crate) struct Shared {
    pub db: Db,
    pub lease_ms: i64,
    pub backoff: Backoff,
    pub default_max_attempts: u32,
    pub registry: Registry,
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
    pub fn new(
        db: Db,
        config: &JobsConfig,
        mut registry: Registry,
    ) -> Result<Arc<Shared>, JobsError> {
        let mut queues = BTreeMap::new();
        for (name, &n) in &config.workers {
            queues.insert(name.clone(), Arc::new(QueueState::new(name, n as usize)));
        }
        queues.insert(
            INTERNAL_QUEUE.to_string(),
            Arc::new(QueueState::new(INTERNAL_QUEUE, 1)),
        );
        for p in registry.periodic.values() {
            if !queues.contains_key(&p.queue) {
                return Err(JobsError::Invalid(format!(
                    "periodic job {:?} names queue {:?}, which is not in [jobs.workers]",
                    p.kind, p.queue
                )));
            }
        }
        let settings = PruneSettings {
            done_after: Duration::from_secs(config.prune_done_after_secs),
            failed_after: Duration::from_secs(config.prune_failed_after_secs),
            batch: config.prune_batch,
        };
        let prune_db = db.clone();
        registry.insert_periodic_internal(
            Periodic::new(prune::KIND, Duration::from_secs(config.prune_interval_secs))
                .queue(INTERNAL_QUEUE),
            move |ctx: JobContext, _: serde_json::Value| {
                let db = prune_db.clone();
                async move { prune::prune(&db, settings, Some(&ctx)).await.map(|_| ()) }
            },
        )?;
        let metrics = Metrics::new(queues.keys().map(String::as_str));
        Ok(Arc::new(Shared {
            db,
            lease_ms: (config.lease_secs * 1000) as i64,
            backoff: Backoff::new(
                Duration::from_millis(config.retry_base_ms),
                Duration::from_secs(config.retry_max_secs),
            ),
            default_max_attempts: config.max_attempts,
            registry,
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

    /// Checks a job and turns it into a row, or says what is wrong with it.
    pub fn prepare(&self, job: NewJob) -> Result<NewRow, JobsError> {
        check_kind(&job.kind)?;
        if !self.registry.handlers.contains_key(&job.kind) {
            return Err(JobsError::Invalid(format!(
                "no handler is registered for job kind {:?}",
                job.kind
            )));
        }
        let internal = job.kind.starts_with("jobs.");
        if !self.queues.contains_key(&job.queue) || (job.queue == INTERNAL_QUEUE) != internal {
            let known: Vec<&str> = self
                .queues
                .keys()
                .map(String::as_str)
                .filter(|q| *q != INTERNAL_QUEUE)
                .collect();
            return Err(JobsError::Invalid(format!(
                "unknown queue {:?}; the queues are those of [jobs.workers]: {}",
                job.queue,
                known.join(", ")
            )));
        }
        let max_attempts = job.max_attempts.unwrap_or(self.default_max_attempts);
        if !(1..=1000).contains(&max_attempts) {
            return Err(JobsError::Invalid(format!(
                "max_attempts must be between 1 and 1000, not {max_attempts}"
            )));
        }
        if let Some(key) = &job.dedup_key {
            if key.is_empty() || key.len() > MAX_DEDUP_KEY_BYTES {
                return Err(JobsError::Invalid(format!(
                    "a dedup key is 1-{MAX_DEDUP_KEY_BYTES} bytes"
                )));
            }
        }
        let payload = job.payload.to_string();
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(JobsError::Invalid(format!(
                "the payload is {} bytes of JSON; the most is {MAX_PAYLOAD_BYTES}",
                payload.len()
            )));
        }
        Ok(NewRow {
            queue: job.queue,
            kind: job.kind,
            payload,
            priority: i64::from(job.priority),
            run_at: job.run_at.unwrap_or_else(now_ms),
            max_attempts: i64::from(max_attempts),
            dedup_key: job.dedup_key,
        })
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

    /// After an enqueue committed (on the writer thread, see [`AfterEnqueue`]): counts the
    /// new jobs, wakes the loops of those not claimed directly, and starts those that were.
    fn after_enqueue(
        self: &Arc<Self>,
        rows: &[NewRow],
        outs: &[super::Enqueued],
        direct: Option<Direct>,
        claimed: Vec<store::Claimed>,
        now: i64,
    ) {
        // Start the claimed jobs first: they are what someone is waiting for.
        let claimed_ids: Vec<JobId> = claimed.iter().map(|c| c.id).collect();
        if let Some((q, reserved, rt)) = direct {
            q.unreserve(reserved.saturating_sub(claimed.len()));
            spawn_claimed(self, &q, claimed, now, Some(&rt));
        }
        // A batch names one queue as a rule: count and wake once per run of rows of one queue,
        // for the earliest job not claimed here.
        let mut group: Option<(&str, u64, i64)> = None;
        for (row, out) in rows.iter().zip(outs) {
            if out.existing {
                continue;
            }
            let run_at = if claimed_ids.contains(&out.id) {
                NEVER
            } else {
                row.run_at
            };
            match &mut group {
                Some((queue, new, earliest)) if *queue == row.queue => {
                    *new += 1;
                    *earliest = (*earliest).min(run_at);
                }
                _ => {
                    if let Some(g) = group.take() {
                        self.enqueued_group(g);
                    }
                    group = Some((&row.queue, 1, run_at));
                }
            }
        }
        if let Some(g) = group {
            self.enqueued_group(g);
        }
    }

    fn enqueued_group(&self, (queue, new, earliest): (&str, u64, i64)) {
        if earliest != NEVER {
            self.enqueued(queue, earliest, new);
        } else if let Some(m) = self.metrics.queue(queue) {
            m.enqueued.fetch_add(new, Ordering::Relaxed);
        }
    }

    /// After a commit that made a job of `queue` available at `run_at`: wake its loop.
    pub fn enqueued(&self, queue: &str, run_at: i64, new_jobs: u64) {
        if let Some(q) = self.queues.get(queue) {
            q.next_due.fetch_min(run_at, Ordering::AcqRel);
            q.wake.notify_one();
        }
        if new_jobs > 0 {
            if let Some(m) = self.metrics.queue(queue) {
                m.enqueued.fetch_add(new_jobs, Ordering::Relaxed);
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
        let Some(p) = self.registry.periodic.get(kind) else {
            return Ok(None);
        };
        let every = (p.every.as_millis() as i64).max(1);
        let ticks = if now >= prev_run_at {
            (now - prev_run_at) / every + 1
        } else {
            1
        };
        let run_at = prev_run_at.saturating_add(ticks.saturating_mul(every));
        self.insert_periodic(c, p, run_at, now)
    }

    pub(super) fn insert_periodic(
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
            counter.fetch_add(1, Ordering::Relaxed);
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
            m.cancelled.fetch_add(1, Ordering::Relaxed);
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

pub(crate) type EnqueueResult = (Vec<super::Enqueued>, Vec<store::Claimed>);

/// Places of a queue reserved for an enqueue's direct dispatch, and the runtime its claimed
/// jobs run on (the enqueuer's).
pub(crate) type Direct = (Arc<QueueState>, usize, tokio::runtime::Handle);

/// What follows an enqueue's COMMIT: counters, wake-ups, and starting the jobs it claimed
/// (direct dispatch). It runs on the writer thread right after the commit
/// (`Writer::submit_then`), so a claimed job starts without waiting for the enqueuing task's
/// thread to wake up, and it runs even if the enqueuing future was dropped meanwhile. If it
/// never runs (the operation never reached the writer), dropping it gives back the reserved
/// places.
pub(crate) struct AfterEnqueue {
    shared: Arc<Shared>,
    rows: Arc<Vec<NewRow>>,
    direct: Option<Direct>,
    now: i64,
}

impl AfterEnqueue {
    pub fn new(
        shared: Arc<Shared>,
        rows: Arc<Vec<NewRow>>,
        direct: Option<Direct>,
        now: i64,
    ) -> Self {
        AfterEnqueue {
            shared,
            rows,
            direct,
            now,
        }
    }

    /// Places reserved for direct dispatch.
    pub fn reserved(&self) -> usize {
        self.direct.as_ref().map_or(0, |d| d.1)
    }

    /// Called by the writer with the enqueue's outcome (`Ok` only after COMMIT); takes the
    /// claimed jobs out of it to start them.
    pub fn run(mut self, outcome: &mut DbResult<EnqueueResult>) {
        let direct = self.direct.take();
        match outcome {
            Ok((outs, claimed)) => {
                let claimed = std::mem::take(claimed);
                self.shared
                    .after_enqueue(&self.rows, outs, direct, claimed, self.now);
            }
            Err(_) => {
                if let Some((q, n, _)) = direct {
                    q.unreserve(n);
                }
            }
        }
    }
}

impl Drop for AfterEnqueue {
    fn drop(&mut self) {
        if let Some((q, n, _)) = self.direct.take() {
            q.unreserve(n);
        }
    }
}

impl QueueState {
    pub(super) fn new(name: &str, workers: usize) -> QueueState {
        QueueState {
            name: Arc::from(name),
            workers: workers.max(1),
            mean_run_us: AtomicU64::new(u64::MAX),
            slots: Arc::new(Semaphore::new(workers.max(1))),
            next_due: AtomicI64::new(NEVER),
            busy: AtomicUsize::new(0),
            completions: Mutex::new(Vec::new()),
            wake: Notify::new(),
        }
    }

    /// Most jobs claimed and not yet finished: the workers, plus jobs claimed ahead while
    /// the handlers are fast (see [`PREFETCH`]).
    pub(super) fn capacity(&self) -> usize {
        if self.mean_run_us.load(Ordering::Relaxed) < PREFETCH_BELOW_US {
            self.workers * (1 + PREFETCH)
        } else {
            self.workers
        }
    }

    pub(super) fn observe_run(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u64::MAX / 2)) as u64;
        let old = self.mean_run_us.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            us
        } else {
            old - old / 8 + us / 8
        };
        self.mean_run_us.store(new, Ordering::Relaxed);
    }

    /// Takes up to `n` free places (claims not yet finished); returns how many it took.
    pub fn try_reserve(&self, n: usize) -> usize {
        let mut busy = self.busy.load(Ordering::Acquire);
        loop {
            let take = self.capacity().saturating_sub(busy).min(n);
            if take == 0 {
                return 0;
            }
            match self.busy.compare_exchange_weak(
                busy,
                busy + take,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return take,
                Err(now) => busy = now,
            }
        }
    }

    pub fn unreserve(&self, n: usize) {
        if n > 0 {
            self.busy.fetch_sub(n, Ordering::AcqRel);
        }
    }

    pub(super) fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    pub(super) fn take_completions(&self) -> Vec<Finished> {
        std::mem::take(&mut *self.completions.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Sleeps until `at`, or forever.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
