-- 0002: the durable job queue (server/src/jobs/ owns every statement on this table).
--
-- One row per job. `state` moves available -> running -> done | failed | cancelled, and
-- running -> available on a retry, an expired lease or an orphan requeued at start-up.
-- A running row carries the lease (token + expiry) of the one worker allowed to finish it;
-- no other row has a lease (the CHECK holds the two together).
-- Times are ms since the Unix epoch. Lower `priority` runs first.

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    queue            TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,            -- JSON, opaque to the queue
    state            TEXT    NOT NULL
                     CHECK (state IN ('available', 'running', 'done', 'failed', 'cancelled')),
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

-- The claim: available rows of one queue in (priority, run_at, id) order.
CREATE INDEX jobs_claim ON jobs (queue, priority, run_at, id) WHERE state = 'available';
-- The earliest run_at of a queue (its one wake-up timer).
CREATE INDEX jobs_due ON jobs (queue, run_at) WHERE state = 'available';
-- The reaper: leases in expiry order.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
-- Dedup: at most one live job per key; a finished job frees its key.
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('available', 'running');
-- Pruning finished jobs by age.
CREATE INDEX jobs_finished ON jobs (state, finished_at)
    WHERE state IN ('done', 'failed', 'cancelled');
