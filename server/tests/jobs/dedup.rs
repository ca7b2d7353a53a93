//! Dedup keys under contention: racing enqueues of one key leave exactly one live job.

use std::sync::Arc;

use securechat::jobs::{NewJob, Registry};
use serde_json::json;

use crate::helpers::{config, is_done, start, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_racing_enqueues_of_one_key_leave_exactly_one_live_job() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut reg = Registry::new();
    let g = gate.clone();
    reg.register("t.once", move |_, _: serde_json::Value| {
        let g = g.clone();
        async move {
            let _permit = g
                .acquire()
                .await
                .map_err(securechat::jobs::JobError::retry)?;
            Ok(())
        }
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (q, b) = (env.queue.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            // Single and batch enqueues race alike.
            let job = NewJob::new("t.once", json!(i)).dedup_key("upload:42");
            if i % 2 == 0 {
                q.enqueue(job).await.unwrap()
            } else {
                q.enqueue_batch(vec![job]).await.unwrap()[0]
            }
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let id = answers[0].id;
    assert!(answers.iter().all(|a| a.id == id), "one id for all");
    assert_eq!(
        answers.iter().filter(|a| !a.existing).count(),
        1,
        "one stored"
    );
    let live: i64 = env
        .db
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM jobs WHERE dedup_key = 'upload:42' \
                 AND state IN ('available', 'running')",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(live, 1);
    let total: i64 = env
        .db
        .read(|c| {
            Ok(
                c.query_row("SELECT count(*) FROM jobs WHERE kind = 't.once'", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
        .unwrap();
    assert_eq!(total, 1);
    // Once it has finished, the key is free again.
    gate.add_permits(1);
    wait_for(&mut env.events, id, is_done).await;
    let again = env
        .queue
        .enqueue(NewJob::new("t.once", json!(0)).dedup_key("upload:42"))
        .await
        .unwrap();
    assert!(!again.existing && again.id != id);
    gate.add_permits(1);
}
