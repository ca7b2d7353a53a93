//! Owns one queue's state in this process ([`QueueState`]): its workers and their permits,
//! the places (jobs claimed and not finished) reserved against its capacity, its wake-up and
//! earliest-due hint, and the handlers that ended waiting for its next round.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::running::Finished;
use super::types::NEVER;

/// Jobs claimed ahead per queue, as a multiple of its workers, while its handlers are fast
/// (mean run time under [`PREFETCH_BELOW_US`]): while a round commits, the jobs claimed ahead
/// run, so the database and the handlers work at the same time, and each round carries more
/// jobs (at concurrency 8: ~21,000 → ~53,000 no-op jobs/s). Slow handlers gain nothing from
/// it, so their queues claim only for free workers. A job claimed ahead waits for a worker in
/// this process, renewing its lease every third of it, and renews it once more before it
/// starts if the last renewal is over a quarter of the lease old (it does not start if the
/// lease is gone). Shutdown releases it at once, its attempt not counted.
pub(crate) const PREFETCH: usize = 2;
const PREFETCH_BELOW_US: u64 = 2_000;

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
