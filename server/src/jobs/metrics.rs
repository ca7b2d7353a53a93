//! Owns the queue's observability: in-memory counters and histograms per queue (lock-free,
//! no SQL), and [`render_prometheus`], the text exposition for a `/metrics` route, which adds
//! the per-state counts and the oldest available job's age read from the database.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{JobsError, Queue};

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

    fn render(&self, out: &mut String, name: &str, queue: &str) {
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
    queues: BTreeMap<String, Arc<QueueMetrics>>,
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

/// The Prometheus text exposition (version 0.0.4) of the queue: jobs per queue and state and
/// the oldest due job's age (from the database), and this process's counters and histograms.
pub async fn render_prometheus(queue: &Queue) -> Result<String, JobsError> {
    let counts = queue.counts().await?;
    let shared = &queue.shared;
    let mut out = String::with_capacity(4096);
    out.push_str("# HELP securechat_jobs Jobs in the database by queue and state.\n");
    out.push_str("# TYPE securechat_jobs gauge\n");
    for c in &counts {
        for (state, n) in [
            ("available", c.available),
            ("running", c.running),
            ("done", c.done),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
        ] {
            let _ = writeln!(
                out,
                "securechat_jobs{{queue=\"{}\",state=\"{state}\"}} {n}",
                c.queue
            );
        }
    }
    out.push_str(
        "# HELP securechat_jobs_oldest_available_age_seconds How long the oldest due job has waited.\n",
    );
    out.push_str("# TYPE securechat_jobs_oldest_available_age_seconds gauge\n");
    for (name, _) in shared.queue_names() {
        let age = counts
            .iter()
            .find(|c| c.queue == name)
            .map_or(0, |c| c.oldest_available_age_ms);
        let _ = writeln!(
            out,
            "securechat_jobs_oldest_available_age_seconds{{queue=\"{name}\"}} {}",
            age as f64 / 1000.0
        );
    }
    type Counter = fn(&QueueMetrics) -> &AtomicU64;
    let counters: [(&str, &str, Counter); 8] = [
        ("enqueued", "Jobs stored.", |q| &q.enqueued),
        ("started", "Attempts started (claims).", |q| &q.started),
        ("done", "Jobs completed.", |q| &q.done),
        (
            "retried",
            "Attempts that failed and will be retried.",
            |q| &q.retried,
        ),
        ("failed", "Jobs failed for good.", |q| &q.failed),
        ("cancelled", "Jobs cancelled.", |q| &q.cancelled),
        (
            "lease_lost",
            "Completions refused because the lease was gone.",
            |q| &q.lost,
        ),
        ("released", "Leases released at shutdown.", |q| &q.released),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP securechat_jobs_{name}_total {help}");
        let _ = writeln!(out, "# TYPE securechat_jobs_{name}_total counter");
        for (q, m) in &shared.metrics.queues {
            let _ = writeln!(
                out,
                "securechat_jobs_{name}_total{{queue=\"{q}\"}} {}",
                get(m).load(Ordering::Relaxed)
            );
        }
    }
    let histograms: [(&str, &str); 3] = [
        ("securechat_jobs_duration_seconds", "Handler run time."),
        (
            "securechat_jobs_wait_seconds",
            "Time from a job being due to its start.",
        ),
        (
            "securechat_jobs_finished_attempt",
            "The attempt on which jobs finished (done or failed).",
        ),
    ];
    for (i, (name, help)) in histograms.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (q, m) in &shared.metrics.queues {
            match i {
                0 => m.duration.render(&mut out, name, q),
                1 => m.wait.render(&mut out, name, q),
                _ => m.attempts.render(&mut out, name, q),
            }
        }
    }
    Ok(out)
}
