//! Owns the SQL of the `messages` and `conversations` tables: storing envelopes
//! (idempotently per id, which belongs to its first sender), history by conversation,
//! conversation summaries, receipts, and conversation partners for presence.
//!
//! Invariants: an envelope row is written once and its `envelope` text never changes;
//! only `state` moves forward (sent -> delivered -> read). Every pair of users with a
//! stored message has its `conversations` row, written in the same transaction as the
//! pair's first message. Ids are stored as their 16 bytes; callers pass the lower-case
//! UUID text the envelope checks accepted.

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

/// The 16 bytes of a UUID written as text, or `None` if it is not one.
fn id_bytes(id: &str) -> Option<[u8; 16]> {
    uuid::Uuid::try_parse(id).ok().map(|u| *u.as_bytes())
}

fn invalid_id() -> super::DbError {
    rusqlite::Error::ToSqlConversionFailure("message id is not a UUID".into()).into()
}

fn pair(a: i64, b: i64) -> (i64, i64) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Stores an envelope unless its id is already stored.
pub fn store(conn: &Connection, m: &NewMessage<'_>) -> DbResult<StoreOutcome> {
    let (lo, hi) = pair(m.sender_id, m.recipient_id);
    let msg_id = id_bytes(m.msg_id).ok_or_else(invalid_id)?;
    // seq (the rowid) is read with last_insert_rowid(), not RETURNING, which SQLite runs
    // through a temporary table.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (sender_id, recipient_id, conv_lo, conv_hi, msg_id, server_ts, size, envelope) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (msg_id) DO NOTHING",
        )?
        .execute(params![
            m.sender_id,
            m.recipient_id,
            lo,
            hi,
            &msg_id[..],
            m.server_ts,
            m.envelope.len() as i64,
            m.envelope
        ])?;
    if inserted == 1 {
        let seq = conn.last_insert_rowid();
        // Reads the pair's row and writes nothing, except for a pair's first message.
        conn.prepare_cached("INSERT OR IGNORE INTO conversations (lo, hi) VALUES (?1, ?2)")?
            .execute([lo, hi])?;
        return Ok(StoreOutcome::Stored(Stored {
            seq,
            server_ts: m.server_ts,
            new: true,
        }));
    }
    let (seq, server_ts, sender): (i64, i64, i64) = conn
        .prepare_cached("SELECT seq, server_ts, sender_id FROM messages WHERE msg_id = ?1")?
        .query_row(params![&msg_id[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
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
        let mut stmt = conn.prepare_cached(
            "SELECT seq, server_ts, state, envelope FROM messages \
             WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq > ?3 AND seq < ?4 ORDER BY seq LIMIT +?5",
        )?;
        let rows = stmt
            .query_map(params![lo, hi, after, before, limit], map)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    } else {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, server_ts, state, envelope FROM messages \
             WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT +?4",
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
                   AND x.state < 2 AND l.peer_id <> ?1) \
         FROM latest l JOIN messages m ON m.seq = l.seq JOIN users u ON u.id = l.peer_id \
         ORDER BY l.seq DESC",
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
    let Some(msg_id) = id_bytes(msg_id) else {
        return Ok(None);
    };
    let sender: Option<i64> = conn
        .prepare_cached("SELECT sender_id FROM messages WHERE msg_id = ?2 AND recipient_id = ?1")?
        .query_row(params![recipient, &msg_id[..]], |r| r.get(0))
        .optional()?;
    if sender.is_some() {
        conn.prepare_cached(
            "UPDATE messages SET state = ?3, \
                 delivered_at = coalesce(delivered_at, ?4), \
                 read_at = CASE WHEN ?3 = 2 THEN coalesce(read_at, ?4) ELSE read_at END \
             WHERE msg_id = ?2 AND recipient_id = ?1 AND state < ?3",
        )?
        .execute(params![recipient, &msg_id[..], state, at])?;
    }
    Ok(sender)
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
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().expect("open");
        super::super::migrate::migrate(&mut c).expect("migrate");
        super::super::insert_test_users(&c);
        c
    }

    fn send(c: &Connection, from: i64, to: i64, id: &str) -> StoreOutcome {
        store(
            c,
            &NewMessage {
                sender_id: from,
                recipient_id: to,
                msg_id: id,
                server_ts: 1,
                envelope: "{}",
            },
        )
        .expect("store")
    }

    const A: &str = "0d6f8a52-1c1e-4c5e-9b7a-2f7d0c1e9a01";
    const B: &str = "7c3e2b1a-9d8f-4e6d-8c5b-4a3b2c1d0e02";

    #[test]
    fn an_id_is_its_sixteen_bytes_and_anything_else_is_refused() {
        assert_eq!(
            id_bytes(A).map(hex::encode),
            Some("0d6f8a521c1e4c5e9b7a2f7d0c1e9a01".to_string())
        );
        for bad in [
            "",
            "0d6f8a52",
            &format!("{A}0"),
            "zz6f8a52-1c1e-4c5e-9b7a-2f7d0c1e9a01",
        ] {
            assert_eq!(id_bytes(bad), None, "{bad}");
        }
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
    fn a_resend_is_found_by_its_id_and_another_sender_cannot_take_it() {
        let c = db();
        let StoreOutcome::Stored(first) = send(&c, 1, 2, A) else {
            panic!("not stored")
        };
        assert_eq!(
            send(&c, 1, 2, A),
            StoreOutcome::Stored(Stored {
                new: false,
                ..first
            })
        );
        assert_eq!(send(&c, 3, 2, A), StoreOutcome::IdTaken);
        let n: i64 = c
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1);
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
        assert_eq!(mark(&c, 2, A, STATE_READ, 5).expect("mark"), Some(1));
        assert_eq!(
            mark(&c, 3, A, STATE_READ, 5).expect("mark"),
            None,
            "not carol's"
        );
        assert_eq!(
            mark(&c, 2, "not-a-uuid", STATE_READ, 5).expect("mark"),
            None
        );
        let bob = conversations(&c, 2).expect("bob");
        assert_eq!(bob[1].unread, 0);
        let alice = conversations(&c, 1).expect("alice");
        assert_eq!((alice[0].peer.as_str(), alice[0].unread), ("bob", 0));
    }
}
