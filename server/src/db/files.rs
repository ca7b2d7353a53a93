//! Owns the SQL of the `files` table: uploads in progress and the stored files they become
//! (migration 0007). One row per upload; `id` is the server's uuid for both.
//!
//! Invariant: `upload_offset` and `hash_state` change together, in the same statement, and
//! only after the blob bytes they account for were written and fdatasync'ed (files/mod.rs).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

/// A row of `files`, with the two parties' names.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub seq: i64,
    pub id: String,
    pub uploader_id: i64,
    pub uploader: String,
    pub recipient_id: i64,
    pub recipient: String,
    pub file_id: String,
    pub upload_length: i64,
    pub upload_offset: i64,
    pub record_size: i64,
    pub manifest: String,
    pub hash_state: Vec<u8>,
    pub blake3: Option<Vec<u8>>,
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub finished_at: Option<i64>,
}

impl FileRow {
    pub fn is_uploading(&self) -> bool {
        self.state == "uploading"
    }
}

const COLUMNS: &str = "f.seq, f.id, f.uploader_id, u.username, f.recipient_id, r.username, \
    f.file_id, f.upload_length, f.upload_offset, f.record_size, f.manifest, f.hash_state, \
    f.blake3, f.state, f.created_at, f.expires_at, f.finished_at";
const FROM: &str =
    "FROM files f JOIN users u ON u.id = f.uploader_id JOIN users r ON r.id = f.recipient_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        uploader_id: r.get(2)?,
        uploader: r.get(3)?,
        recipient_id: r.get(4)?,
        recipient: r.get(5)?,
        file_id: r.get(6)?,
        upload_length: r.get(7)?,
        upload_offset: r.get(8)?,
        record_size: r.get(9)?,
        manifest: r.get(10)?,
        hash_state: r.get(11)?,
        blake3: r.get(12)?,
        state: r.get(13)?,
        created_at: r.get(14)?,
        expires_at: r.get(15)?,
        finished_at: r.get(16)?,
    })
}

/// A new upload, as POST stores it.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub id: String,
    pub uploader_id: i64,
    pub recipient_id: i64,
    pub file_id: String,
    pub upload_length: i64,
    pub record_size: i64,
    pub manifest: String,
    pub hash_state: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What one user has: bytes counted against the quota (live uploads and stored files) and
/// uploads in flight (unfinished, not expired), as of `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub used_bytes: i64,
    pub in_flight: i64,
}

pub fn usage(conn: &Connection, user_id: i64, now: i64) -> DbResult<Usage> {
    let mut s = conn.prepare_cached(
        "SELECT \
           coalesce(sum(CASE WHEN state = 'uploading' AND expires_at <= ?2 THEN 0 \
                             ELSE upload_length END), 0), \
           coalesce(sum(CASE WHEN state = 'uploading' AND expires_at > ?2 \
                             AND upload_offset < upload_length THEN 1 ELSE 0 END), 0) \
         FROM files WHERE uploader_id = ?1",
    )?;
    Ok(s.query_row(params![user_id, now], |r| {
        Ok(Usage {
            used_bytes: r.get(0)?,
            in_flight: r.get(1)?,
        })
    })?)
}

pub fn insert(conn: &Connection, u: &NewUpload) -> DbResult<()> {
    conn.prepare_cached(
        "INSERT INTO files (id, uploader_id, recipient_id, file_id, upload_length, record_size, \
         manifest, hash_state, state, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'uploading', ?9, ?10)",
    )?
    .execute(params![
        u.id,
        u.uploader_id,
        u.recipient_id,
        u.file_id,
        u.upload_length,
        u.record_size,
        u.manifest,
        u.hash_state,
        u.created_at,
        u.expires_at
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> DbResult<Option<FileRow>> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE f.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?)
}

/// Moves the offset from `from` to `to` with the hash state (and the root when complete).
/// Returns false (and changes nothing) if the stored offset is no longer `from`.
pub fn advance(
    conn: &Connection,
    id: &str,
    from: i64,
    to: i64,
    hash_state: &[u8],
    root: Option<&[u8]>,
) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE files SET upload_offset = ?3, hash_state = ?4, blake3 = ?5 \
             WHERE id = ?1 AND upload_offset = ?2 AND state = 'uploading'",
        )?
        .execute(params![id, from, to, hash_state, root])?;
    Ok(n == 1)
}

/// Marks a complete upload ready. Returns false if it was not an upload with every byte
/// (already ready, damaged, or gone).
pub fn mark_ready(conn: &Connection, id: &str, at: i64) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE files SET state = 'ready', finished_at = ?2, scrubbed_at = ?2 \
             WHERE id = ?1 AND state = 'uploading' AND upload_offset = upload_length",
        )?
        .execute(params![id, at])?;
    Ok(n == 1)
}

/// Marks a file damaged; returns false if it already was (or is gone).
pub fn mark_damaged(conn: &Connection, id: &str, at: i64) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE files SET state = 'damaged', finished_at = coalesce(finished_at, ?2) \
             WHERE id = ?1 AND state != 'damaged'",
        )?
        .execute(params![id, at])?;
    Ok(n == 1)
}

pub fn mark_scrubbed(conn: &Connection, id: &str, at: i64) -> DbResult<()> {
    conn.prepare_cached("UPDATE files SET scrubbed_at = ?2 WHERE id = ?1")?
        .execute(params![id, at])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> DbResult<bool> {
    let n = conn
        .prepare_cached("DELETE FROM files WHERE id = ?1")?
        .execute([id])?;
    Ok(n == 1)
}

/// Ids of unfinished uploads past their expiry (at most `limit`).
pub fn expired_uploads(conn: &Connection, now: i64, limit: u32) -> DbResult<Vec<String>> {
    let mut s = conn.prepare_cached(
        "SELECT id FROM files WHERE state = 'uploading' AND expires_at <= ?1 \
         AND upload_offset < upload_length LIMIT +?2",
    )?;
    let rows = s.query_map(params![now, limit], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ids of finished files (ready or damaged) that finished before `before` (at most `limit`).
pub fn finished_before(conn: &Connection, before: i64, limit: u32) -> DbResult<Vec<String>> {
    let mut s = conn.prepare_cached(
        "SELECT id FROM files WHERE state != 'uploading' AND finished_at < ?1 LIMIT +?2",
    )?;
    let rows = s.query_map(params![before, limit], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ids of files and uploads whose uploader deleted their account (at most `limit`).
pub fn of_deleted_uploaders(conn: &Connection, limit: u32) -> DbResult<Vec<String>> {
    let mut s = conn.prepare_cached(
        "SELECT f.id FROM files f JOIN users u ON u.id = f.uploader_id \
         WHERE u.deleted_at IS NOT NULL LIMIT +?1",
    )?;
    let rows = s.query_map([limit], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ready files verified longest ago (never-verified first), at most `limit`.
pub fn least_recently_scrubbed(conn: &Connection, limit: u32) -> DbResult<Vec<FileRow>> {
    let sql = format!(
        "SELECT {COLUMNS} {FROM} WHERE f.state = 'ready' \
         ORDER BY coalesce(f.scrubbed_at, 0), f.seq LIMIT +?1"
    );
    let mut s = conn.prepare_cached(&sql)?;
    let rows = s.query_map([limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Uploads with some bytes acknowledged but not all (start-up cut-back).
pub fn unfinished(conn: &Connection) -> DbResult<Vec<(String, i64)>> {
    let mut s =
        conn.prepare_cached("SELECT id, upload_offset FROM files WHERE state = 'uploading'")?;
    let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Finished files the two users share (either direction), newest first, below `before`.
pub fn shared(
    conn: &Connection,
    a: i64,
    b: i64,
    before: Option<i64>,
    limit: u32,
) -> DbResult<Vec<FileRow>> {
    let sql = format!(
        "SELECT {COLUMNS} {FROM} WHERE f.state != 'uploading' AND f.seq < ?3 AND \
         ((f.uploader_id = ?1 AND f.recipient_id = ?2) OR (f.uploader_id = ?2 AND f.recipient_id = ?1)) \
         ORDER BY f.seq DESC LIMIT +?4"
    );
    let mut s = conn.prepare_cached(&sql)?;
    let rows = s.query_map(params![a, b, before.unwrap_or(i64::MAX), limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
