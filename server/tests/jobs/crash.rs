//! The crash test: a child process (this test binary, re-run with `crash_child` selected and
//! `SECURECHAT_JOBS_CRASH_CHILD` set) runs the queue under load and is killed with SIGKILL
//! at random moments, sometimes during start-up. After each kill the parent checks the
//! database; after each restart, the child's start report. The child prints, after the fact:
//! `@@E id` when an enqueue was acknowledged, `@@D id` when a job's completion committed,
//! `@@S id` when a handler starts.
//!
//! Checked: every acknowledged enqueue is present; a job acknowledged done stays done and
//! never starts again; every job left running by a kill is requeued (or failed) by the next
//! start; a handler's effect exists exactly for the jobs that are done; `PRAGMA
//! integrity_check` answers ok; and a final drain leaves nothing available or running.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng;
use securechat::config::{JobsConfig, Synchronous};
use securechat::jobs::{JobError, JobOutcome, JobState, NewJob, Queue, Registry};
use serde_json::json;

use crate::helpers::open_db;

const CHILD_ENV: &str = "SECURECHAT_JOBS_CRASH_CHILD";
const DRAIN_ENV: &str = "SECURECHAT_JOBS_CRASH_DRAIN";
const KILLS: usize = 50;

fn child_config() -> JobsConfig {
    JobsConfig {
        lease_secs: 30,
        max_attempts: 10,
        retry_base_ms: 5,
        retry_max_secs: 1,
        workers: [("default".to_string(), 8)].into_iter().collect(),
        ..JobsConfig::default()
    }
}

struct ChildRun {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for ChildRun {
    /// A failing assertion must not leave a child running the queue.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_child(dir: &Path, drain: bool) -> ChildRun {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args([
        "--exact",
        "crash::crash_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, dir)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if drain {
        cmd.env(DRAIN_ENV, "1");
    }
    let mut child = cmd.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                // A line cut by the kill has no newline: ignore it.
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    if tx.send(line.clone()).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
    });
    ChildRun { child, lines: rx }
}

/// The markers in a line (the test harness may print on the same line).
fn markers(line: &str) -> impl Iterator<Item = (&str, &str)> {
    line.split("@@").skip(1).filter_map(|m| {
        let mut it = m.split_whitespace();
        Some((it.next()?, it.next()?))
    })
}

#[derive(Default)]
struct Seen {
    enqueued: HashSet<i64>,
    done: HashSet<i64>,
    starts: u64,
}

impl Seen {
    fn absorb(&mut self, line: &str, ready: &mut Option<usize>, drained: &mut bool) {
        for (tag, val) in markers(line) {
            match tag {
                "E" => {
                    self.enqueued.insert(val.parse().expect("id"));
                }
                "D" => {
                    self.done.insert(val.parse().expect("id"));
                }
                "S" => {
                    let id: i64 = val.parse().expect("id");
                    self.starts += 1;
                    assert!(
                        !self.done.contains(&id),
                        "job {id} started again after its completion was acknowledged"
                    );
                }
                "READY" => *ready = Some(val.parse().expect("count")),
                "DRAINED" => *drained = true,
                _ => {}
            }
        }
    }
}

fn check_db(path: &Path, seen: &Seen) -> usize {
    let c = rusqlite::Connection::open(path).expect("open");
    c.busy_timeout(Duration::from_secs(5)).expect("busy");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(ok, "ok");
    let ids: HashSet<i64> = c
        .prepare("SELECT id FROM jobs")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("ids");
    let lost: Vec<&i64> = seen.enqueued.difference(&ids).take(5).collect();
    assert!(lost.is_empty(), "acknowledged enqueues missing: {lost:?}");
    let mut st = c
        .prepare("SELECT state FROM jobs WHERE id = ?1")
        .expect("prepare");
    for id in &seen.done {
        let state: String = st.query_row([id], |r| r.get(0)).expect("done job exists");
        assert_eq!(state, "done", "job {id} was acknowledged done");
    }
    let effect_not_done: i64 = c
        .query_row(
            "SELECT count(*) FROM effects e JOIN jobs j ON j.id = e.job_id WHERE j.state != 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    assert_eq!(
        effect_not_done, 0,
        "an effect committed without its job being done"
    );
    let done_without_effect: i64 = c
        .query_row(
            "SELECT count(*) FROM jobs WHERE state = 'done' AND kind = 'c.effect' \
             AND id NOT IN (SELECT job_id FROM effects)",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    assert_eq!(done_without_effect, 0, "a job done without its effect");
    c.query_row(
        "SELECT count(*) FROM jobs WHERE state = 'running'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .expect("running") as usize
}

fn describe(path: &Path) -> String {
    let c = rusqlite::Connection::open(path).expect("open");
    let mut st = c
        .prepare(
            "SELECT state, count(*), min(run_at) - (unixepoch('subsec') * 1000), max(attempt) \
             FROM jobs GROUP BY state",
        )
        .expect("prepare");
    let rows: Vec<String> = st
        .query_map([], |r| {
            Ok(format!(
                "{}: {} (earliest run_at in {:?} ms, max attempt {})",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, i64>(3)?
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    rows.join("; ")
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("jobs.db");
    let t0 = Instant::now();
    let mut rng = rand::thread_rng();
    let mut seen = Seen::default();
    let mut orphans_expected: Option<usize> = None;
    let mut early_kills = 0;
    for kill in 0..KILLS {
        let mut run = spawn_child(dir.path(), false);
        let mut ready = None;
        let mut drained = false;
        // One kill in five lands during start-up (recovery included), the rest under load.
        let early = kill % 5 == 4;
        let deadline = Instant::now() + Duration::from_secs(20);
        if early {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
        } else {
            while ready.is_none() {
                let line = run
                    .lines
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .expect("the child reports READY");
                seen.absorb(&line, &mut ready, &mut drained);
            }
            let until = Instant::now() + Duration::from_millis(rng.gen_range(20..200));
            while let Ok(line) = run
                .lines
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                seen.absorb(&line, &mut ready, &mut drained);
                if Instant::now() >= until {
                    break;
                }
            }
        }
        run.child.kill().expect("SIGKILL");
        run.child.wait().expect("reap");
        for line in run.lines.iter() {
            seen.absorb(&line, &mut ready, &mut drained);
        }
        match ready {
            Some(n) => {
                if let Some(expected) = orphans_expected {
                    assert_eq!(n, expected, "start {kill} requeued every orphan");
                }
            }
            None => early_kills += 1,
        }
        if db_path.exists() {
            let running = check_db(&db_path, &seen);
            // A start that died before READY may or may not have committed its recovery;
            // the database after the kill is the truth for the next start.
            orphans_expected = Some(running);
        }
    }
    // A last start drains everything.
    let mut run = spawn_child(dir.path(), true);
    let (mut ready, mut drained) = (None, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !drained {
        let Ok(line) = run
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            let _ = run.child.kill();
            panic!("the drain did not finish: {}", describe(&db_path));
        };
        seen.absorb(&line, &mut ready, &mut drained);
    }
    assert_eq!(
        ready, orphans_expected,
        "the drain start requeued every orphan"
    );
    run.child.kill().expect("kill");
    run.child.wait().expect("reap");
    for line in run.lines.iter() {
        seen.absorb(&line, &mut ready, &mut drained);
    }
    assert_eq!(check_db(&db_path, &seen), 0, "nothing stuck in running");
    let c = rusqlite::Connection::open(&db_path).expect("open");
    let live: i64 = c
        .query_row(
            "SELECT count(*) FROM jobs WHERE state IN ('available', 'running') \
             AND kind LIKE 'c.%'",
            [],
            |r| r.get(0),
        )
        .expect("live");
    assert_eq!(live, 0);
    let total: i64 = c
        .query_row("SELECT count(*) FROM jobs WHERE kind LIKE 'c.%'", [], |r| {
            r.get(0)
        })
        .expect("total");
    assert!(
        seen.enqueued.len() > 1000 && seen.done.len() > 500,
        "the load was real: {} enqueued, {} done, {} starts, {total} rows",
        seen.enqueued.len(),
        seen.done.len(),
        seen.starts
    );
    let took = t0.elapsed();
    eprintln!(
        "crash test: {KILLS} kills ({early_kills} before READY), {} acknowledged enqueues, \
         {} acknowledged completions, {} handler starts, {total} jobs, {took:?}",
        seen.enqueued.len(),
        seen.done.len(),
        seen.starts
    );
    assert!(took < Duration::from_secs(90), "bounded in time: {took:?}");
}

/// Not a test of its own: the child process of the crash test (a no-op otherwise).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(child_main(Path::new(&dir).to_owned()));
}

async fn child_main(dir: std::path::PathBuf) {
    // Whatever happens to the parent, a child never outlives a minute.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        std::process::exit(3);
    });
    let db = open_db(&dir, Synchronous::Full).await;
    db.write(|c| {
        Ok(c.execute_batch("CREATE TABLE IF NOT EXISTS effects (job_id INTEGER PRIMARY KEY)")?)
    })
    .await
    .expect("effects table");
    let mut reg = Registry::new();
    reg.register("c.effect", |ctx, _: serde_json::Value| async move {
        println!("@@S {}", ctx.id());
        let id = ctx.id();
        ctx.complete_with(move |c| {
            c.execute("INSERT INTO effects (job_id) VALUES (?1)", [id])?;
            Ok(())
        })
        .await
    })
    .expect("register");
    reg.register("c.work", |ctx, n: u64| async move {
        println!("@@S {}", ctx.id());
        match n % 10 {
            0 if ctx.attempt() == 1 => Err(JobError::retry("first attempts fail")),
            1 => Err(JobError::fail("never works")),
            2 => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ctx.heartbeat().await
            }
            _ => Ok(()),
        }
    })
    .expect("register");
    let queue = Queue::new(db.clone(), &child_config(), reg).expect("queue");
    let mut events = queue.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ev) if ev.outcome == JobOutcome::Done => println!("@@D {}", ev.id),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    });
    let report = queue.start().await.expect("start");
    println!("@@READY {}", report.requeued + report.failed);
    if std::env::var_os(DRAIN_ENV).is_some() {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let counts = queue.counts().await.expect("counts");
            // The queue's own periodic prune job is always scheduled: not ours to drain.
            let ours = counts
                .iter()
                .filter(|c| c.queue != securechat::jobs::INTERNAL_QUEUE);
            if ours.into_iter().all(|c| c.available == 0 && c.running == 0) {
                println!("@@DRAINED 1");
                std::future::pending::<()>().await;
            }
        }
    }
    let mut producers = Vec::new();
    for p in 0..3u64 {
        let q = queue.clone();
        producers.push(tokio::spawn(async move {
            let mut n = p;
            loop {
                n += 3;
                let job = |n: u64| {
                    if n.is_multiple_of(4) {
                        NewJob::new("c.effect", json!(n))
                    } else {
                        NewJob::new("c.work", json!(n))
                    }
                };
                if n % 5 == 0 {
                    let batch: Vec<NewJob> = (0..8).map(|i| job(n * 100 + i)).collect();
                    for e in q.enqueue_batch(batch).await.expect("batch") {
                        println!("@@E {}", e.id);
                    }
                } else {
                    let mut j = job(n);
                    if n % 7 == 0 {
                        j = j.dedup_key(format!("key{}", n % 13));
                    }
                    let e = q.enqueue(j).await.expect("enqueue");
                    println!("@@E {}", e.id);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for p in producers {
        let _ = p.await;
    }
    let _ = JobState::Done;
}
