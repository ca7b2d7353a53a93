//! Owns the SQL of the `messages`, `conversations` and `message_ids` tables: storing
//! envelopes (idempotently per id, which belongs to its first sender), history by
//! conversation, conversation summaries, receipts, conversation partners for presence, and
//! the message-id index the writer keeps in two parts.
//!
//! Invariants: an envelope row is written once and its `envelope` text never changes;
//! only `state` moves forward (sent -> delivered -> read). Every pair of users with a
//! stored message has its `conversations` row, written in the same transaction as the
//! pair's first message. Ids are stored as their 16 bytes; callers pass the lower-case
//! UUID text the envelope checks accepted.
//!
//! The id index: a stored message's id is in `message_ids` (on disk, keyed by id) or in
//! `temp.pending_message_ids` (a TEMP table of the write connection), or in both after a
//! restart until its range is next flushed; `message_ids` may also keep the id of a message
//! deleted since, which lookups ignore by checking the row. [`store`] adds a new id to the
//! TEMP table; every [`FLUSH_EVERY`]th message moves one key range of it ([`ID_RANGES`] ranges by the id's first byte, in turn)
//! into `message_ids` in key order and records the range's `through_seq`. A random id per
//! message thus costs an in-memory insert, and the disk index is written a range at a time
//! (~1,000 ids into a few dozen leaves) instead of one random leaf per message. TEMP
//! tables are part of the write transaction, so a batch that rolls back takes its ids out
//! of the buffer too. At start-up [`open_id_buffer`] refills the buffer from the messages
//! above the lowest `through_seq`, so a crash loses nothing. Only the write connection
//! looks messages up by id (stores and receipts), and [`find`] checks both parts.
//!
//! Most ids a store looks up are new, and probing two B-trees for an id that is in neither
//! costs a dozen cache misses. [`KnownIds`], a Bloom filter over every id in either part
//! (loaded at start-up, added to by every store), answers "certainly not stored" for all
//! but ~1% of new ids; only a "maybe" probes the tables. It has no false negatives: an id
//! is added before its transaction commits, and one whose transaction rolls back stays in
//! it as a harmless false positive.

use std::sync::Mutex;

use fastbloom::BloomFilter;
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

/// A Bloom filter over every stored message id (see the module comment): `false` from
/// [`KnownIds::may_contain`] means the id is certainly not stored. It grows by adding a
/// filter twice the size of the last when the last is full, so its false-positive rate
/// stays near [`KnownIds::FALSE_POSITIVES`] however many messages are stored.
pub struct KnownIds {
    inner: Mutex<Filters>,
}

struct Filters {
    filters: Vec<BloomFilter>,
    /// Ids added to the last filter, and how many it was sized for.
    in_last: usize,
    capacity: usize,
}

impl KnownIds {
    /// The false-positive rate each filter is sized for.
    pub const FALSE_POSITIVES: f64 = 0.01;
    /// The smallest filter (about 1.2 MB).
    const MIN_CAPACITY: usize = 1 << 20;

    /// An empty filter with room for `expected` ids before it grows.
    pub fn with_capacity(expected: usize) -> KnownIds {
        Self::sized(expected.max(Self::MIN_CAPACITY))
    }

    fn sized(capacity: usize) -> KnownIds {
        KnownIds {
            inner: Mutex::new(Filters {
                filters: vec![Self::filter(capacity)],
                in_last: 0,
                capacity,
            }),
        }
    }

    fn filter(capacity: usize) -> BloomFilter {
        BloomFilter::with_false_pos(Self::FALSE_POSITIVES).expected_items(capacity)
    }

    /// Every id in both parts of the index, read on the write connection after
    /// [`open_id_buffer`]. Sized for twice as many ids as messages were ever stored (the
    /// newest seq: an upper bound read from the end of the table, not a count that would
    /// scan the index before the load scans it again).
    pub fn load(conn: &Connection) -> DbResult<KnownIds> {
        let stored: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM messages", [], |r| {
                r.get(0)
            })?;
        let known = KnownIds::with_capacity(usize::try_from(stored).unwrap_or(0) * 2);
        let mut st = conn.prepare(
            "SELECT msg_id FROM message_ids UNION ALL SELECT msg_id FROM temp.pending_message_ids",
        )?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let id: Vec<u8> = row.get(0)?;
            known.add(&id);
        }
        Ok(known)
    }

    /// Whether `id` may be stored; `false` is certain.
    pub fn may_contain(&self, id: &[u8]) -> bool {
        let f = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f.filters.iter().any(|b| b.contains(id))
    }

    /// Records `id` as (about to be) stored.
    pub fn add(&self, id: &[u8]) {
        let mut f = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if f.in_last >= f.capacity {
            let capacity = f.capacity * 2;
            f.filters.push(Self::filter(capacity));
            f.capacity = capacity;
            f.in_last = 0;
        }
        f.in_last += 1;
        if let Some(last) = f.filters.last_mut() {
            last.insert(id);
        }
    }
}

/// Key ranges of the id index (by the id's first byte), flushed in turn.
pub const ID_RANGES: i64 = 64;

/// One key range of the id buffer is flushed to `message_ids` every this many messages, so
/// each range is flushed every `ID_RANGES * FLUSH_EVERY` messages (~1,000 ids per flush)
/// and the buffer holds at most about that many ids (~65,000, a few MiB of memory).
pub const FLUSH_EVERY: i64 = 1024;

/// Creates the write connection's id buffer (a TEMP table) and fills it with the ids of
/// every message above the lowest `through_seq` (those a crash may have left only in the
/// buffer). Runs once, on the write connection, after migrations and before any write.
/// Returns the number of ids put in the buffer.
pub fn open_id_buffer(conn: &Connection) -> DbResult<usize> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS pending_message_ids ( \
             msg_id BLOB PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
    )?;
    let marks: Vec<(i64, i64, i64)> = conn
        .prepare("SELECT key_range, first_byte, through_seq FROM message_id_ranges")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let low = marks.iter().map(|m| m.2).min().unwrap_or(0);
    let same_layout = marks.len() == ID_RANGES as usize
        && marks.iter().all(|&(range, first, _)| {
            (0..ID_RANGES).contains(&range) && first == i64::from(range_first_byte(range))
        });
    if !same_layout {
        // Not the ranges this binary flushes (never written, or ID_RANGES changed): every
        // range starts from the lowest mark, which the buffer covers from here on.
        let tx = conn.unchecked_transaction()?;
        tx.execute("DELETE FROM message_id_ranges", [])?;
        let mut st = tx.prepare(
            "INSERT INTO message_id_ranges (key_range, first_byte, through_seq) VALUES (?1, ?2, ?3)",
        )?;
        for range in 0..ID_RANGES {
            st.execute([range, i64::from(range_first_byte(range)), low])?;
        }
        drop(st);
        tx.commit()?;
    }
    let loaded = conn.execute(
        "INSERT OR REPLACE INTO temp.pending_message_ids (msg_id, seq) \
         SELECT msg_id, seq FROM messages WHERE seq > ?1",
        [low],
    )?;
    Ok(loaded)
}

/// The message stored under `msg_id`, if any: (seq, server_ts, sender_id, recipient_id).
/// An id `known` has never seen (the usual case) costs no SQL at all; one it may have seen
/// costs two index probes, and a row read only on a hit.
fn find(
    conn: &Connection,
    known: &KnownIds,
    msg_id: &[u8; 16],
) -> DbResult<Option<(i64, i64, i64, i64)>> {
    if !known.may_contain(msg_id) {
        return Ok(None);
    }
    let mut seq: Option<i64> = None;
    for sql in [
        "SELECT seq FROM temp.pending_message_ids WHERE msg_id = ?1",
        "SELECT seq FROM main.message_ids WHERE msg_id = ?1",
    ] {
        seq = conn
            .prepare_cached(sql)?
            .query_row(params![&msg_id[..]], |r| r.get(0))
            .optional()?;
        if seq.is_some() {
            break;
        }
    }
    let Some(seq) = seq else {
        return Ok(None);
    };
    // The row's own msg_id is checked: `message_ids` may outlive a deleted message.
    Ok(conn
        .prepare_cached(
            "SELECT seq, server_ts, sender_id, recipient_id FROM messages \
             WHERE seq = ?1 AND msg_id = ?2",
        )?
        .query_row(params![seq, &msg_id[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?)
}

/// The bounds `[lo, hi)` of key range `range` as blobs compared with the 16-byte ids.
fn range_bounds(range: i64) -> (Vec<u8>, Vec<u8>) {
    let lo = vec![range_first_byte(range)];
    let hi = if range + 1 >= ID_RANGES {
        vec![0xff; 17] // above every 16-byte id
    } else {
        vec![range_first_byte(range + 1)]
    };
    (lo, hi)
}

/// The first byte of the ids key range `range` starts at (`message_id_ranges.first_byte`).
fn range_first_byte(range: i64) -> u8 {
    (range * 256 / ID_RANGES) as u8
}

/// Moves the ids of key range `range` from the buffer into `message_ids` (in key order)
/// and records that every message up to `through_seq` in that range is there.
pub fn flush_id_range(conn: &Connection, range: i64, through_seq: i64) -> DbResult<usize> {
    let (lo, hi) = range_bounds(range);
    let moved = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO main.message_ids (msg_id, seq) \
             SELECT msg_id, seq FROM temp.pending_message_ids \
             WHERE msg_id >= ?1 AND msg_id < ?2 ORDER BY msg_id",
        )?
        .execute(params![lo, hi])?;
    conn.prepare_cached("DELETE FROM temp.pending_message_ids WHERE msg_id >= ?1 AND msg_id < ?2")?
        .execute(params![lo, hi])?;
    conn.prepare_cached("UPDATE message_id_ranges SET through_seq = ?2 WHERE key_range = ?1")?
        .execute([range, through_seq])?;
    Ok(moved)
}

/// Stores an envelope unless its id is already stored. `known` is the write connection's
/// filter of stored ids ([`KnownIds::load`]).
pub fn store(conn: &Connection, known: &KnownIds, m: &NewMessage<'_>) -> DbResult<StoreOutcome> {
    let (lo, hi) = pair(m.sender_id, m.recipient_id);
    let msg_id = id_bytes(m.msg_id).ok_or_else(invalid_id)?;
    if let Some((seq, server_ts, sender, _)) = find(conn, known, &msg_id)? {
        if sender != m.sender_id {
            return Ok(StoreOutcome::IdTaken);
        }
        return Ok(StoreOutcome::Stored(Stored {
            seq,
            server_ts,
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
        m.server_ts,
        m.envelope.len() as i64,
        m.envelope
    ])?;
    // seq (the rowid) is read with last_insert_rowid(), not RETURNING, which SQLite runs
    // through a temporary table.
    let seq = conn.last_insert_rowid();
    known.add(&msg_id);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO temp.pending_message_ids (msg_id, seq) VALUES (?1, ?2)",
    )?
    .execute(params![&msg_id[..], seq])?;
    if seq % FLUSH_EVERY == 0 {
        flush_id_range(conn, (seq / FLUSH_EVERY) % ID_RANGES, seq)?;
    }
    // Reads the pair's row and writes nothing, except for a pair's first message.
    conn.prepare_cached("INSERT OR IGNORE INTO conversations (lo, hi) VALUES (?1, ?2)")?
        .execute([lo, hi])?;
    Ok(StoreOutcome::Stored(Stored {
        seq,
        server_ts: m.server_ts,
        new: true,
    }))
}

/// A page of history after a seq (`conv_lo, conv_hi, after, before, limit`).
const HISTORY_AFTER: &str = "SELECT seq, server_ts, state, envelope FROM messages \
     WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq > ?3 AND seq < ?4 ORDER BY seq LIMIT +?5";
/// The newest page of history before a seq (`conv_lo, conv_hi, before, limit`).
const HISTORY_BEFORE: &str = "SELECT seq, server_ts, state, envelope FROM messages \
     WHERE conv_lo = ?1 AND conv_hi = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT +?4";

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
    known: &KnownIds,
    recipient: i64,
    msg_id: &str,
    state: i64,
    at: i64,
) -> DbResult<Option<i64>> {
    let Some(msg_id) = id_bytes(msg_id) else {
        return Ok(None);
    };
    let sender = match find(conn, known, &msg_id)? {
        Some((seq, _, sender, to)) if to == recipient => {
            conn.prepare_cached(
                "UPDATE messages SET state = ?2, \
                     delivered_at = coalesce(delivered_at, ?3), \
                     read_at = CASE WHEN ?2 = 2 THEN coalesce(read_at, ?3) ELSE read_at END \
                 WHERE seq = ?1 AND state < ?2",
            )?
            .execute(params![seq, state, at])?;
            Some(sender)
        }
        _ => None,
    };
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
            mark(&c, &c.known, 2, A, STATE_READ, 5).expect("mark"),
            Some(1)
        );
        assert_eq!(
            mark(&c, &c.known, 3, A, STATE_READ, 5).expect("mark"),
            None,
            "not carol's"
        );
        assert_eq!(
            mark(&c, &c.known, 2, "not-a-uuid", STATE_READ, 5).expect("mark"),
            None
        );
        let bob = conversations(&c, 2).expect("bob");
        assert_eq!(bob[1].unread, 0);
        let alice = conversations(&c, 1).expect("alice");
        assert_eq!((alice[0].peer.as_str(), alice[0].unread), ("bob", 0));
    }

    /// A lower-case UUID v4 text made from `n`, spread over the key space.
    fn nth_id(n: u64) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
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
                mark(&c, &c.known, 2, id, STATE_DELIVERED, 9).expect("mark"),
                Some(1)
            );
            assert_eq!(
                mark(&c, &c.known, 3, id, STATE_DELIVERED, 9).expect("mark"),
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

    #[test]
    fn the_id_filter_never_forgets_an_id_as_it_grows_and_rarely_claims_a_new_one() {
        let known = KnownIds::sized(100);
        let ids: Vec<[u8; 16]> = (1..=1_000u64)
            .map(|i| id_bytes(&nth_id(i)).expect("id"))
            .collect();
        for id in &ids {
            known.add(id);
        }
        assert!(
            ids.iter().all(|id| known.may_contain(id)),
            "no false negatives"
        );
        assert_eq!(
            known.inner.lock().expect("lock").filters.len(),
            4,
            "1,000 ids fill filters for 100, 200 and 400, and 300 of one for 800"
        );
        let false_positives = (1_001..=21_000u64)
            .filter(|&i| known.may_contain(&id_bytes(&nth_id(i)).expect("id")))
            .count();
        assert!(
            false_positives < 20_000 * 4 / 100,
            "{false_positives} of 20,000"
        );
    }
}
