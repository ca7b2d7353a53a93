//! Shared set-up: a migrated database in a temp dir, a test config, waiting for events.

use std::path::Path;
use std::time::Duration;

use securechat::config::{JobsConfig, StorageConfig, Synchronous};
use securechat::db::Db;
use securechat::jobs::{JobEvent, JobId, JobOutcome, Queue, Registry};
use tokio::sync::broadcast;

pub async fn open_db(dir: &Path, synchronous: Synchronous) -> Db {
    let storage = StorageConfig {
        data_dir: dir.to_owned(),
        synchronous,
        ..StorageConfig::default()
    };
    Db::open(&dir.join("jobs.db"), &storage)
        .await
        .expect("open db")
}

/// Fast retries, a roomy lease, queues "default" (4 workers) and "one" (1 worker).
pub fn config() -> JobsConfig {
    JobsConfig {
        lease_secs: 30,
        retry_base_ms: 10,
        retry_max_secs: 1,
        workers: [("default".to_string(), 4), ("one".to_string(), 1)]
            .into_iter()
            .collect(),
        ..JobsConfig::default()
    }
}

pub struct Env {
    pub _dir: tempfile::TempDir,
    pub db: Db,
    pub queue: Queue,
    pub events: broadcast::Receiver<JobEvent>,
}

/// A started queue with `registry` on a fresh database.
pub async fn start(config: JobsConfig, registry: Registry) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_db(dir.path(), Synchronous::Normal).await;
    let queue = Queue::new(db.clone(), &config, registry).expect("queue");
    let events = queue.subscribe();
    queue.start().await.expect("start");
    Env {
        _dir: dir,
        db,
        queue,
        events,
    }
}

/// Waits for the next event of job `id` matching `want`, skipping others.
pub async fn wait_for(
    events: &mut broadcast::Receiver<JobEvent>,
    id: JobId,
    want: impl Fn(&JobOutcome) -> bool,
) -> JobOutcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching event for job {id} within 10 s"))
            .expect("event stream");
        if ev.id == id && want(&ev.outcome) {
            return ev.outcome;
        }
    }
}

/// A test on a job's outcome.
pub type OutcomeTest<'a> = &'a dyn Fn(&JobOutcome) -> bool;

/// Waits until every `(id, want)` pair has been matched by some event, in any order.
pub async fn wait_for_each(
    events: &mut broadcast::Receiver<JobEvent>,
    wanted: &[(JobId, OutcomeTest<'_>)],
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = vec![false; wanted.len()];
    while seen.contains(&false) {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "events missing within 10 s: {wanted_ids:?} seen {seen:?}",
                    wanted_ids = wanted.iter().map(|w| w.0).collect::<Vec<_>>()
                )
            })
            .expect("event stream");
        for (i, (id, want)) in wanted.iter().enumerate() {
            if ev.id == *id && want(&ev.outcome) {
                seen[i] = true;
            }
        }
    }
}

pub fn is_done(o: &JobOutcome) -> bool {
    matches!(o, JobOutcome::Done)
}

/// Polls `check` every 10 ms until it holds (10 s at most).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
