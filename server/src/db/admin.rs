//! Owns the SQL of the admin console: the message and file logs (metadata only), the user
//! overview, disabling accounts, the `audit_log` chain's storage and the `abuse_reports`
//! table.
//!
//! Invariant: no query here selects a password hash, wrapped key or token; the envelope
//! text is read only to be fingerprinted (logs) or checked (a recipient's own report). A
//! deleted message (a tombstone, `deleted_at` set) is in neither the log nor a report.

use rusqlite::{params, Connection, OptionalExtension, Row};
use securechat_plugin_api::admin::{
    AuditEntry, FileRow, MessageRow, NewReport, ReportRow, ReportedMessage, UserRow,
};

use super::{DbError, DbResult};

/// Log filters with user names already resolved to ids.
#[derive(Debug, Clone, Copy)]
pub struct LogFilter {
    pub sender: Option<i64>,
    pub recipient: Option<i64>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub before: Option<i64>,
    pub limit: u32,
}

pub fn user_id(conn: &Connection, username: &str) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM users WHERE username = ?1")?
        .query_row([username], |r| r.get(0))
        .optional()?)
}

fn uuid_text(bytes: &[u8]) -> String {
    uuid::Uuid::from_slice(bytes)
        .map(|u| u.hyphenated().to_string())
        .unwrap_or_else(|_| hex::encode(bytes))
}

fn state_name(state: i64) -> &'static str {
    match state {
        0 => "sent",
        1 => "delivered",
        _ => "read",
    }
}

/// Messages matching `f`, newest first.
pub fn messages(conn: &Connection, f: &LogFilter) -> DbResult<Vec<MessageRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.seq, m.msg_id, s.username, r.username, m.server_ts, m.size, m.envelope, m.state \
         FROM messages m JOIN users s ON s.id = m.sender_id JOIN users r ON r.id = m.recipient_id \
         WHERE (?1 IS NULL OR m.sender_id = ?1) AND (?2 IS NULL OR m.recipient_id = ?2) \
           AND (?3 IS NULL OR m.server_ts >= ?3) AND (?4 IS NULL OR m.server_ts < ?4) \
           AND (?5 IS NULL OR m.seq < ?5) AND m.deleted_at IS NULL \
         ORDER BY m.seq DESC LIMIT +?6",
    )?;
    let rows = stmt
        .query_map(
            params![f.sender, f.recipient, f.since, f.until, f.before, f.limit],
            |r| {
                Ok(MessageRow {
                    seq: r.get(0)?,
                    id: uuid_text(&r.get::<_, Vec<u8>>(1)?),
                    sender: r.get(2)?,
                    recipient: r.get(3)?,
                    server_ts: r.get(4)?,
                    size: r.get(5)?,
                    envelope: r.get(6)?,
                    state: state_name(r.get(7)?),
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Files matching `f` (sender = uploader, time = creation), newest first.
pub fn files(conn: &Connection, f: &LogFilter) -> DbResult<Vec<FileRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.seq, f.id, s.username, r.username, f.created_at, f.upload_length, f.blake3, f.state \
         FROM files f JOIN users s ON s.id = f.uploader_id JOIN users r ON r.id = f.recipient_id \
         WHERE (?1 IS NULL OR f.uploader_id = ?1) AND (?2 IS NULL OR f.recipient_id = ?2) \
           AND (?3 IS NULL OR f.created_at >= ?3) AND (?4 IS NULL OR f.created_at < ?4) \
           AND (?5 IS NULL OR f.seq < ?5) \
         ORDER BY f.seq DESC LIMIT +?6",
    )?;
    let rows = stmt
        .query_map(
            params![f.sender, f.recipient, f.since, f.until, f.before, f.limit],
            |r| {
                Ok(FileRow {
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    sender: r.get(2)?,
                    recipient: r.get(3)?,
                    created_at: r.get(4)?,
                    size: r.get(5)?,
                    blake3: r.get(6)?,
                    state: r.get(7)?,
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Live users (a deleted account is not listed) whose name starts with `prefix`, after
/// `after`, ascending, with their totals. A
/// user's message counts walk only their own conversations (`conversations` and the
/// messages' conversation index), never the whole table: there is no per-sender index to
/// keep the relay's inserts cheap.
pub fn users(
    conn: &Connection,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> DbResult<Vec<UserRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.username, u.is_admin, u.disabled_at IS NOT NULL, u.created_at, u.last_seen_at, \
           (SELECT count(*) FROM conversations c JOIN messages m \
              ON m.conv_lo = c.lo AND m.conv_hi = c.hi AND m.sender_id = u.id \
              WHERE c.lo = u.id OR c.hi = u.id), \
           (SELECT count(*) FROM conversations c JOIN messages m \
              ON m.conv_lo = c.lo AND m.conv_hi = c.hi AND m.recipient_id = u.id \
              WHERE c.lo = u.id OR c.hi = u.id), \
           (SELECT count(*) FROM files WHERE uploader_id = u.id), \
           (SELECT coalesce(sum(upload_offset), 0) FROM files WHERE uploader_id = u.id) \
         FROM users u \
         WHERE substr(u.username, 1, length(?1)) = ?1 AND u.username > ?2 \
           AND u.deleted_at IS NULL \
         ORDER BY u.username LIMIT +?3",
    )?;
    let rows = stmt
        .query_map(params![prefix, after.unwrap_or(""), limit], |r| {
            Ok(UserRow {
                username: r.get(0)?,
                is_admin: r.get(1)?,
                disabled: r.get(2)?,
                created_at: r.get(3)?,
                last_seen_at: r.get(4)?,
                messages_sent: r.get(5)?,
                messages_received: r.get(6)?,
                files: r.get(7)?,
                storage_bytes: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Marks the account disabled (keeping the first time) or enabled; its id, or `None` (also
/// for a deleted account: there is nothing left to disable).
pub fn set_disabled(
    conn: &Connection,
    username: &str,
    disabled: bool,
    now: i64,
) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "UPDATE users SET disabled_at = CASE WHEN ?2 THEN coalesce(disabled_at, ?3) END \
             WHERE username = ?1 AND deleted_at IS NULL RETURNING id",
        )?
        .query_row(params![username, disabled, now], |r| r.get(0))
        .optional()?)
}

/// Whether the account is disabled (false for an unknown id).
pub fn is_disabled(conn: &Connection, user_id: i64) -> DbResult<bool> {
    Ok(conn
        .prepare_cached("SELECT disabled_at IS NOT NULL FROM users WHERE id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

/// Total bytes of every stored upload (what is on disk under blobs/).
pub fn blob_bytes(conn: &Connection) -> DbResult<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(upload_offset), 0) FROM files",
        [],
        |r| r.get(0),
    )?)
}

pub fn count_of(conn: &Connection, table: Counted) -> DbResult<i64> {
    let sql = match table {
        Counted::Messages => "SELECT count(*) FROM messages",
        Counted::Files => "SELECT count(*) FROM files",
    };
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

#[derive(Debug, Clone, Copy)]
pub enum Counted {
    Messages,
    Files,
}

const AUDIT_COLUMNS: &str = "seq, at, actor, action, target, detail, prev_hash, hash";

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        target: r.get(4)?,
        detail: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

/// Appends `entry` after the last one: fills in `seq`, `prev_hash` and (with `hasher`)
/// `hash`. Runs on the single writer, so two appends never see the same last entry.
pub fn audit_append(
    conn: &Connection,
    mut entry: AuditEntry,
    hasher: fn(&AuditEntry) -> Vec<u8>,
) -> DbResult<AuditEntry> {
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev) = last.map_or((1, vec![0u8; 32]), |(s, h)| (s + 1, h));
    entry.seq = seq;
    entry.prev_hash = prev;
    entry.hash = hasher(&entry);
    conn.prepare_cached(&format!(
        "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        entry.seq,
        entry.at,
        entry.actor,
        entry.action,
        entry.target,
        entry.detail,
        entry.prev_hash,
        entry.hash
    ])?;
    Ok(entry)
}

/// Entries below `before` (all when `None`), newest first; every entry when `limit` is `None`
/// (then oldest first, for verification).
pub fn audit_list(
    conn: &Connection,
    before: Option<i64>,
    limit: Option<u32>,
) -> DbResult<Vec<AuditEntry>> {
    let sql = match limit {
        Some(_) => format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE (?1 IS NULL OR seq < ?1) \
             ORDER BY seq DESC LIMIT +?2"
        ),
        None => format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE (?1 IS NULL OR seq < ?1) \
             AND ?2 IS NULL ORDER BY seq"
        ),
    };
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![before, limit], audit_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The message `msg_id` if `recipient_id` received it, with the sender's signing key of
/// the version current at its `server_ts`.
pub fn reported_message(
    conn: &Connection,
    recipient_id: i64,
    msg_id: &str,
) -> DbResult<Option<ReportedMessage>> {
    let Some(id) = uuid::Uuid::try_parse(msg_id).ok() else {
        return Ok(None);
    };
    let Some(seq) = super::messages::seq_of_id(conn, id.as_bytes())? else {
        return Ok(None);
    };
    let found = conn
        .prepare_cached(
            "SELECT m.seq, s.username, r.username, m.server_ts, m.envelope, m.sender_id \
             FROM messages m JOIN users s ON s.id = m.sender_id JOIN users r ON r.id = m.recipient_id \
             WHERE m.seq = ?1 AND m.recipient_id = ?2 AND m.deleted_at IS NULL",
        )?
        .query_row(params![seq, recipient_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .optional()?;
    let Some((seq, sender, recipient, server_ts, envelope, sender_id)) = found else {
        return Ok(None);
    };
    let key: String = conn
        .prepare_cached(
            "SELECT sign_public_key FROM key_changes WHERE user_id = ?1 \
             ORDER BY changed_at <= ?2 DESC, \
                      CASE WHEN changed_at <= ?2 THEN key_version ELSE -key_version END DESC \
             LIMIT 1",
        )?
        .query_row(params![sender_id, server_ts], |r| r.get(0))
        .optional()?
        .ok_or_else(|| DbError::Aborted("the sender has no key history".into()))?;
    Ok(Some(ReportedMessage {
        seq,
        sender,
        recipient,
        server_ts,
        envelope,
        sender_sign_public_key: key,
    }))
}

/// Keeps a report; `None` when this reporter reported that message before.
pub fn report_insert(conn: &Connection, r: &NewReport) -> DbResult<Option<i64>> {
    let n = conn
        .prepare_cached(
            "INSERT INTO abuse_reports (message_seq, message_id, reporter, sender, recipient, \
             server_ts, reported_at, reason, verdict, detail, text) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (message_seq, reporter) DO NOTHING",
        )?
        .execute(params![
            r.message_seq,
            r.message_id,
            r.reporter,
            r.sender,
            r.recipient,
            r.server_ts,
            r.reported_at,
            r.reason,
            r.verdict,
            r.detail,
            r.text
        ])?;
    Ok((n == 1).then(|| conn.last_insert_rowid()))
}

/// Reports with id below `before`, newest first.
pub fn reports(conn: &Connection, before: Option<i64>, limit: u32) -> DbResult<Vec<ReportRow>> {
    let rows = conn
        .prepare_cached(
            "SELECT id, message_id, reporter, sender, recipient, server_ts, reported_at, reason, \
             verdict, detail, text, message_seq FROM abuse_reports WHERE (?1 IS NULL OR id < ?1) \
             ORDER BY id DESC LIMIT +?2",
        )?
        .query_map(params![before, limit], |r| {
            Ok(ReportRow {
                id: r.get(0)?,
                report: NewReport {
                    message_seq: r.get(11)?,
                    message_id: r.get(1)?,
                    reporter: r.get(2)?,
                    sender: r.get(3)?,
                    recipient: r.get(4)?,
                    server_ts: r.get(5)?,
                    reported_at: r.get(6)?,
                    reason: r.get(7)?,
                    verdict: r.get(8)?,
                    detail: r.get(9)?,
                    text: r.get(10)?,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
