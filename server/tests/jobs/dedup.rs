//! Dedup keys: racing enqueues of one key leave exactly one live job, and a batch honours
//! keys repeated inside it and keys held by live jobs.

use std::sync::Arc;

use securechat::jobs::{NewJob, Registry};
use serde_json::json;

use crate::helpers::{config, is_done, start, wait_for};

/// A registry whose one handler, of `kind`, waits for a permit of the returned gate.
fn gated(kind: &str) -> (Registry, Arc<tokio::sync::Semaphore>) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut reg = Registry::new();
    let g = gate.clone();
    reg.register(kind, move |_, _: serde_json::Value| {
        let g = g.clone();
        async move {
            let _permit = g
                .acquire()
                .await
                .map_err(securechat::jobs::JobError::retry)?;
            Ok(())
        }
    })
    .expect("register the handler");
    (reg, gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_racing_enqueues_of_one_key_leave_exactly_one_live_job() {
    let (reg, gate) = gated("t.once");
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

#[tokio::test]
async fn a_batch_dedups_keys_repeated_in_it_and_keys_live_jobs_hold() {
    let (reg, gate) = gated("t.held");
    let env = start(config(), reg).await;
    let job = |n: i32| NewJob::new("t.held", json!(n));
    let held = env.queue.enqueue(job(0).dedup_key("held")).await.unwrap();
    assert!(!held.existing);
    let out = env
        .queue
        .enqueue_batch(vec![
            job(1).dedup_key("k1"),
            job(2).dedup_key("k2"),
            job(3).dedup_key("k1"),
            job(4).dedup_key("held"),
            job(5),
            job(6).dedup_key("k2"),
            job(7),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 7);
    let new: Vec<bool> = out.iter().map(|o| !o.existing).collect();
    assert_eq!(new, [true, true, false, false, true, false, true]);
    assert_eq!(out[2].id, out[0].id, "k1 again is the first k1");
    assert_eq!(out[5].id, out[1].id, "k2 again is the first k2");
    assert_eq!(out[3].id, held.id, "held is the live job's");
    let fresh = [out[0].id, out[1].id, out[4].id, out[6].id, held.id];
    let mut distinct = fresh.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "{fresh:?}");
    let stored: Vec<(i64, i64)> = env
        .db
        .read(|c| {
            let mut st = c.prepare(
                "SELECT id, CAST(payload AS INTEGER) FROM jobs WHERE kind = 't.held' ORDER BY id",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap();
    let payloads: Vec<i64> = stored.iter().map(|s| s.1).collect();
    assert_eq!(
        payloads,
        [0, 1, 2, 5, 7],
        "the first of each key, and the keyless"
    );
    let ids: Vec<i64> = stored.iter().map(|s| s.0).collect();
    assert_eq!(ids, distinct);
    // (Of this queue: the internal prune job's next instance counts on its own queue.)
    let enqueued = env.queue.totals_of("default").expect("queue").enqueued;
    assert_eq!(enqueued, 5, "duplicates are not counted");
    gate.add_permits(100);
}
