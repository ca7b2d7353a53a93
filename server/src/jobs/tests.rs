//! Unit and property tests of the job table's state machine (store.rs) and of the backoff,
//! driven with a fake clock against a real, migrated SQLite file.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use rusqlite::Connection;

use super::backoff::Backoff;
use super::store::{self, NewRow};
use super::types::Lease;
use super::{CancelOutcome, JobId, JobState};
use crate::config::StorageConfig;

const LEASE_MS: i64 = 1_000;
const T0: i64 = 1_000_000;

fn backoff() -> Backoff {
    Backoff {
        base_ms: 100,
        max_ms: 5_000,
    }
}

fn fresh_db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobs.db");
    let storage = StorageConfig {
        synchronous: crate::config::Synchronous::Normal,
        ..StorageConfig::default()
    };
    crate::db::migrate_file(&path, &storage).expect("migrate");
    let conn = crate::db::open_write_connection(&path, &storage).expect("open");
    (dir, conn)
}

fn row(dedup: Option<String>, max_attempts: i64, run_at: i64, priority: i64) -> NewRow {
    NewRow {
        queue: "q".into(),
        kind: "k".into(),
        payload: "{}".into(),
        priority,
        run_at,
        max_attempts,
        dedup_key: dedup,
    }
}

fn db_state(c: &Connection, id: JobId) -> (JobState, u32, Option<i64>, i64) {
    let r = store::get(c, id).expect("get").expect("row exists");
    let token: Option<i64> = c
        .query_row("SELECT lease_token FROM jobs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .expect("token");
    (r.state, r.attempt, token, r.run_at)
}

// ---------------------------------------------------------------------------------------
// Plain unit tests

#[test]
fn the_claim_statement_is_compiled_once_whatever_the_batch_size() {
    let (_dir, c) = fresh_db();
    for i in 0..6 {
        store::insert(&c, &row(None, 3, T0 + i, 0), T0).expect("insert");
    }
    for n in [1, 2, 3] {
        let claimed = store::claim(&c, "q", n, T0 + 10, LEASE_MS).expect("claim");
        assert_eq!(claimed.len(), n);
    }
    let st = c.prepare_cached(store::CLAIM_SQL).expect("cached");
    assert_eq!(
        st.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "binding a new LIMIT must not recompile the claim (LIMIT +?, db/mod.rs)"
    );
}

#[test]
fn a_claim_takes_due_jobs_in_priority_then_run_at_then_id_order() {
    let (_d, c) = fresh_db();
    let a = store::insert(&c, &row(None, 3, T0, 5), T0).expect("a").id;
    let b = store::insert(&c, &row(None, 3, T0 - 10, 5), T0)
        .expect("b")
        .id;
    let urgent = store::insert(&c, &row(None, 3, T0, -1), T0).expect("u").id;
    let _future = store::insert(&c, &row(None, 3, T0 + 1, -9), T0)
        .expect("f")
        .id;
    let got: Vec<JobId> = store::claim(&c, "q", 10, T0, LEASE_MS)
        .expect("claim")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(got, vec![urgent, b, a]);
    assert_eq!(store::next_due(&c, "q").expect("due"), Some(T0 + 1));
}

#[test]
fn every_claim_gets_a_fresh_token_and_a_stale_one_is_refused_everywhere() {
    let (_d, c) = fresh_db();
    let id = store::insert(&c, &row(None, 5, T0, 0), T0)
        .expect("insert")
        .id;
    let first = store::claim(&c, "q", 1, T0, LEASE_MS).expect("claim")[0].clone();
    // The lease runs out; the reaper takes the job back; someone else claims it.
    let back = store::reclaim(&c, T0 + LEASE_MS, true, &backoff(), 100).expect("reap");
    assert_eq!(back.len(), 1);
    let later = back[0].run_at;
    let second = store::claim(&c, "q", 1, later, LEASE_MS).expect("claim")[0].clone();
    assert_ne!(first.token, second.token);
    let stale = Lease {
        job_id: id,
        token: first.token,
    };
    assert!(!store::complete(&c, stale, later).expect("ack"));
    assert!(!store::fail(&c, stale, later, "x").expect("fail"));
    assert_eq!(
        store::retry_or_fail(&c, stale, later, later, "x").expect("retry"),
        None
    );
    assert!(!store::heartbeat(&c, stale, later, LEASE_MS, None).expect("hb"));
    assert!(!store::release(&c, stale, later).expect("release"));
    assert!(!store::holds(&c, stale).expect("holds"));
    assert_eq!(db_state(&c, id).0, JobState::Running);
    let fresh = Lease {
        job_id: id,
        token: second.token,
    };
    assert!(store::complete(&c, fresh, later).expect("ack"));
    assert_eq!(db_state(&c, id).0, JobState::Done);
}

#[test]
fn a_duplicate_key_returns_the_live_job_and_a_finished_one_frees_the_key() {
    let (_d, c) = fresh_db();
    let k = || Some("key".to_string());
    let first = store::insert(&c, &row(k(), 1, T0, 0), T0).expect("first");
    let dup = store::insert(&c, &row(k(), 1, T0, 0), T0).expect("dup");
    assert!(!first.existing);
    assert_eq!(
        dup,
        super::Enqueued {
            id: first.id,
            existing: true
        }
    );
    let j = store::claim(&c, "q", 1, T0, LEASE_MS).expect("claim")[0].clone();
    let dup = store::insert(&c, &row(k(), 1, T0, 0), T0).expect("dup while running");
    assert_eq!(dup.id, first.id);
    let lease = Lease {
        job_id: j.id,
        token: j.token,
    };
    assert!(store::complete(&c, lease, T0).expect("ack"));
    let next = store::insert(&c, &row(k(), 1, T0, 0), T0).expect("after done");
    assert!(!next.existing);
    assert_ne!(next.id, first.id);
}

#[test]
fn start_up_requeues_every_running_row_at_once_and_fails_those_out_of_attempts() {
    let (_d, c) = fresh_db();
    let a = store::insert(&c, &row(None, 3, T0, 0), T0).expect("a").id;
    let b = store::insert(&c, &row(None, 1, T0, 1), T0).expect("b").id;
    store::claim(&c, "q", 2, T0, LEASE_MS).expect("claim");
    let back = store::reclaim(&c, T0 + 5, false, &backoff(), i64::MAX).expect("orphans");
    assert_eq!(back.len(), 2);
    assert_eq!(db_state(&c, a), (JobState::Available, 1, None, T0 + 5));
    assert_eq!(db_state(&c, b).0, JobState::Failed);
    let err = store::get(&c, b).expect("get").expect("b").last_error;
    assert!(err.unwrap_or_default().contains("interrupted"), "b's error");
}

#[test]
fn cancel_and_retry_move_only_the_states_they_should() {
    let (_d, c) = fresh_db();
    let id = store::insert(&c, &row(Some("k".into()), 2, T0, 0), T0)
        .expect("insert")
        .id;
    assert!(matches!(
        store::retry(&c, id, T0),
        Err(super::JobsError::Conflict(_))
    ));
    let (out, _, _) = store::cancel(&c, id, T0).expect("cancel");
    assert_eq!(out, CancelOutcome::Cancelled { was_running: false });
    let (out, _, _) = store::cancel(&c, id, T0).expect("cancel again");
    assert_eq!(out, CancelOutcome::AlreadyFinished(JobState::Cancelled));
    // Another job took the key meanwhile: the retry must not make two live holders.
    let other = store::insert(&c, &row(Some("k".into()), 2, T0, 0), T0).expect("other");
    assert!(!other.existing);
    let err = store::retry(&c, id, T0).expect_err("conflict");
    assert!(err.to_string().contains("same dedup key"), "{err}");
    store::cancel(&c, other.id, T0).expect("cancel other");
    store::retry(&c, id, T0 + 1).expect("retry");
    assert_eq!(db_state(&c, id), (JobState::Available, 0, None, T0 + 1));
    assert!(matches!(
        store::cancel(&c, 999_999, T0),
        Err(super::JobsError::NotFound(999_999))
    ));
}

#[test]
fn prune_deletes_only_old_finished_rows_in_batches() {
    let (_d, c) = fresh_db();
    for _ in 0..25 {
        store::insert(&c, &row(None, 1, T0, 0), T0).expect("insert");
    }
    for j in store::claim(&c, "q", 20, T0, LEASE_MS).expect("claim") {
        let lease = Lease {
            job_id: j.id,
            token: j.token,
        };
        store::complete(&c, lease, T0 + 10).expect("ack");
    }
    assert_eq!(store::prune(&c, JobState::Done, T0 + 10, 8).expect("p"), 0);
    assert_eq!(store::prune(&c, JobState::Done, T0 + 11, 8).expect("p"), 8);
    assert_eq!(store::prune(&c, JobState::Done, T0 + 11, 8).expect("p"), 8);
    assert_eq!(store::prune(&c, JobState::Done, T0 + 11, 8).expect("p"), 4);
    let counts = store::counts(&c, T0 + 20).expect("counts");
    assert_eq!(counts.len(), 1);
    assert_eq!((counts[0].available, counts[0].done), (5, 0));
    assert_eq!(counts[0].oldest_available_age_ms, 20);
}

#[test]
fn the_schema_refuses_a_running_row_without_a_lease() {
    let (_d, c) = fresh_db();
    let id = store::insert(&c, &row(None, 1, T0, 0), T0)
        .expect("insert")
        .id;
    let err = c
        .execute("UPDATE jobs SET state = 'running' WHERE id = ?1", [id])
        .expect_err("CHECK");
    assert!(err.to_string().contains("CHECK"), "{err}");
    let err = c
        .execute(
            "UPDATE jobs SET state = 'done', lease_token = 1, lease_expires_at = 1 WHERE id = ?1",
            [id],
        )
        .expect_err("CHECK");
    assert!(err.to_string().contains("CHECK"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Backoff

proptest! {
    #[test]
    fn backoff_grows_until_the_cap_and_never_passes_it(
        base in 1u64..10_000,
        factor in 1u64..1_000,
        a in 1u32..80,
        gap in 1u32..10,
        ja in 0.0f64..1.0,
        jb in 0.0f64..1.0,
    ) {
        let b = Backoff { base_ms: base, max_ms: base * factor };
        let later = a + gap;
        let (da, db) = (b.delay_ms_with(a, ja), b.delay_ms_with(later, jb));
        prop_assert!(da <= b.max_ms && db <= b.max_ms);
        prop_assert!(da * 4 >= b.cap_ms(a) * 3, "jitter takes at most a quarter");
        if b.cap_ms(later) < b.max_ms {
            prop_assert!(da < db, "attempt {} waits {} but attempt {} only {}", a, da, later, db);
        } else {
            prop_assert!(b.cap_ms(a) <= b.cap_ms(later));
        }
    }
}

#[test]
fn backoff_doubles_from_the_base() {
    let b = Backoff {
        base_ms: 1000,
        max_ms: 3_600_000,
    };
    let caps: Vec<u64> = (1..=4).map(|n| b.cap_ms(n)).collect();
    assert_eq!(caps, vec![1000, 2000, 4000, 8000]);
    assert_eq!(b.cap_ms(1000), 3_600_000);
    assert_eq!(b.delay_ms_with(3, 0.0), 4000);
    assert_eq!(b.delay_ms_with(3, 0.999_999), 3001);
}

// ---------------------------------------------------------------------------------------
// The state machine against a model

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        dedup: Option<u8>,
        max_attempts: u32,
        delay: u16,
        priority: i8,
    },
    Claim(u8),
    Ack {
        pick: usize,
        stale: bool,
    },
    RetryLater {
        pick: usize,
        stale: bool,
    },
    Fail {
        pick: usize,
        stale: bool,
    },
    Heartbeat {
        pick: usize,
        stale: bool,
    },
    Release {
        pick: usize,
        stale: bool,
    },
    Advance(u16),
    Reap,
    Cancel(usize),
    RetryFailed(usize),
    Restart,
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::option::of(0u8..3), 1u32..4, 0u16..1500, -2i8..3).prop_map(
            |(dedup, max_attempts, delay, priority)| Op::Enqueue { dedup, max_attempts, delay, priority }
        ),
        3 => (1u8..4).prop_map(Op::Claim),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, stale)| Op::Ack { pick, stale }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, stale)| Op::RetryLater { pick, stale }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, stale)| Op::Fail { pick, stale }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, stale)| Op::Heartbeat { pick, stale }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, stale)| Op::Release { pick, stale }),
        3 => (0u16..3000).prop_map(Op::Advance),
        2 => Just(Op::Reap),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::RetryFailed),
        1 => Just(Op::Restart),
        1 => Just(Op::Prune),
    ]
}

#[derive(Debug, Clone)]
struct ModelJob {
    id: JobId,
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    run_at: i64,
    priority: i64,
    dedup: Option<String>,
    token: Option<i64>,
    lease_expires: i64,
    old_tokens: Vec<i64>,
}

struct Model {
    jobs: BTreeMap<JobId, ModelJob>,
    now: i64,
}

impl Model {
    fn running(&self, pick: usize) -> Option<JobId> {
        let r: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .map(|j| j.id)
            .collect();
        (!r.is_empty()).then(|| r[pick % r.len()])
    }

    fn any(&self, pick: usize) -> Option<JobId> {
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        (!ids.is_empty()).then(|| ids[pick % ids.len()])
    }

    /// The lease to use: the current one, or (stale) an old one or a made-up one.
    fn lease(&self, id: JobId, stale: bool) -> (Lease, bool) {
        let j = &self.jobs[&id];
        match (stale, j.token) {
            (false, Some(t)) => (
                Lease {
                    job_id: id,
                    token: t,
                },
                true,
            ),
            _ => {
                let t = j.old_tokens.last().copied().unwrap_or(0x5eed);
                let valid = Some(t) == j.token;
                (
                    Lease {
                        job_id: id,
                        token: t,
                    },
                    valid,
                )
            }
        }
    }

    fn leave_running(&mut self, id: JobId) {
        let j = self.jobs.get_mut(&id).expect("job");
        if let Some(t) = j.token.take() {
            j.old_tokens.push(t);
        }
    }
}

fn check_invariants(c: &Connection, m: &Model) -> Result<(), TestCaseError> {
    let mut live_keys: HashMap<String, JobId> = HashMap::new();
    let ids: Vec<JobId> = c
        .prepare("SELECT id FROM jobs ORDER BY id")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("ids");
    let model_ids: Vec<JobId> = m.jobs.keys().copied().collect();
    prop_assert_eq!(&ids, &model_ids, "the same jobs exist");
    for id in ids {
        let (state, attempt, token, run_at) = db_state(c, id);
        let mj = &m.jobs[&id];
        prop_assert_eq!(state, mj.state, "state of job {}", id);
        prop_assert_eq!(attempt, mj.attempt, "attempt of job {}", id);
        prop_assert_eq!(token, mj.token, "lease token of job {}", id);
        prop_assert!(attempt <= mj.max_attempts);
        prop_assert_eq!(state == JobState::Running, token.is_some());
        if state == JobState::Available {
            prop_assert_eq!(run_at, mj.run_at, "run_at of job {}", id);
        }
        if state.is_live() {
            if let Some(k) = &mj.dedup {
                prop_assert!(
                    live_keys.insert(k.clone(), id).is_none(),
                    "two live jobs hold key {}",
                    k
                );
            }
        }
    }
    Ok(())
}

fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (_dir, c) = fresh_db();
    let mut m = Model {
        jobs: BTreeMap::new(),
        now: T0,
    };
    let b = backoff();
    for op in ops {
        let now = m.now;
        match op {
            Op::Enqueue {
                dedup,
                max_attempts,
                delay,
                priority,
            } => {
                let key = dedup.map(|k| format!("k{k}"));
                let run_at = now + i64::from(delay);
                let out = store::insert(
                    &c,
                    &row(
                        key.clone(),
                        i64::from(max_attempts),
                        run_at,
                        i64::from(priority),
                    ),
                    now,
                )
                .expect("insert");
                let holder = key.as_ref().and_then(|k| {
                    m.jobs
                        .values()
                        .find(|j| j.state.is_live() && j.dedup.as_ref() == Some(k))
                        .map(|j| j.id)
                });
                match holder {
                    Some(h) => {
                        prop_assert!(out.existing);
                        prop_assert_eq!(out.id, h);
                    }
                    None => {
                        prop_assert!(!out.existing);
                        m.jobs.insert(
                            out.id,
                            ModelJob {
                                id: out.id,
                                state: JobState::Available,
                                attempt: 0,
                                max_attempts,
                                run_at,
                                priority: i64::from(priority),
                                dedup: key,
                                token: None,
                                lease_expires: 0,
                                old_tokens: Vec::new(),
                            },
                        );
                    }
                }
            }
            Op::Claim(n) => {
                let mut due: Vec<&ModelJob> = m
                    .jobs
                    .values()
                    .filter(|j| j.state == JobState::Available && j.run_at <= now)
                    .collect();
                due.sort_by_key(|j| (j.priority, j.run_at, j.id));
                let expect: Vec<JobId> = due.iter().take(n as usize).map(|j| j.id).collect();
                let got = store::claim(&c, "q", n as usize, now, LEASE_MS).expect("claim");
                let got_ids: Vec<JobId> = got.iter().map(|j| j.id).collect();
                prop_assert_eq!(&got_ids, &expect, "claim order");
                for g in got {
                    let j = m.jobs.get_mut(&g.id).expect("job");
                    prop_assert!(!j.old_tokens.contains(&g.token), "a token is never reused");
                    j.state = JobState::Running;
                    j.attempt += 1;
                    j.token = Some(g.token);
                    j.lease_expires = now + LEASE_MS;
                }
            }
            Op::Ack { pick, stale }
            | Op::RetryLater { pick, stale }
            | Op::Fail { pick, stale }
            | Op::Heartbeat { pick, stale }
            | Op::Release { pick, stale } => {
                let Some(id) = m.running(pick).or_else(|| m.any(pick)) else {
                    continue;
                };
                let (lease, valid) = m.lease(id, stale);
                let retry_to = if let Op::RetryLater { .. } = &op {
                    store::retry_or_fail(&c, lease, now + 50, now, "e").expect("retry")
                } else {
                    None
                };
                let took = match &op {
                    Op::Ack { .. } => store::complete(&c, lease, now),
                    Op::RetryLater { .. } => Ok(retry_to.is_some()),
                    Op::Fail { .. } => store::fail(&c, lease, now, "e"),
                    Op::Heartbeat { .. } => store::heartbeat(&c, lease, now, LEASE_MS, Some("1")),
                    _ => store::release(&c, lease, now),
                }
                .expect("fenced op");
                prop_assert_eq!(took, valid, "fencing of {:?}", op);
                if valid {
                    let j = m.jobs.get_mut(&id).expect("job");
                    match &op {
                        Op::Ack { .. } => j.state = JobState::Done,
                        Op::RetryLater { .. } if j.attempt < j.max_attempts => {
                            prop_assert_eq!(retry_to, Some(JobState::Available));
                            j.state = JobState::Available;
                            j.run_at = now + 50;
                        }
                        Op::RetryLater { .. } => {
                            prop_assert_eq!(retry_to, Some(JobState::Failed), "attempts ran out");
                            j.state = JobState::Failed;
                        }
                        Op::Fail { .. } => j.state = JobState::Failed,
                        Op::Heartbeat { .. } => j.lease_expires = now + LEASE_MS,
                        _ => {
                            j.state = JobState::Available;
                            j.attempt -= 1;
                            j.run_at = now;
                        }
                    }
                    if !matches!(op, Op::Heartbeat { .. }) {
                        m.leave_running(id);
                    }
                }
            }
            Op::Advance(ms) => m.now += i64::from(ms),
            Op::Reap | Op::Restart => {
                let expired_only = matches!(op, Op::Reap);
                let back = store::reclaim(&c, now, expired_only, &b, 1000).expect("reclaim");
                let mut expect: Vec<JobId> = m
                    .jobs
                    .values()
                    .filter(|j| {
                        j.state == JobState::Running && (!expired_only || j.lease_expires <= now)
                    })
                    .map(|j| j.id)
                    .collect();
                expect.sort_unstable();
                let mut got: Vec<JobId> = back.iter().map(|r| r.id).collect();
                got.sort_unstable();
                prop_assert_eq!(got, expect);
                for r in back {
                    let j = m.jobs.get_mut(&r.id).expect("job");
                    if j.attempt >= j.max_attempts {
                        prop_assert_eq!(r.state, JobState::Failed, "no attempts left");
                        j.state = JobState::Failed;
                    } else {
                        prop_assert_eq!(r.state, JobState::Available);
                        let wait = r.run_at - now;
                        if expired_only {
                            let cap = b.cap_ms(j.attempt) as i64;
                            prop_assert!(wait <= cap && wait * 4 >= cap * 3, "backoff {}", wait);
                        } else {
                            prop_assert_eq!(wait, 0, "orphans run again at once");
                        }
                        j.state = JobState::Available;
                        j.run_at = r.run_at;
                    }
                    m.leave_running(r.id);
                }
            }
            Op::Cancel(pick) => {
                let Some(id) = m.any(pick) else { continue };
                let (out, _, _) = store::cancel(&c, id, now).expect("cancel");
                let j = m.jobs.get_mut(&id).expect("job");
                if j.state.is_live() {
                    prop_assert_eq!(
                        out,
                        CancelOutcome::Cancelled {
                            was_running: j.state == JobState::Running
                        }
                    );
                    j.state = JobState::Cancelled;
                    m.leave_running(id);
                } else {
                    prop_assert_eq!(out, CancelOutcome::AlreadyFinished(j.state));
                }
            }
            Op::RetryFailed(pick) => {
                let Some(id) = m.any(pick) else { continue };
                let res = store::retry(&c, id, now);
                let j = m.jobs[&id].clone();
                let key_taken = j.dedup.as_ref().is_some_and(|k| {
                    m.jobs
                        .values()
                        .any(|o| o.id != id && o.state.is_live() && o.dedup.as_ref() == Some(k))
                });
                let allowed =
                    matches!(j.state, JobState::Failed | JobState::Cancelled) && !key_taken;
                prop_assert_eq!(res.is_ok(), allowed, "retry of {:?}", j.state);
                if allowed {
                    let j = m.jobs.get_mut(&id).expect("job");
                    j.state = JobState::Available;
                    j.attempt = 0;
                    j.run_at = now;
                }
            }
            Op::Prune => {
                let before = now - 500;
                let mut n = 0;
                for st in [JobState::Done, JobState::Cancelled, JobState::Failed] {
                    n += store::prune(&c, st, before, 1000).expect("prune");
                }
                let gone: Vec<JobId> = c
                    .prepare("SELECT id FROM jobs")
                    .expect("prepare")
                    .query_map([], |r| r.get(0))
                    .expect("query")
                    .collect::<Result<Vec<JobId>, _>>()
                    .map(|left| {
                        m.jobs
                            .keys()
                            .copied()
                            .filter(|id| !left.contains(id))
                            .collect()
                    })
                    .expect("ids");
                prop_assert_eq!(gone.len(), n);
                for id in gone {
                    prop_assert!(
                        !m.jobs[&id].state.is_live(),
                        "only finished jobs are pruned"
                    );
                    m.jobs.remove(&id);
                }
            }
        }
        check_invariants(&c, &m)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever happens, the database agrees with the model: one state per job (never done
    /// and available at once; done stays done), stale leases change nothing, attempts stop
    /// at max_attempts, at most one live job per dedup key, claims in priority order.
    #[test]
    fn the_job_table_follows_the_state_machine(ops in proptest::collection::vec(op(), 1..80)) {
        run_ops(ops)?;
    }
}

// ---------------------------------------------------------------------------------------
// The schema's cost per write (migrations/0006)

/// The opcodes of `sql` as SQLite compiles it on this connection.
fn opcodes(c: &Connection, sql: &str) -> Vec<String> {
    let mut st = c.prepare(&format!("EXPLAIN {sql}")).expect("explain");
    // EXPLAIN needs no values for the statement's parameters: run it unbound.
    let mut rows = st.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().expect("row") {
        out.push(r.get::<_, String>(1).expect("opcode"));
    }
    out
}

#[test]
fn writing_a_job_builds_no_ephemeral_table() {
    // An IN list of three or more values in a CHECK or a partial index's WHERE made SQLite
    // build a B-tree of the values for every row written.
    let (_dir, c) = fresh_db();
    let update = "UPDATE jobs SET state = 'done', lease_token = NULL, lease_expires_at = NULL, \
                  finished_at = ?2 WHERE id = ?1";
    for sql in [store::INSERT_SQL, store::INSERT_DEDUP_SQL, update] {
        let ops = opcodes(&c, sql);
        assert!(
            ops.iter().any(|o| o == "Insert" || o == "IdxInsert"),
            "{ops:?}"
        );
        assert!(!ops.iter().any(|o| o == "OpenEphemeral"), "{sql}: {ops:?}");
    }
}

#[test]
fn pruning_searches_the_finished_index() {
    let (_dir, c) = fresh_db();
    for state in ["done", "failed", "cancelled"] {
        let mut st = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", store::PRUNE_SQL))
            .expect("plan");
        let plan: Vec<String> = st
            .query_map(params_from(state), |r| r.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(
            plan.iter()
                .any(|p| p.contains("USING COVERING INDEX jobs_finished")),
            "{state}: {plan:?}"
        );
    }
}

fn params_from(state: &str) -> (String, i64, i64) {
    (state.to_string(), T0, 500)
}

#[test]
fn insert_many_stores_what_inserting_one_by_one_stores() {
    // Runs without a key go 64 to a statement with their ids given; keys repeated in the
    // batch, a key a live job holds and a deleted top row must come out as one by one.
    let rows: Vec<NewRow> = (0..300)
        .map(|i: i64| {
            let key = match i {
                70 | 150 => Some("a"),
                71 | 200 => Some("b"),
                250 => Some("held"),
                _ => None,
            };
            NewRow {
                payload: format!("{{\"n\":{i}}}"),
                ..row(key.map(String::from), 3, T0 + i, i % 3)
            }
        })
        .collect();
    let dump = |c: &Connection| -> Vec<(i64, String, Option<String>, i64, i64)> {
        c.prepare("SELECT id, payload, dedup_key, run_at, priority FROM jobs ORDER BY id")
            .expect("prepare")
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let (_d1, many_db) = fresh_db();
    let (_d2, one_db) = fresh_db();
    for c in [&many_db, &one_db] {
        store::insert(c, &row(Some("held".into()), 3, T0, 0), T0).expect("held");
        let top = store::insert(c, &row(None, 3, T0, 0), T0).expect("top").id;
        c.execute("DELETE FROM jobs WHERE id = ?1", [top])
            .expect("delete");
    }
    let many = store::insert_many(&many_db, &rows, T0).expect("many");
    let one: Vec<_> = rows
        .iter()
        .map(|r| store::insert(&one_db, r, T0).expect("one"))
        .collect();
    assert_eq!(many, one);
    assert_eq!(many.iter().filter(|e| e.existing).count(), 3);
    assert_eq!(dump(&many_db), dump(&one_db));
    assert_eq!(dump(&many_db).len(), 1 + 300 - 3);
}
