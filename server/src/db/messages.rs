//! Owns the SQL of the `messages` table: storing envelopes (idempotently per id, which
//! belongs to its first sender), history by conversation, conversation summaries, receipts, and conversation
//! partners for presence.
//!
//! Invariant: an envelope row is written once and its `envelope` text never changes;
//! only `state` moves forward (sent -> delivered -> read).

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

pub const STATE_SENT: i64 = 0;
pub const STATE_DELIVERED: i64 = 1;
pub const STATE_READ: i64 = 2;

pub fn state_name(state: i64) -> &'static str {
    match state {
        STATE_READ => "read",
        STATE_DELIVERED => "delivered",
        _ => "sent",
    }
}

/// The outcome of storing an envelope: its seq and server time, and whether this call
/// stored it (false: a resend of an id already stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub seq: i64,
    pub server_ts: i64,
    pub new: bool,
}

pub struct NewMessage<'a> {
    pub sender_id: i64,
    pub recipient_id: i64,
    pub msg_id: &'a str,
    pub server_ts: i64,
    pub envelope: &'a str,
}

/// What storing an envelope did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored now, or (`new: false`) already stored by this sender under this id.
    Stored(Stored),
    /// Another sender already used this id; nothing stored.
    IdTaken,
}

/// Stores an envelope unless its id is already stored.
pub fn store(conn: &Connection, m: &NewMessage<'_>) -> DbResult<StoreOutcome> {
    let (lo, hi) = if m.sender_id <= m.recipient_id {
        (m.sender_id, m.recipient_id)
    } else {
        (m.recipient_id, m.sender_id)
    };
    let inserted: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO messages (sender_id, recipient_id, conv_lo, conv_hi, msg_id, server_ts, size, envelope) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (msg_id) DO NOTHING RETURNING seq",
        )?
        .query_row(
            params![
                m.sender_id,
                m.recipient_id,
                lo,
                hi,
                m.msg_id,
                m.server_ts,
                m.envelope.len() as i64,
                m.envelope
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(seq) = inserted {
        return Ok(StoreOutcome::Stored(Stored {
            seq,
            server_ts: m.server_ts,
            new: true,
        }));
    }
    let (seq, server_ts, sender): (i64, i64, i64) = conn
        .prepare_cached("SELECT seq, server_ts, sender_id FROM messages WHERE msg_id = ?1")?
        .query_row(params![m.msg_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if sender != m.sender_id {
        return Ok(StoreOutcome::IdTaken);
    }
    Ok(StoreOutcome::Stored(Stored {
        seq,
        server_ts,
        new: false,
    }))
}

#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub seq: i64,
    pub server_ts: i64,
    pub state: i64,
    pub envelope: String,
}

/// Messages between `a` and `b`, ascending by seq. With `after`, the first `limit` after
/// it; otherwise the last `limit` before `before` (or the newest).
pub fn history(
    conn: &Connection,
    a: i64,
    b: i64,
    after: Option<i64>,
    before: Option<i64>,
    limit: u32,
) -> DbResult<Vec<HistoryRow>> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let map = |r: &rusqlite::Row<'_>| {
        Ok(HistoryRow {
            seq: r.get(0)?,
            server_ts: r.get(1)?,
            state: r.get(2)?,
            envelope: r.get(3)?,
        })
    };
    let before = before.unwrap_or(i64::MAX);
    if let Some(after) = after {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, server_ts, state, envelope FROM messages \
             WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq > ?3 AND seq < ?4 ORDER BY seq LIMIT ?5",
        )?;
        let rows = stmt
            .query_map(params![lo, hi, after, before, limit], map)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    } else {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, server_ts, state, envelope FROM messages \
             WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
        )?;
        let mut rows = stmt
            .query_map(params![lo, hi, before, limit], map)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.reverse();
        Ok(rows)
    }
}

#[derive(Debug, Clone)]
pub struct ConversationRow {
    pub peer: String,
    pub last_seq: i64,
    pub last_server_ts: i64,
    pub unread: i64,
}

/// The caller's conversations, most recent first, with unread counts.
pub fn conversations(conn: &Connection, me: i64) -> DbResult<Vec<ConversationRow>> {
    let mut stmt = conn.prepare_cached(
        "WITH mine AS ( \
             SELECT conv_hi AS peer_id, seq, server_ts, recipient_id, state FROM messages WHERE conv_lo = ?1 \
             UNION ALL \
             SELECT conv_lo AS peer_id, seq, server_ts, recipient_id, state FROM messages WHERE conv_hi = ?1 AND conv_lo <> ?1) \
         SELECT u.username, max(m.seq), max(m.server_ts), \
                sum(CASE WHEN m.recipient_id = ?1 AND m.state < 2 AND m.peer_id <> ?1 THEN 1 ELSE 0 END) \
         FROM mine m JOIN users u ON u.id = m.peer_id GROUP BY m.peer_id ORDER BY max(m.seq) DESC",
    )?;
    let rows = stmt
        .query_map([me], |r| {
            Ok(ConversationRow {
                peer: r.get(0)?,
                last_seq: r.get(1)?,
                last_server_ts: r.get(2)?,
                unread: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Moves the state of the message `msg_id` sent to `recipient` forward to `state`.
/// Returns the sender's id if such a message exists (whether or not the state moved).
pub fn mark(
    conn: &Connection,
    recipient: i64,
    msg_id: &str,
    state: i64,
    at: i64,
) -> DbResult<Option<i64>> {
    let sender: Option<i64> = conn
        .prepare_cached("SELECT sender_id FROM messages WHERE msg_id = ?2 AND recipient_id = ?1")?
        .query_row(params![recipient, msg_id], |r| r.get(0))
        .optional()?;
    if sender.is_some() {
        conn.prepare_cached(
            "UPDATE messages SET state = ?3, \
                 delivered_at = coalesce(delivered_at, ?4), \
                 read_at = CASE WHEN ?3 = 2 THEN coalesce(read_at, ?4) ELSE read_at END \
             WHERE msg_id = ?2 AND recipient_id = ?1 AND state < ?3",
        )?
        .execute(params![recipient, msg_id, state, at])?;
    }
    Ok(sender)
}

/// Everyone `me` has exchanged a message with (for presence).
pub fn partners(conn: &Connection, me: i64) -> DbResult<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT conv_hi FROM messages WHERE conv_lo = ?1 AND conv_hi <> ?1 \
         UNION SELECT DISTINCT conv_lo FROM messages WHERE conv_hi = ?1 AND conv_lo <> ?1",
    )?;
    let rows = stmt
        .query_map([me], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Whether `a` and `b` have exchanged any message.
pub fn share_conversation(conn: &Connection, a: i64, b: i64) -> DbResult<bool> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    Ok(conn
        .prepare_cached("SELECT 1 FROM messages WHERE conv_lo = ?1 AND conv_hi = ?2 LIMIT 1")?
        .query_row([lo, hi], |_| Ok(()))
        .optional()?
        .is_some())
}
