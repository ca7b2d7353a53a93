//! Owns the life of one claimed job in this process: its task waits for a worker of its
//! queue (renewing the lease while it waits, if it was claimed ahead), runs the handler with
//! panics caught, and reports the result to the queue's next round — also when the task is
//! aborted at shutdown, so that its lease is released.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::watch;
use tracing::Instrument;

use super::context::JobContext;
use super::counters::QueueMetrics;
use super::error::{JobError, StopReason};
use super::queue_state::QueueState;
use super::registry::{Handler, JobFuture, Registry};
use super::running::{Finished, Running};
use super::shared::Shared;
use super::store;
use super::types::Lease;
use crate::db::now_ms;

/// Tells the jobs of `q` claimed ahead that have not started to stop (they are released).
pub(super) fn stop_waiting(shared: &Shared, q: &QueueState) {
    for job in shared.lock_in_flight().values() {
        if job.queue == q.name && !job.started.load(Ordering::Acquire) {
            job.signal(StopReason::Shutdown);
        }
    }
}

/// Tells every handler of `q` still running to stop, and aborts its task.
pub(super) fn abort_running(shared: &Shared, q: &QueueState) {
    let jobs: Vec<Arc<Running>> = shared
        .lock_in_flight()
        .values()
        .filter(|j| j.queue == q.name)
        .cloned()
        .collect();
    for job in jobs {
        job.signal(StopReason::Shutdown);
        if let Some(h) = job.abort.get() {
            h.abort();
        }
    }
}

pub(super) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// Reports a handler's end to its queue, also when its task is dropped (aborted).
pub(super) struct Report {
    shared: Arc<Shared>,
    q: Arc<QueueState>,
    job: Option<Arc<Running>>,
}

impl Report {
    pub(super) fn send(&mut self, result: Result<(), JobError>) {
        let Some(job) = self.job.take() else { return };
        self.shared.lock_in_flight().remove(&job.lease.job_id);
        if !job.completed.load(Ordering::Acquire) {
            self.q
                .completions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Finished { job, result });
        }
        self.q.busy.fetch_sub(1, Ordering::AcqRel);
        self.q.wake.notify_one();
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.send(Err(JobError::Stopped(StopReason::Shutdown)));
    }
}

/// One claimed job: wait for a worker, make sure the lease still holds, run the handler,
/// report the result.
pub(super) async fn run_job(
    shared: Arc<Shared>,
    handler: Option<Handler>,
    job: Arc<Running>,
    payload: String,
    claimed_at: i64,
    metrics: Option<Arc<QueueMetrics>>,
    mut report: Report,
) {
    let slots = report.q.slots.clone();
    let ctx = JobContext {
        job: job.clone(),
        shared: shared.clone(),
    };
    // Wait for a worker (a job claimed ahead), renewing the lease every third of it.
    let mut renewed = claimed_at;
    let permit = loop {
        if let Ok(p) = slots.clone().try_acquire_owned() {
            break p;
        }
        let mut stop = job.stop.subscribe();
        let renew_in = (renewed + shared.lease_ms / 3 - now_ms()).max(0) as u64;
        tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => break p,
                Err(_) => return, // never closed; the report says "stopped"
            },
            () = async { let _ = stop.wait_for(|r| r.is_some()).await; } => {}
            () = tokio::time::sleep(Duration::from_millis(renew_in)) => {
                if let Err(e) = ctx.heartbeat().await {
                    report.send(Err(e));
                    return;
                }
                renewed = now_ms();
            }
        }
        if let Some(reason) = *job.stop.borrow() {
            report.send(Err(JobError::Stopped(reason)));
            return;
        }
    };
    if let Some(reason) = *job.stop.borrow() {
        report.send(Err(JobError::Stopped(reason)));
        return;
    }
    let now = now_ms();
    if now - renewed > shared.lease_ms / 4 {
        // Waited long for a worker: renew the lease first (or learn that it is gone).
        if let Err(e) = ctx.heartbeat().await {
            report.send(Err(e));
            return;
        }
    }
    job.started.store(true, Ordering::Release);
    if let Some(m) = &metrics {
        m.started.inc();
        m.wait.observe((now - job.run_at).max(0) as f64 / 1000.0);
    }
    let fut: JobFuture = match handler {
        Some(h) => h(ctx, &payload),
        None => {
            let msg = format!("no handler is registered for job kind {:?}", &*job.kind);
            Box::pin(async move { Err(JobError::fail(msg)) })
        }
    };
    let t = std::time::Instant::now();
    let result = std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .unwrap_or_else(|p| {
            Err(JobError::retry(format!(
                "the handler panicked: {}",
                panic_message(p)
            )))
        });
    let took = t.elapsed();
    if let Some(m) = &metrics {
        m.observe_duration(took);
    }
    report.q.observe_run(took);
    drop(permit);
    report.send(result);
}

/// Starts a task per claimed job, running the handler `registry` has for its kind; each
/// already holds one of `q`'s reserved places. The tasks go to `rt`, or (`None`) to the
/// runtime this is called from.
pub(crate) fn spawn_claimed(
    shared: &Arc<Shared>,
    registry: &Registry,
    q: &Arc<QueueState>,
    claimed: Vec<store::Claimed>,
    now: i64,
    rt: Option<&tokio::runtime::Handle>,
) {
    if claimed.is_empty() {
        return;
    }
    let metrics = shared.metrics.queue(&q.name).cloned();
    let mut jobs = Vec::with_capacity(claimed.len());
    for c in claimed {
        let job = Arc::new(Running {
            lease: Lease {
                job_id: c.id,
                token: c.token,
            },
            queue: q.name.clone(),
            kind: Arc::from(c.kind.as_str()),
            attempt: c.attempt,
            max_attempts: c.max_attempts,
            run_at: c.run_at,
            completed: AtomicBool::new(false),
            stop: watch::channel(None).0,
            abort: std::sync::OnceLock::new(),
            started: AtomicBool::new(false),
        });
        jobs.push((job, c.payload));
    }
    {
        let mut in_flight = shared.lock_in_flight();
        for (job, _) in &jobs {
            in_flight.insert(job.lease.job_id, job.clone());
        }
    }
    for (job, payload) in jobs {
        let span = tracing::info_span!("job", id = job.lease.job_id, queue = %job.queue, kind = %job.kind, attempt = job.attempt);
        let report = Report {
            shared: shared.clone(),
            q: q.clone(),
            job: Some(job.clone()),
        };
        let handler = registry.handlers.get(&*job.kind).cloned();
        let task = run_job(
            shared.clone(),
            handler,
            job.clone(),
            payload,
            now,
            metrics.clone(),
            report,
        )
        .instrument(span);
        let handle = match rt {
            Some(rt) => rt.spawn(task),
            None => tokio::spawn(task),
        };
        let _ = job.abort.set(handle.abort_handle());
    }
    shared.lease_granted(now + shared.lease_ms);
}
