//! `securechat jobs list|retry|cancel` against a real data dir.

use std::process::Command;

use securechat::config::{StorageConfig, Synchronous};
use securechat::db::Db;
use securechat::jobs::{JobState, NewJob, Queue, Registry};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_securechat");

fn securechat(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SECURECHAT_STORAGE__DATA_DIR", data)
        .env("SECURECHAT_LOG__LEVEL", "warn")
        .current_dir(data)
        .args(args)
        .output()
        .expect("run securechat");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_lists_retries_and_cancels_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let storage = StorageConfig {
        data_dir: data.to_owned(),
        synchronous: Synchronous::Normal,
        ..StorageConfig::default()
    };
    let db = Db::open(&data.join("securechat.db"), &storage)
        .await
        .unwrap();
    let mut reg = Registry::new();
    reg.register("t.cli", |_, _: serde_json::Value| async { Ok(()) })
        .unwrap();
    let queue = Queue::new(db.clone(), &securechat::config::JobsConfig::default(), reg).unwrap();
    let failed = queue
        .enqueue(NewJob::new("t.cli", json!(1)))
        .await
        .unwrap()
        .id;
    let waiting = queue
        .enqueue(NewJob::new("t.cli", json!(2)))
        .await
        .unwrap()
        .id;
    db.write(move |c| {
        Ok(c.execute(
            "UPDATE jobs SET state = 'failed', attempt = 5, finished_at = 1, \
             last_error = 'disk on fire' WHERE id = ?1",
            [failed],
        )?)
    })
    .await
    .unwrap();

    let (ok, out, err) = securechat(data, &["jobs", "list", "--state", "failed"]);
    assert!(ok, "{err}");
    assert!(out.contains("disk on fire") && out.contains("5/5"), "{out}");
    assert!(
        !out.contains(&format!("\n{waiting:>8} ")),
        "only failed jobs: {out}"
    );

    let (ok, out, err) = securechat(data, &["jobs", "retry", &failed.to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains("available again"), "{out}");
    let rec = queue.get(failed).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (JobState::Available, 0));

    let (ok, out, err) = securechat(data, &["jobs", "cancel", &waiting.to_string()]);
    assert!(ok, "{err}");
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(
        queue.get(waiting).await.unwrap().unwrap().state,
        JobState::Cancelled
    );

    let (ok, out, _) = securechat(data, &["jobs", "list"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 3, "header and two jobs: {out}");

    let (ok, _, err) = securechat(data, &["jobs", "list", "--state", "sleeping"]);
    assert!(
        !ok && err.contains("unknown job state \"sleeping\""),
        "{err}"
    );
    let (ok, _, err) = securechat(data, &["jobs", "retry", "999999"]);
    assert!(!ok && err.contains("no job with id 999999"), "{err}");
    let (ok, _, err) = securechat(data, &["jobs", "cancel", &waiting.to_string()]);
    assert!(!ok && err.contains("already cancelled"), "{err}");
    let (ok, _, err) = securechat(data, &["jobs", "retry", &waiting.to_string()]);
    assert!(ok, "a cancelled job can be retried: {err}");
}
