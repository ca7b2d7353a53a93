//! Operations: periodic jobs, graceful shutdown, pruning, no SQL while idle, metrics.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use securechat::config::Synchronous;
use securechat::jobs::{
    metrics::render_prometheus, JobOutcome, JobState, NewJob, Periodic, Queue, Registry,
    ShutdownReport, INTERNAL_QUEUE,
};
use serde_json::json;

use crate::helpers::{config, eventually, is_done, open_db, start, wait_for, wait_for_each};

async fn live_periodic(queue: &Queue, kind: &str) -> usize {
    let mut n = 0;
    for st in [JobState::Available, JobState::Running] {
        n += queue
            .list(Some(st), None, 100)
            .await
            .expect("list")
            .iter()
            .filter(|j| j.kind == kind)
            .count();
    }
    n
}

#[tokio::test]
async fn a_periodic_job_runs_every_interval_with_one_live_instance() {
    let runs = Arc::new(AtomicU32::new(0));
    let reg = || {
        let mut reg = Registry::new();
        let r = runs.clone();
        reg.register_periodic(
            Periodic::new("t.tick", Duration::from_millis(150)).payload(json!({"scope": "all"})),
            move |_, p: serde_json::Value| {
                let r = r.clone();
                async move {
                    assert_eq!(p, json!({"scope": "all"}));
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .unwrap();
        reg
    };
    let env = start(config(), reg()).await;
    eventually("three runs", || async { runs.load(Ordering::SeqCst) >= 3 }).await;
    assert_eq!(live_periodic(&env.queue, "t.tick").await, 1);
    let done = env
        .queue
        .list(Some(JobState::Done), None, 100)
        .await
        .unwrap();
    let mut at: Vec<i64> = done
        .iter()
        .filter(|j| j.kind == "t.tick")
        .map(|j| j.run_at)
        .collect();
    at.sort_unstable();
    for w in at.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap > 0 && gap % 150 == 0, "on a fixed schedule: {at:?}");
    }
    // An ad-hoc enqueue of the periodic kind with its key joins the live instance.
    let dup = env
        .queue
        .enqueue(NewJob::new("t.tick", json!({"scope": "all"})).dedup_key("periodic:t.tick"))
        .await
        .unwrap();
    assert!(dup.existing);
    // A restart keeps the one instance: start-up's ensure finds it.
    env.queue.shutdown(Duration::from_secs(1)).await;
    let again = Queue::new(env.db.clone(), &config(), reg()).unwrap();
    again.start().await.unwrap();
    assert_eq!(live_periodic(&again, "t.tick").await, 1);
    let before = runs.load(Ordering::SeqCst);
    eventually("it keeps ticking", || async {
        runs.load(Ordering::SeqCst) >= before + 2
    })
    .await;
    assert_eq!(live_periodic(&again, "t.tick").await, 1);
    again.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_stops_claiming_lets_jobs_finish_then_releases_the_rest() {
    let mut reg = Registry::new();
    reg.register("t.quick", |_, _: serde_json::Value| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    })
    .unwrap();
    reg.register("t.stuck", |_, _: serde_json::Value| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(())
    })
    .unwrap();
    let mut env = start(config(), reg).await;
    // The start-up run of `jobs.prune` must be over first: claimed late on a slow machine, it
    // finished during the drain and counted in the report (finished: 2).
    eventually("the start-up prune has run", || async {
        env.queue
            .totals_of(INTERNAL_QUEUE)
            .is_some_and(|t| t.done >= 1)
    })
    .await;
    let quick = env
        .queue
        .enqueue(NewJob::new("t.quick", json!(1)))
        .await
        .unwrap()
        .id;
    let stuck = env
        .queue
        .enqueue(NewJob::new("t.stuck", json!(1)))
        .await
        .unwrap()
        .id;
    eventually("both run", || async {
        env.queue
            .list(Some(JobState::Running), None, 10)
            .await
            .unwrap()
            .len()
            == 2
    })
    .await;
    let q = env.queue.clone();
    let stopping = tokio::spawn(async move { q.shutdown(Duration::from_secs(2)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Enqueued during the drain: stored, but not claimed any more.
    let late = env
        .queue
        .enqueue(NewJob::new("t.quick", json!(2)))
        .await
        .unwrap()
        .id;
    let report = stopping.await.unwrap();
    assert_eq!(
        report,
        ShutdownReport {
            finished: 1,
            released: 1
        }
    );
    // The two events may come in either order (under load the release of the stuck job was
    // published before the quick job's ack, and a wait for one skipped the other).
    wait_for_each(
        &mut env.events,
        &[
            (quick, &is_done),
            (stuck, &|o: &JobOutcome| *o == JobOutcome::Released),
        ],
    )
    .await;
    let rec = env.queue.get(stuck).await.unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempt),
        (JobState::Available, 0),
        "released, attempt not counted"
    );
    assert_eq!(
        env.queue.get(late).await.unwrap().unwrap().state,
        JobState::Available
    );
}

#[tokio::test]
async fn prune_deletes_old_done_jobs_periodically_in_small_batches() {
    let mut reg = Registry::new();
    reg.register("t.noop", |_, _: serde_json::Value| async { Ok(()) })
        .unwrap();
    let mut cfg = config();
    cfg.prune_done_after_secs = 1;
    cfg.prune_interval_secs = 1;
    cfg.prune_batch = 40;
    let mut env = start(cfg, reg).await;
    let jobs: Vec<NewJob> = (0..230).map(|i| NewJob::new("t.noop", json!(i))).collect();
    let ids = env.queue.enqueue_batch(jobs).await.unwrap();
    wait_for(&mut env.events, ids[229].id, is_done).await;
    eventually("old done jobs pruned", || async {
        env.queue
            .counts()
            .await
            .unwrap()
            .iter()
            .all(|c| c.queue != "default" || c.done == 0)
    })
    .await;
    // Many small transactions, not one big one.
    let w = env.db.writer().stats();
    assert!(w.transactions > 230 / 40, "{w:?}");
}

#[tokio::test]
async fn an_idle_queue_runs_no_sql_at_all() {
    let mut reg = Registry::new();
    reg.register("t.noop", |_, _: serde_json::Value| async { Ok(()) })
        .unwrap();
    let mut cfg = config();
    cfg.lease_secs = 1;
    let mut env = start(cfg, reg).await;
    let ids = env
        .queue
        .enqueue_batch((0..50).map(|i| NewJob::new("t.noop", json!(i))).collect())
        .await
        .unwrap();
    wait_for(&mut env.events, ids[49].id, is_done).await;
    // Let the last round and the reaper's one look after the last lease settle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (writes, reads) = (env.db.writer().stats(), env.queue.reads_issued());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.db.writer().stats(), writes, "no write while idle");
    assert_eq!(env.queue.reads_issued(), reads, "no read while idle");
    // And it still wakes at once for new work.
    let t = std::time::Instant::now();
    let id = env
        .queue
        .enqueue(NewJob::new("t.noop", json!(1)))
        .await
        .unwrap()
        .id;
    wait_for(&mut env.events, id, is_done).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn metrics_show_states_ages_counters_and_histograms() {
    let mut reg = Registry::new();
    reg.register("t.noop", |_, _: serde_json::Value| async { Ok(()) })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path(), Synchronous::Normal).await;
    let queue = Queue::new(db, &config(), reg).unwrap();
    let mut events = queue.subscribe();
    let old = securechat::db::now_ms() - 5_000;
    queue
        .enqueue(NewJob::new("t.noop", json!(1)).queue("one").run_at(old))
        .await
        .unwrap();
    let text = render_prometheus(&queue).await.unwrap();
    assert!(
        text.contains("securechat_jobs{queue=\"one\",state=\"available\"} 1"),
        "{text}"
    );
    let age_line = text
        .lines()
        .find(|l| l.starts_with("securechat_jobs_oldest_available_age_seconds{queue=\"one\"}"))
        .expect("age line");
    let age: f64 = age_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((5.0..60.0).contains(&age), "{age_line}");
    queue.start().await.unwrap();
    let id = queue.list(None, Some("one".into()), 1).await.unwrap()[0].id;
    wait_for(&mut events, id, is_done).await;
    let text = render_prometheus(&queue).await.unwrap();
    for want in [
        "securechat_jobs{queue=\"one\",state=\"done\"} 1",
        "securechat_jobs_oldest_available_age_seconds{queue=\"one\"} 0",
        "securechat_jobs_enqueued_total{queue=\"one\"} 1",
        "securechat_jobs_started_total{queue=\"one\"} 1",
        "securechat_jobs_done_total{queue=\"one\"} 1",
        "securechat_jobs_duration_seconds_count{queue=\"one\"} 1",
        "securechat_jobs_wait_seconds_bucket{le=\"+Inf\",queue=\"one\"} 1",
        "securechat_jobs_finished_attempt_bucket{le=\"1.0\",queue=\"one\"} 1",
        "# TYPE securechat_jobs_duration_seconds histogram",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("not OpenMetrics: {e:?}\n{text}"));
    let totals = queue.totals();
    assert!(totals.enqueued >= 1 && totals.done >= 1, "{totals:?}");
}
