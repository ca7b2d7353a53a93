-- 0006: the jobs table without IN lists of three or more values in its CHECK and its
-- partial indexes (issue #12, docs/bench-results-jobs.md).
--
-- SQLite evaluates `state IN ('a', 'b', 'c', …)` with more than two values — in a CHECK, or
-- in a partial index's WHERE when a row is written — by building an ephemeral B-tree of
-- the values, every time: an INSERT into jobs built two (the CHECK on state and
-- jobs_finished's WHERE), which was most of an enqueue's cost in a profile, and every
-- UPDATE of a job's state paid them too. The same conditions written as `=` joined by OR
-- are compared in place. (Two-value lists, as in jobs_dedup, are compared in place already.)
-- SQLite cannot alter a CHECK, so the table is rebuilt, keeping every row and id.
-- The rewritten jobs_finished is also usable by the prune query, which scanned the table.

CREATE TABLE jobs_new (
    id               INTEGER PRIMARY KEY,
    queue            TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,            -- JSON, opaque to the queue
    state            TEXT    NOT NULL
                     CHECK (state = 'available' OR state = 'running' OR state = 'done'
                            OR state = 'failed' OR state = 'cancelled'),
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL,            -- not claimed before this time
    attempt          INTEGER NOT NULL DEFAULT 0,  -- claims so far (the running one included)
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_token      INTEGER,                     -- fresh random value per claim
    lease_expires_at INTEGER,
    dedup_key        TEXT,
    progress         TEXT,                        -- JSON reported by the handler
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,                     -- time of the latest claim
    finished_at      INTEGER,                     -- time it reached done, failed or cancelled
    CHECK ((state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (attempt >= 0 AND attempt <= max_attempts)
) STRICT;

INSERT INTO jobs_new (id, queue, kind, payload, state, priority, run_at, attempt, max_attempts,
                      lease_token, lease_expires_at, dedup_key, progress, last_error,
                      created_at, started_at, finished_at)
    SELECT id, queue, kind, payload, state, priority, run_at, attempt, max_attempts,
           lease_token, lease_expires_at, dedup_key, progress, last_error,
           created_at, started_at, finished_at
    FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

-- The indexes of 0002, the same but for jobs_finished's WHERE.
CREATE INDEX jobs_claim ON jobs (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX jobs_due ON jobs (queue, run_at) WHERE state = 'available';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('available', 'running');
CREATE INDEX jobs_finished ON jobs (state, finished_at)
    WHERE state = 'done' OR state = 'failed' OR state = 'cancelled';
