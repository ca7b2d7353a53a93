//! Owns the queue's own periodic job, `jobs.prune`: it deletes done and cancelled jobs older
//! than `jobs.prune_done_after_secs` and failed ones older than `jobs.prune_failed_after_secs`,
//! `jobs.prune_batch` rows per transaction so that other writers never wait long. It never
//! runs VACUUM: SQLite reuses the freed pages.

use std::time::Duration;

use super::{store, JobContext, JobError, JobState};
use crate::db::{now_ms, Db};

pub(crate) const KIND: &str = "jobs.prune";

#[derive(Debug, Clone, Copy)]
pub(crate) struct PruneSettings {
    pub done_after: Duration,
    pub failed_after: Duration,
    pub batch: u32,
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
