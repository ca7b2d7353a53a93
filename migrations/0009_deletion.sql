-- 0009: deleting for everyone, disappearing messages and deleted accounts (issue #17).
--
-- A deleted message keeps its row as a tombstone: `envelope` is cleared to '' and
-- `deleted_at` set. The row keeps its seq, msg_id, sender and recipient, so the id index
-- (message_ids and the writer's buffer, db/message_ids.rs) still finds the id and a later
-- send with it is answered as a resend (nothing stored, nobody told), never stored again.
-- The same tombstone serves the sender's delete (DELETE /api/messages/{id}) and the expiry
-- sweep of disappearing messages (db/messages.rs).
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;   -- ms since epoch; NULL = not deleted

-- Retention periods of a conversation (lo <= hi, as in `conversations`). A period starts
-- after the newest seq at the moment it was set (`from_seq`); a message with seq above
-- the `from_seq` of the latest period below it expires `secs` after its server_ts (0 =
-- never). Setting the timer twice with no message in between replaces the period.
CREATE TABLE conversation_timers (
    lo        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    hi        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    from_seq  INTEGER NOT NULL,
    secs      INTEGER NOT NULL CHECK (secs >= 0),
    set_at    INTEGER NOT NULL,                          -- ms since epoch
    set_by    INTEGER NOT NULL,                          -- users.id of who set it
    PRIMARY KEY (lo, hi, from_seq)
) STRICT, WITHOUT ROWID;

-- A deleted account keeps its row as a tombstone, so its name can never be registered
-- again; its key columns, auth hash and bundle are cleared and every lookup of the core
-- treats it as absent (db/users.rs).
ALTER TABLE users ADD COLUMN deleted_at INTEGER;      -- ms since epoch; NULL = live
