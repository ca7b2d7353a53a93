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
];

pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Brings `conn`'s schema to the latest version. Returns the versions applied.
pub fn migrate(conn: &mut Connection) -> DbResult<Vec<i64>> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = latest_version();
    if current > latest {
        return Err(DbError::Startup(format!(
            "the database schema is version {current}, newer than this securechat binary \
             understands (up to {latest}); run a newer securechat or restore a backup"
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)
            .map_err(|e| DbError::Startup(format!("migration {version} ({name}) failed: {e}")))?;
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
}
