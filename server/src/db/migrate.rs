//! Owns schema migrations: the SQL files under `migrations/`, embedded in the binary and
//! applied in order at start-up (and by `securechat migrate`), tracked in `PRAGMA user_version`.
//!
//! Invariants: migrations are forward-only and each runs in its own transaction; a database
//! whose version is newer than this binary knows is refused, never touched.

use rusqlite::Connection;

use super::{DbError, DbResult};

/// (version, name, SQL) in ascending order; version N is `migrations/000N_*.sql`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../../migrations/0001_init.sql")),
    (2, "jobs", include_str!("../../../migrations/0002_jobs.sql")),
    (
        3,
        "messages",
        include_str!("../../../migrations/0003_messages.sql"),
    ),
    (
        4,
        "messages_compact",
        include_str!("../../../migrations/0004_messages_compact.sql"),
    ),
    (
        5,
        "message_ids",
        include_str!("../../../migrations/0005_message_ids.sql"),
    ),
    (
        6,
        "jobs_without_in_lists",
        include_str!("../../../migrations/0006_jobs_without_in_lists.sql"),
    ),
    (
        7,
        "files",
        include_str!("../../../migrations/0007_files.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../../../migrations/0008_admin.sql"),
    ),
    (
        9,
        "deletion",
        include_str!("../../../migrations/0009_deletion.sql"),
    ),
    (
        10,
        "expiry_sweep",
        include_str!("../../../migrations/0010_expiry_sweep.sql"),
    ),
];

pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Brings `conn`'s schema to the latest version. Returns the versions applied.
pub fn migrate(conn: &mut Connection) -> DbResult<Vec<i64>> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = latest_version();
    if current > latest {
        return Err(DbError::Open(format!(
            "the database schema is version {current}, newer than this securechat binary \
             understands (up to {latest}); run a newer securechat or restore a backup"
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)
            .map_err(|e| DbError::Open(format!("migration {version} ({name}) failed: {e}")))?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, name, "applied migration");
        applied.push(*version);
    }
    Ok(applied)
}

/// Opens the database file at `path` and migrates it (the `securechat migrate` command).
pub fn migrate_file(
    path: &std::path::Path,
    storage: &crate::config::StorageConfig,
) -> DbResult<Vec<i64>> {
    let mut conn = super::open_write_connection(path, storage)?;
    migrate(&mut conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_applies_nothing_the_second_time() {
        let mut c = Connection::open_in_memory().expect("open");
        let all: Vec<i64> = (1..=latest_version()).collect();
        assert_eq!(migrate(&mut c).expect("first"), all);
        assert!(migrate(&mut c).expect("second").is_empty());
    }

    #[test]
    fn messages_stored_under_schema_3_keep_their_seq_id_and_conversation_through_5() {
        let mut c = Connection::open_in_memory().expect("open");
        c.execute_batch("PRAGMA foreign_keys = ON").expect("fk");
        for (_, _, sql) in MIGRATIONS.iter().filter(|m| m.0 <= 3) {
            c.execute_batch(sql).expect("old migration");
        }
        c.pragma_update(None, "user_version", 3).expect("version");
        super::super::insert_test_users(&c);
        let ids = [
            "0d6f8a52-1c1e-4c5e-9b7a-2f7d0c1e9a01",
            "7c3e2b1a-9d8f-4e6d-8c5b-4a3b2c1d0e02",
            "ffffffff-ffff-4fff-bfff-ffffffffff03",
        ];
        for (i, (from, to)) in [(1, 2), (2, 1), (3, 1)].into_iter().enumerate() {
            c.execute(
                "INSERT INTO messages (sender_id, recipient_id, conv_lo, conv_hi, msg_id, server_ts, \
                 size, envelope, state) VALUES (?1, ?2, min(?1, ?2), max(?1, ?2), ?3, 7, 2, '{}', 1)",
                rusqlite::params![from, to, ids[i]],
            )
            .expect("message");
        }
        // The newest row is gone: its seq (3) must still never be handed out again.
        c.execute("DELETE FROM messages WHERE seq = 3", [])
            .expect("delete");

        let after_3: Vec<i64> = (4..=latest_version()).collect();
        assert_eq!(migrate(&mut c).expect("migrate"), after_3);

        let rows: Vec<(i64, Vec<u8>, i64)> = c
            .prepare("SELECT seq, msg_id, state FROM messages ORDER BY seq")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let want = |s: &str| hex::decode(s.replace('-', "")).expect("hex");
        assert_eq!(rows, vec![(1, want(ids[0]), 1), (2, want(ids[1]), 1)]);
        let pairs: Vec<(i64, i64)> = c
            .prepare("SELECT lo, hi FROM conversations ORDER BY lo, hi")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("pairs");
        assert_eq!(pairs, vec![(1, 2)]);
        // 5: the id index moved to message_ids, complete up to the newest seq.
        let indexed: Vec<(Vec<u8>, i64)> = c
            .prepare("SELECT msg_id, seq FROM message_ids ORDER BY seq")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("ids");
        assert_eq!(indexed, vec![(want(ids[0]), 1), (want(ids[1]), 2)]);
        let marks: (i64, i64, i64) = c
            .query_row(
                "SELECT count(*), min(through_seq), max(through_seq) FROM message_id_ranges",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("marks");
        assert_eq!(marks, (crate::db::message_ids::ID_RANGES, 2, 2));
        let next: i64 = c
            .query_row(
                "INSERT INTO messages (sender_id, recipient_id, conv_lo, conv_hi, msg_id, server_ts, \
                 size, envelope) VALUES (1, 3, 1, 3, zeroblob(16), 8, 2, '{}') RETURNING seq",
                [],
                |r| r.get(0),
            )
            .expect("insert after migration");
        assert_eq!(next, 4, "a deleted seq is never reused");
    }

    #[test]
    fn a_database_from_the_future_is_refused() {
        let mut c = Connection::open_in_memory().expect("open");
        c.pragma_update(None, "user_version", latest_version() + 1)
            .expect("set");
        let err = migrate(&mut c).expect_err("must refuse");
        assert!(
            err.to_string()
                .contains("newer than this securechat binary"),
            "{err}"
        );
    }

    #[test]
    fn jobs_stored_under_schema_5_keep_their_rows_and_dedup_through_6() {
        let mut c = Connection::open_in_memory().expect("open");
        for (_, _, sql) in MIGRATIONS.iter().filter(|m| m.0 <= 5) {
            c.execute_batch(sql).expect("old migration");
        }
        c.pragma_update(None, "user_version", 5).expect("version");
        c.execute_batch(
            "INSERT INTO jobs (id, queue, kind, payload, state, run_at, max_attempts, dedup_key, \
             created_at) VALUES (7, 'q', 'k', '1', 'available', 10, 3, 'key', 1); \
             INSERT INTO jobs (id, queue, kind, payload, state, run_at, attempt, max_attempts, \
             created_at, finished_at, last_error) \
             VALUES (9, 'q', 'k', '2', 'failed', 10, 3, 3, 1, 20, 'boom');",
        )
        .expect("jobs");
        let after_5: Vec<i64> = (6..=latest_version()).collect();
        assert_eq!(migrate(&mut c).expect("migrate"), after_5);
        type JobRow = (i64, String, Option<String>, Option<i64>, Option<String>);
        let rows: Vec<JobRow> = c
            .prepare("SELECT id, state, dedup_key, finished_at, last_error FROM jobs ORDER BY id")
            .expect("prepare")
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                (7, "available".into(), Some("key".into()), None, None),
                (9, "failed".into(), None, Some(20), Some("boom".into())),
            ]
        );
        // The constraints and the dedup index hold as before.
        let dup = c.execute(
            "INSERT INTO jobs (queue, kind, payload, state, run_at, max_attempts, dedup_key, \
             created_at) VALUES ('q', 'k', '3', 'available', 10, 3, 'key', 1)",
            [],
        );
        assert!(dup.is_err(), "a second live job with the key");
        let bad = c.execute(
            "INSERT INTO jobs (queue, kind, payload, state, run_at, max_attempts, created_at) \
             VALUES ('q', 'k', '3', 'paused', 10, 3, 1)",
            [],
        );
        assert!(bad.is_err(), "an unknown state");
        let next: i64 = c
            .query_row(
                "INSERT INTO jobs (queue, kind, payload, state, run_at, max_attempts, created_at) \
                 VALUES ('q', 'k', '4', 'available', 10, 3, 1) RETURNING id",
                [],
                |r| r.get(0),
            )
            .expect("insert");
        assert_eq!(next, 10);
    }
}
