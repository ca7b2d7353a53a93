//! Owns the files domain's jobs: `finalize_upload` (one per complete upload, dedup key
//! `finalize:<id>`), and the periodic `expire_uploads`, `purge_expired_files` (which also
//! removes every upload and file of a deleted account) and `scrub_blobs`. [`register`] adds them to the job registry before the queue is built.
//!
//! finalize_upload checks the blob's length and recomputes the BLAKE3 root from the
//! stored hash state plus the unfinished last subtree (never the whole file) against the
//! root recorded with the last PATCH; then, in the transaction that completes the job, it
//! marks the file ready (or damaged). Only the run whose transaction made that change
//! pushes `file_ready` to the two parties, after the commit: a re-run (after a crash
//! before the commit) finds the upload still unfinished and is that run; a duplicate run
//! after the commit cannot happen (the job is done in the same transaction), and a
//! handler that finds the file already final completes without a frame.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::patch::{feed_from_file, FINALIZE_KIND};
use super::tree::{TreeHasher, TreeState};
use super::{FileView, Files};
use crate::db::files::FileRow;
use crate::db::{self, now_ms};
use crate::jobs::{JobContext, JobError, JobsError, Periodic, Registry};

pub const EXPIRE_KIND: &str = "expire_uploads";
pub const PURGE_KIND: &str = "purge_expired_files";
pub const SCRUB_KIND: &str = "scrub_blobs";

/// Rows handled per cleanup run.
const CLEANUP_BATCH: u32 = 500;

#[derive(serde::Deserialize)]
struct FinalizePayload {
    id: String,
}

pub fn register(registry: &mut Registry, files: &Files) -> Result<(), JobsError> {
    let f = files.clone();
    registry.register(FINALIZE_KIND, move |ctx: JobContext, p: FinalizePayload| {
        let f = f.clone();
        async move { f.finalize(&ctx, &p.id).await }
    })?;
    let queue = files.queue_name().to_string();
    let every = Duration::from_secs(files.config().cleanup_interval_secs);
    let f = files.clone();
    registry.register_periodic(
        Periodic::new(EXPIRE_KIND, every).queue(queue.clone()),
        move |_: JobContext, _: serde_json::Value| {
            let f = f.clone();
            async move { f.expire_uploads().await }
        },
    )?;
    let f = files.clone();
    registry.register_periodic(
        Periodic::new(PURGE_KIND, every).queue(queue.clone()),
        move |_: JobContext, _: serde_json::Value| {
            let f = f.clone();
            async move { f.purge_expired_files().await }
        },
    )?;
    let f = files.clone();
    registry.register_periodic(
        Periodic::new(
            SCRUB_KIND,
            Duration::from_secs(files.config().scrub_interval_secs),
        )
        .queue(queue),
        move |ctx: JobContext, _: serde_json::Value| {
            let f = f.clone();
            async move { f.scrub(&ctx).await }
        },
    )?;
    Ok(())
}

impl Files {
    async fn finalize(&self, ctx: &JobContext, id: &str) -> Result<(), JobError> {
        let key = id.to_string();
        let row = self
            .db()
            .read(move |c| db::files::get(c, &key))
            .await
            .map_err(JobError::retry)?;
        let Some(mut row) = row else {
            return Ok(()); // deleted meanwhile: nothing to finalize
        };
        if !row.is_uploading() {
            return Ok(()); // already final: said so before, say nothing now
        }
        if row.upload_offset != row.upload_length {
            return Err(JobError::fail("the upload is not complete"));
        }
        let delay = self.config().finalize_delay_ms;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let blobs = self.blobs().clone();
        let check = row.clone();
        let intact = tokio::task::spawn_blocking(move || verify_upload(&blobs, &check))
            .await
            .map_err(JobError::retry)?
            .map_err(JobError::retry)?;
        let now = now_ms();
        let key = row.id.clone();
        let changed = ctx
            .complete_with(move |c| {
                if intact {
                    db::files::mark_ready(c, &key, now)
                } else {
                    db::files::mark_damaged(c, &key, now)
                }
            })
            .await?;
        if changed {
            row.state = if intact { "ready" } else { "damaged" }.into();
            row.finished_at = Some(now);
            if intact {
                self.counters()
                    .uploads_finished
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                self.count_damaged();
                tracing::error!(file = %row.id, "a complete upload does not match its BLAKE3 root; file marked damaged");
            }
            match FileView::from_row(&row) {
                Ok(view) => self.tell_parties(
                    &row,
                    serde_json::json!({ "type": "file_ready", "file": view }),
                ),
                Err(e) => tracing::warn!(error = %e, "file_ready not sent"),
            }
        }
        Ok(())
    }

    async fn expire_uploads(&self) -> Result<(), JobError> {
        let now = now_ms();
        let ids = self
            .db()
            .read(move |c| db::files::expired_uploads(c, now, CLEANUP_BATCH))
            .await
            .map_err(JobError::retry)?;
        self.remove_unless_patching(ids, "expired upload removed")
            .await
    }

    /// Removes each of `ids` (row and blob) that has no PATCH running now; one that has is
    /// left for the next run (a PATCH running now finds the row gone when it commits).
    async fn remove_unless_patching(
        &self,
        ids: Vec<String>,
        what: &'static str,
    ) -> Result<(), JobError> {
        for id in ids {
            let Some(_slot) = self.take_slot(&id) else {
                continue;
            };
            self.remove(&id).await.map_err(JobError::retry)?;
            tracing::info!(file = %id, "{what}");
        }
        Ok(())
    }

    async fn purge_expired_files(&self) -> Result<(), JobError> {
        // A deleted account's uploads and files go first, whatever the retention.
        let ids = self
            .db()
            .read(move |c| db::files::of_deleted_uploaders(c, CLEANUP_BATCH))
            .await
            .map_err(JobError::retry)?;
        self.remove_unless_patching(ids, "file of a deleted account removed")
            .await?;
        let retention = self.config().retention_secs;
        if retention == 0 {
            return Ok(());
        }
        let before = now_ms()
            .saturating_sub(i64::try_from(retention.saturating_mul(1000)).unwrap_or(i64::MAX));
        let ids = self
            .db()
            .read(move |c| db::files::finished_before(c, before, CLEANUP_BATCH))
            .await
            .map_err(JobError::retry)?;
        for id in ids {
            self.remove(&id).await.map_err(JobError::retry)?;
            tracing::info!(file = %id, "file past retention removed");
        }
        Ok(())
    }

    async fn scrub(&self, ctx: &JobContext) -> Result<(), JobError> {
        let batch = self.config().scrub_batch;
        let rows = self
            .db()
            .read(move |c| db::files::least_recently_scrubbed(c, batch))
            .await
            .map_err(JobError::retry)?;
        for row in rows {
            if ctx.is_cancelled() {
                break;
            }
            let blobs = self.blobs().clone();
            let check = row.clone();
            let intact = tokio::task::spawn_blocking(move || verify_whole(&blobs, &check))
                .await
                .map_err(JobError::retry)?;
            if intact {
                let key = row.id.clone();
                self.db()
                    .write(move |c| db::files::mark_scrubbed(c, &key, now_ms()))
                    .await
                    .map_err(JobError::retry)?;
            } else {
                self.mark_damaged(&row, "scrub")
                    .await
                    .map_err(JobError::retry)?;
            }
            ctx.heartbeat().await?;
        }
        Ok(())
    }
}

fn stored_root(row: &FileRow) -> Option<[u8; 32]> {
    row.blake3.as_deref().and_then(|b| b.try_into().ok())
}

/// The finalize check: the blob has exactly `upload_length` bytes, and the root rebuilt
/// from the stored state plus the last unfinished subtree equals the recorded root.
fn verify_upload(blobs: &super::Blobs, row: &FileRow) -> std::io::Result<bool> {
    let length = u64::try_from(row.upload_length).unwrap_or(0);
    if blobs.len(&row.id)? != length {
        return Ok(false);
    }
    let (Some(state), Some(root)) = (TreeState::from_bytes(&row.hash_state), stored_root(row))
    else {
        return Ok(false);
    };
    let start = state.partial_start();
    let mut tree = TreeHasher::resume(state);
    let mut f = blobs.open_read(&row.id)?;
    feed_from_file(&mut f, start, length, &mut tree)?;
    Ok(tree.root().as_bytes() == &root)
}

/// The scrub check: the whole blob hashes to the recorded root. Unreadable counts as damaged.
fn verify_whole(blobs: &super::Blobs, row: &FileRow) -> bool {
    let Some(root) = stored_root(row) else {
        return false;
    };
    let Ok(mut f) = blobs.open_read(&row.id) else {
        return false;
    };
    let mut h = blake3::Hasher::new();
    match std::io::copy(&mut f, &mut h) {
        Ok(n) => {
            n == u64::try_from(row.upload_length).unwrap_or(0) && h.finalize().as_bytes() == &root
        }
        Err(_) => false,
    }
}
