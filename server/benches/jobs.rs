//! The job queue benchmark: `cargo bench -p securechat --bench jobs`.
//!
//! For `synchronous = FULL` and `NORMAL`, each run measures on a fresh database file:
//! - enqueue, 64 concurrent callers, one job per call (`Queue::enqueue`);
//! - enqueue, batch form (`Queue::enqueue_batch`, 4 callers x 500-job batches);
//! - one `enqueue_batch` call of 20,000 no-op jobs on a fresh database (the queue not
//!   started: the insert path alone), against the same rows inserted by hand with one
//!   prepared statement in one transaction (`BENCH_ONLY=batch` runs this pair alone, five
//!   times per mode and run, and prints the medians);
//! - the ceiling of plain rusqlite inserting the same rows into the same table (one
//!   connection, prepared statement, 500 rows per transaction);
//! - processing 20,000 no-op jobs at concurrency 8 (claim + fenced ack), from `start()` to
//!   the last ack committed;
//! - the ceiling of plain rusqlite claiming and acking the same rows by hand in batches of 8
//!   (the same claim and fenced-ack statements): "split" commits the claim and the acks
//!   separately (2 transactions per 8 jobs), "combined" acks a batch and claims the next in
//!   one transaction (as the queue's rounds do);
//! - enqueue-to-start latency at a steady 200 jobs/s (1,000 jobs), measured from just before
//!   `enqueue` is called (and, second figure, from when it returned) to the handler's start,
//!   and its floor by hand: one rusqlite transaction inserting and claiming the job;
//! - the writer's shape by hand: 32 inserts per transaction (the batches 64 callers form),
//!   plain, then each in its own SAVEPOINT (parsed each time, or cached), as the writer ran
//!   every operation before 2c3b6e1 (now only a re-run batch does).
//!
//! Hand-written statements bind their LIMIT as `LIMIT +?N`, as the queue's do (db/mod.rs):
//! a bare `LIMIT ?N` would make them re-prepare at every execution.
//!
//! Env: BENCH_RUNS (default 3), BENCH_ONLY (latency, enqueue, shape, process, batch: one
//! scenario alone), BENCH_DIR (default the system temp dir — put it on the disk
//! you want to measure; FULL is only meaningful on a real disk).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use securechat::config::{JobsConfig, StorageConfig, Synchronous};
use securechat::db::{now_ms, Db};
use securechat::jobs::{NewJob, Queue, Registry};
use serde_json::json;

const CALLERS: usize = 64;
const SINGLE_PER_CALLER: usize = 1_000;
const BATCH_CALLERS: usize = 4;
const BATCH_SIZE: usize = 500;
const BATCHES_PER_CALLER: usize = 100;
const ONE_BATCH: usize = 20_000;
const PROCESS_JOBS: usize = 20_000;
const CONCURRENCY: usize = 8;
const LATENCY_JOBS: usize = 1_000;
const LATENCY_RATE: u64 = 200;

fn storage(dir: &std::path::Path, sync: Synchronous) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_owned(),
        synchronous: sync,
        ..StorageConfig::default()
    }
}

fn jobs_config() -> JobsConfig {
    JobsConfig {
        workers: [("bench".to_string(), CONCURRENCY as u32)]
            .into_iter()
            .collect(),
        ..JobsConfig::default()
    }
}

struct Fresh {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    db: Db,
    sync: Synchronous,
}

async fn fresh(sync: Synchronous) -> Fresh {
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let path = dir.path().join("bench.db");
    let db = Db::open(&path, &storage(dir.path(), sync))
        .await
        .expect("open");
    Fresh {
        _dir: dir,
        path,
        db,
        sync,
    }
}

fn noop_registry() -> Registry {
    let mut reg = Registry::new();
    reg.register("b.noop", |_, _: serde_json::Value| async { Ok(()) })
        .expect("register");
    reg
}

fn job(n: usize) -> NewJob {
    NewJob::new("b.noop", json!({ "n": n })).queue("bench")
}

/// 64 callers, one job per call. Returns jobs/s and the mean jobs per transaction.
async fn enqueue_single(sync: Synchronous) -> (f64, f64) {
    let f = fresh(sync).await;
    let q = Queue::new(f.db.clone(), &jobs_config(), noop_registry()).expect("queue");
    let before = f.db.writer().stats();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CALLERS {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..SINGLE_PER_CALLER {
                q.enqueue(job(c * SINGLE_PER_CALLER + i))
                    .await
                    .expect("enqueue");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    let secs = t.elapsed().as_secs_f64();
    let after = f.db.writer().stats();
    let per_tx = (after.operations - before.operations) as f64
        / (after.transactions - before.transactions).max(1) as f64;
    ((CALLERS * SINGLE_PER_CALLER) as f64 / secs, per_tx)
}

async fn enqueue_batch(sync: Synchronous) -> f64 {
    let f = fresh(sync).await;
    let q = Queue::new(f.db.clone(), &jobs_config(), noop_registry()).expect("queue");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..BATCH_CALLERS {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES_PER_CALLER {
                let base = (c * BATCHES_PER_CALLER + b) * BATCH_SIZE;
                let batch = (0..BATCH_SIZE).map(|i| job(base + i)).collect();
                q.enqueue_batch(batch).await.expect("batch");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    (BATCH_CALLERS * BATCHES_PER_CALLER * BATCH_SIZE) as f64 / t.elapsed().as_secs_f64()
}

/// One `enqueue_batch` call of 20,000 no-op jobs on a fresh database, the queue not started
/// (no worker competes for the writer); jobs/s from the call to its answer. The jobs are
/// built before the clock starts; turning their payloads into JSON text is timed, as it is
/// by hand.
async fn one_batch(sync: Synchronous) -> f64 {
    let f = fresh(sync).await;
    let q = Queue::new(f.db.clone(), &jobs_config(), noop_registry()).expect("queue");
    let jobs: Vec<NewJob> = (0..ONE_BATCH).map(job).collect();
    let t = Instant::now();
    let out = q.enqueue_batch(jobs).await.expect("batch");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.iter().filter(|o| !o.existing).count(), ONE_BATCH);
    ONE_BATCH as f64 / secs
}

/// The same 20,000 rows by hand on a fresh database: one connection, one prepared statement
/// (the queue's columns), one transaction; rows/s from BEGIN to COMMIT.
async fn one_batch_by_hand(sync: Synchronous) -> f64 {
    let f = fresh(sync).await;
    let payloads: Vec<serde_json::Value> = (0..ONE_BATCH).map(|n| json!({ "n": n })).collect();
    tokio::task::spawn_blocking(move || {
        let c = raw_connection(&f);
        let t = Instant::now();
        c.execute_batch("BEGIN IMMEDIATE").expect("begin");
        {
            let mut st = c
                .prepare(
                    "INSERT INTO jobs (queue, kind, payload, state, priority, run_at, \
                     max_attempts, dedup_key, created_at) \
                     VALUES (?1, ?2, ?3, 'available', ?4, ?5, ?6, ?7, ?8)",
                )
                .expect("prepare");
            for p in &payloads {
                let now = now_ms();
                st.execute(params![
                    "bench",
                    "b.noop",
                    p.to_string(),
                    0,
                    now,
                    5,
                    None::<String>,
                    now
                ])
                .expect("insert");
            }
        }
        c.execute_batch("COMMIT").expect("commit");
        ONE_BATCH as f64 / t.elapsed().as_secs_f64()
    })
    .await
    .expect("join")
}

fn raw_connection(f: &Fresh) -> Connection {
    securechat::db::open_write_connection(&f.path, &storage(f.path.parent().expect("dir"), f.sync))
        .expect("raw connection")
}

/// Plain rusqlite: the same rows, one connection, 500 per transaction.
async fn ceiling_insert(sync: Synchronous) -> f64 {
    let f = fresh(sync).await;
    let total = BATCH_CALLERS * BATCHES_PER_CALLER * BATCH_SIZE;
    tokio::task::spawn_blocking(move || {
        let c = raw_connection(&f);
        let t = Instant::now();
        let mut n = 0;
        while n < total {
            c.execute_batch("BEGIN IMMEDIATE").expect("begin");
            {
                let mut st = c
                    .prepare_cached(
                        "INSERT INTO jobs (queue, kind, payload, state, priority, run_at, \
                         max_attempts, created_at) VALUES (?1, ?2, ?3, 'available', 0, ?4, 5, ?4)",
                    )
                    .expect("prepare");
                for _ in 0..BATCH_SIZE {
                    let payload = json!({ "n": n }).to_string();
                    st.execute(params!["bench", "b.noop", payload, now_ms()])
                        .expect("insert");
                    n += 1;
                }
            }
            c.execute_batch("COMMIT").expect("commit");
        }
        total as f64 / t.elapsed().as_secs_f64()
    })
    .await
    .expect("join")
}

/// The writer's shape by hand: `per_tx` inserts per transaction, each in its own SAVEPOINT
/// (`savepoints`: 0 none, 1 parsed each time as the writer does, 2 prepared once and cached).
async fn raw_insert_shaped(sync: Synchronous, per_tx: usize, savepoints: u8) -> f64 {
    raw_insert_shaped_as(sync, per_tx, savepoints, true).await
}

async fn raw_insert_shaped_as(
    sync: Synchronous,
    per_tx: usize,
    savepoints: u8,
    returning: bool,
) -> f64 {
    let f = fresh(sync).await;
    let total = CALLERS * SINGLE_PER_CALLER;
    const INSERT: &str = "INSERT INTO jobs (queue, kind, payload, state, priority, run_at, \
                          max_attempts, created_at) VALUES (?1, ?2, ?3, 'available', 0, ?4, 5, ?4)";
    let insert_returning = format!("{INSERT} RETURNING id");
    tokio::task::spawn_blocking(move || {
        let c = raw_connection(&f);
        let step = |sql: &str| match savepoints {
            1 => c.execute_batch(sql).expect("savepoint"),
            2 => {
                c.prepare_cached(sql)
                    .and_then(|mut s| s.execute([]))
                    .expect("savepoint");
            }
            _ => {}
        };
        let t = Instant::now();
        let mut n = 0;
        while n < total {
            c.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for _ in 0..per_tx {
                step("SAVEPOINT op");
                let payload = json!({ "n": n }).to_string();
                if returning {
                    c.prepare_cached(&insert_returning)
                        .and_then(|mut st| {
                            st.query_row(params!["bench", "b.noop", payload, now_ms()], |r| {
                                r.get::<_, i64>(0)
                            })
                        })
                        .expect("insert");
                } else {
                    c.prepare_cached(INSERT)
                        .and_then(|mut st| {
                            st.execute(params!["bench", "b.noop", payload, now_ms()])
                        })
                        .expect("insert");
                    std::hint::black_box(c.last_insert_rowid());
                }
                step("RELEASE op");
                n += 1;
            }
            c.execute_batch("COMMIT").expect("commit");
        }
        total as f64 / t.elapsed().as_secs_f64()
    })
    .await
    .expect("join")
}

/// The floor of enqueue-to-start by hand: at 200/s, one transaction inserts the job and
/// claims it (what the queue's direct dispatch commits), on a dedicated connection with no
/// thread in between; the job is acked in a second transaction as the queue's round does.
/// Returns (p50, p99) in µs of the first transaction.
async fn latency_floor(sync: Synchronous) -> (f64, f64) {
    let f = fresh(sync).await;
    tokio::task::spawn_blocking(move || {
        let c = raw_connection(&f);
        let mut lat = Vec::with_capacity(LATENCY_JOBS);
        let period = Duration::from_micros(1_000_000 / LATENCY_RATE);
        let mut next = Instant::now() + period;
        for i in 0..LATENCY_JOBS {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            next += period;
            let t = Instant::now();
            let now = now_ms();
            c.execute_batch("BEGIN IMMEDIATE").expect("begin");
            c.prepare_cached(
                "INSERT INTO jobs (queue, kind, payload, state, priority, run_at, max_attempts, \
                 created_at) VALUES ('bench', 'b.noop', ?1, 'available', 0, ?2, 5, ?2)",
            )
            .and_then(|mut st| st.execute(params![json!({ "n": i }).to_string(), now]))
            .expect("insert");
            let claimed: Vec<i64> = c
                .prepare_cached(
                    "UPDATE jobs SET state = 'running', attempt = attempt + 1, \
                     lease_token = random(), lease_expires_at = ?2 + 60000, started_at = ?2 \
                     WHERE id IN (SELECT id FROM jobs WHERE queue = 'bench' \
                     AND state = 'available' AND run_at <= ?2 ORDER BY priority, run_at, id \
                     LIMIT +?1) RETURNING id",
                )
                .and_then(|mut st| {
                    st.query_map(params![CONCURRENCY as i64, now], |r| r.get(0))?
                        .collect()
                })
                .expect("claim");
            c.execute_batch("COMMIT").expect("commit");
            lat.push(t.elapsed().as_nanos() as u64);
            c.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for id in claimed {
                c.prepare_cached(
                    "UPDATE jobs SET state = 'done', lease_token = NULL, \
                     lease_expires_at = NULL, finished_at = ?2 WHERE id = ?1",
                )
                .and_then(|mut st| st.execute(params![id, now_ms()]))
                .expect("ack");
            }
            c.execute_batch("COMMIT").expect("commit");
        }
        percentiles(lat)
    })
    .await
    .expect("join")
}

async fn backlog(f: &Fresh, n: usize) {
    let q = Queue::new(f.db.clone(), &jobs_config(), noop_registry()).expect("queue");
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        q.enqueue_batch(chunk.iter().map(|&i| job(i)).collect())
            .await
            .expect("backlog");
    }
}

/// The queue: 20,000 no-op jobs at concurrency 8, start() to the last ack.
async fn process(sync: Synchronous) -> (f64, f64) {
    let f = fresh(sync).await;
    backlog(&f, PROCESS_JOBS).await;
    let q = Queue::new(f.db.clone(), &jobs_config(), noop_registry()).expect("queue");
    let before = f.db.writer().stats();
    let t = Instant::now();
    q.start().await.expect("start");
    loop {
        let done = q.totals_of("bench").map_or(0, |t| t.done) as usize;
        if done >= PROCESS_JOBS {
            break;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let rate = PROCESS_JOBS as f64 / t.elapsed().as_secs_f64();
    let after = f.db.writer().stats();
    q.shutdown(Duration::from_secs(5)).await;
    let per_tx = PROCESS_JOBS as f64 / (after.transactions - before.transactions).max(1) as f64;
    (rate, per_tx)
}

/// Plain rusqlite claim + fenced ack by hand, batches of 8; `combined` = 1 transaction per
/// batch (ack previous + claim next), else 2 (claim, then acks).
async fn ceiling_process(sync: Synchronous, combined: bool) -> f64 {
    let f = fresh(sync).await;
    backlog(&f, PROCESS_JOBS).await;
    tokio::task::spawn_blocking(move || {
        let c = raw_connection(&f);
        let claim = |c: &Connection| -> Vec<(i64, i64)> {
            let now = now_ms();
            let mut st = c
                .prepare_cached(
                    "UPDATE jobs SET state = 'running', attempt = attempt + 1, \
                     lease_token = random(), lease_expires_at = ?3, started_at = ?2 \
                     WHERE id IN (SELECT id FROM jobs WHERE queue = ?1 AND state = 'available' \
                     AND run_at <= ?2 ORDER BY priority, run_at, id LIMIT +?4) \
                     RETURNING id, lease_token",
                )
                .expect("prepare");
            st.query_map(
                params!["bench", now, now + 60_000, CONCURRENCY as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("claim")
            .collect::<Result<_, _>>()
            .expect("rows")
        };
        let ack = |c: &Connection, held: &[(i64, i64)]| {
            let mut st = c
                .prepare_cached(
                    "UPDATE jobs SET state = 'done', lease_token = NULL, lease_expires_at = NULL, \
                     finished_at = ?3 WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
                )
                .expect("prepare");
            for (id, token) in held {
                assert_eq!(st.execute(params![id, token, now_ms()]).expect("ack"), 1);
            }
        };
        let t = Instant::now();
        let mut done = 0;
        let mut held: Vec<(i64, i64)> = Vec::new();
        loop {
            c.execute_batch("BEGIN IMMEDIATE").expect("begin");
            if combined {
                ack(&c, &held);
                done += held.len();
                held = claim(&c);
                c.execute_batch("COMMIT").expect("commit");
                if held.is_empty() {
                    break;
                }
            } else {
                held = claim(&c);
                c.execute_batch("COMMIT").expect("commit");
                if held.is_empty() {
                    break;
                }
                c.execute_batch("BEGIN IMMEDIATE").expect("begin");
                ack(&c, &held);
                c.execute_batch("COMMIT").expect("commit");
                done += held.len();
            }
        }
        assert_eq!(done, PROCESS_JOBS);
        done as f64 / t.elapsed().as_secs_f64()
    })
    .await
    .expect("join")
}

/// Steady 200 jobs/s; returns (p50, p99) in µs from before `enqueue` to the handler's start,
/// and the same from when `enqueue` returned.
async fn latency(sync: Synchronous) -> ((f64, f64), (f64, f64)) {
    let f = fresh(sync).await;
    let base = Instant::now();
    let starts: Arc<Mutex<HashMap<i64, u64>>> = Arc::default();
    let started = Arc::new(AtomicUsize::new(0));
    let mut reg = Registry::new();
    let (s, n) = (starts.clone(), started.clone());
    reg.register("b.timed", move |ctx, _: serde_json::Value| {
        let at = base.elapsed().as_nanos() as u64;
        s.lock().expect("lock").insert(ctx.id(), at);
        n.fetch_add(1, Ordering::Release);
        async { Ok(()) }
    })
    .expect("register");
    let q = Queue::new(f.db.clone(), &jobs_config(), reg).expect("queue");
    q.start().await.expect("start");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sent: Vec<(i64, u64, u64)> = Vec::with_capacity(LATENCY_JOBS);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..LATENCY_JOBS {
        tick.tick().await;
        let before = base.elapsed().as_nanos() as u64;
        let id = q
            .enqueue(NewJob::new("b.timed", json!({ "n": i })).queue("bench"))
            .await
            .expect("enqueue")
            .id;
        let acked = base.elapsed().as_nanos() as u64;
        sent.push((id, before, acked));
    }
    while started.load(Ordering::Acquire) < LATENCY_JOBS {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    q.shutdown(Duration::from_secs(5)).await;
    let starts = starts.lock().expect("lock");
    let mut from_call: Vec<u64> = Vec::new();
    let mut from_ack: Vec<u64> = Vec::new();
    for (id, before, acked) in sent {
        let s = starts[&id];
        from_call.push(s.saturating_sub(before));
        from_ack.push(s.saturating_sub(acked));
    }
    (percentiles(from_call), percentiles(from_ack))
}

fn percentiles(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1)] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

#[derive(Default)]
struct Series(Vec<f64>);

impl Series {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }
    fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }
    fn median(&self) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            f64::NAN
        } else {
            v[v.len() / 2]
        }
    }
    fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

#[derive(Default)]
struct Results {
    single: Series,
    per_tx: Series,
    batch: Series,
    ceil_insert: Series,
    one_batch: Series,
    one_batch_hand: Series,
    process: Series,
    process_per_tx: Series,
    ceil_split: Series,
    ceil_combined: Series,
    p50: Series,
    p99: Series,
    p50_ack: Series,
    p99_ack: Series,
    floor_p50: Series,
    floor_p99: Series,
    shaped_plain: Series,
    shaped_sp: Series,
    shaped_sp_cached: Series,
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let modes = [("FULL", Synchronous::Full), ("NORMAL", Synchronous::Normal)];
    let mut results: Vec<Results> = modes.iter().map(|_| Results::default()).collect();
    if std::env::var("BENCH_ONLY").as_deref() == Ok("latency") {
        for _ in 0..runs {
            for sync in [Synchronous::Full, Synchronous::Normal] {
                let ((p50, p99), (p50a, p99a)) = rt.block_on(latency(sync));
                println!("{sync:?}: p50 {p50:.0} us p99 {p99:.0} us; from ack p50 {p50a:.0} p99 {p99a:.0}");
            }
        }
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("enqueue") {
        // For A/B runs of the writer: 64 callers against the same rows by hand at 32 and 64
        // per transaction and the 500-row batched insert, both modes.
        for _ in 0..runs {
            for (name, sync) in modes {
                let (rate, per_tx) = rt.block_on(enqueue_single(sync));
                let by32 = rt.block_on(raw_insert_shaped(sync, 32, 2));
                let by64 = rt.block_on(raw_insert_shaped(sync, 64, 2));
                let ceil = rt.block_on(ceiling_insert(sync));
                println!(
                    "{name:<6} single {rate:>7.0}/s ({per_tx:.1} per tx) = {:.0}% of 500/tx {ceil:.0}/s; \
                     by hand 32/tx {by32:.0}/s, 64/tx {by64:.0}/s",
                    100.0 * rate / ceil
                );
            }
        }
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("shape") {
        for _ in 0..runs {
            for (name, sync) in modes {
                let ret = rt.block_on(raw_insert_shaped_as(sync, 32, 2, true));
                let rowid = rt.block_on(raw_insert_shaped_as(sync, 32, 2, false));
                let bare = rt.block_on(raw_insert_shaped_as(sync, 32, 0, false));
                let ceil = rt.block_on(ceiling_insert(sync));
                println!(
                    "{name:<6} 32/tx savepoint+RETURNING {ret:.0}/s, savepoint+rowid {rowid:.0}/s, \
                     bare rowid {bare:.0}/s; 500/tx {ceil:.0}/s"
                );
            }
        }
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("batch") {
        // Each measurement lasts 50-200 ms, so one descheduled thread moves it a lot on a
        // shared machine: a run alternates BATCH_PAIRS pairs per mode and reports the
        // medians (every pair is printed too).
        const BATCH_PAIRS: usize = 5;
        for run in 1..=runs {
            for (name, sync) in modes {
                let (mut ours, mut hand) = (Series::default(), Series::default());
                for _ in 0..BATCH_PAIRS {
                    ours.push(rt.block_on(one_batch(sync)));
                    hand.push(rt.block_on(one_batch_by_hand(sync)));
                }
                let pairs: Vec<String> = ours
                    .0
                    .iter()
                    .zip(&hand.0)
                    .map(|(o, h)| format!("{o:.0}/{h:.0}"))
                    .collect();
                println!(
                    "run {run} {name:<6} one enqueue_batch of {ONE_BATCH}: median {:>7.0} jobs/s; \
                     by hand (1 statement, 1 txn) median {:>7.0} rows/s; ratio {:.2} \
                     (pairs ours/by hand: {})",
                    ours.median(),
                    hand.median(),
                    ours.median() / hand.median(),
                    pairs.join(", ")
                );
            }
        }
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("process") {
        // For profiling: the processing scenario alone, NORMAL.
        for _ in 0..runs {
            let (rate, per_tx) = rt.block_on(process(Synchronous::Normal));
            println!("process {rate:.0}/s ({per_tx:.1} per tx)");
        }
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("securechat job queue benchmark: {runs} runs, {cores} cores");
    for run in 1..=runs {
        for (m, (name, sync)) in modes.iter().enumerate() {
            let r = &mut results[m];
            let t = Instant::now();
            let (single, single_per_tx) = rt.block_on(enqueue_single(*sync));
            r.single.push(single);
            r.per_tx.push(single_per_tx);
            r.batch.push(rt.block_on(enqueue_batch(*sync)));
            r.ceil_insert.push(rt.block_on(ceiling_insert(*sync)));
            r.one_batch.push(rt.block_on(one_batch(*sync)));
            r.one_batch_hand.push(rt.block_on(one_batch_by_hand(*sync)));
            let (rate, per_tx) = rt.block_on(process(*sync));
            r.process.push(rate);
            r.process_per_tx.push(per_tx);
            r.ceil_split
                .push(rt.block_on(ceiling_process(*sync, false)));
            r.ceil_combined
                .push(rt.block_on(ceiling_process(*sync, true)));
            let ((p50, p99), (p50a, p99a)) = rt.block_on(latency(*sync));
            r.p50.push(p50);
            r.p99.push(p99);
            r.p50_ack.push(p50a);
            r.p99_ack.push(p99a);
            let (f50, f99) = rt.block_on(latency_floor(*sync));
            r.floor_p50.push(f50);
            r.floor_p99.push(f99);
            r.shaped_plain
                .push(rt.block_on(raw_insert_shaped(*sync, 32, 0)));
            r.shaped_sp
                .push(rt.block_on(raw_insert_shaped(*sync, 32, 1)));
            r.shaped_sp_cached
                .push(rt.block_on(raw_insert_shaped(*sync, 32, 2)));
            println!(
                "run {run} {name:<6}: single {single:>8.0}/s ({single_per_tx:.1} per tx), batch {:>8.0}/s, \
                 raw insert {:>8.0}/s, one batch of 20k {:>8.0}/s (by hand {:>8.0}/s), process {:>7.0}/s ({:.1} per tx), raw split {:>7.0}/s, raw combined {:>7.0}/s, \
                 latency p50 {p50:.0} us p99 {p99:.0} us (floor {:.0}/{:.0}), \
                 32/tx raw {:.0}/s, +savepoints {:.0}/s, +cached savepoints {:.0}/s ({:.1} s)",
                r.batch.0[run - 1],
                r.ceil_insert.0[run - 1],
                r.one_batch.0[run - 1],
                r.one_batch_hand.0[run - 1],
                r.process.0[run - 1],
                r.process_per_tx.0[run - 1],
                r.ceil_split.0[run - 1],
                r.ceil_combined.0[run - 1],
                r.floor_p50.0[run - 1],
                r.floor_p99.0[run - 1],
                r.shaped_plain.0[run - 1],
                r.shaped_sp.0[run - 1],
                r.shaped_sp_cached.0[run - 1],
                t.elapsed().as_secs_f64()
            );
        }
    }
    println!();
    println!("| metric | sync | min | median | max |");
    println!("|---|---|---:|---:|---:|");
    let row = |label: &str, mode: &str, s: &Series, unit: &str| {
        println!(
            "| {label} | {mode} | {:.0}{unit} | {:.0}{unit} | {:.0}{unit} |",
            s.min(),
            s.median(),
            s.max()
        );
    };
    for (m, (name, _)) in modes.iter().enumerate() {
        let r = &results[m];
        row(
            "enqueue, 64 callers x 1 job/call (jobs/s)",
            name,
            &r.single,
            "",
        );
        row("enqueue, batch form (jobs/s)", name, &r.batch, "");
        row(
            "ceiling: rusqlite batched insert (rows/s)",
            name,
            &r.ceil_insert,
            "",
        );
        row(
            "one enqueue_batch of 20k, fresh db (jobs/s)",
            name,
            &r.one_batch,
            "",
        );
        row(
            "by hand: 20k rows, 1 statement, 1 txn, fresh db (rows/s)",
            name,
            &r.one_batch_hand,
            "",
        );
        row(
            "process 20k no-op, concurrency 8 (jobs/s)",
            name,
            &r.process,
            "",
        );
        row(
            "ceiling: rusqlite claim txn + ack txn, batch 8 (jobs/s)",
            name,
            &r.ceil_split,
            "",
        );
        row(
            "ceiling: rusqlite ack+claim in one txn, batch 8 (jobs/s)",
            name,
            &r.ceil_combined,
            "",
        );
        row("enqueue-to-start p50 at 200/s (us)", name, &r.p50, "");
        row("enqueue-to-start p99 at 200/s (us)", name, &r.p99, "");
        row(
            "enqueue-ack-to-start p50 at 200/s (us)",
            name,
            &r.p50_ack,
            "",
        );
        row(
            "enqueue-ack-to-start p99 at 200/s (us)",
            name,
            &r.p99_ack,
            "",
        );
        row(
            "floor: rusqlite insert+claim in one txn, p50 at 200/s (us)",
            name,
            &r.floor_p50,
            "",
        );
        row(
            "floor: rusqlite insert+claim in one txn, p99 at 200/s (us)",
            name,
            &r.floor_p99,
            "",
        );
        row(
            "writer shape: rusqlite 32 inserts/txn (rows/s)",
            name,
            &r.shaped_plain,
            "",
        );
        row(
            "writer shape: + SAVEPOINT/RELEASE per row, parsed (rows/s)",
            name,
            &r.shaped_sp,
            "",
        );
        row(
            "writer shape: + SAVEPOINT/RELEASE per row, cached (rows/s)",
            name,
            &r.shaped_sp_cached,
            "",
        );
    }
    println!();
    println!("| ratio (medians) | sync | ours / ceiling |");
    println!("|---|---|---:|");
    for (m, (name, _)) in modes.iter().enumerate() {
        let r = &results[m];
        let pct = |a: &Series, b: &Series| 100.0 * a.median() / b.median();
        println!(
            "| enqueue 64 callers / batched insert | {name} | {:.0}% |",
            pct(&r.single, &r.ceil_insert)
        );
        println!(
            "| enqueue 64 callers / 32 inserts per txn, each in a savepoint (the writer's shape) | {name} | {:.0}% |",
            pct(&r.single, &r.shaped_sp)
        );
        println!(
            "| enqueue batch form / batched insert | {name} | {:.0}% |",
            pct(&r.batch, &r.ceil_insert)
        );
        println!(
            "| one enqueue_batch of 20k / the same rows by hand | {name} | {:.0}% |",
            pct(&r.one_batch, &r.one_batch_hand)
        );
        println!(
            "| processing / claim+ack split | {name} | {:.0}% |",
            pct(&r.process, &r.ceil_split)
        );
        println!(
            "| processing / claim+ack combined | {name} | {:.0}% |",
            pct(&r.process, &r.ceil_combined)
        );
        println!(
            "| (writer: mean enqueues per transaction, 64 callers) | {name} | {:.1} |",
            r.per_tx.median()
        );
        println!(
            "| (writer: mean jobs processed per transaction) | {name} | {:.1} |",
            r.process_per_tx.median()
        );
    }
}
