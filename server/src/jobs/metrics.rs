//! Owns the queue's Prometheus text exposition ([`render_prometheus`], for a `/metrics`
//! route): the per-state counts and the oldest available job's age read from the database,
//! and this process's counters and histograms (`counters.rs`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::counters::QueueMetrics;
pub use super::counters::Totals;
use super::error::JobsError;
use super::queue::Queue;

/// The Prometheus text exposition (version 0.0.4) of the queue: jobs per queue and state and
/// the oldest due job's age (from the database), and this process's counters and histograms.
pub async fn render_prometheus(queue: &Queue) -> Result<String, JobsError> {
    let counts = queue.counts().await?;
    let shared = queue.shared();
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
