//! Owns the description of a periodic job ([`Periodic`]): its kind, queue, interval and
//! payload, its dedup key, and when its next instance is due.

use std::time::Duration;

/// A job that runs every `every`, declared in code. At most one instance is live at a time
/// (dedup key `periodic:<kind>`); when one finishes (done or failed), the next is stored in
/// the same transaction, due at the next tick of the schedule, so the schedule survives
/// restarts. A cancelled instance ends the chain until the next start.
#[derive(Debug, Clone, PartialEq)]
pub struct Periodic {
    pub kind: String,
    pub queue: String,
    pub every: Duration,
    pub payload: serde_json::Value,
}

impl Periodic {
    pub fn new(kind: impl Into<String>, every: Duration) -> Periodic {
        Periodic {
            kind: kind.into(),
            queue: "default".into(),
            every,
            payload: serde_json::Value::Null,
        }
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    pub(crate) fn dedup_key(kind: &str) -> String {
        format!("periodic:{kind}")
    }

    /// The next tick after `now` of the schedule that `prev_run_at` was on.
    pub(crate) fn next_run_at(&self, prev_run_at: i64, now: i64) -> i64 {
        let every = (self.every.as_millis() as i64).max(1);
        let ticks = if now >= prev_run_at {
            (now - prev_run_at) / every + 1
        } else {
            1
        };
        prev_run_at.saturating_add(ticks.saturating_mul(every))
    }
}
