//! Owns the queue's in-memory counters and histograms per queue (lock-free, no SQL); the
//! text exposition of them is `metrics.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds (seconds) of the duration and wait histograms.
const SECONDS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
];
/// Upper bounds of the attempt-number histogram.
const ATTEMPT_BUCKETS: [f64; 6] = [1.0, 2.0, 3.0, 5.0, 10.0, 25.0];

pub(crate) struct Histogram<const N: usize> {
    bounds: [f64; N],
    counts: [AtomicU64; N],
    count: AtomicU64,
    /// Sum in millionths of the unit.
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, out: &mut String, name: &str, queue: &str) {
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{queue=\"{queue}\",le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{queue=\"{queue}\",le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{queue=\"{queue}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{queue=\"{queue}\"}} {count}");
    }
}

/// Counters of one queue since this process started.
pub(crate) struct QueueMetrics {
    pub enqueued: AtomicU64,
    pub started: AtomicU64,
    pub done: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub lost: AtomicU64,
    pub released: AtomicU64,
    /// Handler run time, seconds.
    pub duration: Histogram<12>,
    /// From due (`run_at`) to start, seconds.
    pub wait: Histogram<12>,
    /// The attempt number jobs finished on (done or failed).
    pub attempts: Histogram<6>,
}

impl QueueMetrics {
    fn new() -> Self {
        QueueMetrics {
            enqueued: AtomicU64::new(0),
            started: AtomicU64::new(0),
            done: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            released: AtomicU64::new(0),
            duration: Histogram::new(SECONDS_BUCKETS),
            wait: Histogram::new(SECONDS_BUCKETS),
            attempts: Histogram::new(ATTEMPT_BUCKETS),
        }
    }

    pub fn observe_duration(&self, d: Duration) {
        self.duration.observe(d.as_secs_f64());
    }
}

/// Totals over every queue since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub enqueued: u64,
    pub started: u64,
    pub done: u64,
    pub retried: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub lost: u64,
    pub released: u64,
}

/// Per-queue metrics; the set of queues is fixed when the queue is built.
pub(crate) struct Metrics {
    pub(crate) queues: BTreeMap<String, Arc<QueueMetrics>>,
}

impl Metrics {
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Metrics {
        Metrics {
            queues: names
                .map(|n| (n.to_string(), Arc::new(QueueMetrics::new())))
                .collect(),
        }
    }

    pub fn queue(&self, name: &str) -> Option<&Arc<QueueMetrics>> {
        self.queues.get(name)
    }

    pub fn queue_totals(&self, name: &str) -> Option<Totals> {
        self.queues.get(name).map(|q| Self::sum(std::iter::once(q)))
    }

    pub fn totals(&self) -> Totals {
        Self::sum(self.queues.values())
    }

    fn sum<'a>(queues: impl Iterator<Item = &'a Arc<QueueMetrics>>) -> Totals {
        let mut t = Totals::default();
        for q in queues {
            let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
            t.enqueued += l(&q.enqueued);
            t.started += l(&q.started);
            t.done += l(&q.done);
            t.retried += l(&q.retried);
            t.failed += l(&q.failed);
            t.cancelled += l(&q.cancelled);
            t.lost += l(&q.lost);
            t.released += l(&q.released);
        }
        t
    }
}
