//! Leases: expiry and the reaper, heartbeats, fencing, cancellation of running jobs, and
//! orphans requeued at start-up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use securechat::config::Synchronous;
use securechat::db::now_ms;
use securechat::jobs::{
    complete_in, CancelOutcome, JobError, JobOutcome, JobState, Lease, NewJob, Queue, Registry,
    StartReport, StopReason,
};
use serde_json::json;

use crate::helpers::{config, eventually, is_done, open_db, start, wait_for};

#[tokio::test]
async fn an_expired_lease_is_reclaimed_and_the_stale_worker_cannot_complete() {
    let stale_saw = Arc::new(Mutex::new(None));
    let mut reg = Registry::new();
    let s = stale_saw.clone();
    reg.register("t.hangs", move |ctx, _: serde_json::Value| {
        let s = s.clone();
        async move {
            if ctx.attempt() == 1 {
                // No heartbeat for longer than the 1 s lease.
                tokio::time::sleep(Duration::from_millis(2200)).await;
                *s.lock().unwrap() = Some(ctx.stop_reason());
            }
            Ok(())
        }
    })
    .unwrap();
    reg.register("t.beats", |ctx, _: serde_json::Value| async move {
        for i in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ctx.progress(json!({ "step": i })).await?;
        }
        Ok(())
    })
    .unwrap();
    let mut cfg = config();
    cfg.lease_secs = 1;
    let mut env = start(cfg, reg).await;
    let hangs = env
        .queue
        .enqueue(NewJob::new("t.hangs", json!(null)))
        .await
        .unwrap()
        .id;
    let beats = env
        .queue
        .enqueue(NewJob::new("t.beats", json!(null)))
        .await
        .unwrap()
        .id;
    let o = wait_for(&mut env.events, hangs, |o| {
        matches!(o, JobOutcome::Retrying { .. })
    })
    .await;
    assert!(
        matches!(&o, JobOutcome::Retrying { error, .. } if error == "lease expired"),
        "{o:?}"
    );
    wait_for(&mut env.events, hangs, is_done).await;
    assert_eq!(
        env.queue.get(hangs).await.unwrap().unwrap().attempt,
        2,
        "the second worker completed it"
    );
    // The first worker wakes up later: told its lease is lost, its completion refused.
    wait_for(&mut env.events, hangs, |o| *o == JobOutcome::LeaseLost).await;
    assert_eq!(
        *stale_saw.lock().unwrap(),
        Some(Some(StopReason::LeaseLost))
    );
    let rec = env.queue.get(hangs).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (JobState::Done, 2));
    // Heartbeats kept the other job's lease alive for 2.4 s: one attempt, with progress.
    wait_for(&mut env.events, beats, is_done).await;
    let rec = env.queue.get(beats).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (JobState::Done, 1));
    assert_eq!(rec.progress.as_deref(), Some(r#"{"step":7}"#));
}

#[tokio::test]
async fn a_stale_lease_cannot_complete_a_job_inside_a_transaction() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let lease = Arc::new(Mutex::new(None));
    let mut reg = Registry::new();
    let (g, l) = (gate.clone(), lease.clone());
    reg.register("t.wait", move |ctx, _: serde_json::Value| {
        let (g, l) = (g.clone(), l.clone());
        async move {
            *l.lock().unwrap() = Some(ctx.lease());
            g.notified().await;
            Ok(())
        }
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    let id = env
        .queue
        .enqueue(NewJob::new("t.wait", json!(null)))
        .await
        .unwrap()
        .id;
    eventually("it runs", || async { lease.lock().unwrap().is_some() }).await;
    let real: Lease = lease.lock().unwrap().expect("lease");
    let forged = Lease {
        job_id: id,
        token: real.token.wrapping_add(1),
    };
    let err = env
        .db
        .write(move |c| {
            c.execute_batch("CREATE TABLE side (x INTEGER); INSERT INTO side VALUES (1);")?;
            complete_in(c, forged)
        })
        .await
        .expect_err("a forged lease is refused");
    assert!(err.to_string().contains("no longer held"), "{err}");
    let side: bool = env
        .db
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'side'",
                [],
                |r| r.get::<_, i64>(0),
            )? == 1)
        })
        .await
        .unwrap();
    assert!(
        !side,
        "the caller's changes rolled back with the refused completion"
    );
    gate.notify_one();
    wait_for(&mut env.events, id, is_done).await;
}

#[tokio::test]
async fn cancelling_stops_available_and_running_jobs() {
    let mut reg = Registry::new();
    reg.register("t.long", |ctx, _: serde_json::Value| async move {
        let reason = tokio::time::timeout(Duration::from_secs(10), ctx.cancelled())
            .await
            .map_err(JobError::retry)?;
        assert!(ctx.is_cancelled());
        Err(JobError::Stopped(reason))
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    let running = env
        .queue
        .enqueue(NewJob::new("t.long", json!(null)))
        .await
        .unwrap()
        .id;
    let waiting = env
        .queue
        .enqueue(NewJob::new("t.long", json!(null)).run_at(now_ms() + 200))
        .await
        .unwrap()
        .id;
    eventually("it runs", || async {
        env.queue.get(running).await.unwrap().unwrap().state == JobState::Running
    })
    .await;
    assert_eq!(
        env.queue.cancel(waiting).await.unwrap(),
        CancelOutcome::Cancelled { was_running: false }
    );
    assert_eq!(
        env.queue.cancel(running).await.unwrap(),
        CancelOutcome::Cancelled { was_running: true }
    );
    wait_for(&mut env.events, running, |o| *o == JobOutcome::LeaseLost).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in [running, waiting] {
        let rec = env.queue.get(id).await.unwrap().unwrap();
        assert_eq!(rec.state, JobState::Cancelled, "job {id}");
    }
    assert_eq!(
        env.queue.get(waiting).await.unwrap().unwrap().attempt,
        0,
        "the cancelled scheduled job never ran"
    );
    assert_eq!(
        env.queue.cancel(running).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobState::Cancelled)
    );
    assert!(env.queue.cancel(123_456).await.is_err());
}

#[tokio::test]
async fn at_start_up_running_rows_are_orphans_and_run_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path(), Synchronous::Normal).await;
    let mut reg = Registry::new();
    reg.register("t.work", |_, _: serde_json::Value| async { Ok(()) })
        .unwrap();
    // A previous process claimed two jobs and died: their leases run for another hour.
    let before = Queue::new(db.clone(), &config(), reg.clone()).unwrap();
    let a = before
        .enqueue(NewJob::new("t.work", json!(1)))
        .await
        .unwrap()
        .id;
    let b = before
        .enqueue(NewJob::new("t.work", json!(2)).max_attempts(1))
        .await
        .unwrap()
        .id;
    let far = now_ms() + 3_600_000;
    db.write(move |c| {
        Ok(c.execute(
            "UPDATE jobs SET state = 'running', attempt = 1, lease_token = 42, \
             lease_expires_at = ?1 WHERE id IN (?2, ?3)",
            [far, a, b],
        )?)
    })
    .await
    .unwrap();
    let queue = Queue::new(db.clone(), &config(), reg).unwrap();
    let mut events = queue.subscribe();
    let report = queue.start().await.unwrap();
    assert_eq!(
        report,
        StartReport {
            requeued: 1,
            failed: 1
        }
    );
    wait_for(&mut events, a, is_done).await;
    let rec = queue.get(a).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (JobState::Done, 2));
    let rec = queue.get(b).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Failed);
    assert!(rec.last_error.unwrap().contains("interrupted"));
    assert!(queue.start().await.is_err(), "a queue starts once");
}

#[tokio::test]
async fn jobs_claimed_ahead_keep_their_lease_while_they_wait_and_can_be_cancelled() {
    let started = Arc::new(Mutex::new(Vec::new()));
    let mut reg = Registry::new();
    let s = started.clone();
    reg.register("t.fast", move |ctx, _: serde_json::Value| {
        s.lock().unwrap().push(ctx.id());
        async { Ok(()) }
    })
    .unwrap();
    reg.register("t.slow", |ctx, _: serde_json::Value| async move {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ctx.heartbeat().await?;
        }
        Ok(())
    })
    .unwrap();
    let mut cfg = config();
    cfg.lease_secs = 1;
    let mut env = start(cfg, reg).await;
    let fast = |n: i32| NewJob::new("t.fast", json!(n)).queue("one");
    // Fast handlers: the queue starts claiming ahead of its one worker.
    let warm = env
        .queue
        .enqueue_batch((0..10).map(fast).collect())
        .await
        .unwrap();
    wait_for(&mut env.events, warm[9].id, is_done).await;
    let slow = env
        .queue
        .enqueue(NewJob::new("t.slow", json!(0)).queue("one"))
        .await
        .unwrap()
        .id;
    eventually("the slow job runs", || async {
        env.queue.get(slow).await.unwrap().unwrap().state == JobState::Running
    })
    .await;
    let a = env.queue.enqueue(fast(100)).await.unwrap().id;
    let b = env.queue.enqueue(fast(101)).await.unwrap().id;
    let claimed_ahead = env
        .queue
        .list(Some(JobState::Running), Some("one".into()), 10)
        .await
        .unwrap()
        .len();
    assert_eq!(
        claimed_ahead, 3,
        "the slow job and two claimed ahead of the worker"
    );
    assert_eq!(
        env.queue.cancel(b).await.unwrap(),
        CancelOutcome::Cancelled { was_running: true }
    );
    // A waits 1.8 s for the worker, longer than its 1 s lease: it renews the lease meanwhile.
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), env.events.recv())
            .await
            .expect("events")
            .expect("event");
        if ev.id == a {
            seen.push(ev.outcome.clone());
            if ev.outcome == JobOutcome::Done {
                break;
            }
        }
    }
    assert_eq!(seen, vec![JobOutcome::Done], "no lease lost, no retry");
    let rec = env.queue.get(a).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (JobState::Done, 1));
    assert_eq!(
        env.queue.get(slow).await.unwrap().unwrap().state,
        JobState::Done
    );
    assert_eq!(
        env.queue.get(b).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert!(
        !started.lock().unwrap().contains(&b),
        "a cancelled job claimed ahead never starts"
    );
}
