-- 0010: the expiry sweep reads only what is new (issue #17).
--
-- `swept_to` is the seq at and below which every message of a conversation is deleted, as
-- far as its retention period's sweep knows: the sweep reads a period's messages only after
-- max(from_seq, swept_to), so a conversation that has had a timer for a long time does not
-- have its tombstones read again every run. The writer moves it up after each batch to
-- just below the first message still not deleted (db/messages.rs, `tombstone_all`).
ALTER TABLE conversation_timers ADD COLUMN swept_to INTEGER NOT NULL DEFAULT 0;
