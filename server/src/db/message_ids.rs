//! Owns the message-id index, which lets the writer tell a new message id from a resend
//! without a random B-tree write per message. A stored message's id is in `message_ids` (on
//! disk, keyed by id) or in `temp.pending_message_ids` (a TEMP table of the write
//! connection), or in both after a restart until its range is next flushed; `message_ids`
//! may also keep the id of a message deleted since, which lookups ignore by checking the
//! row. [`record`] adds a new id to the TEMP table; every [`FLUSH_EVERY`]th message moves
//! one key range of it ([`ID_RANGES`] ranges by the id's first byte, in turn) into
//! `message_ids` in key order and records the range's `through_seq`. A random id per
//! message thus costs an in-memory insert, and the disk index is written a range at a time
//! (~1,000 ids into a few dozen leaves) instead of one random leaf per message. TEMP tables
//! are part of the write transaction, so a batch that rolls back takes its ids out of the
//! buffer too. At start-up [`open_id_buffer`] refills the buffer from the messages above
//! the lowest `through_seq`, so a crash loses nothing. Only the write connection looks
//! messages up by id (stores and receipts), and [`find`] checks both parts.
//!
//! Most ids a store looks up are new, and probing two B-trees for an id that is in neither
//! costs a dozen cache misses. [`KnownIds`], a Bloom filter over every id in either part
//! (loaded at start-up, added to by every store), answers "certainly not stored" for all
//! but ~1% of new ids; only a "maybe" probes the tables. It has no false negatives: an id
//! is added before its transaction commits, and one whose transaction rolls back stays in
//! it as a harmless false positive.
//!
//! Invariant: only `db::messages` calls into this module, and only on the write connection,
//! except [`find_seq_from_any_connection`], which reads no buffer.

use std::sync::Mutex;

use fastbloom::BloomFilter;
use rusqlite::{params, Connection, OptionalExtension};

use super::{DbError, DbResult};

/// The 16 bytes of a UUID written as text, or `None` if it is not one.
pub(super) fn id_bytes(id: &str) -> Option<[u8; 16]> {
    uuid::Uuid::try_parse(id).ok().map(|u| *u.as_bytes())
}

pub(super) fn invalid_id() -> DbError {
    rusqlite::Error::ToSqlConversionFailure("message id is not a UUID".into()).into()
}

/// A stored message as the id index finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub seq: i64,
    pub server_ts: i64,
    pub sender_id: i64,
    pub recipient_id: i64,
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

/// The message stored under `msg_id`, if any. An id `known` has never seen (the usual
/// case) costs no SQL at all; one it may have seen costs two index probes, and a row read
/// only on a hit.
pub(super) fn find(
    conn: &Connection,
    known: &KnownIds,
    msg_id: &[u8; 16],
) -> DbResult<Option<Found>> {
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
            Ok(Found {
                seq: r.get(0)?,
                server_ts: r.get(1)?,
                sender_id: r.get(2)?,
                recipient_id: r.get(3)?,
            })
        })
        .optional()?)
}

/// The seq of the message stored under `msg_id`, from any connection (the id buffer is the
/// write connection's, so a reader cannot probe it): `message_ids` first, then only the
/// messages stored since the id's key range was last flushed (at most about
/// `ID_RANGES * FLUSH_EVERY` rows, a rowid range scan). A deleted message is not found.
pub(super) fn find_seq_from_any_connection(
    conn: &Connection,
    msg_id: &[u8; 16],
) -> DbResult<Option<i64>> {
    let range = i64::from(msg_id[0]) * ID_RANGES / 256;
    Ok(conn
        .prepare_cached(
            "SELECT m.seq FROM main.message_ids i JOIN messages m ON m.seq = i.seq \
             WHERE i.msg_id = ?1 AND m.msg_id = ?1 \
             UNION ALL \
             SELECT seq FROM messages \
             WHERE seq > (SELECT through_seq FROM message_id_ranges WHERE key_range = ?2) \
               AND msg_id = ?1 \
             LIMIT 1",
        )?
        .query_row(params![&msg_id[..], range], |r| r.get(0))
        .optional()?)
}

/// The bounds `[lo, hi)` of key range `range` as blobs compared with the 16-byte ids.
pub(super) fn range_bounds(range: i64) -> (Vec<u8>, Vec<u8>) {
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

/// Records the id of the message just inserted as `seq`: in the filter first (so it never
/// misses an id whose transaction commits), then in the TEMP buffer; every
/// [`FLUSH_EVERY`]th message flushes the next key range to disk.
pub(super) fn record(
    conn: &Connection,
    known: &KnownIds,
    msg_id: &[u8; 16],
    seq: i64,
) -> DbResult<()> {
    known.add(msg_id);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO temp.pending_message_ids (msg_id, seq) VALUES (?1, ?2)",
    )?
    .execute(params![&msg_id[..], seq])?;
    if seq % FLUSH_EVERY == 0 {
        flush_id_range(conn, (seq / FLUSH_EVERY) % ID_RANGES, seq)?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A lower-case UUID v4 text made from `n`, spread over the key space.
    pub(in crate::db) fn nth_id(n: u64) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }

    const A: &str = "0d6f8a52-1c1e-4c5e-9b7a-2f7d0c1e9a01";

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
