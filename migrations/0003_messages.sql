-- 0003: message envelopes. The envelope is stored exactly as the sender's client sent it
-- (its JSON text, byte for byte); the server can neither read nor re-encode it.

CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,  -- server-wide, increasing, never reused
    sender_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    recipient_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    conv_lo       INTEGER NOT NULL,                   -- min(sender_id, recipient_id)
    conv_hi       INTEGER NOT NULL,                   -- max(sender_id, recipient_id)
    msg_id        TEXT    NOT NULL UNIQUE,            -- the envelope's id (uuid v4 from the sender)
    server_ts     INTEGER NOT NULL,                   -- ms since epoch, when committed
    size          INTEGER NOT NULL,                   -- envelope bytes
    envelope      TEXT    NOT NULL,
    state         INTEGER NOT NULL DEFAULT 0,         -- 0 sent, 1 delivered, 2 read
    delivered_at  INTEGER,
    read_at       INTEGER
) STRICT;

-- History of one conversation by seq, and each user's conversations (as lo and as hi).
-- Ids are random UUIDs, so one index on msg_id (the UNIQUE above) serves both the
-- resend check and receipts; every index is a random-page write per message, so there
-- are as few as the queries need.
CREATE INDEX messages_by_conversation ON messages(conv_lo, conv_hi, seq);
CREATE INDEX messages_by_conv_hi ON messages(conv_hi, conv_lo, seq);
