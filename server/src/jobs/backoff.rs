//! Owns the retry delay: exponential in the attempt number, capped, with jitter.
//!
//! Delay after attempt `n` (1-based) = `d - j·d/4` with `d = min(base · 2^(n-1), max)` and
//! `j` uniform in [0, 1). The jitter only shortens, so the cap is a true maximum, and the
//! ranges of consecutive attempts, (3d/4, d] and (3d/2, 2d], never overlap: the delay
//! strictly grows until it reaches the cap.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        let base_ms = (base.as_millis() as u64).max(1);
        Backoff {
            base_ms,
            max_ms: (max.as_millis() as u64).max(base_ms),
        }
    }

    /// The delay before the retry that follows failed attempt `attempt`, jitter drawn at random.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        self.delay_ms_with(attempt, rand::random::<f64>())
    }

    /// The delay with the jitter given (`jitter` in [0, 1); clamped).
    pub fn delay_ms_with(&self, attempt: u32, jitter: f64) -> u64 {
        let d = self.cap_ms(attempt);
        let j = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        d - ((d as f64) * j / 4.0) as u64
    }

    /// The delay before jitter: `min(base · 2^(attempt-1), max)`.
    pub fn cap_ms(&self, attempt: u32) -> u64 {
        let doublings = attempt.saturating_sub(1).min(63);
        self.base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms)
    }
}
