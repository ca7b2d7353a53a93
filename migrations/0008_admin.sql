-- 0008: the admin console (issue #15). Accounts can be disabled; every admin read and
-- action is kept in a hash-chained audit log (docs/PROTOCOL.md §12); recipients' abuse
-- reports are kept with the server's verdict.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;    -- ms since epoch; NULL = enabled

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,                  -- 1, 2, 3, … chosen by the single writer
    at         INTEGER NOT NULL,                     -- ms since epoch
    actor      TEXT    NOT NULL,                     -- the admin's user name
    action     TEXT    NOT NULL,                     -- e.g. messages.list, user.disable
    target     TEXT,                                 -- a user name, job id, or NULL
    detail     TEXT    NOT NULL,                     -- the filters used, compact JSON
    prev_hash  BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash       BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

CREATE TABLE abuse_reports (
    id           INTEGER PRIMARY KEY,
    message_seq  INTEGER NOT NULL,                   -- messages.seq (kept if the message goes)
    message_id   TEXT    NOT NULL,                   -- the envelope's id
    reporter     TEXT    NOT NULL,                   -- the recipient who reported it
    sender       TEXT    NOT NULL,
    recipient    TEXT    NOT NULL,
    server_ts    INTEGER NOT NULL,
    reported_at  INTEGER NOT NULL,
    reason       TEXT    NOT NULL
                 CHECK (reason = 'spam' OR reason = 'abuse' OR reason = 'illegal' OR reason = 'other'),
    verdict      TEXT    NOT NULL CHECK (verdict = 'verified' OR verdict = 'not_verifiable'),
    detail       TEXT,                               -- which check failed, if one did
    text         TEXT,                               -- the disclosed plaintext's text, if verified
    UNIQUE (message_seq, reporter)
) STRICT;
