//! Owns the queue's own periodic job, `jobs.prune`: it deletes done and cancelled jobs older
//! than `jobs.prune_done_after_secs` and failed ones older than `jobs.prune_failed_after_secs`,
//! `jobs.prune_batch` rows per transaction so that other writers never wait long. It never
//! runs VACUUM: SQLite reuses the freed pages. [`register`] adds it to a registry.

use std::time::Duration;

use super::context::JobContext;
use super::error::{JobError, JobsError};
use super::periodic::Periodic;
use super::registry::Registry;
use super::store;
use super::types::{JobState, INTERNAL_QUEUE};
use crate::config::JobsConfig;
use crate::db::{now_ms, Db};

pub(crate) const KIND: &str = "jobs.prune";

#[derive(Debug, Clone, Copy)]
pub(crate) struct PruneSettings {
    pub done_after: Duration,
    pub failed_after: Duration,
    pub batch: u32,
}

/// Adds `jobs.prune` to `registry`, on the internal queue, every
/// `jobs.prune_interval_secs`, with the ages and batch of `config`.
pub(crate) fn register(
    registry: &mut Registry,
    db: &Db,
    config: &JobsConfig,
) -> Result<(), JobsError> {
    let settings = PruneSettings {
        done_after: Duration::from_secs(config.prune_done_after_secs),
        failed_after: Duration::from_secs(config.prune_failed_after_secs),
        batch: config.prune_batch,
    };
    let db = db.clone();
    registry.insert_periodic_internal(
        Periodic::new(KIND, Duration::from_secs(config.prune_interval_secs)).queue(INTERNAL_QUEUE),
        move |ctx: JobContext, _: serde_json::Value| {
            let db = db.clone();
            async move { prune(&db, settings, Some(&ctx)).await.map(|_| ()) }
        },
    )?;
    Ok(())
}

/// Deletes old finished jobs batch by batch; returns how many went.
pub(crate) async fn prune(
    db: &Db,
    s: PruneSettings,
    ctx: Option<&JobContext>,
) -> Result<usize, JobError> {
    let now = now_ms();
    let mut total = 0;
    for (state, age) in [
        (JobState::Done, s.done_after),
        (JobState::Cancelled, s.done_after),
        (JobState::Failed, s.failed_after),
    ] {
        let before = now - age.as_millis() as i64;
        loop {
            let batch = s.batch;
            let n = db
                .write(move |c| store::prune(c, state, before, batch))
                .await?;
            total += n;
            if n < batch as usize {
                break;
            }
            if let Some(ctx) = ctx {
                ctx.heartbeat().await?;
            }
        }
    }
    if total > 0 {
        tracing::info!(deleted = total, "pruned finished jobs");
    }
    Ok(total)
}
