//! Owns the queue's in-process counters and histograms per queue (no SQL): Prometheus
//! metric families (`prometheus-client`), with each queue's handles taken out of them once,
//! when the queue is built, so that counting on the hot path is an atomic add (a histogram
//! observation takes its own short lock) and never a label lookup. The exposition is
//! `metrics.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Upper bounds (seconds) of the duration and wait histograms.
const SECONDS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
];
/// Upper bounds of the attempt-number histogram.
const ATTEMPT_BUCKETS: [f64; 6] = [1.0, 2.0, 3.0, 5.0, 10.0, 25.0];

/// The label every queue metric carries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueueLabel {
    pub queue: String,
}

type HistogramFamily = Family<QueueLabel, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

fn attempts_histogram() -> Histogram {
    Histogram::new(ATTEMPT_BUCKETS)
}

/// Counters of one queue since this process started: handles into [`Families`].
pub(crate) struct QueueMetrics {
    pub enqueued: Counter,
    pub started: Counter,
    pub done: Counter,
    pub retried: Counter,
    pub failed: Counter,
    pub cancelled: Counter,
    pub lost: Counter,
    pub released: Counter,
    /// Handler run time, seconds.
    pub duration: Histogram,
    /// From due (`run_at`) to start, seconds.
    pub wait: Histogram,
    /// The attempt number jobs finished on (done or failed).
    pub attempts: Histogram,
}

impl QueueMetrics {
    pub fn observe_duration(&self, d: Duration) {
        self.duration.observe(d.as_secs_f64());
    }
}

/// The metric families of every queue, labelled by queue (what `/metrics` shows).
#[derive(Clone)]
pub(crate) struct Families {
    pub enqueued: Family<QueueLabel, Counter>,
    pub started: Family<QueueLabel, Counter>,
    pub done: Family<QueueLabel, Counter>,
    pub retried: Family<QueueLabel, Counter>,
    pub failed: Family<QueueLabel, Counter>,
    pub cancelled: Family<QueueLabel, Counter>,
    pub lost: Family<QueueLabel, Counter>,
    pub released: Family<QueueLabel, Counter>,
    pub duration: HistogramFamily,
    pub wait: HistogramFamily,
    pub attempts: HistogramFamily,
}

impl Families {
    fn new() -> Families {
        Families {
            enqueued: Family::default(),
            started: Family::default(),
            done: Family::default(),
            retried: Family::default(),
            failed: Family::default(),
            cancelled: Family::default(),
            lost: Family::default(),
            released: Family::default(),
            duration: Family::new_with_constructor(seconds_histogram),
            wait: Family::new_with_constructor(seconds_histogram),
            attempts: Family::new_with_constructor(attempts_histogram),
        }
    }

    /// The handles of queue `name` (created in every family, so a queue that never ran a
    /// job still shows its zeros).
    fn queue(&self, name: &str) -> QueueMetrics {
        let label = QueueLabel {
            queue: name.to_owned(),
        };
        let counter = |f: &Family<QueueLabel, Counter>| f.get_or_create(&label).clone();
        let histogram = |f: &HistogramFamily| f.get_or_create(&label).clone();
        QueueMetrics {
            enqueued: counter(&self.enqueued),
            started: counter(&self.started),
            done: counter(&self.done),
            retried: counter(&self.retried),
            failed: counter(&self.failed),
            cancelled: counter(&self.cancelled),
            lost: counter(&self.lost),
            released: counter(&self.released),
            duration: histogram(&self.duration),
            wait: histogram(&self.wait),
            attempts: histogram(&self.attempts),
        }
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
    pub(crate) families: Families,
    pub(crate) queues: BTreeMap<String, Arc<QueueMetrics>>,
}

impl Metrics {
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Metrics {
        let families = Families::new();
        let queues = names
            .map(|n| (n.to_string(), Arc::new(families.queue(n))))
            .collect();
        Metrics { families, queues }
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
            t.enqueued += q.enqueued.get();
            t.started += q.started.get();
            t.done += q.done.get();
            t.retried += q.retried.get();
            t.failed += q.failed.get();
            t.cancelled += q.cancelled.get();
            t.lost += q.lost.get();
            t.released += q.released.get();
        }
        t
    }
}
