//! Owns the messages domain's job: the periodic `expire_messages` sweep of disappearing
//! messages, every `messages.expiry_sweep_secs`. [`register`] adds it to the job registry
//! before the queue is built (like `files::jobs`).
//!
//! One run deletes (tombstones, see `db::messages`) the ciphertext of every message whose
//! conversation timer has run out, [`SWEEP_BATCH`] messages per transaction, and stops
//! after [`MAX_BATCHES_PER_RUN`] batches (the next run goes on). Finding expired messages
//! is a read on the read pool; the writer, which also stores every sent message, only
//! does one rowid update per expired message and one `swept_to` update per timer period,
//! so each run reads only the messages after where the last one stopped.

use std::time::Duration;

use super::Messages;
use crate::db::{messages, now_ms};
use crate::jobs::{JobContext, JobError, JobsError, Periodic, Registry};

pub const EXPIRE_KIND: &str = "expire_messages";

/// Messages tombstoned per transaction.
pub const SWEEP_BATCH: u32 = 500;
/// Batches per run; what is left waits for the next run.
const MAX_BATCHES_PER_RUN: u32 = 20;

/// Registers the sweep on `queue` (one of `jobs.workers`).
pub fn register(registry: &mut Registry, m: &Messages, queue: &str) -> Result<(), JobsError> {
    let every = Duration::from_secs(m.expiry_sweep_secs());
    let m = m.clone();
    registry.register_periodic(
        Periodic::new(EXPIRE_KIND, every).queue(queue),
        move |ctx: JobContext, _: serde_json::Value| {
            let m = m.clone();
            async move { m.expire(&ctx).await }
        },
    )?;
    Ok(())
}

impl Messages {
    /// One run of the sweep.
    async fn expire(&self, ctx: &JobContext) -> Result<(), JobError> {
        let mut total = 0usize;
        for _ in 0..MAX_BATCHES_PER_RUN {
            let now = now_ms();
            let expired = self
                .db()
                .read(move |c| messages::expired(c, now, SWEEP_BATCH))
                .await
                .map_err(JobError::retry)?;
            let found = expired.seqs.len();
            if found > 0 {
                total += self
                    .db()
                    .write(move |c| messages::tombstone_all(c, &expired, now))
                    .await
                    .map_err(JobError::retry)?;
            }
            if found < SWEEP_BATCH as usize || ctx.is_cancelled() {
                break;
            }
            ctx.heartbeat().await?;
        }
        if total > 0 {
            tracing::info!(deleted = total, "expired messages deleted");
        }
        Ok(())
    }
}
