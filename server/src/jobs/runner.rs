//! Owns the running queue's life: start-up (orphans requeued, periodic jobs ensured, loops
//! started), one worker loop per queue with the write of each round (outcomes recorded under
//! their leases, then the claim), and graceful shutdown.
//!
//! A worker loop runs *rounds*: one write operation that records the outcomes of the handlers
//! that finished since the last round (each fenced by its lease) and claims as many due jobs
//! as there are free places (workers, plus jobs claimed ahead for fast queues, see
//! [`PREFETCH`](super::queue_state::PREFETCH)), so a busy queue costs one transaction per
//! round. Between rounds it sleeps on a notification (enqueue, a finished handler, shutdown)
//! or on one timer for the queue's earliest `run_at`; an idle queue runs no SQL at all.
//!
//! Direct dispatch: an enqueue of due jobs into a queue with a free place claims in its own
//! transaction, and the writer thread starts the handlers right after that COMMIT (before it
//! answers the enqueuer), so a job on an idle queue starts one commit after `enqueue` is
//! called, not two, without waiting for the enqueuing task to be woken.
//!
//! Every claimed job is a task that waits for one of the queue's `workers` permits, runs the
//! handler (panics caught), and hands the result to its queue's next round; a task that is
//! aborted (shutdown after the grace period) reports itself as stopped, so its lease is
//! released.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::time::Instant;

use super::error::{JobError, JobsError, StopReason};
use super::periodic::Periodic;
use super::queue_state::QueueState;
use super::reaper::reap_loop;
use super::registry::Registry;
use super::running::{Finished, Running};
use super::shared::{sleep_until, Shared};
use super::store;
use super::task::{abort_running, spawn_claimed, stop_waiting};
use super::types::{JobOutcome, JobState, NEVER};
use crate::db::{now_ms, DbResult};

/// What [`Queue::start`](super::Queue::start) found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Jobs left `running` by the last process, now available again.
    pub requeued: usize,
    /// Orphans that had no attempt left, now failed.
    pub failed: usize,
}

/// What [`Queue::shutdown`](super::Queue::shutdown) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Handlers that finished during the grace period.
    pub finished: u64,
    /// Handlers stopped after the grace period; their jobs were released.
    pub released: u64,
}

/// Start-up: requeue orphans, ensure periodic instances, learn each queue's earliest run_at,
/// then start the loops.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
) -> Result<StartReport, JobsError> {
    if shared.started.swap(true, Ordering::AcqRel) {
        return Err(JobsError::AlreadyStarted);
    }
    let s = shared.clone();
    let (reclaimed, dues) = shared
        .db
        .write(move |c| {
            let now = now_ms();
            let reclaimed = store::reclaim(c, now, false, &s.backoff, i64::MAX)?;
            let mut periodic: Vec<&Periodic> = s.periodic.values().collect();
            periodic.sort_by(|a, b| a.kind.cmp(&b.kind));
            for p in periodic {
                s.insert_periodic(c, p, now, now)?;
            }
            let mut dues = Vec::new();
            for name in s.queues.keys() {
                dues.push((name.clone(), store::next_due(c, name)?));
            }
            Ok((reclaimed, dues))
        })
        .await
        .inspect_err(|_| shared.started.store(false, Ordering::Release))?;
    let report = StartReport {
        requeued: reclaimed
            .iter()
            .filter(|r| r.state == JobState::Available)
            .count(),
        failed: reclaimed
            .iter()
            .filter(|r| r.state == JobState::Failed)
            .count(),
    };
    for (name, due) in dues {
        if let (Some(q), Some(due)) = (shared.queues.get(&name), due) {
            q.next_due.fetch_min(due, Ordering::AcqRel);
        }
    }
    let mut tasks = Vec::new();
    for q in shared.queues.values() {
        tasks.push(tokio::spawn(work_loop(
            shared.clone(),
            registry.clone(),
            q.clone(),
        )));
    }
    tasks.push(tokio::spawn(reap_loop(shared.clone())));
    shared.live.store(true, Ordering::Release);
    shared
        .tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(tasks);
    tracing::info!(
        requeued = report.requeued,
        failed = report.failed,
        queues = ?shared.queue_names(),
        "job queue started"
    );
    Ok(report)
}

pub(crate) async fn shutdown(shared: &Arc<Shared>, grace: Duration) -> ShutdownReport {
    let before = shared.metrics.totals();
    shared.live.store(false, Ordering::Release);
    shared.stop.send_replace(Some(Instant::now() + grace));
    for q in shared.queues.values() {
        q.wake.notify_one();
    }
    shared.reaper_wake.notify_one();
    let tasks: Vec<_> =
        std::mem::take(&mut *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "a job queue task ended badly");
        }
    }
    let after = shared.metrics.totals();
    let released = after.released - before.released;
    let finished = (after.done + after.retried + after.failed + after.lost)
        - (before.done + before.retried + before.failed + before.lost);
    tracing::info!(finished, released, "job queue stopped");
    ShutdownReport { finished, released }
}

/// What one round did, per finished job and in total.
pub(super) struct RoundOut {
    outcomes: Vec<(JobOutcome, Option<(String, i64)>)>,
    claimed: Vec<store::Claimed>,
    next_due: Option<i64>,
}

/// One queue's worker loop; see the module comment.
pub(super) async fn work_loop(shared: Arc<Shared>, registry: Arc<Registry>, q: Arc<QueueState>) {
    let mut stop_rx = shared.stop.subscribe();
    let mut error_pause = Duration::from_millis(50);
    let mut finished: Vec<Finished> = Vec::new();
    loop {
        let deadline = *stop_rx.borrow_and_update();
        if deadline.is_some() && q.busy() > 0 {
            // Jobs claimed ahead that have not started go back at once.
            stop_waiting(&shared, &q);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) && q.busy() > 0 {
            // Grace is over: stop what still runs. Each aborted handler reports itself
            // (as stopped for shutdown) when its task is dropped, and its lease is released.
            abort_running(&shared, &q);
        }
        if q.busy() > 0 && finished.is_empty() {
            // Handlers that were started together tend to end together: let them, so one
            // round records them all.
            tokio::task::yield_now().await;
        }
        finished.extend(q.take_completions());
        let now = now_ms();
        let due = q.next_due.load(Ordering::Acquire);
        let claim_n = if deadline.is_none() && due <= now {
            q.try_reserve(usize::MAX)
        } else {
            0
        };
        if finished.is_empty() && claim_n == 0 {
            if deadline.is_some() && q.busy() == 0 {
                break;
            }
            let timer = match deadline {
                // After the deadline, look again now and then until the aborted are gone.
                Some(d) if Instant::now() >= d => Some(Instant::now() + Duration::from_millis(50)),
                Some(d) => Some(d),
                None if due != NEVER && q.busy() < q.capacity() => Some(
                    Instant::now() + Duration::from_millis(due.saturating_sub(now).max(0) as u64),
                ),
                None => None,
            };
            tokio::select! {
                () = q.wake.notified() => {}
                () = sleep_until(timer) => {}
                _ = stop_rx.changed(), if deadline.is_none() => {}
            }
            continue;
        }

        // One round: outcomes of finished handlers, then the claim, in one transaction.
        if claim_n > 0 {
            // Consume the hints: an enqueue committed from here on lowers it again.
            q.next_due.store(NEVER, Ordering::Release);
        }
        let batch: Arc<Vec<Finished>> = Arc::new(std::mem::take(&mut finished));
        let (s, b, queue) = (shared.clone(), batch.clone(), q.name.clone());
        let result = shared
            .db
            .write(move |c| round(c, &s, &queue, &b, claim_n))
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(queue = %q.name, error = %e, "job queue round failed; retrying");
                q.unreserve(claim_n);
                if claim_n > 0 {
                    q.next_due.fetch_min(now, Ordering::AcqRel);
                }
                finished = batch
                    .iter()
                    .map(|f| Finished {
                        job: f.job.clone(),
                        result: f.result.clone(),
                    })
                    .collect();
                if deadline.is_some_and(|d| Instant::now() >= d + Duration::from_secs(5)) {
                    tracing::error!(queue = %q.name, "giving up on recording job outcomes at shutdown");
                    break;
                }
                tokio::time::sleep(error_pause).await;
                error_pause = (error_pause * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        error_pause = Duration::from_millis(50);
        for (f, (outcome, next)) in batch.iter().zip(out.outcomes) {
            shared.finished(&f.job, outcome, next);
        }
        if claim_n > 0 {
            q.unreserve(claim_n - out.claimed.len());
            let next = if out.claimed.len() == claim_n {
                now
            } else {
                out.next_due.unwrap_or(NEVER)
            };
            q.next_due.fetch_min(next, Ordering::AcqRel);
        }
        spawn_claimed(&shared, &registry, &q, out.claimed, now, None);
    }
    tracing::debug!(queue = %q.name, "job worker loop stopped");
}

/// The write of one round (runs on the writer thread).
pub(super) fn round(
    c: &Connection,
    shared: &Shared,
    queue: &str,
    finished: &[Finished],
    claim_n: usize,
) -> DbResult<RoundOut> {
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(finished.len());
    for f in finished {
        outcomes.push(record(c, shared, f, now)?);
    }
    let claimed = store::claim(c, queue, claim_n, now, shared.lease_ms)?;
    let next_due = if claim_n > 0 && claimed.len() < claim_n {
        store::next_due(c, queue)?
    } else {
        None
    };
    Ok(RoundOut {
        outcomes,
        claimed,
        next_due,
    })
}

/// Records one handler's result under its lease.
pub(super) fn record(
    c: &Connection,
    shared: &Shared,
    f: &Finished,
    now: i64,
) -> DbResult<(JobOutcome, Option<(String, i64)>)> {
    let job = &f.job;
    let lease = job.lease;
    let lost = (JobOutcome::LeaseLost, None);
    match &f.result {
        Ok(()) => {
            if !store::complete(c, lease, now)? {
                return Ok(lost);
            }
            let next = shared.schedule_next_periodic(c, &job.kind, job.run_at, now)?;
            Ok((JobOutcome::Done, next))
        }
        Err(JobError::Stopped(reason)) => {
            let signalled = *job.stop.borrow();
            match signalled.unwrap_or(*reason) {
                StopReason::Shutdown if signalled.is_some() => {
                    if store::release(c, lease, now)? {
                        Ok((JobOutcome::Released, None))
                    } else {
                        Ok(lost)
                    }
                }
                _ if signalled.is_some() => Ok(lost),
                // The handler stopped without being asked to: an ordinary failure.
                r => fail_or_retry(c, shared, job, &r.to_string(), None, false, now),
            }
        }
        Err(JobError::Retry { message, after }) => {
            fail_or_retry(c, shared, job, message, *after, false, now)
        }
        Err(JobError::Fail { message }) => fail_or_retry(c, shared, job, message, None, true, now),
    }
}

pub(super) fn fail_or_retry(
    c: &Connection,
    shared: &Shared,
    job: &Running,
    error: &str,
    after: Option<Duration>,
    for_good: bool,
    now: i64,
) -> DbResult<(JobOutcome, Option<(String, i64)>)> {
    let lease = job.lease;
    let lost = (JobOutcome::LeaseLost, None);
    if for_good {
        if !store::fail(c, lease, now, error)? {
            return Ok(lost);
        }
        let next = shared.schedule_next_periodic(c, &job.kind, job.run_at, now)?;
        return Ok((
            JobOutcome::Failed {
                error: error.to_string(),
            },
            next,
        ));
    }
    let error = if job.attempt >= job.max_attempts {
        format!("{error} (attempt {} of {})", job.attempt, job.max_attempts)
    } else {
        error.to_string()
    };
    let delay = after.map_or_else(
        || shared.backoff.delay_ms(job.attempt) as i64,
        |d| d.as_millis() as i64,
    );
    let run_at = now + delay;
    match store::retry_or_fail(c, lease, run_at, now, &error)? {
        None => Ok(lost),
        Some(JobState::Available) => Ok((
            JobOutcome::Retrying { run_at, error },
            Some((job.queue.to_string(), run_at)),
        )),
        Some(_) => {
            let next = shared.schedule_next_periodic(c, &job.kind, job.run_at, now)?;
            Ok((JobOutcome::Failed { error }, next))
        }
    }
}
