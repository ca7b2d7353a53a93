//! Owns the reaper: one task that sleeps until the earliest lease expiry it knows of, then
//! takes expired leases back (retry after a backoff, or failed when no attempt is left) and
//! tells a handler of this process whose lease it took that it lost it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::StopReason;
use super::shared::{sleep_until, Shared};
use super::store::{self, Reclaimed};
use super::types::{JobEvent, JobOutcome, JobState, NEVER};
use crate::db::now_ms;

/// Expired leases taken back per reaper transaction.
const REAP_BATCH: i64 = 1000;

/// The reaper: sleeps until the earliest lease expiry it knows of, then takes expired leases
/// back. Knows leases from claims and heartbeats in this process (the only one that runs jobs).
pub(super) async fn reap_loop(shared: Arc<Shared>) {
    let mut stop_rx = shared.stop.subscribe();
    loop {
        if shared.stopping() {
            break;
        }
        let hint = shared.lease_hint.load(Ordering::Acquire);
        let now = now_ms();
        if hint <= now {
            shared.lease_hint.store(NEVER, Ordering::Release);
            if shared.lock_in_flight().is_empty() {
                // Nothing runs here, so nothing can hold a lease: no SQL needed. A claim from
                // now on lowers the hint again (after registering its jobs in flight).
                continue;
            }
            let s = shared.clone();
            let result = shared
                .db
                .write(move |c| {
                    let now = now_ms();
                    let reclaimed = store::reclaim(c, now, true, &s.backoff, REAP_BATCH)?;
                    let mut nexts = Vec::new();
                    for r in &reclaimed {
                        if r.state == JobState::Failed {
                            nexts.push(s.schedule_next_periodic(c, &r.kind, r.run_at, now)?);
                        }
                    }
                    Ok((reclaimed, nexts, store::next_lease_expiry(c)?))
                })
                .await;
            match result {
                Ok((reclaimed, nexts, next)) => {
                    let full = reclaimed.len() as i64 == REAP_BATCH;
                    reaped(&shared, reclaimed, nexts);
                    shared.lease_hint.fetch_min(
                        if full { now } else { next.unwrap_or(NEVER) },
                        Ordering::AcqRel,
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "reaping expired job leases failed; retrying in 1 s");
                    shared.lease_hint.fetch_min(now + 1000, Ordering::AcqRel);
                }
            }
            continue;
        }
        let timer = (hint != NEVER)
            .then(|| Instant::now() + Duration::from_millis((hint - now).max(0) as u64));
        tokio::select! {
            () = shared.reaper_wake.notified() => {}
            () = sleep_until(timer) => {}
            _ = stop_rx.changed() => {}
        }
    }
}

fn reaped(shared: &Shared, reclaimed: Vec<Reclaimed>, nexts: Vec<Option<(String, i64)>>) {
    let mut nexts = nexts.into_iter();
    for r in reclaimed {
        let local = shared.lock_in_flight().get(&r.id).cloned();
        if let Some(job) = &local {
            job.signal(StopReason::LeaseLost);
        }
        let next = if r.state == JobState::Failed {
            nexts.next().flatten()
        } else {
            None
        };
        if let Some(m) = shared.metrics.queue(&r.queue) {
            m.lost.inc();
        }
        let outcome = match r.state {
            JobState::Failed => JobOutcome::Failed {
                error: "lease expired on the last attempt".into(),
            },
            _ => JobOutcome::Retrying {
                run_at: r.run_at,
                error: "lease expired".into(),
            },
        };
        tracing::warn!(job.id = r.id, queue = %r.queue, kind = %r.kind, outcome = ?outcome, "took back an expired job lease");
        let _ = shared.events.send(JobEvent {
            id: r.id,
            queue: Arc::from(r.queue.as_str()),
            kind: Arc::from(r.kind.as_str()),
            outcome,
        });
        if r.state == JobState::Available {
            shared.enqueued(&r.queue, r.run_at, 0);
        }
        if let Some((queue, run_at)) = next {
            shared.enqueued(&queue, run_at, 1);
        }
    }
}
