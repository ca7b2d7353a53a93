//! Owns getting jobs into the table: checking a job against the handlers and queues
//! ([`check`]), the one write that stores a batch — and, with direct dispatch, claims in the
//! same transaction what free workers of its queue can take — and what follows that COMMIT
//! on the writer thread (counters, wake-ups, starting the claimed jobs); also enqueueing
//! inside a caller's own write ([`enqueue_in`]).

use std::sync::Arc;

use rusqlite::Connection;

use super::error::JobsError;
use super::queue_state::QueueState;
use super::registry::{check_kind, Registry};
use super::shared::Shared;
use super::store::{self, NewRow};
use super::task::spawn_claimed;
use super::types::{
    Enqueued, JobId, NewJob, INTERNAL_QUEUE, MAX_DEDUP_KEY_BYTES, MAX_PAYLOAD_BYTES, NEVER,
};
use crate::db::{now_ms, DbResult};

/// Checks a job and turns it into a row, or says what is wrong with it.
pub(crate) fn check(
    shared: &Shared,
    registry: &Registry,
    job: NewJob,
) -> Result<NewRow, JobsError> {
    check_kind(&job.kind)?;
    if !registry.handlers.contains_key(&job.kind) {
        return Err(JobsError::Invalid(format!(
            "no handler is registered for job kind {:?}",
            job.kind
        )));
    }
    let internal = job.kind.starts_with("jobs.");
    if !shared.queues.contains_key(&job.queue) || (job.queue == INTERNAL_QUEUE) != internal {
        let known: Vec<&str> = shared
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
    let max_attempts = job.max_attempts.unwrap_or(shared.default_max_attempts);
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

/// Stores checked rows in one transaction (all or, on an error, none); see
/// [`Queue::enqueue`](super::Queue::enqueue).
pub(crate) async fn enqueue_rows(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
    rows: Vec<NewRow>,
) -> Result<Vec<Enqueued>, JobsError> {
    let now = now_ms();
    // Direct dispatch when every job goes to one queue and some are due now; the claimed
    // jobs run on the enqueuer's runtime.
    let queue = rows[0].queue.clone();
    let one_queue = rows.iter().all(|r| r.queue == queue);
    let due = rows.iter().filter(|r| r.run_at <= now).count();
    let direct = match tokio::runtime::Handle::try_current() {
        Ok(rt) if one_queue => shared.reserve_direct(&queue, due).map(|(q, n)| (q, n, rt)),
        _ => None,
    };
    // The writer runs `after` on its own thread right after COMMIT (count, wake the
    // workers, start the directly claimed jobs, give back unused reservations): a claimed
    // job does not wait for this task to be woken, and a cancelled caller strands no
    // claimed job and no worker. Dropped unrun, it gives the reservations back.
    let rows = Arc::new(rows);
    let rows_here = rows.clone();
    let after = AfterEnqueue::new(shared.clone(), registry.clone(), rows.clone(), direct, now);
    let reserved = after.reserved();
    let lease_ms = shared.lease_ms;
    let pending = shared
        .db
        .writer()
        .submit_then(
            move |c| {
                let outs = store::insert_many(c, &rows, now)?;
                let claimed = store::claim(c, &queue, reserved, now, lease_ms)?;
                Ok((outs, claimed))
            },
            move |outcome: &mut DbResult<EnqueueResult>| after.run(outcome),
        )
        .await?;
    let (outs, _) = pending.await?;
    // The rows are freed here, by the thread that allocated them, after the answer: not on
    // the writer thread, where freeing a big batch's strings delayed the answer and every
    // later write.
    drop(rows_here);
    Ok(outs)
}

/// Enqueues inside a write the caller is already making; see
/// [`Queue::enqueue_in`](super::Queue::enqueue_in).
pub(crate) fn enqueue_in(
    shared: &Shared,
    registry: &Registry,
    conn: &Connection,
    job: NewJob,
) -> Result<Enqueued, JobsError> {
    let row = check(shared, registry, job)?;
    let out = store::insert(conn, &row, now_ms())?;
    if !out.existing {
        shared.enqueued(&row.queue, row.run_at, 1);
    }
    Ok(out)
}

/// After an enqueue committed (on the writer thread, see [`AfterEnqueue`]): counts the
/// new jobs, wakes the loops of those not claimed directly, and starts those that were.
fn after_enqueue(
    shared: &Arc<Shared>,
    registry: &Arc<Registry>,
    rows: &[NewRow],
    outs: &[Enqueued],
    direct: Option<Direct>,
    claimed: Vec<store::Claimed>,
    now: i64,
) {
    // Start the claimed jobs first: they are what someone is waiting for.
    let claimed_ids: Vec<JobId> = claimed.iter().map(|c| c.id).collect();
    if let Some((q, reserved, rt)) = direct {
        q.unreserve(reserved.saturating_sub(claimed.len()));
        spawn_claimed(shared, registry, &q, claimed, now, Some(&rt));
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
                    enqueued_group(shared, g);
                }
                group = Some((&row.queue, 1, run_at));
            }
        }
    }
    if let Some(g) = group {
        enqueued_group(shared, g);
    }
}

fn enqueued_group(shared: &Shared, (queue, new, earliest): (&str, u64, i64)) {
    if earliest != NEVER {
        shared.enqueued(queue, earliest, new);
    } else if let Some(m) = shared.metrics.queue(queue) {
        m.enqueued.inc_by(new);
    }
}

type EnqueueResult = (Vec<Enqueued>, Vec<store::Claimed>);

/// Places of a queue reserved for an enqueue's direct dispatch, and the runtime its claimed
/// jobs run on (the enqueuer's).
type Direct = (Arc<QueueState>, usize, tokio::runtime::Handle);

/// What follows an enqueue's COMMIT: counters, wake-ups, and starting the jobs it claimed
/// (direct dispatch). It runs on the writer thread right after the commit
/// (`Writer::submit_then`), so a claimed job starts without waiting for the enqueuing task's
/// thread to wake up, and it runs even if the enqueuing future was dropped meanwhile. If it
/// never runs (the operation never reached the writer), dropping it gives back the reserved
/// places.
struct AfterEnqueue {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    rows: Arc<Vec<NewRow>>,
    direct: Option<Direct>,
    now: i64,
}

impl AfterEnqueue {
    fn new(
        shared: Arc<Shared>,
        registry: Arc<Registry>,
        rows: Arc<Vec<NewRow>>,
        direct: Option<Direct>,
        now: i64,
    ) -> Self {
        AfterEnqueue {
            shared,
            registry,
            rows,
            direct,
            now,
        }
    }

    /// Places reserved for direct dispatch.
    fn reserved(&self) -> usize {
        self.direct.as_ref().map_or(0, |d| d.1)
    }

    /// Called by the writer with the enqueue's outcome (`Ok` only after COMMIT); takes the
    /// claimed jobs out of it to start them.
    fn run(mut self, outcome: &mut DbResult<EnqueueResult>) {
        let direct = self.direct.take();
        match outcome {
            Ok((outs, claimed)) => {
                let claimed = std::mem::take(claimed);
                after_enqueue(
                    &self.shared,
                    &self.registry,
                    &self.rows,
                    outs,
                    direct,
                    claimed,
                    self.now,
                );
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
