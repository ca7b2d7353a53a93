//! Owns the SQL of the `messages` and `conversations` tables: storing envelopes
//! (idempotently per id, which belongs to its first sender), history by conversation,
//! conversation summaries, receipts, and conversation partners for presence; and the two
//! writes the messages domain queues on the writer ([`Db::submit_message`],
//! [`Db::submit_receipt`]), which bring the id index along (see `message_ids`).
//!
//! Deleting (by the sender, [`Db::delete_message`], or by the expiry sweep of disappearing
//! messages, [`expired`] then [`tombstone_all`]) leaves a tombstone: the row, its seq and its id stay (so the
//! id index still recognises the id and a resend stores nothing), `envelope` becomes ''
//! and `deleted_at` is set. History and unread counts skip tombstones. Retention periods
//! (`conversation_timers`) are written by [`set_timer`] and read by [`timer`].
//!
//! Invariants: an envelope row is written once and its `envelope` text never changes
//! except to become a tombstone ('' with `deleted_at`), which is final;
//! only `state` moves forward (sent -> delivered -> read). Every pair of users with a
//! stored message has its `conversations` row, written in the same transaction as the
//! pair's first message. Ids are stored as their 16 bytes; callers pass the lower-case
//! UUID text the envelope checks accepted. A message id is looked up only through the id
//! index, on the write connection.

use std::sync::Arc;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};

use super::message_ids::{self, id_bytes, invalid_id, KnownIds};
use super::{now_ms, Db, DbResult, Pending};

/// How far a message has got with its recipient. Stored as 0, 1, 2; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageState {
    Sent,
    Delivered,
    Read,
}

impl MessageState {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Sent => "sent",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
        }
    }

    fn code(self) -> i64 {
        match self {
            MessageState::Sent => 0,
            MessageState::Delivered => 1,
            MessageState::Read => 2,
        }
    }
}

impl ToSql for MessageState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.code()))
    }
}

impl FromSql for MessageState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_i64()? {
            0 => Ok(MessageState::Sent),
            1 => Ok(MessageState::Delivered),
            2 => Ok(MessageState::Read),
            n => Err(FromSqlError::OutOfRange(n)),
        }
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

/// An envelope to store. `envelope` is shared with whoever fans the message out, so the
/// write costs no copy of it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender_id: i64,
    pub recipient_id: i64,
    pub msg_id: String,
    pub envelope: Arc<str>,
}

/// What storing an envelope did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored now, or (`new: false`) already stored by this sender under this id.
    Stored(Stored),
    /// Another sender already used this id; nothing stored.
    IdTaken,
}

fn pair(a: i64, b: i64) -> (i64, i64) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Db {
    /// Queues storing `m` in the writer's next transaction and returns at once (after
    /// waiting only for room in the queue) with a future of the outcome after COMMIT. A
    /// caller's submissions commit in the order it made them, so a connection can pipeline
    /// its sends and still ack them in order.
    pub async fn submit_message(&self, m: NewMessage) -> DbResult<Pending<StoreOutcome>> {
        let known = self.known_ids.clone();
        self.writer()
            .submit(move |c| store(c, &known, &m, now_ms()))
            .await
    }

    /// Tombstones the message `msg_id` if `sender` sent it (its envelope cleared, its id
    /// kept: see the module comment); true also when it was already deleted. False, with
    /// nothing changed, when there is no such message or `sender` did not send it.
    pub async fn delete_message(&self, sender: i64, msg_id: String) -> DbResult<bool> {
        let known = self.known_ids.clone();
        self.write(move |c| delete_by_sender(c, &known, sender, &msg_id, now_ms()))
            .await
    }

    /// Queues moving the state of message `msg_id` sent to `recipient` forward to `state`;
    /// the future resolves after COMMIT with the sender's id, or `None` if `recipient`
    /// received no message with that id.
    pub async fn submit_receipt(
        &self,
        recipient: i64,
        msg_id: String,
        state: MessageState,
        at: i64,
    ) -> DbResult<Pending<Option<i64>>> {
        let known = self.known_ids.clone();
        self.writer()
            .submit(move |c| mark(c, &known, recipient, &msg_id, state, at))
            .await
    }
}

/// Stores an envelope at `server_ts` unless its id is already stored. `known` is the write
/// connection's filter of stored ids.
pub(super) fn store(
    conn: &Connection,
    known: &KnownIds,
    m: &NewMessage,
    server_ts: i64,
) -> DbResult<StoreOutcome> {
    let (lo, hi) = pair(m.sender_id, m.recipient_id);
    let msg_id = id_bytes(&m.msg_id).ok_or_else(invalid_id)?;
    if let Some(found) = message_ids::find(conn, known, &msg_id)? {
        if found.sender_id != m.sender_id {
            return Ok(StoreOutcome::IdTaken);
        }
        return Ok(StoreOutcome::Stored(Stored {
            seq: found.seq,
            server_ts: found.server_ts,
            new: false,
        }));
    }
    conn.prepare_cached(
        "INSERT INTO messages (sender_id, recipient_id, conv_lo, conv_hi, msg_id, server_ts, size, envelope) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        m.sender_id,
        m.recipient_id,
        lo,
        hi,
        &msg_id[..],
        server_ts,
        m.envelope.len() as i64,
        &*m.envelope
    ])?;
    // seq (the rowid) is read with last_insert_rowid(), not RETURNING, which SQLite runs
    // through a temporary table.
    let seq = conn.last_insert_rowid();
    message_ids::record(conn, known, &msg_id, seq)?;
    // Reads the pair's row and writes nothing, except for a pair's first message.
    conn.prepare_cached("INSERT OR IGNORE INTO conversations (lo, hi) VALUES (?1, ?2)")?
        .execute([lo, hi])?;
    Ok(StoreOutcome::Stored(Stored {
        seq,
        server_ts,
        new: true,
    }))
}

/// A page of history after a seq (`conv_lo, conv_hi, after, before, limit`); tombstones
/// are skipped.
const HISTORY_AFTER: &str = "SELECT seq, server_ts, state, envelope FROM messages \
     WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq > ?3 AND seq < ?4 AND deleted_at IS NULL \
     ORDER BY seq LIMIT +?5";
/// The newest page of history before a seq (`conv_lo, conv_hi, before, limit`); tombstones
/// are skipped.
const HISTORY_BEFORE: &str = "SELECT seq, server_ts, state, envelope FROM messages \
     WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq < ?3 AND deleted_at IS NULL \
     ORDER BY seq DESC LIMIT +?4";

#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub seq: i64,
    pub server_ts: i64,
    pub state: MessageState,
    pub envelope: String,
}

/// The seq of the stored message whose envelope id is `msg_id` (16 bytes), from any
/// connection; an index probe plus a bounded scan of the not yet indexed tail.
pub fn seq_of_id(conn: &Connection, msg_id: &[u8; 16]) -> DbResult<Option<i64>> {
    message_ids::find_seq_from_any_connection(conn, msg_id)
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
    let (lo, hi) = pair(a, b);
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
        let mut stmt = conn.prepare_cached(HISTORY_AFTER)?;
        let rows = stmt
            .query_map(params![lo, hi, after, before, limit], map)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    } else {
        let mut stmt = conn.prepare_cached(HISTORY_BEFORE)?;
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
        "WITH pairs (lo, hi, peer_id) AS ( \
             SELECT lo, hi, hi FROM conversations WHERE lo = ?1 \
             UNION ALL \
             SELECT lo, hi, lo FROM conversations WHERE hi = ?1 AND lo <> ?1), \
         latest (lo, hi, peer_id, seq) AS ( \
             SELECT lo, hi, peer_id, \
                    (SELECT max(seq) FROM messages WHERE conv_lo = p.lo AND conv_hi = p.hi) \
             FROM pairs p) \
         SELECT u.username, l.seq, m.server_ts, \
                (SELECT count(*) FROM messages x \
                 WHERE x.conv_lo = l.lo AND x.conv_hi = l.hi AND x.recipient_id = ?1 \
                   AND x.state < ?2 AND x.deleted_at IS NULL AND l.peer_id <> ?1) \
         FROM latest l JOIN messages m ON m.seq = l.seq JOIN users u ON u.id = l.peer_id \
         ORDER BY l.seq DESC",
    )?;
    let rows = stmt
        .query_map(params![me, MessageState::Read], |r| {
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
pub(super) fn mark(
    conn: &Connection,
    known: &KnownIds,
    recipient: i64,
    msg_id: &str,
    state: MessageState,
    at: i64,
) -> DbResult<Option<i64>> {
    let Some(msg_id) = id_bytes(msg_id) else {
        return Ok(None);
    };
    let sender = match message_ids::find(conn, known, &msg_id)? {
        Some(found) if found.recipient_id == recipient => {
            conn.prepare_cached(
                "UPDATE messages SET state = ?2, \
                     delivered_at = coalesce(delivered_at, ?3), \
                     read_at = CASE WHEN ?2 = ?4 THEN coalesce(read_at, ?3) ELSE read_at END \
                 WHERE seq = ?1 AND state < ?2",
            )?
            .execute(params![found.seq, state, at, MessageState::Read])?;
            Some(found.sender_id)
        }
        _ => None,
    };
    Ok(sender)
}

/// Runs `f` (which tombstones messages) with `secure_delete = FAST` on `conn`, then puts the
/// previous setting back: the cleared envelope's bytes are zeroed in its b-tree page
/// instead of lingering as free space in the database file (an envelope larger than a
/// page leaves its overflow pages on the freelist until they are reused). Only these
/// writes pay for it; storing a message does not.
/// The WAL's older images of those pages are dropped at the next idle checkpoint
/// (`checkpoint::request_scrub`).
fn scrubbing<T>(conn: &Connection, f: impl FnOnce() -> DbResult<T>) -> DbResult<T> {
    let before: i64 = conn.query_row("PRAGMA main.secure_delete", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA main.secure_delete = FAST")?;
    let out = f();
    conn.execute_batch(&format!("PRAGMA main.secure_delete = {before}"))?;
    if out.is_ok() {
        super::checkpoint::request_scrub();
    }
    out
}

/// Clears the stored envelope of the message `seq` and marks it deleted at `at` (a
/// tombstone); a message already deleted keeps its first `deleted_at`.
const TOMBSTONE: &str = "UPDATE messages SET envelope = '', deleted_at = coalesce(deleted_at, ?2) \
     WHERE seq = ?1";

/// See [`Db::delete_message`]. Runs on the write connection (the id index lives there).
pub(super) fn delete_by_sender(
    conn: &Connection,
    known: &KnownIds,
    sender: i64,
    msg_id: &str,
    at: i64,
) -> DbResult<bool> {
    let Some(msg_id) = id_bytes(msg_id) else {
        return Ok(false);
    };
    match message_ids::find(conn, known, &msg_id)? {
        Some(found) if found.sender_id == sender => scrubbing(conn, || {
            conn.prepare_cached(TOMBSTONE)?
                .execute(params![found.seq, at])?;
            Ok(true)
        }),
        _ => Ok(false),
    }
}

/// Tombstones every message to or from `user_id` that its recipient has not received yet
/// (state `sent`), at `at`: what deleting an account takes with it. Walks the user's
/// conversations, so only their messages are read.
pub fn delete_undelivered_of(conn: &Connection, user_id: i64, at: i64) -> DbResult<usize> {
    scrubbing(conn, || {
        Ok(conn.execute(
            "UPDATE messages SET envelope = '', deleted_at = ?2 WHERE seq IN ( \
             SELECT m.seq FROM conversations c \
             JOIN messages m ON m.conv_lo = c.lo AND m.conv_hi = c.hi \
             WHERE (c.lo = ?1 OR c.hi = ?1) AND m.state = ?3 AND m.deleted_at IS NULL)",
            params![user_id, at, MessageState::Sent],
        )?)
    })
}

/// The newest seq of the conversation of `a` and `b` (0 if none).
fn newest_seq(conn: &Connection, lo: i64, hi: i64) -> DbResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(max(seq), 0) FROM messages WHERE conv_lo = ?1 AND conv_hi = ?2",
        )?
        .query_row([lo, hi], |r| r.get(0))?)
}

/// A conversation's retention period: messages after `from_seq` expire `secs` after their
/// `server_ts` (0 = never), from `set_at` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub secs: i64,
    pub from_seq: i64,
    pub set_at: i64,
}

/// Starts a retention period of `secs` for the conversation of `a` and `b` after its newest
/// message, set by `by` at `at`.
pub fn set_timer(
    conn: &Connection,
    a: i64,
    b: i64,
    by: i64,
    secs: i64,
    at: i64,
) -> DbResult<Timer> {
    let (lo, hi) = pair(a, b);
    let from_seq = newest_seq(conn, lo, hi)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO conversation_timers (lo, hi, from_seq, secs, set_at, set_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![lo, hi, from_seq, secs, at, by])?;
    Ok(Timer {
        secs,
        from_seq,
        set_at: at,
    })
}

/// The latest retention period of the conversation of `a` and `b`, if one was ever set.
pub fn timer(conn: &Connection, a: i64, b: i64) -> DbResult<Option<Timer>> {
    let (lo, hi) = pair(a, b);
    Ok(conn
        .prepare_cached(
            "SELECT secs, from_seq, set_at FROM conversation_timers \
             WHERE lo = ?1 AND hi = ?2 ORDER BY from_seq DESC LIMIT 1",
        )?
        .query_row([lo, hi], |r| {
            Ok(Timer {
                secs: r.get(0)?,
                from_seq: r.get(1)?,
                set_at: r.get(2)?,
            })
        })
        .optional()?)
}

/// What one look of the expiry sweep found: the seqs to tombstone and the retention
/// periods (lo, hi, from_seq) they belong to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    pub seqs: Vec<i64>,
    pub periods: Vec<(i64, i64, i64)>,
}

/// At most `limit` messages whose retention period has run out by `now`: a message of a
/// period with `secs` > 0 (seq above its `from_seq`, and not above the next period's), not
/// yet deleted, whose `server_ts + secs * 1000 <= now`. Each period is read only after its
/// `swept_to` (see [`tombstone_all`]), so a sweep reads what is new since the last one, not
/// every tombstone of a long-timed conversation again. A read: the sweep looks on a reader
/// connection, so the writer (which stores every message) only does the point updates of
/// [`tombstone_all`]. An expired message stays expired (periods are only added after the
/// newest message), so what this finds may be deleted later.
pub fn expired(conn: &Connection, now: i64, limit: u32) -> DbResult<Expired> {
    let mut found = Expired::default();
    let mut st = conn.prepare_cached(
        "SELECT t.lo, t.hi, t.from_seq, m.seq FROM conversation_timers t \
         JOIN messages m ON m.conv_lo = t.lo AND m.conv_hi = t.hi \
                        AND m.seq > max(t.from_seq, t.swept_to) \
         WHERE t.secs > 0 AND m.deleted_at IS NULL \
           AND m.server_ts + t.secs * 1000 <= ?1 \
           AND m.seq <= coalesce((SELECT min(n.from_seq) FROM conversation_timers n \
                                  WHERE n.lo = t.lo AND n.hi = t.hi \
                                    AND n.from_seq > t.from_seq), 9223372036854775807) \
         LIMIT +?2",
    )?;
    let mut rows = st.query(params![now, limit])?;
    while let Some(r) = rows.next()? {
        let period = (r.get(0)?, r.get(1)?, r.get(2)?);
        if found.periods.last() != Some(&period) && !found.periods.contains(&period) {
            found.periods.push(period);
        }
        found.seqs.push(r.get(3)?);
    }
    Ok(found)
}

/// Tombstones the messages of `found` at `at` (one rowid update each) and moves each of
/// their periods' `swept_to` up to just below the period's first message still not deleted
/// (or to the conversation's newest seq when there is none): everything at or below
/// `swept_to` is deleted, so the next sweep starts there. A message with an earlier
/// `server_ts` than one before it (a clock stepped back) only holds `swept_to` below it until
/// it expires too; it is never skipped. Returns how many messages were not deleted before.
pub fn tombstone_all(conn: &Connection, found: &Expired, at: i64) -> DbResult<usize> {
    scrubbing(conn, || {
        let mut st = conn.prepare_cached(
            "UPDATE messages SET envelope = '', deleted_at = ?2 WHERE seq = ?1 AND deleted_at IS NULL",
        )?;
        let mut n = 0;
        for seq in &found.seqs {
            n += st.execute(params![seq, at])?;
        }
        let mut advance = conn.prepare_cached(
            "UPDATE conversation_timers SET swept_to = coalesce( \
               (SELECT min(m.seq) - 1 FROM messages m \
                  WHERE m.conv_lo = ?1 AND m.conv_hi = ?2 \
                    AND m.seq > max(?3, conversation_timers.swept_to) AND m.deleted_at IS NULL), \
               (SELECT max(m.seq) FROM messages m WHERE m.conv_lo = ?1 AND m.conv_hi = ?2), \
               swept_to) \
             WHERE lo = ?1 AND hi = ?2 AND from_seq = ?3",
        )?;
        for (lo, hi, from_seq) in &found.periods {
            advance.execute(params![lo, hi, from_seq])?;
        }
        Ok(n)
    })
}

/// Where the sweep of the period (lo, hi, from_seq) starts next (tests and diagnostics).
pub fn swept_to(conn: &Connection, lo: i64, hi: i64, from_seq: i64) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT swept_to FROM conversation_timers WHERE lo = ?1 AND hi = ?2 AND from_seq = ?3",
        )?
        .query_row([lo, hi, from_seq], |r| r.get(0))
        .optional()?)
}

/// Everyone `me` has exchanged a message with (for presence).
pub fn partners(conn: &Connection, me: i64) -> DbResult<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT hi FROM conversations WHERE lo = ?1 AND hi <> ?1 \
         UNION ALL SELECT lo FROM conversations WHERE hi = ?1 AND lo <> ?1",
    )?;
    let rows = stmt
        .query_map([me], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Whether `a` and `b` have exchanged any message.
pub fn share_conversation(conn: &Connection, a: i64, b: i64) -> DbResult<bool> {
    let (lo, hi) = pair(a, b);
    Ok(conn
        .prepare_cached("SELECT 1 FROM conversations WHERE lo = ?1 AND hi = ?2")?
        .query_row([lo, hi], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::super::message_ids::tests::nth_id;
    use super::super::message_ids::{
        flush_id_range, open_id_buffer, range_bounds, FLUSH_EVERY, ID_RANGES,
    };
    use super::*;

    /// A write connection with its id buffer and filter, as the writer has them.
    struct Writer {
        c: Connection,
        known: KnownIds,
    }

    impl std::ops::Deref for Writer {
        type Target = Connection;
        fn deref(&self) -> &Connection {
            &self.c
        }
    }

    /// `c` (buffer already opened) with its filter loaded, as at start-up.
    fn with_known(c: Connection) -> Writer {
        let known = KnownIds::load(&c).expect("known ids");
        Writer { c, known }
    }

    fn open(mut c: Connection) -> Writer {
        super::super::migrate::migrate(&mut c).expect("migrate");
        open_id_buffer(&c).expect("id buffer");
        with_known(c)
    }

    fn db() -> Writer {
        let w = open(Connection::open_in_memory().expect("open"));
        super::super::insert_test_users(&w);
        w
    }

    fn send(c: &Writer, from: i64, to: i64, id: &str) -> StoreOutcome {
        store(
            c,
            &c.known,
            &NewMessage {
                sender_id: from,
                recipient_id: to,
                msg_id: id.to_owned(),
                envelope: Arc::from("{}"),
            },
            1,
        )
        .expect("store")
    }

    const A: &str = "0d6f8a52-1c1e-4c5e-9b7a-2f7d0c1e9a01";
    const B: &str = "7c3e2b1a-9d8f-4e6d-8c5b-4a3b2c1d0e02";

    #[test]
    fn a_state_is_stored_as_its_code_and_an_unknown_code_is_refused() {
        let c = db();
        for (state, code) in [
            (MessageState::Sent, 0i64),
            (MessageState::Delivered, 1),
            (MessageState::Read, 2),
        ] {
            let stored: i64 = c
                .query_row("SELECT ?1", [state], |r| r.get(0))
                .expect("to sql");
            assert_eq!(stored, code);
            let read: MessageState = c
                .query_row("SELECT ?1", [code], |r| r.get(0))
                .expect("from sql");
            assert_eq!(read, state);
        }
        assert!(c
            .query_row("SELECT 3", [], |r| r.get::<_, MessageState>(0))
            .is_err());
        assert!(MessageState::Sent < MessageState::Delivered);
        assert!(MessageState::Delivered < MessageState::Read);
    }

    fn envelope_of(c: &Connection, seq: i64) -> String {
        c.query_row("SELECT envelope FROM messages WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .expect("row")
    }

    #[test]
    fn each_timer_period_covers_the_messages_after_it_until_the_next_one() {
        let c = db();
        send(&c, 1, 2, &nth_id(1)); // before any timer: never expires
        let t = set_timer(&c, 2, 1, 2, 5, 100).expect("set");
        assert_eq!((t.from_seq, t.secs), (1, 5));
        send(&c, 1, 2, &nth_id(2)); // under the 5 s period
        send(&c, 2, 1, &nth_id(3));
        set_timer(&c, 1, 2, 1, 0, 200).expect("off");
        send(&c, 1, 2, &nth_id(4)); // under the period that turned it off
        send(&c, 1, 3, &nth_id(5)); // another conversation, no timer
        assert_eq!(
            timer(&c, 2, 1).expect("timer"),
            Some(Timer {
                secs: 0,
                from_seq: 3,
                set_at: 200
            })
        );
        assert_eq!(timer(&c, 1, 3).expect("timer"), None);
        // Messages were stored at server_ts 1: they expire at 5,001.
        let sweep = |now, limit| {
            let found = expired(&c, now, limit).expect("expired");
            tombstone_all(&c, &found, now).expect("tombstone")
        };
        assert_eq!(sweep(5_000, 10), 0);
        assert_eq!(sweep(5_001, 1), 1, "bounded");
        assert_eq!(sweep(5_001, 10), 1);
        assert_eq!(sweep(99_999, 10), 0);
        for (seq, gone) in [(1, false), (2, true), (3, true), (4, false), (5, false)] {
            assert_eq!(envelope_of(&c, seq).is_empty(), gone, "seq {seq}");
        }
        let seqs: Vec<i64> = history(&c, 1, 2, Some(0), None, 50)
            .expect("history")
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, vec![1, 4], "history skips tombstones");
    }

    #[test]
    fn the_sweep_starts_after_what_it_deleted_and_never_skips_a_message_that_expires_later() {
        let c = db();
        set_timer(&c, 1, 2, 1, 5, 100).expect("set");
        for n in 1..=4 {
            send(&c, 1, 2, &nth_id(n));
        }
        // seq 3 arrived with a later server_ts; seq 4 after a clock stepped back.
        c.execute("UPDATE messages SET server_ts = 10000 WHERE seq = 3", [])
            .expect("ts");
        let sweep = |now, limit| {
            let found = expired(&c, now, limit).expect("expired");
            tombstone_all(&c, &found, now).expect("tombstone")
        };
        let swept = || swept_to(&c, 1, 2, 0).expect("read").expect("period");
        assert_eq!(swept(), 0);
        assert_eq!(sweep(5_001, 1), 1, "one per batch");
        assert_eq!(swept(), 1);
        assert_eq!(sweep(5_001, 10), 2, "seqs 2 and 4");
        assert_eq!(swept(), 2, "held below seq 3, which has not expired yet");
        assert_eq!(sweep(5_001, 10), 0);
        assert_eq!(sweep(10_001, 10), 0, "seq 3 expires at 15,000");
        assert_eq!(sweep(15_000, 10), 1, "seq 3");
        assert_eq!(swept(), 4, "everything is deleted");
        send(&c, 2, 1, &nth_id(5));
        assert_eq!(sweep(15_000, 10), 1, "a new message after swept_to");
        assert_eq!(swept(), 5);
        for seq in 1..=5 {
            assert!(envelope_of(&c, seq).is_empty(), "seq {seq}");
        }
        // The read starts at swept_to: nothing at or below it is looked at.
        let plan: String = c
            .prepare(
                "EXPLAIN QUERY PLAN SELECT t.lo, t.hi, t.from_seq, m.seq FROM conversation_timers t \
                 JOIN messages m ON m.conv_lo = t.lo AND m.conv_hi = t.hi \
                                AND m.seq > max(t.from_seq, t.swept_to) \
                 WHERE t.secs > 0 AND m.deleted_at IS NULL",
            )
            .expect("plan")
            .query_map([], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<Vec<_>, _>>()
            .expect("plan rows")
            .join("; ");
        assert!(plan.contains("rowid>?"), "{plan}");
    }

    #[test]
    fn a_message_is_deleted_only_by_its_sender_and_its_id_stays_taken() {
        let c = db();
        send(&c, 1, 2, A);
        assert!(!delete_by_sender(&c, &c.known, 2, A, 10).expect("recipient"));
        assert!(!delete_by_sender(&c, &c.known, 1, B, 10).expect("unknown"));
        assert!(!delete_by_sender(&c, &c.known, 1, "nope", 10).expect("not a uuid"));
        assert_eq!(envelope_of(&c, 1), "{}");
        assert!(delete_by_sender(&c, &c.known, 1, A, 10).expect("sender"));
        assert!(delete_by_sender(&c, &c.known, 1, A, 20).expect("again"));
        let at: i64 = c
            .query_row("SELECT deleted_at FROM messages WHERE seq = 1", [], |r| {
                r.get(0)
            })
            .expect("row");
        assert_eq!((envelope_of(&c, 1).as_str(), at), ("", 10));
        assert!(matches!(
            send(&c, 1, 2, A),
            StoreOutcome::Stored(Stored {
                new: false,
                seq: 1,
                ..
            })
        ));
        assert_eq!(send(&c, 3, 2, A), StoreOutcome::IdTaken);
        let conv = conversations(&c, 2).expect("conversations");
        assert_eq!(conv[0].unread, 0, "a deleted message is not unread");
    }

    #[test]
    fn a_pair_gets_one_conversation_row_and_both_sides_see_it() {
        let c = db();
        assert!(!share_conversation(&c, 1, 2).expect("share"));
        assert!(matches!(
            send(&c, 1, 2, A),
            StoreOutcome::Stored(Stored { new: true, .. })
        ));
        assert!(matches!(
            send(&c, 2, 1, B),
            StoreOutcome::Stored(Stored { new: true, .. })
        ));
        let n: i64 = c
            .query_row("SELECT count(*) FROM conversations", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1);
        assert!(share_conversation(&c, 2, 1).expect("share"));
        assert!(!share_conversation(&c, 1, 3).expect("share"));
        assert_eq!(partners(&c, 1).expect("partners"), vec![2]);
        assert_eq!(partners(&c, 2).expect("partners"), vec![1]);
        assert!(partners(&c, 3).expect("partners").is_empty());
    }

    #[test]
    fn conversations_list_the_latest_seq_and_what_i_have_not_read() {
        let c = db();
        send(&c, 1, 2, A);
        send(&c, 3, 2, B);
        let bob = conversations(&c, 2).expect("bob");
        let summary: Vec<(String, i64, i64)> = bob
            .iter()
            .map(|r| (r.peer.clone(), r.last_seq, r.unread))
            .collect();
        assert_eq!(
            summary,
            vec![("carol".into(), 2, 1), ("alice".into(), 1, 1)]
        );
        assert_eq!(
            mark(&c, &c.known, 2, A, MessageState::Read, 5).expect("mark"),
            Some(1)
        );
        assert_eq!(
            mark(&c, &c.known, 3, A, MessageState::Read, 5).expect("mark"),
            None,
            "not carol's"
        );
        assert_eq!(
            mark(&c, &c.known, 2, "not-a-uuid", MessageState::Read, 5).expect("mark"),
            None
        );
        let bob = conversations(&c, 2).expect("bob");
        assert_eq!(bob[1].unread, 0);
        let alice = conversations(&c, 1).expect("alice");
        assert_eq!((alice[0].peer.as_str(), alice[0].unread), ("bob", 0));
    }

    /// How many of `nth_id(1..=upto)` fall in key range `r`.
    fn ids_in_range(r: i64, upto: u64) -> i64 {
        let (lo, hi) = range_bounds(r);
        (1..=upto)
            .filter(|&i| {
                let id = id_bytes(&nth_id(i)).expect("id");
                id[..] >= lo[..] && id[..] < hi[..]
            })
            .count() as i64
    }

    fn count(c: &Connection, sql: &str) -> i64 {
        c.query_row(sql, [], |r| r.get(0)).expect("count")
    }

    #[test]
    fn a_resend_is_recognised_whichever_part_of_the_id_index_holds_it() {
        let c = db();
        let StoreOutcome::Stored(a) = send(&c, 1, 2, A) else {
            panic!("not stored")
        };
        for r in 0..ID_RANGES {
            flush_id_range(&c, r, a.seq).expect("flush");
        }
        assert_eq!(count(&c, "SELECT count(*) FROM message_ids"), 1);
        assert_eq!(
            count(&c, "SELECT count(*) FROM temp.pending_message_ids"),
            0
        );
        let StoreOutcome::Stored(b) = send(&c, 1, 2, B) else {
            panic!("not stored")
        };
        assert_eq!(
            count(&c, "SELECT count(*) FROM temp.pending_message_ids"),
            1
        );
        // A is on disk, B in the buffer: both are found, for resends and for receipts.
        for (id, first) in [(A, a), (B, b)] {
            assert_eq!(
                send(&c, 1, 2, id),
                StoreOutcome::Stored(Stored {
                    new: false,
                    ..first
                })
            );
            assert_eq!(send(&c, 3, 2, id), StoreOutcome::IdTaken);
            assert_eq!(
                mark(&c, &c.known, 2, id, MessageState::Delivered, 9).expect("mark"),
                Some(1)
            );
            assert_eq!(
                mark(&c, &c.known, 3, id, MessageState::Delivered, 9).expect("mark"),
                None
            );
        }
        assert_eq!(count(&c, "SELECT count(*) FROM messages"), 2);
        assert_eq!(
            count(&c, "SELECT count(*) FROM messages WHERE state = 1"),
            2
        );
    }

    #[test]
    fn every_flush_every_th_message_moves_one_key_range_to_disk_in_turn() {
        let c = db();
        let n = FLUSH_EVERY as u64 * 2;
        for i in 1..=n {
            send(&c, 1, 2, &nth_id(i));
        }
        // seq 1024 flushed range 1 and seq 2048 range 2; the rest stays in the buffer.
        let marks: Vec<(i64, i64)> = c
            .prepare("SELECT key_range, through_seq FROM message_id_ranges WHERE through_seq > 0")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(marks, vec![(1, FLUSH_EVERY), (2, 2 * FLUSH_EVERY)]);
        let on_disk = ids_in_range(1, n / 2) + ids_in_range(2, n);
        assert!(on_disk > 0);
        assert_eq!(count(&c, "SELECT count(*) FROM message_ids"), on_disk);
        assert_eq!(
            count(&c, "SELECT count(*) FROM temp.pending_message_ids"),
            n as i64 - on_disk
        );
        assert_eq!(
            count(
                &c,
                "SELECT count(*) FROM message_ids i JOIN messages m ON m.seq = i.seq AND m.msg_id = i.msg_id"
            ),
            on_disk,
            "every flushed id points at its message"
        );
        for i in [1, n / 2, n] {
            assert!(matches!(
                send(&c, 1, 2, &nth_id(i)),
                StoreOutcome::Stored(Stored { new: false, seq, .. }) if seq == i as i64
            ));
        }
    }

    #[test]
    fn a_reader_finds_a_message_by_id_whether_or_not_its_range_was_flushed_and_not_once_deleted() {
        let c = db();
        let bytes = |id: &str| id_bytes(id).expect("id");
        let StoreOutcome::Stored(a) = send(&c, 1, 2, A) else {
            panic!("not stored")
        };
        for r in 0..ID_RANGES {
            flush_id_range(&c, r, a.seq).expect("flush");
        }
        let StoreOutcome::Stored(b) = send(&c, 1, 2, B) else {
            panic!("not stored")
        };
        // A through message_ids, B (still only in the writer's buffer) through the tail scan.
        assert_eq!(seq_of_id(&c, &bytes(A)).expect("find"), Some(a.seq));
        assert_eq!(seq_of_id(&c, &bytes(B)).expect("find"), Some(b.seq));
        let never = bytes("9f1e2d3c-4b5a-4968-8776-655443322110");
        assert_eq!(seq_of_id(&c, &never).expect("find"), None);
        c.execute("DELETE FROM messages WHERE seq = ?1", [a.seq])
            .expect("delete");
        assert_eq!(
            seq_of_id(&c, &bytes(A)).expect("find"),
            None,
            "message_ids may outlive the row"
        );
    }

    #[test]
    fn an_id_stored_by_a_transaction_that_rolled_back_is_forgotten() {
        let c = db();
        c.execute_batch("BEGIN").expect("begin");
        send(&c, 1, 2, A);
        c.execute_batch("ROLLBACK").expect("rollback");
        assert_eq!(
            count(&c, "SELECT count(*) FROM temp.pending_message_ids"),
            0
        );
        assert!(matches!(
            send(&c, 3, 2, A),
            StoreOutcome::Stored(Stored { new: true, .. })
        ));
    }

    #[test]
    fn after_a_restart_the_buffer_is_refilled_and_resends_are_still_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let n = FLUSH_EVERY as u64 + 10;
        {
            let c = open(Connection::open(&path).expect("open"));
            super::super::insert_test_users(&c);
            for i in 1..=n {
                send(&c, 1, 2, &nth_id(i));
            }
            // Dropped without flushing the rest: as after a crash.
        }
        let c = Connection::open(&path).expect("reopen");
        assert_eq!(
            count(&c, "SELECT count(*) FROM message_ids"),
            ids_in_range(1, FLUSH_EVERY as u64),
            "only range 1 was flushed, at seq 1024"
        );
        let loaded = open_id_buffer(&c).expect("buffer");
        assert_eq!(
            loaded as u64, n,
            "the lowest mark is 0: every message is reloaded"
        );
        let c = with_known(c);
        for i in 1..=n {
            assert!(matches!(
                send(&c, 1, 2, &nth_id(i)),
                StoreOutcome::Stored(Stored { new: false, seq, .. }) if seq == i as i64
            ));
        }
        assert_eq!(count(&c, "SELECT count(*) FROM messages"), n as i64);
    }

    #[test]
    fn history_walks_the_conversation_index_in_seq_order_without_sorting() {
        let c = db();
        for sql in [HISTORY_AFTER, HISTORY_BEFORE] {
            let plan: Vec<String> = c
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("prepare")
                .query_map(
                    rusqlite::params_from_iter([1i64; 5].iter().take(sql.matches('?').count())),
                    |r| r.get(3),
                )
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("rows");
            let plan = plan.join(" | ");
            assert!(
                plan.contains("messages_by_conversation") && plan.contains("rowid<?"),
                "{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "no sort step: {plan}");
        }
    }

    #[test]
    fn a_restart_refills_from_the_lowest_mark_and_resets_marks_of_another_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        {
            let c = open(Connection::open(&path).expect("open"));
            super::super::insert_test_users(&c);
            for i in 1..=10 {
                send(&c, 1, 2, &nth_id(i));
            }
            for r in 0..ID_RANGES {
                flush_id_range(&c, r, 6).expect("flush");
            }
            for i in 11..=15 {
                send(&c, 1, 2, &nth_id(i));
            }
        }
        let c = Connection::open(&path).expect("reopen");
        assert_eq!(
            open_id_buffer(&c).expect("buffer"),
            9,
            "seq 7..=15 are reloaded"
        );
        let c = with_known(c);
        for i in 1..=15 {
            assert!(matches!(
                send(&c, 1, 2, &nth_id(i)),
                StoreOutcome::Stored(Stored { new: false, seq, .. }) if seq == i as i64
            ));
        }
        drop(c);

        // Marks written under another layout (here: the ranges' first bytes moved) are not
        // trusted: all are reset to the lowest, and the buffer covers everything above it.
        let c = Connection::open(&path).expect("reopen");
        c.execute("UPDATE message_id_ranges SET first_byte = first_byte + 1, through_seq = 12 WHERE key_range = 3", [])
            .expect("tamper");
        assert_eq!(open_id_buffer(&c).expect("buffer"), 9);
        let (n, low, high, layout): (i64, i64, i64, i64) = c
            .query_row(
                "SELECT count(*), min(through_seq), max(through_seq), \
                        count(*) FILTER (WHERE first_byte = key_range * 256 / ?1) \
                 FROM message_id_ranges",
                [ID_RANGES],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .expect("marks");
        assert_eq!((n, low, high, layout), (ID_RANGES, 6, 6, ID_RANGES));
        c.execute("DELETE FROM message_id_ranges WHERE key_range = 0", [])
            .expect("drop a mark");
        assert_eq!(open_id_buffer(&c).expect("buffer"), 9);
        assert_eq!(
            count(&c, "SELECT count(*) FROM message_id_ranges"),
            ID_RANGES
        );
    }
}
