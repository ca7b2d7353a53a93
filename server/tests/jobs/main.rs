//! Tests of the job queue (`securechat::jobs`) through its public API, on a real SQLite file:
//! the life of jobs, retries, leases, cancellation, schedules, periodic jobs, dedup under
//! races, shutdown, pruning, metrics, the `securechat jobs` CLI, and a crash test that
//! SIGKILLs a child process running the queue under load.

mod cli;
mod crash;
mod dedup;
mod helpers;
mod leases;
mod lifecycle;
mod operations;
