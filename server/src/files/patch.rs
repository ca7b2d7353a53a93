//! Owns one PATCH body: checked against the upload (owner, expiry, offset, sizes), streamed
//! from the socket through a bounded channel to a blocking thread that writes it into the
//! blob at the offset and through the resumable BLAKE3 and the `Upload-Checksum` digest,
//! then fdatasync'ed, then committed (offset + hash state, and `finalize_upload` when the
//! last byte landed) in one write transaction.
//!
//! What is kept when it goes wrong: a checksum mismatch, a body over `max_patch_bytes` or
//! past `Upload-Length` keep nothing (the blob is cut back to the old offset). A dropped
//! connection keeps, without a checksum, the whole records that arrived (a resume restarts
//! at a record boundary); with a checksum, nothing (it could not be verified).
//! The work runs in its own task, so a client that goes away mid-body does not stop the
//! commit of what is kept.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use warp::http::StatusCode;

use super::tree::{TreeHasher, TreeState};
use super::tus::{BodyDigest, Checksum};
use super::{Blobs, Files, PatchSlot, UploadStatus};
use crate::auth::Principal;
use crate::db::files::FileRow;
use crate::db::{self, now_ms, DbError};
use crate::error::{ApiError, ApiResult};
use crate::jobs::NewJob;

/// The job kind that finalizes a complete upload.
pub const FINALIZE_KIND: &str = "finalize_upload";

/// How the body stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEnd {
    Complete,
    Dropped,
    TooLarge,
    BeyondLength,
}

enum Msg {
    Data(Bytes),
    End(BodyEnd),
}

/// What the blocking side was given.
struct WriteJob {
    id: String,
    old_offset: u64,
    length: u64,
    record_size: u64,
    state: TreeState,
    /// The hasher as of `old_offset`, when the previous PATCH left it in the cache.
    cached: Option<TreeHasher>,
    checksum: Option<Checksum>,
}

/// What the blocking side did.
enum Written {
    /// Bytes up to `offset` are on disk, synced, and hashed into `tree`.
    Kept { offset: u64, tree: Box<TreeHasher> },
    /// Nothing kept, for this reason.
    Refused(BodyEnd, bool),
}

/// The checks of a PATCH that need the row, before any byte is read.
fn check_patch(
    files: &Files,
    row: &FileRow,
    offset: u64,
    content_length: Option<u64>,
) -> ApiResult<()> {
    if !row.is_uploading() || row.upload_offset == row.upload_length {
        return Err(ApiError::conflict(
            "upload_finished",
            "every byte of this upload has arrived",
        ));
    }
    if row.expires_at <= now_ms() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "upload_expired",
            "this upload has expired",
        ));
    }
    let stored = u64::try_from(row.upload_offset).unwrap_or(0);
    if offset != stored {
        return Err(ApiError::conflict(
            "offset_mismatch",
            format!("Upload-Offset must be {stored}"),
        ));
    }
    let max = files.config().max_patch_bytes;
    if content_length.is_some_and(|n| n > max) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "patch_too_large",
            format!("a PATCH body may be at most {max} bytes"),
        ));
    }
    let length = u64::try_from(row.upload_length).unwrap_or(0);
    if content_length.is_some_and(|n| stored.saturating_add(n) > length) {
        return Err(ApiError::bad_request(
            "invalid_length",
            "the body goes past Upload-Length",
        ));
    }
    Ok(())
}

impl Files {
    /// PATCH: appends `body` at `offset` to upload `id` of `who`.
    pub async fn patch<S, B, E>(
        &self,
        who: &Principal,
        id: &str,
        offset: u64,
        content_length: Option<u64>,
        checksum: Option<Checksum>,
        body: S,
    ) -> ApiResult<UploadStatus>
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Buf + Send + 'static,
        E: Send + 'static,
    {
        let row = self.own_upload(who, id).await?;
        check_patch(self, &row, offset, content_length)?;
        let slot = self.wait_for_slot(id).await.ok_or_else(|| {
            ApiError::conflict(
                "offset_mismatch",
                "another PATCH of this upload is in progress",
            )
        })?;
        // The row may have moved while the slot was taken by someone else.
        let row = self.own_upload(who, id).await?;
        check_patch(self, &row, offset, content_length)?;
        let files = self.clone();
        tokio::spawn(async move { files.run_patch(slot, row, checksum, body).await })
            .await
            .map_err(ApiError::internal)?
    }

    async fn run_patch<S, B, E>(
        &self,
        _slot: PatchSlot,
        row: FileRow,
        checksum: Option<Checksum>,
        body: S,
    ) -> ApiResult<UploadStatus>
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Buf + Send + 'static,
        E: Send + 'static,
    {
        let state = TreeState::from_bytes(&row.hash_state)
            .ok_or_else(|| ApiError::internal(format!("upload {}: bad hash state", row.id)))?;
        let old_offset = u64::try_from(row.upload_offset).unwrap_or(0);
        let length = u64::try_from(row.upload_length).unwrap_or(0);
        let job = WriteJob {
            id: row.id.clone(),
            old_offset,
            length,
            record_size: u64::try_from(row.record_size).unwrap_or(1024),
            state,
            cached: self.cached_hasher(&row.id, old_offset),
            checksum,
        };
        let (tx, rx) = mpsc::channel::<Msg>(8);
        let blobs = self.blobs().clone();
        let writer = tokio::task::spawn_blocking(move || write_body(&blobs, job, rx));
        let max = self.config().max_patch_bytes;
        let mut received = 0u64;
        let mut body = std::pin::pin!(body);
        let end = loop {
            match body.next().await {
                Some(Ok(mut buf)) => {
                    let chunk = buf.copy_to_bytes(buf.remaining());
                    received += chunk.len() as u64;
                    if received > max {
                        break BodyEnd::TooLarge;
                    }
                    if old_offset + received > length {
                        break BodyEnd::BeyondLength;
                    }
                    if tx.send(Msg::Data(chunk)).await.is_err() {
                        break BodyEnd::Dropped;
                    }
                }
                Some(Err(_)) => break BodyEnd::Dropped,
                None => break BodyEnd::Complete,
            }
        };
        let _ = tx.send(Msg::End(end)).await;
        drop(tx);
        let written = writer
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::internal(format!("upload {}: {e}", row.id)))?;
        let (new_offset, tree) = match written {
            Written::Kept { offset, tree } => (offset, tree),
            Written::Refused(BodyEnd::TooLarge, _) => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "patch_too_large",
                    format!("a PATCH body may be at most {max} bytes"),
                ))
            }
            Written::Refused(BodyEnd::BeyondLength, _) => {
                return Err(ApiError::bad_request(
                    "invalid_length",
                    "the body goes past Upload-Length",
                ))
            }
            Written::Refused(_, true) => {
                return Err(ApiError::new(
                    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                    "checksum_mismatch",
                    "the body does not match Upload-Checksum; nothing of it was kept",
                ))
            }
            Written::Refused(_, false) => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "the request body was cut short; nothing of it was kept",
                ))
            }
        };
        if new_offset > old_offset {
            self.commit(&row, old_offset, new_offset, &tree).await?;
            self.counters().received_bytes.fetch_add(
                new_offset - old_offset,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if new_offset < length {
            self.cache_hasher(&row.id, new_offset, *tree);
        }
        if end == BodyEnd::Dropped {
            return Err(ApiError::bad_request(
                "invalid_request",
                "the request body was cut short; whole records were kept",
            ));
        }
        Ok(UploadStatus {
            offset: new_offset,
            length,
            expires_at: row.expires_at,
        })
    }

    /// Commits the new offset and hash state; with the last byte, enqueues finalize_upload
    /// in the same transaction.
    async fn commit(&self, row: &FileRow, old: u64, new: u64, tree: &TreeHasher) -> ApiResult<()> {
        let complete = new == u64::try_from(row.upload_length).unwrap_or(0);
        let root = complete.then(|| tree.root().as_bytes().to_vec());
        let state = tree.state().to_bytes();
        let id = row.id.clone();
        let queue = self.jobs()?.clone();
        let queue_name = self.queue_name().to_string();
        let (old, new) = (
            i64::try_from(old).unwrap_or(i64::MAX),
            i64::try_from(new).unwrap_or(i64::MAX),
        );
        let moved = self
            .db()
            .write(move |c| {
                if !db::files::advance(c, &id, old, new, &state, root.as_deref())? {
                    return Ok(false);
                }
                if complete {
                    queue
                        .enqueue_in(
                            c,
                            NewJob {
                                queue: queue_name.clone(),
                                kind: FINALIZE_KIND.into(),
                                payload: serde_json::json!({ "id": id }),
                                dedup_key: Some(format!("finalize:{id}")),
                                ..NewJob::default()
                            },
                        )
                        .map_err(|e| match e {
                            crate::jobs::JobsError::Db(d) => d,
                            other => DbError::Aborted(other.to_string()),
                        })?;
                }
                Ok(true)
            })
            .await?;
        if moved {
            Ok(())
        } else {
            Err(ApiError::conflict(
                "offset_mismatch",
                "the upload moved while this PATCH ran",
            ))
        }
    }
}

/// Feeds the bytes `from..to` of `f` into `tree` (the unfinished subtree after a restart).
pub(crate) fn feed_from_file(
    f: &mut File,
    from: u64,
    to: u64,
    tree: &mut TreeHasher,
) -> io::Result<()> {
    f.seek(SeekFrom::Start(from))?;
    let mut left = to - from;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the blob is shorter than its committed offset",
            ));
        }
        tree.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// The blocking side of a PATCH (see the module comment).
fn write_body(
    blobs: &Blobs,
    mut job: WriteJob,
    mut rx: mpsc::Receiver<Msg>,
) -> io::Result<Written> {
    let mut f = blobs.open_write(&job.id)?;
    // We hold the upload's slot: anything past the committed offset is a crash's leftover.
    f.set_len(job.old_offset)?;
    let start = job.state.partial_start();
    let mut tree = match job.cached.take() {
        Some(t) => t,
        None => {
            let mut t = TreeHasher::resume(job.state.clone());
            feed_from_file(&mut f, start, job.old_offset, &mut t)?;
            t
        }
    };
    f.seek(SeekFrom::Start(job.old_offset))?;
    let mut digest = job.checksum.as_ref().map(BodyDigest::for_checksum);
    let mut written = 0u64;
    let end = loop {
        match rx.blocking_recv() {
            Some(Msg::Data(b)) => {
                f.write_all(&b)?;
                tree.update(&b);
                if let Some(d) = digest.as_mut() {
                    d.update(&b);
                }
                written += b.len() as u64;
            }
            Some(Msg::End(e)) => break e,
            None => break BodyEnd::Dropped,
        }
    };
    let refuse = |f: &File, why: BodyEnd, checksum: bool| -> io::Result<Written> {
        f.set_len(job.old_offset)?;
        f.sync_data()?;
        Ok(Written::Refused(why, checksum))
    };
    let end_offset = job.old_offset + written;
    match end {
        BodyEnd::Complete => {
            if let (Some(c), Some(d)) = (job.checksum.as_ref(), digest) {
                if d.finish() != c.digest {
                    return refuse(&f, BodyEnd::Complete, true);
                }
            }
            f.sync_data()?;
            Ok(Written::Kept {
                offset: end_offset,
                tree: Box::new(tree),
            })
        }
        BodyEnd::Dropped if job.checksum.is_some() => refuse(&f, BodyEnd::Dropped, false),
        BodyEnd::Dropped => {
            let record = job.record_size + 16;
            let keep = if end_offset == job.length {
                end_offset
            } else {
                (end_offset / record * record).max(job.old_offset)
            };
            if keep != end_offset {
                f.set_len(keep)?;
                tree = TreeHasher::resume(job.state.clone());
                feed_from_file(&mut f, start, keep, &mut tree)?;
            }
            f.sync_data()?;
            Ok(Written::Kept {
                offset: keep,
                tree: Box::new(tree),
            })
        }
        other => refuse(&f, other, false),
    }
}
