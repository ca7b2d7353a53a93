//! Owns every SQL statement on the `jobs` table (migrations/0002_jobs.sql), and the rows they
//! take and give back (`NewRow`, `Claimed`, `Reclaimed`): insert with
//! dedup, the claim, fenced ack / fail / heartbeat / release, cancel, retry, the reaper's and
//! the start-up requeue, pruning, and the reads behind lists, counts and metrics.
//!
//! Every function takes the connection and the current time (ms) from its caller, so tests
//! drive the clock. Functions that change a running job take its [`Lease`] and change
//! nothing unless the row is still `running` under that very token (fencing); they return
//! whether they took effect.

use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Row};

use super::backoff::Backoff;
use super::error::JobsError;
use super::types::{CancelOutcome, Enqueued, JobId, JobRecord, JobState, Lease, QueueCounts};
use crate::db::DbResult;

/// A validated job, ready to insert.
#[derive(Debug, Clone)]
pub(crate) struct NewRow {
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub priority: i64,
    pub run_at: i64,
    pub max_attempts: i64,
    pub dedup_key: Option<String>,
}

/// A job handed to a worker by [`claim`].
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub id: JobId,
    pub kind: String,
    pub payload: String,
    pub priority: i64,
    pub run_at: i64,
    pub attempt: u32,
    pub max_attempts: u32,
    pub token: i64,
}

/// A running job whose lease the reaper (or the start-up requeue) took back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reclaimed {
    pub id: JobId,
    pub queue: String,
    pub kind: String,
    /// `Available` (to run at `run_at`) or `Failed` (no attempts left).
    pub state: JobState,
    pub run_at: i64,
}

fn state_of(s: &str) -> rusqlite::Result<JobState> {
    s.parse::<JobState>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Stores a job as available (`?1`…`?8`: queue, kind, payload, priority, run_at,
/// max_attempts, dedup_key, now).
pub(crate) const INSERT_SQL: &str =
    "INSERT INTO jobs (queue, kind, payload, state, priority, run_at, max_attempts, dedup_key, \
     created_at) VALUES (?1, ?2, ?3, 'available', ?4, ?5, ?6, ?7, ?8)";

/// [`INSERT_SQL`] that stores nothing while a live job holds the dedup key.
pub(crate) const INSERT_DEDUP_SQL: &str =
    "INSERT INTO jobs (queue, kind, payload, state, priority, run_at, max_attempts, dedup_key, \
     created_at) VALUES (?1, ?2, ?3, 'available', ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL \
     AND state IN ('available', 'running') DO NOTHING";

const LIVE_HOLDER_SQL: &str =
    "SELECT id FROM jobs WHERE dedup_key = ?1 AND state IN ('available', 'running')";

/// Stores `job` as available. With a dedup key that a live job holds, stores nothing and
/// returns that job's id.
pub(crate) fn insert(conn: &Connection, job: &NewRow, now: i64) -> DbResult<Enqueued> {
    Inserter::new(conn).insert(job, now)
}

/// Rows per statement of [`insert_many`]'s multi-row insert (8 parameters each).
const ROWS_PER_INSERT: usize = 64;

/// Stores `jobs` in order, each as [`insert`] would: the same ids (the rowid SQLite would
/// pick, one past the largest), and a job sees those before it, so a dedup key repeated in
/// the batch gets the first one's id. Runs of jobs without a dedup key are stored
/// [`ROWS_PER_INSERT`] to a statement with their ids given, which spares SQLite opening
/// the table and its five indexes once per row; a job with a key goes alone, as in [`insert`].
pub(crate) fn insert_many(conn: &Connection, jobs: &[NewRow], now: i64) -> DbResult<Vec<Enqueued>> {
    let mut ins = Inserter::new(conn);
    let mut out = Vec::with_capacity(jobs.len());
    let mut rest = jobs;
    while !rest.is_empty() {
        let keyless = rest
            .iter()
            .take(ROWS_PER_INSERT)
            .take_while(|j| j.dedup_key.is_none())
            .count();
        if keyless == ROWS_PER_INSERT {
            if let Some(ids) = ins.insert_run(&rest[..keyless], now)? {
                out.extend(ids.map(|id| Enqueued {
                    id,
                    existing: false,
                }));
                rest = &rest[keyless..];
                continue;
            }
        }
        out.push(ins.insert(&rest[0], now)?);
        rest = &rest[1..];
    }
    Ok(out)
}

/// The multi-row insert of [`ROWS_PER_INSERT`] jobs with their ids given.
fn insert_run_sql() -> String {
    let row = "(?, ?, ?, ?, 'available', ?, ?, ?, NULL, ?)";
    format!(
        "INSERT INTO jobs (id, queue, kind, payload, state, priority, run_at, max_attempts, \
         dedup_key, created_at) VALUES {}",
        vec![row; ROWS_PER_INSERT].join(", ")
    )
}

/// The insert statements, each taken from the connection's cache when first needed.
struct Inserter<'c> {
    conn: &'c Connection,
    plain: Option<CachedStatement<'c>>,
    dedup: Option<(CachedStatement<'c>, CachedStatement<'c>)>,
    run: Option<(CachedStatement<'c>, CachedStatement<'c>)>,
}

impl<'c> Inserter<'c> {
    fn new(conn: &'c Connection) -> Self {
        Inserter {
            conn,
            plain: None,
            dedup: None,
            run: None,
        }
    }

    /// Stores `jobs` (exactly [`ROWS_PER_INSERT`], none with a dedup key) in one statement,
    /// with the ids SQLite would give them one by one; `None` (nothing stored) if those ids
    /// would not fit below the largest rowid (SQLite would then pick them at random).
    fn insert_run(
        &mut self,
        jobs: &[NewRow],
        now: i64,
    ) -> DbResult<Option<std::ops::Range<JobId>>> {
        debug_assert_eq!(jobs.len(), ROWS_PER_INSERT);
        let (max_id, st) = match &mut self.run {
            Some(sts) => sts,
            None => self.run.insert((
                self.conn
                    .prepare_cached("SELECT coalesce(max(id), 0) FROM jobs")?,
                self.conn.prepare_cached(&insert_run_sql())?,
            )),
        };
        let last: JobId = max_id.query_row([], |r| r.get(0))?;
        let Some(first) = last
            .checked_add(1)
            .filter(|f| f.checked_add(ROWS_PER_INSERT as i64).is_some())
        else {
            return Ok(None);
        };
        let ids = first..first + ROWS_PER_INSERT as i64;
        for ((job, id), n) in jobs.iter().zip(ids.clone()).zip((1..).step_by(8)) {
            st.raw_bind_parameter(n, id)?;
            st.raw_bind_parameter(n + 1, &job.queue)?;
            st.raw_bind_parameter(n + 2, &job.kind)?;
            st.raw_bind_parameter(n + 3, &job.payload)?;
            st.raw_bind_parameter(n + 4, job.priority)?;
            st.raw_bind_parameter(n + 5, job.run_at)?;
            st.raw_bind_parameter(n + 6, job.max_attempts)?;
            st.raw_bind_parameter(n + 7, now)?;
        }
        st.raw_execute()?;
        Ok(Some(ids))
    }

    fn insert(&mut self, job: &NewRow, now: i64) -> DbResult<Enqueued> {
        let args = params![
            job.queue,
            job.kind,
            job.payload,
            job.priority,
            job.run_at,
            job.max_attempts,
            job.dedup_key,
            now
        ];
        // The new id is read with last_insert_rowid(), not RETURNING: SQLite runs a RETURNING
        // statement through a temporary table, which cost more than the insert itself here.
        let Some(key) = &job.dedup_key else {
            let st = match &mut self.plain {
                Some(st) => st,
                None => self.plain.insert(self.conn.prepare_cached(INSERT_SQL)?),
            };
            st.execute(args)?;
            return Ok(Enqueued {
                id: self.conn.last_insert_rowid(),
                existing: false,
            });
        };
        let (st, holder) = match &mut self.dedup {
            Some(sts) => sts,
            None => self.dedup.insert((
                self.conn.prepare_cached(INSERT_DEDUP_SQL)?,
                self.conn.prepare_cached(LIVE_HOLDER_SQL)?,
            )),
        };
        if st.execute(args)? == 1 {
            return Ok(Enqueued {
                id: self.conn.last_insert_rowid(),
                existing: false,
            });
        }
        let id = holder.query_row([key], |r| r.get(0))?;
        Ok(Enqueued { id, existing: true })
    }
}

/// The claim. `LIMIT +?4`, not `LIMIT ?4`: see the SQL convention in `db/mod.rs`.
pub(crate) const CLAIM_SQL: &str =
    "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_token = random(), \
            lease_expires_at = ?3, started_at = ?2 \
     WHERE id IN (SELECT id FROM jobs \
                  WHERE queue = ?1 AND state = 'available' AND run_at <= ?2 \
                  ORDER BY priority, run_at, id LIMIT +?4) \
     RETURNING id, kind, payload, priority, run_at, attempt, max_attempts, lease_token";

/// Claims up to `n` due jobs of `queue` in (priority, run_at, id) order with one
/// `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`, each under a fresh random lease
/// token that expires at `now + lease_ms`. Returned in claim order.
pub(crate) fn claim(
    conn: &Connection,
    queue: &str,
    n: usize,
    now: i64,
    lease_ms: i64,
) -> DbResult<Vec<Claimed>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut st = conn.prepare_cached(CLAIM_SQL)?;
    let mut out = st
        .query_map(params![queue, now, now + lease_ms, n as i64], |r| {
            Ok(Claimed {
                id: r.get(0)?,
                kind: r.get(1)?,
                payload: r.get(2)?,
                priority: r.get(3)?,
                run_at: r.get(4)?,
                attempt: r.get(5)?,
                max_attempts: r.get(6)?,
                token: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING comes in no promised order; start them in the order they were chosen.
    out.sort_by_key(|c| (c.priority, c.run_at, c.id));
    Ok(out)
}

/// The earliest `run_at` among the queue's available jobs (due or not), if any.
pub(crate) fn next_due(conn: &Connection, queue: &str) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT min(run_at) FROM jobs WHERE queue = ?1 AND state = 'available'")?
        .query_row([queue], |r| r.get(0))?)
}

/// The earliest lease expiry among running jobs, if any.
pub(crate) fn next_lease_expiry(conn: &Connection) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT min(lease_expires_at) FROM jobs WHERE state = 'running'")?
        .query_row([], |r| r.get(0))?)
}

/// Marks the job done, if `lease` still holds it.
pub(crate) fn complete(conn: &Connection, lease: Lease, now: i64) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'done', lease_token = NULL, lease_expires_at = NULL, \
                    finished_at = ?3 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )?
        .execute(params![lease.job_id, lease.token, now])?;
    Ok(n == 1)
}

/// True if `lease` still holds the job (used before running a handler's own transaction).
pub(crate) fn holds(conn: &Connection, lease: Lease) -> DbResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM jobs WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )?
        .query_row(params![lease.job_id, lease.token], |_| Ok(()))
        .optional()?
        .is_some())
}

/// A retryable failure, if `lease` still holds the job: back to `available` at `run_at`
/// while attempts remain, else `failed` for good; `error` is kept either way. Returns the
/// state it moved to (`None`: the lease no longer holds).
pub(crate) fn retry_or_fail(
    conn: &Connection,
    lease: Lease,
    run_at: i64,
    now: i64,
    error: &str,
) -> DbResult<Option<JobState>> {
    let state: Option<String> = conn
        .prepare_cached(
            "UPDATE jobs SET \
                    state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'failed' END, \
                    run_at = CASE WHEN attempt < max_attempts THEN ?3 ELSE run_at END, \
                    finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ?4 END, \
                    lease_token = NULL, lease_expires_at = NULL, last_error = ?5 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running' \
             RETURNING state",
        )?
        .query_row(
            params![lease.job_id, lease.token, run_at, now, error],
            |r| r.get(0),
        )
        .optional()?;
    state.map(|s| state_of(&s)).transpose().map_err(Into::into)
}

/// Fails the job for good with `error` kept, if `lease` still holds it.
pub(crate) fn fail(conn: &Connection, lease: Lease, now: i64, error: &str) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'failed', lease_token = NULL, lease_expires_at = NULL, \
                    finished_at = ?3, last_error = ?4 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )?
        .execute(params![lease.job_id, lease.token, now, error])?;
    Ok(n == 1)
}

/// Extends the lease to `now + lease_ms` (and records `progress` when given), if it still holds.
pub(crate) fn heartbeat(
    conn: &Connection,
    lease: Lease,
    now: i64,
    lease_ms: i64,
    progress: Option<&str>,
) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET lease_expires_at = ?3, progress = coalesce(?4, progress) \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )?
        .execute(params![lease.job_id, lease.token, now + lease_ms, progress])?;
    Ok(n == 1)
}

/// Gives the job back (shutdown): available at once, this attempt not counted.
pub(crate) fn release(conn: &Connection, lease: Lease, now: i64) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'available', attempt = attempt - 1, lease_token = NULL, \
                    lease_expires_at = NULL, run_at = ?3 \
             WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        )?
        .execute(params![lease.job_id, lease.token, now])?;
    Ok(n == 1)
}

/// Cancels an available or running job. Returns the outcome and the job's queue and kind.
pub(crate) fn cancel(
    conn: &Connection,
    id: JobId,
    now: i64,
) -> Result<(CancelOutcome, String, String), JobsError> {
    let Some((state, queue, kind)) = conn
        .prepare_cached("SELECT state, queue, kind FROM jobs WHERE id = ?1")?
        .query_row([id], |r| {
            Ok((
                state_of(&r.get::<_, String>(0)?)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?
    else {
        return Err(JobsError::NotFound(id));
    };
    if !state.is_live() {
        return Ok((CancelOutcome::AlreadyFinished(state), queue, kind));
    }
    conn.prepare_cached(
        "UPDATE jobs SET state = 'cancelled', lease_token = NULL, lease_expires_at = NULL, \
                finished_at = ?2 \
         WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok((
        CancelOutcome::Cancelled {
            was_running: state == JobState::Running,
        },
        queue,
        kind,
    ))
}

/// Makes a failed or cancelled job available now with a fresh set of attempts.
/// Returns its queue.
pub(crate) fn retry(conn: &Connection, id: JobId, now: i64) -> Result<String, JobsError> {
    let Some((state, queue, key)) = conn
        .prepare_cached("SELECT state, queue, dedup_key FROM jobs WHERE id = ?1")?
        .query_row([id], |r| {
            Ok((
                state_of(&r.get::<_, String>(0)?)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?
    else {
        return Err(JobsError::NotFound(id));
    };
    if !matches!(state, JobState::Failed | JobState::Cancelled) {
        return Err(JobsError::Conflict(format!(
            "job {id} is {state}; only failed or cancelled jobs can be retried"
        )));
    }
    if let Some(key) = &key {
        let holder: Option<JobId> = conn
            .prepare_cached(LIVE_HOLDER_SQL)?
            .query_row([key], |r| r.get(0))
            .optional()?;
        if let Some(holder) = holder {
            return Err(JobsError::Conflict(format!(
                "job {id} cannot be retried: job {holder} is live with the same dedup key"
            )));
        }
    }
    conn.prepare_cached(
        "UPDATE jobs SET state = 'available', attempt = 0, run_at = ?2, finished_at = NULL \
         WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(queue)
}

/// Takes back running jobs: with `expired_only`, those whose lease ran out (the reaper; they
/// retry after a backoff), otherwise every running row (start-up: all are orphans of the last
/// process and retry at once). A job without attempts left fails for good. At most `limit`.
pub(crate) fn reclaim(
    conn: &Connection,
    now: i64,
    expired_only: bool,
    backoff: &Backoff,
    limit: i64,
) -> DbResult<Vec<Reclaimed>> {
    let mut st = conn.prepare_cached(
        "SELECT id, queue, kind, attempt, max_attempts, lease_expires_at FROM jobs \
         WHERE state = 'running' AND (?1 = 0 OR lease_expires_at <= ?2) \
         ORDER BY lease_expires_at LIMIT +?3",
    )?;
    let rows = st
        .query_map(params![expired_only as i64, now, limit], |r| {
            Ok((
                r.get::<_, JobId>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, queue, kind, attempt, max_attempts) in rows {
        let error = if expired_only {
            format!("lease expired during attempt {attempt} (no heartbeat in time)")
        } else {
            format!("interrupted during attempt {attempt}: the process stopped while it ran")
        };
        let (state, run_at) = if attempt >= max_attempts {
            conn.prepare_cached(
                "UPDATE jobs SET state = 'failed', lease_token = NULL, lease_expires_at = NULL, \
                        finished_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, now, error])?;
            (JobState::Failed, now)
        } else {
            let run_at = if expired_only {
                now + backoff.delay_ms(attempt) as i64
            } else {
                now
            };
            conn.prepare_cached(
                "UPDATE jobs SET state = 'available', lease_token = NULL, lease_expires_at = NULL, \
                        run_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, run_at, error])?;
            (JobState::Available, run_at)
        };
        out.push(Reclaimed {
            id,
            queue,
            kind,
            state,
            run_at,
        });
    }
    Ok(out)
}

/// Deletes up to `?3` jobs in state `?1` that finished before `?2`.
pub(crate) const PRUNE_SQL: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
     WHERE state = ?1 AND finished_at < ?2 LIMIT +?3)";

/// Deletes up to `batch` jobs in `state` that finished before `before`; returns how many.
pub(crate) fn prune(
    conn: &Connection,
    state: JobState,
    before: i64,
    batch: u32,
) -> DbResult<usize> {
    Ok(conn
        .prepare_cached(PRUNE_SQL)?
        .execute(params![state.as_str(), before, batch])?)
}

const RECORD_COLUMNS: &str = "id, queue, kind, state, priority, run_at, attempt, max_attempts, \
     dedup_key, progress, last_error, payload, created_at, started_at, finished_at, \
     lease_expires_at";

fn record(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: r.get(0)?,
        queue: r.get(1)?,
        kind: r.get(2)?,
        state: state_of(&r.get::<_, String>(3)?)?,
        priority: r.get(4)?,
        run_at: r.get(5)?,
        attempt: r.get(6)?,
        max_attempts: r.get(7)?,
        dedup_key: r.get(8)?,
        progress: r.get(9)?,
        last_error: r.get(10)?,
        payload: r.get(11)?,
        created_at: r.get(12)?,
        started_at: r.get(13)?,
        finished_at: r.get(14)?,
        lease_expires_at: r.get(15)?,
    })
}

pub(crate) fn get(conn: &Connection, id: JobId) -> DbResult<Option<JobRecord>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], record)
        .optional()?)
}

pub(crate) fn list(
    conn: &Connection,
    state: Option<JobState>,
    queue: Option<&str>,
    limit: u32,
) -> DbResult<Vec<JobRecord>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM jobs \
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2) \
         ORDER BY id DESC LIMIT +?3"
    ))?;
    let rows = st
        .query_map(params![state.map(JobState::as_str), queue, limit], record)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(crate) fn counts(conn: &Connection, now: i64) -> DbResult<Vec<QueueCounts>> {
    let mut by_queue: std::collections::BTreeMap<String, QueueCounts> = Default::default();
    let mut st = conn.prepare_cached(
        "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state ORDER BY queue",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            state_of(&r.get::<_, String>(1)?)?,
            r.get::<_, i64>(2)?.max(0) as u64,
        ))
    })?;
    for row in rows {
        let (queue, state, n) = row?;
        let c = by_queue
            .entry(queue.clone())
            .or_insert_with(|| QueueCounts {
                queue,
                ..QueueCounts::default()
            });
        *match state {
            JobState::Available => &mut c.available,
            JobState::Running => &mut c.running,
            JobState::Done => &mut c.done,
            JobState::Failed => &mut c.failed,
            JobState::Cancelled => &mut c.cancelled,
        } = n;
    }
    let mut st = conn.prepare_cached(
        "SELECT queue, min(run_at) FROM jobs WHERE state = 'available' AND run_at <= ?1 \
         GROUP BY queue",
    )?;
    let rows = st.query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (queue, oldest) = row?;
        if let Some(c) = by_queue.get_mut(&queue) {
            c.oldest_available_age_ms = (now - oldest).max(0);
        }
    }
    Ok(by_queue.into_values().collect())
}
