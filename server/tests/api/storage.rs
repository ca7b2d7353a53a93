//! Storage guarantees: WAL and foreign keys, durability across restarts, private data dir,
//! refusal of databases from the future.

use crate::helpers::{spawn_app, test_config, PASSWORD};

#[tokio::test]
async fn the_database_runs_in_wal_mode_with_a_private_data_dir() {
    let app = spawn_app().await;
    let mode: String = app
        .sqlite()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = &app.config.storage.data_dir;
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(dir), 0o700);
        assert_eq!(mode(&dir.join("prelogin_key")), 0o600);
    }
}

#[tokio::test]
async fn accounts_and_sessions_survive_a_restart() {
    let app = spawn_app().await;
    let s = app.register_and_login("alice").await;
    let app = app.restart().await;
    app.client
        .me(&s.access_token)
        .await
        .expect("token still valid");
    app.client
        .login("alice", PASSWORD)
        .await
        .expect("login after restart");
}

#[tokio::test]
async fn a_database_newer_than_the_binary_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(dir.path().join("data"));
    std::fs::create_dir_all(&config.storage.data_dir).expect("mkdir");
    {
        let c = rusqlite::Connection::open(config.database_path()).expect("open");
        c.pragma_update(None, "user_version", securechat::db::latest_version() + 5)
            .expect("set");
    }
    let err = securechat::App::build(config)
        .await
        .err()
        .expect("must refuse");
    assert!(
        format!("{err:#}").contains("newer than this securechat binary"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_short_configured_jwt_secret_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path().join("data"));
    config.auth.jwt_secret = "changeme-changeme-changeme-changeme".into();
    let err = securechat::App::build(config)
        .await
        .err()
        .expect("must refuse");
    assert!(format!("{err:#}").contains("jwt_secret"), "{err:#}");
}

#[tokio::test]
async fn concurrent_writes_share_transactions_and_each_is_answered_after_commit() {
    let app = spawn_app().await;
    let db = securechat::db::Db::open(&app.db_path(), &app.config.storage)
        .await
        .expect("second handle");
    db.write(|c| {
        c.execute_batch("CREATE TABLE scratch (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")?;
        Ok(())
    })
    .await
    .expect("table");
    let before = db.writer().stats();
    let mut tasks = Vec::new();
    for i in 0..500i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.write(move |c| {
                c.execute("INSERT INTO scratch (id, v) VALUES (?1, 'x')", [i])?;
                Ok(i)
            })
            .await
        }));
    }
    for t in tasks {
        let i = t.await.expect("join").expect("write");
        // Answered means committed: a fresh connection sees the row.
        let seen: i64 = app
            .sqlite()
            .query_row("SELECT count(*) FROM scratch WHERE id = ?1", [i], |r| {
                r.get(0)
            })
            .expect("read");
        assert_eq!(seen, 1);
    }
    let after = db.writer().stats();
    let ops = after.operations - before.operations;
    let txs = after.transactions - before.transactions;
    assert_eq!(ops, 500);
    assert!(
        txs < ops,
        "500 concurrent writes took {txs} transactions: no grouping"
    );
}
