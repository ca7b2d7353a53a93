//! Owns encrypted file sharing on the server: tus uploads (create, offsets, PATCH bodies
//! streamed to disk and through BLAKE3, termination, expiry), the limits of `[files]`, the
//! `finalize_upload` job that turns a complete upload into a ready file and tells both
//! parties, downloads, the files two users share, and the cleanup and scrub jobs.
//!
//! Layout: `tus.rs` (header vocabulary), `tree.rs` (resumable BLAKE3), `blobs.rs` (paths
//! and blocking file operations), `patch.rs` (one PATCH body: disk, hash, checksum,
//! commit), `download.rs` (GET with Range and verification), `jobs.rs` (the job handlers),
//! `routes.rs` (warp filters and short handlers). SQL is in `db/files.rs`.
//!
//! Invariants:
//! - a blob is named by the server's uuid only (`blobs.rs`), never by anything a client sent;
//! - an offset is committed only after the bytes it covers were written and fdatasync'ed,
//!   together with the hash state that covers exactly those bytes; bytes past the
//!   committed offset (a crash or a refused PATCH) are cut back before they can count;
//! - every check of a request (limits, metadata, offsets) runs before any byte or row is
//!   stored; a refused request leaves nothing behind;
//! - someone who is neither the uploader (uploads) nor a party (files) gets 404, never 403;
//! - one PATCH at a time per upload: a second one while the first runs gets
//!   409 `offset_mismatch` at once (the client HEADs and resumes, which tus clients do);
//! - `file_ready` is pushed only by the finalize run whose transaction turned the upload
//!   ready (and completed its job in the same transaction), so each party hears it at
//!   most once; a crash between that commit and the push loses the frame, never doubles
//!   it (the files list has the file either way).
//! - nothing about a file but ids and sizes is logged (the manifest is secret).

pub mod blobs;
pub mod download;
pub mod jobs;
pub mod patch;
pub mod routes;
pub mod tree;
pub mod tus;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use warp::http::StatusCode;

use crate::auth::Principal;
use crate::config::{FilesConfig, Senders};
use crate::db::files::{FileRow, NewUpload, Usage};
use crate::db::{self, now_ms, users, Db};
use crate::error::{ApiError, ApiResult};
use crate::relay::Hub;
use crate::username::Username;

pub use blobs::Blobs;

/// The record size clients use unless they choose another (contract, DESIGN §8).
pub const DEFAULT_RECORD_SIZE: u64 = 65_536;
/// The smallest upload: one empty record is its 16-byte tag; a real file has at least one byte.
pub const MIN_UPLOAD_LENGTH: u64 = 17;
pub const DEFAULT_LIST_LIMIT: u32 = 50;
pub const MAX_LIST_LIMIT: u32 = 100;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub received_bytes: AtomicU64,
    pub uploads_finished: AtomicU64,
    pub damaged: AtomicU64,
}

struct Inner {
    db: Db,
    hub: Arc<Hub>,
    config: FilesConfig,
    max_envelope_bytes: usize,
    blobs: Blobs,
    /// The job queue, set once it is built (its registry holds handlers that hold us).
    jobs: OnceLock<crate::jobs::Queue>,
    /// The queue the files jobs run on: "files" when `[jobs.workers]` names it, else "default".
    queue_name: String,
    /// Uploads with a PATCH running now.
    patching: Mutex<HashSet<String>>,
    /// The hasher of an upload as of its committed offset, so that the next PATCH need not
    /// re-read the unfinished subtree from disk. A cache: a miss (after a restart, an
    /// error, or when it was cleared for being full) rebuilds from the stored state.
    hashers: Mutex<HashMap<String, (u64, tree::TreeHasher)>>,
    counters: Counters,
}

/// The files service, in `AppState`. Cheap to clone.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

/// What `GET /api/files/limits` answers.
#[derive(Debug, Serialize)]
pub struct Limits {
    pub may_send: bool,
    pub max_file_bytes: u64,
    pub max_patch_bytes: u64,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub max_uploads_in_flight: u32,
    pub uploads_in_flight: u64,
    pub upload_expiry_secs: u64,
    pub retention_secs: u64,
    pub record_size: u64,
}

/// A created upload.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub expires_at: i64,
}

/// Where an upload stands (HEAD, and the answer to a PATCH).
#[derive(Debug, Clone, Copy)]
pub struct UploadStatus {
    pub offset: u64,
    pub length: u64,
    pub expires_at: i64,
}

/// A file as the files list and `file_ready` carry it; `manifest` byte for byte.
#[derive(Debug, Serialize)]
pub struct FileView {
    pub id: String,
    pub file_id: String,
    pub from: String,
    pub to: String,
    pub size: i64,
    pub state: String,
    pub server_ts: i64,
    pub manifest: Box<RawValue>,
}

impl FileView {
    pub fn from_row(r: &FileRow) -> ApiResult<FileView> {
        Ok(FileView {
            id: r.id.clone(),
            file_id: r.file_id.clone(),
            from: r.uploader.clone(),
            to: r.recipient.clone(),
            size: r.upload_length,
            state: r.state.clone(),
            server_ts: r.finished_at.unwrap_or(r.created_at),
            manifest: RawValue::from_string(r.manifest.clone())
                .map_err(|e| ApiError::internal(format!("stored manifest is not JSON: {e}")))?,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct FilePage {
    pub files: Vec<FileView>,
    pub next_cursor: Option<String>,
}

fn not_found() -> ApiError {
    ApiError::not_found("upload")
}

fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
}

/// Releases an upload's PATCH slot when dropped.
pub(crate) struct PatchSlot {
    files: Files,
    id: String,
}

impl Drop for PatchSlot {
    fn drop(&mut self) {
        self.files
            .inner
            .patching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Files {
    pub fn new(db: Db, hub: Arc<Hub>, config: &crate::Config) -> Files {
        let queue_name = if config.jobs.workers.contains_key("files") {
            "files"
        } else {
            "default"
        };
        Files {
            inner: Arc::new(Inner {
                db,
                hub,
                config: config.files.clone(),
                max_envelope_bytes: config.messages.max_envelope_bytes,
                blobs: Blobs::new(&config.storage.data_dir),
                jobs: OnceLock::new(),
                queue_name: queue_name.to_string(),
                patching: Mutex::new(HashSet::new()),
                hashers: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    /// Hands over the job queue once it is built (before it starts serving requests).
    pub fn set_queue(&self, queue: crate::jobs::Queue) {
        let _ = self.inner.jobs.set(queue);
    }

    pub fn config(&self) -> &FilesConfig {
        &self.inner.config
    }

    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    pub(crate) fn queue_name(&self) -> &str {
        &self.inner.queue_name
    }

    pub(crate) fn jobs(&self) -> ApiResult<&crate::jobs::Queue> {
        self.inner
            .jobs
            .get()
            .ok_or_else(|| ApiError::internal("the job queue is not set"))
    }

    /// Cuts every unfinished upload's blob back to its committed offset: bytes a crash
    /// left past it were never acknowledged. Run at start-up, before serving.
    pub async fn cut_back_all(&self) -> anyhow::Result<usize> {
        let rows = self.inner.db.read(db::files::unfinished).await?;
        let blobs = self.inner.blobs.clone();
        let cut = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
            let mut cut = 0;
            for (id, offset) in rows {
                if blobs.cut_back(&id, u64::try_from(offset).unwrap_or(0))? {
                    cut += 1;
                }
            }
            Ok(cut)
        })
        .await??;
        if cut > 0 {
            tracing::info!(
                uploads = cut,
                "cut unacknowledged bytes back after a restart"
            );
        }
        Ok(cut)
    }

    async fn may_send(&self, who: &Principal) -> ApiResult<bool> {
        Ok(match self.inner.config.senders {
            Senders::Everyone => true,
            Senders::Nobody => false,
            Senders::Admins => {
                let id = who.user_id;
                self.inner
                    .db
                    .read(move |c| users::by_id(c, id))
                    .await?
                    .is_some_and(|u| u.is_admin)
            }
        })
    }

    async fn usage(&self, user_id: i64) -> ApiResult<Usage> {
        let now = now_ms();
        Ok(self
            .inner
            .db
            .read(move |c| db::files::usage(c, user_id, now))
            .await?)
    }

    pub async fn limits(&self, who: &Principal) -> ApiResult<Limits> {
        let c = &self.inner.config;
        let usage = self.usage(who.user_id).await?;
        Ok(Limits {
            may_send: self.may_send(who).await?,
            max_file_bytes: c.max_file_bytes,
            max_patch_bytes: c.max_patch_bytes,
            quota_bytes: c.quota_bytes,
            used_bytes: u64::try_from(usage.used_bytes).unwrap_or(0),
            max_uploads_in_flight: c.max_uploads_in_flight,
            uploads_in_flight: u64::try_from(usage.in_flight).unwrap_or(0),
            upload_expiry_secs: c.upload_expiry_secs,
            retention_secs: c.retention_secs,
            record_size: DEFAULT_RECORD_SIZE,
        })
    }

    /// Checks a new upload and stores its row (no blob yet). Every refusal happens before
    /// anything is stored; quota and in-flight are checked in the inserting transaction.
    pub async fn create(
        &self,
        who: &Principal,
        upload_length: Option<u64>,
        metadata: Result<tus::Metadata, ApiError>,
        first_patch_bytes: Option<u64>,
    ) -> ApiResult<Created> {
        let c = &self.inner.config;
        if !self.may_send(who).await? {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "files_not_allowed",
                "this server does not let you send files",
            ));
        }
        let length = upload_length
            .ok_or_else(|| ApiError::bad_request("invalid_length", "Upload-Length is required"))?;
        if length < MIN_UPLOAD_LENGTH {
            return Err(ApiError::bad_request(
                "invalid_length",
                format!("Upload-Length must be at least {MIN_UPLOAD_LENGTH}"),
            ));
        }
        if length > c.max_file_bytes {
            return Err(too_large(
                "file_too_large",
                format!("a file may be at most {} bytes", c.max_file_bytes),
            ));
        }
        if first_patch_bytes.is_some_and(|n| n > c.max_patch_bytes) {
            return Err(too_large(
                "patch_too_large",
                format!("a PATCH body may be at most {} bytes", c.max_patch_bytes),
            ));
        }
        if first_patch_bytes.is_some_and(|n| n > length) {
            return Err(ApiError::bad_request(
                "invalid_length",
                "the body is longer than Upload-Length",
            ));
        }
        let meta = metadata?;
        let recipient_name = Username::parse(&meta.recipient)
            .map_err(|_| ApiError::bad_request("unknown_recipient", "no such recipient"))?;
        let name = recipient_name.as_str().to_string();
        let recipient = self
            .inner
            .db
            .read(move |c| users::by_name(c, &name))
            .await?
            .ok_or_else(|| ApiError::bad_request("unknown_recipient", "no such recipient"))?;
        match crate::messages::envelope::check(
            &meta.manifest,
            &who.username,
            self.inner.max_envelope_bytes,
        ) {
            Ok(e) if e.to == recipient.username => {}
            Ok(_) => {
                return Err(ApiError::bad_request(
                    "invalid_envelope",
                    "the manifest must be addressed to the recipient",
                ))
            }
            Err(r) => return Err(ApiError::bad_request("invalid_envelope", r.message)),
        }
        let now = now_ms();
        let expires_at = now.saturating_add(
            i64::try_from(c.upload_expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        let row = NewUpload {
            id: uuid::Uuid::new_v4().to_string(),
            uploader_id: who.user_id,
            recipient_id: recipient.id,
            file_id: meta.file_id,
            upload_length: i64::try_from(length).unwrap_or(i64::MAX),
            record_size: i64::try_from(meta.record_size).unwrap_or(i64::MAX),
            manifest: meta.manifest,
            hash_state: tree::TreeState::default().to_bytes(),
            created_at: now,
            expires_at,
        };
        let quota = i64::try_from(c.quota_bytes).unwrap_or(i64::MAX);
        let max_in_flight = i64::from(c.max_uploads_in_flight);
        let id = row.id.clone();
        let refused = self
            .inner
            .db
            .write(move |conn| {
                let usage = db::files::usage(conn, row.uploader_id, now)?;
                if usage.in_flight >= max_in_flight {
                    return Ok(Some("too_many_uploads"));
                }
                if usage.used_bytes.saturating_add(row.upload_length) > quota {
                    return Ok(Some("quota_exceeded"));
                }
                db::files::insert(conn, &row)?;
                Ok(None)
            })
            .await?;
        match refused {
            Some("too_many_uploads") => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_uploads",
                format!("at most {max_in_flight} uploads may be in flight; finish or delete one"),
            )),
            Some(_) => Err(too_large(
                "quota_exceeded",
                format!("this upload would take you over your quota of {quota} bytes"),
            )),
            None => Ok(Created { id, expires_at }),
        }
    }

    /// The upload `id` of `who`, or 404 for anyone else (or a malformed id).
    pub(crate) async fn own_upload(&self, who: &Principal, id: &str) -> ApiResult<FileRow> {
        if !crate::messages::envelope::is_uuid_v4(id) {
            return Err(not_found());
        }
        let key = id.to_string();
        let row = self
            .inner
            .db
            .read(move |c| db::files::get(c, &key))
            .await?
            .filter(|r| r.uploader_id == who.user_id)
            .ok_or_else(not_found)?;
        Ok(row)
    }

    fn is_expired(row: &FileRow, now: i64) -> bool {
        row.is_uploading() && row.upload_offset < row.upload_length && row.expires_at <= now
    }

    fn expired() -> ApiError {
        ApiError::new(
            StatusCode::GONE,
            "upload_expired",
            "this upload has expired",
        )
    }

    /// The cached hasher of upload `id` if it is at `offset` (taken out of the cache).
    pub(crate) fn cached_hasher(&self, id: &str, offset: u64) -> Option<tree::TreeHasher> {
        let mut map = self.inner.hashers.lock().unwrap_or_else(|p| p.into_inner());
        match map.remove(id) {
            Some((at, h)) if at == offset => Some(h),
            _ => None,
        }
    }

    /// Keeps the hasher of upload `id` at `offset` for its next PATCH.
    pub(crate) fn cache_hasher(&self, id: &str, offset: u64, hasher: tree::TreeHasher) {
        const MOST: usize = 256;
        let mut map = self.inner.hashers.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MOST {
            map.clear();
        }
        map.insert(id.to_string(), (offset, hasher));
    }

    /// Tries to take the PATCH slot of `id`.
    pub(crate) fn take_slot(&self, id: &str) -> Option<PatchSlot> {
        let mut set = self
            .inner
            .patching
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if set.insert(id.to_string()) {
            Some(PatchSlot {
                files: self.clone(),
                id: id.to_string(),
            })
        } else {
            None
        }
    }

    pub async fn head(&self, who: &Principal, id: &str) -> ApiResult<UploadStatus> {
        let row = self.own_upload(who, id).await?;
        if Self::is_expired(&row, now_ms()) {
            return Err(Self::expired());
        }
        // A crash mid-PATCH may have left bytes past the offset: cut them now, unless a
        // PATCH is running (its bytes are not committed yet, and are its own business).
        if row.is_uploading() {
            if let Some(_slot) = self.take_slot(id) {
                let blobs = self.inner.blobs.clone();
                let (key, offset) = (row.id.clone(), row.upload_offset);
                tokio::task::spawn_blocking(move || {
                    blobs.cut_back(&key, u64::try_from(offset).unwrap_or(0))
                })
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            }
        }
        Ok(status_of(&row))
    }

    /// Terminates an unfinished upload: the row and the blob go, the quota is freed.
    pub async fn delete(&self, who: &Principal, id: &str) -> ApiResult<()> {
        let row = self.own_upload(who, id).await?;
        if !row.is_uploading() {
            return Err(ApiError::conflict(
                "upload_finished",
                "this upload is finished; it is a file now",
            ));
        }
        let Some(_slot) = self.take_slot(id) else {
            return Err(ApiError::conflict(
                "offset_mismatch",
                "a PATCH of this upload is in progress",
            ));
        };
        self.remove(&row.id).await
    }

    /// Deletes the row, then the blob (a blob without a row is harmless; a row without
    /// its blob would not be).
    pub(crate) async fn remove(&self, id: &str) -> ApiResult<()> {
        self.inner
            .hashers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let key = id.to_string();
        self.inner
            .db
            .write(move |c| db::files::delete(c, &key))
            .await?;
        let blobs = self.inner.blobs.clone();
        let key = id.to_string();
        tokio::task::spawn_blocking(move || blobs.remove(&key))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        Ok(())
    }

    /// A finished file `who` is a party to; 404 for anyone else and for unfinished uploads.
    pub(crate) async fn party_file(&self, who: &Principal, id: &str) -> ApiResult<FileRow> {
        if !crate::messages::envelope::is_uuid_v4(id) {
            return Err(ApiError::not_found("file"));
        }
        let key = id.to_string();
        let me = who.user_id;
        self.inner
            .db
            .read(move |c| db::files::get(c, &key))
            .await?
            .filter(|r| (r.uploader_id == me || r.recipient_id == me) && !r.is_uploading())
            .ok_or_else(|| ApiError::not_found("file"))
    }

    /// The files `who` and `peer` share, newest first.
    pub async fn list(
        &self,
        who: &Principal,
        peer: &str,
        before: Option<&str>,
        limit: Option<u32>,
    ) -> ApiResult<FilePage> {
        let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("limit must be between 1 and {MAX_LIST_LIMIT}"),
            ));
        }
        let before = match before {
            None => None,
            Some(b) => Some(b.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::bad_request("invalid_request", "before must be a next_cursor value")
            })?),
        };
        let name = Username::parse(peer).map_err(|_| ApiError::not_found("user"))?;
        let me = who.user_id;
        let rows = self
            .inner
            .db
            .read(move |c| {
                let Some(p) = users::by_name(c, name.as_str())? else {
                    return Ok(None);
                };
                db::files::shared(c, me, p.id, before, limit).map(Some)
            })
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
        let next_cursor = if rows.len() == limit as usize {
            rows.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        let files = rows
            .iter()
            .map(FileView::from_row)
            .collect::<ApiResult<_>>()?;
        Ok(FilePage { files, next_cursor })
    }

    /// Pushes `{"type": kind, ...}` to both parties of `row`.
    pub(crate) fn tell_parties(&self, row: &FileRow, frame: serde_json::Value) {
        let frame = Utf8Bytes::from(frame.to_string());
        self.inner.hub.push(row.uploader_id, &frame, None);
        if row.recipient_id != row.uploader_id {
            self.inner.hub.push(row.recipient_id, &frame, None);
        }
    }

    pub(crate) fn count_damaged(&self) {
        self.inner.counters.damaged.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks file `row` damaged (once), counts it, logs it by id, and tells both parties.
    pub(crate) async fn mark_damaged(&self, row: &FileRow, why: &str) -> ApiResult<()> {
        let key = row.id.clone();
        let changed = self
            .inner
            .db
            .write(move |c| db::files::mark_damaged(c, &key, now_ms()))
            .await?;
        if changed {
            self.count_damaged();
            tracing::error!(file = %row.id, why, "a stored blob does not match its BLAKE3 root; file marked damaged");
            self.tell_parties(
                row,
                serde_json::json!({"type": "file_damaged", "id": row.id, "file_id": row.file_id}),
            );
        }
        Ok(())
    }
}

pub(crate) fn status_of(row: &FileRow) -> UploadStatus {
    UploadStatus {
        offset: u64::try_from(row.upload_offset).unwrap_or(0),
        length: u64::try_from(row.upload_length).unwrap_or(0),
        expires_at: row.expires_at,
    }
}
