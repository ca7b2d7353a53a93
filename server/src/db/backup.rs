//! Owns the SQL side of `securechat backup` and `securechat restore` (the orchestration is
//! `crate::backup`): the online copy of a live database with SQLite's backup API, and what
//! is asked of a copy: its schema version, its counts, the blobs its rows name, dropping
//! the rows whose blob is gone, and `PRAGMA integrity_check`.
//!
//! Invariants: the copy is taken in ONE backup step (`sqlite3_backup_step(-1)`), inside
//! one read transaction of the source: a consistent snapshot of everything committed when
//! it began. In WAL mode that read transaction blocks neither the server's writer nor its
//! readers. A stepped copy with pauses would not do: a write by another connection (the
//! running server) between two steps restarts the backup from page one, so under steady
//! write load it would never finish. The source is opened `query_only`, the copy is
//! switched to `journal_mode = DELETE` so that it is one self-contained file.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use super::{DbError, DbResult};

/// How often a busy or locked source is retried before the copy gives up (100 ms apart).
const BUSY_RETRIES: u32 = 100;

/// Copies the live database at `source` into the new, empty file `dest` (created by the
/// caller with the mode it wants) and returns a connection to the copy. Takes no lock the
/// server needs: the source is opened read-write only because a read-only WAL connection
/// may not be able to create the shared-memory file, and is made `query_only`.
pub fn copy_live(source: &Path, dest: &Path) -> DbResult<Connection> {
    // No SQLITE_OPEN_CREATE: a missing database is an error, never a new empty one.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(Duration::from_secs(5))?;
    src.execute_batch("PRAGMA query_only = ON;")?;
    let mut dst = Connection::open(dest)?;
    {
        let backup = Backup::new(&src, &mut dst)?;
        let mut retries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                _ if retries < BUSY_RETRIES => {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => {
                    return Err(DbError::Aborted(
                        "the source database stayed busy; the backup gave up".into(),
                    ))
                }
            }
        }
    }
    let mode: String = dst.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(DbError::Aborted(format!(
            "the copy stayed in journal mode {mode:?}"
        )));
    }
    Ok(dst)
}

/// Opens a database file (a backup's copy) read-only, for checks.
pub fn open_read_only(path: &Path) -> DbResult<Connection> {
    Ok(Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?)
}

/// The schema version (`PRAGMA user_version`, the number of migrations applied).
pub fn schema_version(conn: &Connection) -> DbResult<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// What `PRAGMA integrity_check` found; empty when it says "ok".
pub fn integrity_problems(conn: &Connection) -> DbResult<Vec<String>> {
    let mut s = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(if rows.len() == 1 && rows[0] == "ok" {
        Vec::new()
    } else {
        rows
    })
}

/// What a copy holds, for the manifest and the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub users: i64,
    pub messages: i64,
    /// Finished files (ready or damaged); unfinished uploads are not counted.
    pub files: i64,
    pub uploads: i64,
}

pub fn counts(conn: &Connection) -> DbResult<Counts> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM messages), \
         (SELECT count(*) FROM files WHERE state != 'uploading'), \
         (SELECT count(*) FROM files WHERE state = 'uploading')",
        [],
        |r| {
            Ok(Counts {
                users: r.get(0)?,
                messages: r.get(1)?,
                files: r.get(2)?,
                uploads: r.get(3)?,
            })
        },
    )?)
}

/// A blob a row of `files` vouches for: its id and how many of its bytes the row accounts
/// for (a finished file: all of them; an unfinished upload: its committed offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub id: String,
    pub bytes: u64,
}

/// Every blob the rows of `conn` need, in id order; rows that account for no byte yet
/// (an upload that has not received any) need none.
pub fn referenced_blobs(conn: &Connection) -> DbResult<Vec<BlobRef>> {
    let mut s = conn.prepare(
        "SELECT id, CASE WHEN state = 'uploading' THEN upload_offset ELSE upload_length END \
         AS bytes FROM files WHERE bytes > 0 ORDER BY id",
    )?;
    let rows = s.query_map([], |r| {
        Ok(BlobRef {
            id: r.get(0)?,
            bytes: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes the rows of `files` with these ids (their blobs were removed after the
/// snapshot was taken: the server deletes a row before its blob). Returns how many went.
pub fn drop_files(conn: &mut Connection, ids: &[String]) -> DbResult<usize> {
    let tx = conn.transaction()?;
    let mut n = 0;
    {
        let mut s = tx.prepare("DELETE FROM files WHERE id = ?1")?;
        for id in ids {
            n += s.execute([id])?;
        }
    }
    tx.commit()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_db(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("live.db");
        let mut c = Connection::open(&path).expect("open");
        c.execute_batch("PRAGMA journal_mode = WAL").expect("wal");
        super::super::migrate::migrate(&mut c).expect("migrate");
        super::super::insert_test_users(&c);
        for (id, state, offset, length) in [
            ("aa000000-0000-4000-8000-000000000001", "ready", 100, 100),
            ("bb000000-0000-4000-8000-000000000002", "uploading", 40, 100),
            ("cc000000-0000-4000-8000-000000000003", "uploading", 0, 100),
            ("dd000000-0000-4000-8000-000000000004", "damaged", 7, 50),
        ] {
            c.execute(
                "INSERT INTO files (id, uploader_id, recipient_id, file_id, upload_length, \
                 upload_offset, record_size, manifest, hash_state, state, created_at, expires_at) \
                 VALUES (?1, 1, 2, 'f', ?4, ?3, 1024, '{}', x'', ?2, 0, 0)",
                rusqlite::params![id, state, offset, length],
            )
            .expect("file");
        }
        path
    }

    #[test]
    fn a_copy_is_one_file_with_the_rows_and_the_blobs_they_need() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = live_db(dir.path());
        // A connection that stays open keeps the source's WAL in place.
        let _live = Connection::open(&source).expect("live");
        let dest = dir.path().join("copy.db");
        let mut copy = copy_live(&source, &dest).expect("copy");
        assert!(integrity_problems(&copy).expect("check").is_empty());
        assert_eq!(
            schema_version(&copy).expect("version"),
            super::super::latest_version()
        );
        let mode: String = copy
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "delete");
        let blobs = referenced_blobs(&copy).expect("blobs");
        let want = [
            ("aa000000-0000-4000-8000-000000000001", 100),
            ("bb000000-0000-4000-8000-000000000002", 40),
            ("dd000000-0000-4000-8000-000000000004", 50),
        ];
        assert_eq!(
            blobs,
            want.map(|(id, bytes)| BlobRef {
                id: id.into(),
                bytes
            })
        );
        let before = counts(&copy).expect("counts");
        assert_eq!(
            before,
            Counts {
                users: 3,
                messages: 0,
                files: 2,
                uploads: 2
            }
        );
        let gone = vec![want[0].0.to_string(), "not-there".to_string()];
        assert_eq!(drop_files(&mut copy, &gone).expect("drop"), 1);
        assert_eq!(counts(&copy).expect("counts").files, 1);
        drop(copy);
        assert!(!dir.path().join("copy.db-wal").exists());
        assert!(!dir.path().join("copy.db-journal").exists());
    }

    #[test]
    fn a_missing_source_is_an_error_and_no_empty_database_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("absent.db");
        assert!(copy_live(&source, &dir.path().join("copy.db")).is_err());
        assert!(!source.exists());
    }

    #[test]
    fn a_damaged_page_fails_the_integrity_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = live_db(dir.path());
        let dest = dir.path().join("copy.db");
        drop(copy_live(&source, &dest).expect("copy"));
        // Scribble over the second page (a table's b-tree page).
        let mut bytes = std::fs::read(&dest).expect("read");
        let page: usize = 4096;
        for b in &mut bytes[page + 8..page + 64] {
            *b = 0xA5;
        }
        std::fs::write(&dest, &bytes).expect("write");
        let c = open_read_only(&dest).expect("open");
        let found = integrity_problems(&c);
        assert!(
            found.map(|p| !p.is_empty()).unwrap_or(true),
            "a scribbled page must not pass"
        );
    }
}
