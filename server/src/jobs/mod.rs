//! Owns the durable job queue: jobs stored in SQLite (`jobs` table, its SQL in `store.rs`),
//! handlers registered by kind ([`Registry`]), workers per queue that claim jobs under a
//! fenced lease, retries with backoff, a reaper for expired leases, periodic jobs, pruning,
//! graceful shutdown, metrics and the admin commands behind `securechat jobs`.
//!
//! The queue knows nothing of what a job does (files, messages) and never imports warp.
//!
//! Life of a job: `available` → (claim) `running` → `done` | `failed` (for good) |
//! `cancelled`; a retry, an expired lease or a crash sends a running job back to
//! `available`. Every transition of a running job names its lease token: a worker whose lease
//! was taken away can neither finish, fail, heartbeat nor release the job.
//!
//! Invariants:
//! - every write goes through the database's single writer (group commit), so an answer
//!   means the change is durable; the claim and the acks of finished jobs share one
//!   transaction per round;
//! - no timer and no statement runs while nothing is due: workers wake on a notification
//!   from `enqueue` or on one timer per queue for its earliest `run_at`, the reaper on one
//!   timer for the earliest lease expiry;
//! - at most one live (available or running) job per dedup key (a partial unique index).
//!
//! Layout, from the bottom up — imports run one way: a file uses only files listed before it
//! (`server/tests/layering` fails on an import circle):
//! - `error.rs`, `types.rs`, `backoff.rs`, `periodic.rs`: errors and plain data;
//! - `store.rs`: the SQL of the `jobs` table; `admin.rs`: the CLI's text;
//! - `counters.rs`, `running.rs`, `queue_state.rs`: in-memory state of counters, of one
//!   claimed job, of one queue; `shared.rs`: the state they all share, and outcomes;
//! - `context.rs` (what a handler is given), `registry.rs` (handlers by kind);
//! - `task.rs` (one claimed job's task), `prune.rs`, `reaper.rs`, `enqueue.rs`, `runner.rs`
//!   (start, worker loops, shutdown);
//! - `queue.rs`: the handle [`Queue`]; `metrics.rs`: its metrics for `/metrics`; this file only
//!   declares and re-exports.

mod admin;
mod backoff;
mod context;
mod counters;
mod enqueue;
mod error;
pub mod metrics;
mod periodic;
mod prune;
mod queue;
mod queue_state;
mod reaper;
mod registry;
mod runner;
mod running;
mod shared;
mod store;
mod task;
#[cfg(test)]
mod tests;
mod types;

pub use admin::render_list;
pub use backoff::Backoff;
pub use context::{complete_in, JobContext};
pub use error::{JobError, JobsError, StopReason};
pub use periodic::Periodic;
pub use queue::Queue;
pub use registry::Registry;
pub use runner::{ShutdownReport, StartReport};
pub use types::{
    CancelOutcome, Enqueued, JobEvent, JobId, JobOutcome, JobRecord, JobState, Lease, NewJob,
    QueueCounts, INTERNAL_QUEUE, MAX_DEDUP_KEY_BYTES, MAX_PAYLOAD_BYTES,
};
