//! The life of a job: run, retry with backoff, fail for good, bad payloads, panics,
//! schedules, priorities, completing inside the handler's own transaction, refusals.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use securechat::db::now_ms;
use securechat::jobs::{JobError, JobOutcome, JobState, JobsError, NewJob, Registry};
use serde::Deserialize;
use serde_json::json;

use crate::helpers::{config, is_done, start, wait_for};

#[derive(Deserialize)]
struct Echo {
    text: String,
}

#[tokio::test]
async fn a_job_runs_with_its_payload_and_ends_done() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut reg = Registry::new();
    let s = seen.clone();
    reg.register("t.echo", move |ctx, p: Echo| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push((ctx.id(), ctx.attempt(), p.text));
            Ok(())
        }
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    let job = env
        .queue
        .enqueue(NewJob::new("t.echo", json!({"text": "hi"})))
        .await
        .unwrap();
    assert!(!job.existing);
    wait_for(&mut env.events, job.id, is_done).await;
    assert_eq!(*seen.lock().unwrap(), vec![(job.id, 1, "hi".to_string())]);
    let rec = env.queue.get(job.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (JobState::Done, 1));
    assert!(rec.finished_at.is_some() && rec.lease_expires_at.is_none());
}

#[tokio::test]
async fn an_enqueue_dropped_after_it_was_sent_still_starts_its_job_and_frees_the_worker() {
    let mut reg = Registry::new();
    reg.register("t.noop", |_, _: serde_json::Value| async { Ok(()) })
        .unwrap();
    let mut env = start(config(), reg).await;
    // Hold the writer busy, so that the enqueue has sent its write and waits for the commit
    // when it is dropped.
    let busy = env
        .db
        .writer()
        .submit(|_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        })
        .await
        .unwrap();
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        env.queue
            .enqueue(NewJob::new("t.noop", json!(0)).queue("one")),
    )
    .await;
    assert!(dropped.is_err(), "the enqueue cannot have committed yet");
    busy.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, env.events.recv())
            .await
            .expect("the dropped enqueue's job ran")
            .unwrap();
        // (The internal prune job runs at start-up too.)
        if ev.outcome == JobOutcome::Done && &*ev.queue == "one" {
            break;
        }
    }
    // The queue's one worker is free again: more jobs run.
    for i in 1..=3 {
        let id = env
            .queue
            .enqueue(NewJob::new("t.noop", json!(i)).queue("one"))
            .await
            .unwrap()
            .id;
        wait_for(&mut env.events, id, is_done).await;
    }
    let t = env.queue.totals_of("one").unwrap();
    assert_eq!((t.enqueued, t.started, t.done), (4, 4, 4), "{t:?}");
}

#[tokio::test]
async fn a_retryable_error_retries_with_growing_backoff_until_it_succeeds() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let mut reg = Registry::new();
    let s = starts.clone();
    reg.register("t.flaky", move |ctx, _: serde_json::Value| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(std::time::Instant::now());
            if ctx.attempt() < 4 {
                Err(JobError::retry(format!("not yet ({})", ctx.attempt())))
            } else {
                Ok(())
            }
        }
    })
    .unwrap();
    let mut cfg = config();
    cfg.retry_base_ms = 40;
    let mut env = start(cfg, reg).await;
    let id = env
        .queue
        .enqueue(NewJob::new("t.flaky", json!(null)))
        .await
        .unwrap()
        .id;
    for n in 1..=3 {
        let o = wait_for(&mut env.events, id, |o| {
            matches!(o, JobOutcome::Retrying { .. })
        })
        .await;
        assert!(
            matches!(&o, JobOutcome::Retrying { error, .. } if error == &format!("not yet ({n})")),
            "{o:?}"
        );
    }
    wait_for(&mut env.events, id, is_done).await;
    let rec = env.queue.get(id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempt), (JobState::Done, 4));
    assert_eq!(rec.last_error.as_deref(), Some("not yet (3)"));
    // Delays: 40 ms, 80 ms, 160 ms, each minus at most a quarter of jitter.
    let t = starts.lock().unwrap().clone();
    let gaps: Vec<u128> = t.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    // Each gap is at least three quarters of its doubling cap: the delays grow.
    for (gap, cap) in gaps.iter().zip([40u128, 80, 160]) {
        assert!(*gap >= cap * 3 / 4, "gaps {gaps:?}");
    }
}

#[tokio::test]
async fn when_attempts_run_out_the_job_fails_for_good_with_its_last_error() {
    let runs = Arc::new(AtomicU32::new(0));
    let mut reg = Registry::new();
    let r = runs.clone();
    reg.register("t.broken", move |ctx, _: serde_json::Value| {
        r.fetch_add(1, Ordering::SeqCst);
        async move { Err(JobError::retry(format!("boom {}", ctx.attempt()))) }
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    let id = env
        .queue
        .enqueue(NewJob::new("t.broken", json!({})).max_attempts(3))
        .await
        .unwrap()
        .id;
    let o = wait_for(&mut env.events, id, |o| {
        matches!(o, JobOutcome::Failed { .. })
    })
    .await;
    assert_eq!(
        o,
        JobOutcome::Failed {
            error: "boom 3 (attempt 3 of 3)".into()
        }
    );
    let rec = env.queue.get(id).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempt, rec.max_attempts),
        (JobState::Failed, 3, 3)
    );
    assert_eq!(rec.last_error.as_deref(), Some("boom 3 (attempt 3 of 3)"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "no attempt after the last");
}

#[tokio::test]
async fn a_fail_error_a_bad_payload_and_a_panic_are_each_handled() {
    let mut reg = Registry::new();
    reg.register("t.fatal", |_, _: serde_json::Value| async {
        Err(JobError::fail("the input can never work"))
    })
    .unwrap();
    reg.register("t.typed", |_, _p: Echo| async { Ok(()) })
        .unwrap();
    reg.register("t.panics", |ctx, _: serde_json::Value| async move {
        if ctx.attempt() == 1 {
            panic!("handler bug");
        }
        Ok(())
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    let fatal = env
        .queue
        .enqueue(NewJob::new("t.fatal", json!(1)))
        .await
        .unwrap()
        .id;
    let typed = env
        .queue
        .enqueue(NewJob::new("t.typed", json!({"nope": 1})))
        .await
        .unwrap()
        .id;
    let panics = env
        .queue
        .enqueue(NewJob::new("t.panics", json!(1)))
        .await
        .unwrap()
        .id;
    let o = wait_for(&mut env.events, fatal, |o| {
        matches!(o, JobOutcome::Failed { .. })
    })
    .await;
    assert_eq!(
        o,
        JobOutcome::Failed {
            error: "the input can never work".into()
        }
    );
    let rec = env.queue.get(fatal).await.unwrap().unwrap();
    assert_eq!(rec.attempt, 1, "a Fail error does not use up the attempts");
    let o = wait_for(&mut env.events, typed, |o| {
        matches!(o, JobOutcome::Failed { .. })
    })
    .await;
    assert!(
        matches!(&o, JobOutcome::Failed { error } if error.contains("payload of this t.typed job does not parse") && error.contains("text")),
        "{o:?}"
    );
    let o = wait_for(&mut env.events, panics, |o| {
        matches!(o, JobOutcome::Retrying { .. })
    })
    .await;
    assert!(
        matches!(&o, JobOutcome::Retrying { error, .. } if error.contains("panicked: handler bug")),
        "{o:?}"
    );
    wait_for(&mut env.events, panics, is_done).await;
}

#[tokio::test]
async fn a_scheduled_job_does_not_start_before_its_run_at() {
    let started = Arc::new(Mutex::new(None));
    let mut reg = Registry::new();
    let s = started.clone();
    reg.register("t.later", move |_, _: serde_json::Value| {
        let s = s.clone();
        async move {
            *s.lock().unwrap() = Some(now_ms());
            Ok(())
        }
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    let run_at = now_ms() + 300;
    let id = env
        .queue
        .enqueue(NewJob::new("t.later", json!(null)).run_at(run_at))
        .await
        .unwrap()
        .id;
    wait_for(&mut env.events, id, is_done).await;
    let at = started.lock().unwrap().expect("started");
    assert!(at >= run_at, "started {} ms early", run_at - at);
    // Woken by its timer, not by some later event (generous for a loaded machine).
    assert!(at - run_at < 1000, "started {} ms late", at - run_at);
}

#[tokio::test]
async fn jobs_start_in_priority_then_run_at_order() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut reg = Registry::new();
    let (o, g) = (order.clone(), gate.clone());
    reg.register("t.ordered", move |_, n: i32| {
        let (o, g) = (o.clone(), g.clone());
        async move {
            if n == 0 {
                g.notified().await; // holds the only worker while the rest are enqueued
            }
            o.lock().unwrap().push(n);
            Ok(())
        }
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    let job = |n: i32, prio: i32| {
        NewJob::new("t.ordered", json!(n))
            .queue("one")
            .priority(prio)
    };
    let blocker = env.queue.enqueue(job(0, 0)).await.unwrap().id;
    crate::helpers::eventually("the blocker runs", || async {
        env.queue.get(blocker).await.unwrap().unwrap().state == JobState::Running
    })
    .await;
    let now = now_ms();
    let ids = env
        .queue
        .enqueue_batch(vec![
            job(1, 5),
            job(2, 1).run_at(now - 5),
            job(3, 1).run_at(now - 10),
            job(4, -3),
            job(5, 5),
        ])
        .await
        .unwrap();
    gate.notify_one();
    // Job 5 has the lowest rank: it runs last.
    wait_for(&mut env.events, ids[4].id, is_done).await;
    assert_eq!(*order.lock().unwrap(), vec![0, 4, 3, 2, 1, 5]);
}

#[tokio::test]
async fn complete_with_commits_the_handlers_effect_and_done_together() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut reg = Registry::new();
    let g = gate.clone();
    reg.register("t.effect", move |ctx, n: i64| {
        let g = g.clone();
        async move {
            if n < 0 {
                g.notified().await;
            }
            ctx.complete_with(move |c| {
                c.execute("INSERT INTO effects (n) VALUES (?1)", [n])?;
                Ok(())
            })
            .await
        }
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    env.db
        .write(|c| Ok(c.execute_batch("CREATE TABLE effects (n INTEGER)")?))
        .await
        .unwrap();
    let ok = env
        .queue
        .enqueue(NewJob::new("t.effect", json!(7)))
        .await
        .unwrap()
        .id;
    wait_for(&mut env.events, ok, is_done).await;
    // A job whose lease is taken away behind this process's back (as `securechat jobs
    // cancel` in another process does): its effect must not commit.
    let doomed = env
        .queue
        .enqueue(NewJob::new("t.effect", json!(-1)))
        .await
        .unwrap()
        .id;
    crate::helpers::eventually("it runs", || async {
        env.queue.get(doomed).await.unwrap().unwrap().state == JobState::Running
    })
    .await;
    env.db
        .write(move |c| {
            Ok(c.execute(
                "UPDATE jobs SET state = 'cancelled', lease_token = NULL, \
                 lease_expires_at = NULL, finished_at = 1 WHERE id = ?1",
                [doomed],
            )?)
        })
        .await
        .unwrap();
    gate.notify_one();
    wait_for(&mut env.events, doomed, |o| *o == JobOutcome::LeaseLost).await;
    let effects: Vec<i64> = env
        .db
        .read(|c| {
            let mut st = c.prepare("SELECT n FROM effects")?;
            let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(v)
        })
        .await
        .unwrap();
    assert_eq!(effects, vec![7]);
    let states = (
        env.queue.get(ok).await.unwrap().unwrap().state,
        env.queue.get(doomed).await.unwrap().unwrap().state,
    );
    assert_eq!(states, (JobState::Done, JobState::Cancelled));
}

#[tokio::test]
async fn bad_jobs_are_refused_with_a_clear_reason_and_nothing_is_stored() {
    let mut reg = Registry::new();
    reg.register("t.ok", |_, _: serde_json::Value| async { Ok(()) })
        .unwrap();
    let env = start(config(), reg).await;
    let cases: Vec<(NewJob, &str)> = vec![
        (
            NewJob::new("t.nope", json!(1)),
            "no handler is registered for job kind \"t.nope\"",
        ),
        (NewJob::new("Bad Kind", json!(1)), "must be 1-64 characters"),
        (
            NewJob::new("t.ok", json!(1)).queue("nowhere"),
            "unknown queue \"nowhere\"",
        ),
        (
            NewJob::new("t.ok", json!(1)).queue("_jobs"),
            "unknown queue \"_jobs\"",
        ),
        (
            NewJob::new("t.ok", json!(1)).max_attempts(0),
            "max_attempts must be between 1 and 1000",
        ),
        (
            NewJob::new("t.ok", json!(1)).dedup_key(""),
            "a dedup key is 1-256 bytes",
        ),
        (
            NewJob::new("t.ok", json!("x".repeat(1 << 20))),
            "the most is 1048576",
        ),
    ];
    for (job, why) in cases {
        let err = env.queue.enqueue(job).await.expect_err(why);
        assert!(matches!(err, JobsError::Invalid(_)), "{err}");
        assert!(err.to_string().contains(why), "{err} lacks {why}");
    }
    let err = env
        .queue
        .enqueue_batch(vec![
            NewJob::new("t.ok", json!(1)),
            NewJob::new("t.x", json!(1)),
        ])
        .await
        .expect_err("batch");
    assert!(err.to_string().contains("job #1"), "{err}");
    assert!(env
        .queue
        .list(None, None, 10)
        .await
        .unwrap()
        .iter()
        .all(|j| j.kind != "t.ok"));
    let mut dup = Registry::new();
    dup.register("t.a", |_, _: serde_json::Value| async { Ok(()) })
        .unwrap();
    let err = dup
        .register("t.a", |_, _: serde_json::Value| async { Ok(()) })
        .err()
        .expect("twice");
    assert!(err.to_string().contains("registered twice"), "{err}");
    let err = Registry::new()
        .register("jobs.mine", |_, _: serde_json::Value| async { Ok(()) })
        .err()
        .expect("reserved");
    assert!(err.to_string().contains("reserved"), "{err}");
}
