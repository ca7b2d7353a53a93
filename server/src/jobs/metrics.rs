//! Owns the queue's part of the Prometheus exposition ([`register`], for a `/metrics`
//! route): the per-state counts and the oldest available job's age, read from the database
//! at scrape time, and this process's counters and histograms (`counters.rs`), all
//! registered in the scrape's `prometheus-client` registry so that names, types, HELP lines
//! and histogram series follow the exposition format by construction. (Units are in the
//! names, `_seconds`, without `# UNIT` lines: some parsers refuse a unit on a histogram.)

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::counters::QueueLabel;
pub use super::counters::Totals;
use super::error::JobsError;
use super::queue::Queue;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: &'static str,
}

/// Adds the queue's metrics to `registry` (a scrape's): jobs per queue and state and the
/// oldest due job's age (one read of the database), and the process's counters and
/// histograms per queue. Names start `jobs_` (the registry adds the server's prefix).
pub async fn register(queue: &Queue, registry: &mut Registry) -> Result<(), JobsError> {
    let counts = queue.counts().await?;
    let shared = queue.shared();

    let jobs = Family::<QueueStateLabels, Gauge>::default();
    for c in &counts {
        for (state, n) in [
            ("available", c.available),
            ("running", c.running),
            ("done", c.done),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
        ] {
            let labels = QueueStateLabels {
                queue: c.queue.clone(),
                state,
            };
            jobs.get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    registry.register("jobs", "Jobs in the database by queue and state", jobs);

    let oldest = Family::<QueueLabel, Gauge<f64, AtomicU64>>::default();
    for (name, _) in shared.queue_names() {
        let age_ms = counts
            .iter()
            .find(|c| c.queue == name)
            .map_or(0, |c| c.oldest_available_age_ms);
        oldest
            .get_or_create(&QueueLabel { queue: name })
            .set(age_ms as f64 / 1000.0);
    }
    registry.register(
        "jobs_oldest_available_age_seconds",
        "How long the oldest due job has waited",
        oldest,
    );

    let f = shared.metrics.families.clone();
    for (name, help, family) in [
        ("jobs_enqueued", "Jobs stored", f.enqueued),
        ("jobs_started", "Attempts started (claims)", f.started),
        ("jobs_done", "Jobs completed", f.done),
        (
            "jobs_retried",
            "Attempts that failed and will be retried",
            f.retried,
        ),
        ("jobs_failed", "Jobs failed for good", f.failed),
        ("jobs_cancelled", "Jobs cancelled", f.cancelled),
        (
            "jobs_lease_lost",
            "Completions refused because the lease was gone",
            f.lost,
        ),
        ("jobs_released", "Leases released at shutdown", f.released),
    ] {
        registry.register(name, help, family);
    }
    registry.register("jobs_duration_seconds", "Handler run time", f.duration);
    registry.register(
        "jobs_wait_seconds",
        "Time from a job being due to its start",
        f.wait,
    );
    registry.register(
        "jobs_finished_attempt",
        "The attempt on which jobs finished (done or failed)",
        f.attempts,
    );
    Ok(())
}

/// The queue's metrics alone, as OpenMetrics text (for tests and tools; the server's
/// `/metrics` registers them beside its own).
pub async fn render_prometheus(queue: &Queue) -> Result<String, JobsError> {
    let mut registry = Registry::with_prefix("securechat");
    register(queue, &mut registry).await?;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    Ok(out)
}
