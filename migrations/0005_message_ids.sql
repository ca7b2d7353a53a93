-- 0005: message ids are indexed in sorted batches, not one random B-tree leaf per message
-- (issue #4, BENCHMARKS.md "WebSocket relay").
--
-- A UUID v4 is random, so a UNIQUE index on `messages.msg_id` put every new message on a
-- random leaf: a 4 KiB page written to the WAL, checksummed and copied again by the next
-- checkpoint, per message. The index now lives in `message_ids`, which the single writer
-- fills a key range at a time from a TEMP table of the ids stored since that range's last
-- flush (db/messages.rs): one flush writes about a thousand ids into a few dozen leaves.
-- The writer is the only connection that looks messages up by id, and it checks both.
--
-- `messages` is rebuilt without its UNIQUE constraint on msg_id (SQLite cannot drop one),
-- keeping every row, its seq, and the table's sequence (seq is never reused).
-- The conversation index loses its explicit seq column (see below).

CREATE TABLE messages_new (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,  -- server-wide, increasing, never reused
    sender_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    recipient_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    conv_lo       INTEGER NOT NULL,                   -- min(sender_id, recipient_id)
    conv_hi       INTEGER NOT NULL,                   -- max(sender_id, recipient_id)
    msg_id        BLOB    NOT NULL CHECK (length(msg_id) = 16),  -- the envelope's uuid; unique through message_ids
    server_ts     INTEGER NOT NULL,                   -- ms since epoch, when committed
    size          INTEGER NOT NULL,                   -- envelope bytes
    envelope      TEXT    NOT NULL,                   -- as the sender sent it, byte for byte
    state         INTEGER NOT NULL DEFAULT 0,         -- 0 sent, 1 delivered, 2 read
    delivered_at  INTEGER,
    read_at       INTEGER
) STRICT;

INSERT INTO messages_new (seq, sender_id, recipient_id, conv_lo, conv_hi, msg_id, server_ts,
                          size, envelope, state, delivered_at, read_at)
SELECT seq, sender_id, recipient_id, conv_lo, conv_hi, msg_id, server_ts, size, envelope,
       state, delivered_at, read_at
FROM messages ORDER BY seq;

DELETE FROM sqlite_sequence WHERE name = 'messages_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'messages_new', seq FROM sqlite_sequence WHERE name = 'messages';

DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;

-- History of one conversation by seq. The rowid (seq) ends every index entry already, so
-- SQLite serves `seq` ranges and order from this index; naming seq again (0004) stored it
-- twice in each entry of the one index every message still writes at random.
CREATE INDEX messages_by_conversation ON messages(conv_lo, conv_hi);

-- Message id -> seq, for every message stored up to its key range's `through_seq`. May hold
-- the id of a message deleted since (its row is gone); a lookup checks the row's msg_id.
CREATE TABLE message_ids (
    msg_id  BLOB    PRIMARY KEY CHECK (length(msg_id) = 16),
    seq     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO message_ids (msg_id, seq) SELECT msg_id, seq FROM messages ORDER BY msg_id;

-- One row per key range of ids (by the id's first byte, see db/messages.rs): every message
-- with seq <= through_seq whose id is in the range has its row in message_ids. At start-up
-- the writer puts the ids of every message above the lowest through_seq back in its buffer.
-- `first_byte` records the layout the marks were written under; the writer resets the
-- marks (to the lowest) if it flushes other ranges.
CREATE TABLE message_id_ranges (
    key_range    INTEGER PRIMARY KEY,
    first_byte   INTEGER NOT NULL,    -- the range holds ids from this first byte on
    through_seq  INTEGER NOT NULL
) STRICT;

WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n < 63)
INSERT INTO message_id_ranges (key_range, first_byte, through_seq)
SELECT n, n * 4, coalesce((SELECT max(seq) FROM messages), 0) FROM r;
