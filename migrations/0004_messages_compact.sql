-- 0004: fewer random page writes per stored message (measured: issue #4, BENCHMARKS.md).
--
-- Every index on `messages` whose key is not increasing costs one random B-tree leaf —
-- a 4 KiB page in the WAL and again in the checkpoint — per message. 0003 had three
-- (msg_id, conv_lo, conv_hi); this leaves two:
-- - msg_id is stored as its 16 bytes (ids are lower-case UUIDs, so this is one-to-one)
--   instead of 36 characters: a smaller index, more entries per leaf;
-- - "whose conversations is user U in" is answered by a small `conversations` table that
--   gets one row per pair of users, written by the pair's first message only (later
--   messages find the row and write nothing), instead of a second index on messages.
-- seq keeps AUTOINCREMENT (never reused, even after the newest rows are deleted), and the
-- copy keeps the old table's sequence.

CREATE TABLE messages_new (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,  -- server-wide, increasing, never reused
    sender_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    recipient_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    conv_lo       INTEGER NOT NULL,                   -- min(sender_id, recipient_id)
    conv_hi       INTEGER NOT NULL,                   -- max(sender_id, recipient_id)
    msg_id        BLOB    NOT NULL UNIQUE CHECK (length(msg_id) = 16),  -- the envelope's uuid, 16 bytes
    server_ts     INTEGER NOT NULL,                   -- ms since epoch, when committed
    size          INTEGER NOT NULL,                   -- envelope bytes
    envelope      TEXT    NOT NULL,                   -- as the sender sent it, byte for byte
    state         INTEGER NOT NULL DEFAULT 0,         -- 0 sent, 1 delivered, 2 read
    delivered_at  INTEGER,
    read_at       INTEGER
) STRICT;

INSERT INTO messages_new (seq, sender_id, recipient_id, conv_lo, conv_hi, msg_id, server_ts,
                          size, envelope, state, delivered_at, read_at)
SELECT seq, sender_id, recipient_id, conv_lo, conv_hi, unhex(replace(msg_id, '-', '')),
       server_ts, size, envelope, state, delivered_at, read_at
FROM messages ORDER BY seq;

DELETE FROM sqlite_sequence WHERE name = 'messages_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'messages_new', seq FROM sqlite_sequence WHERE name = 'messages';

DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;

-- History of one conversation by seq (the only index on messages besides msg_id).
CREATE INDEX messages_by_conversation ON messages(conv_lo, conv_hi, seq);

-- One row per pair of users who have exchanged a message (lo <= hi).
CREATE TABLE conversations (
    lo  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hi  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (lo, hi)
) STRICT, WITHOUT ROWID;
CREATE INDEX conversations_by_hi ON conversations(hi, lo);

INSERT INTO conversations (lo, hi) SELECT DISTINCT conv_lo, conv_hi FROM messages;
