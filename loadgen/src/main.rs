//! securechat-loadgen: benchmarks that drive a real securechat server process over HTTP.
//!
//! `login-storm` starts the server binary (bcrypt cost 12 by default) on a free port with a
//! fresh data dir, registers users, then measures `/healthz` latency at a steady rate
//! alone, and again while N concurrent clients log in as fast as they can; it reports
//! logins/s and the latency ratio. `relay` measures the WebSocket relay (throughput,
//! delivery latency, memory per connection) against the real server and an `echo-relay`
//! ceiling in the same run (see relay.rs); `echo-relay` is that ceiling, run as a child.
//! `upload` measures tus uploads and downloads of the real server against two baselines
//! in the same run (see upload.rs): `plain-upload-server` (a plain handler, run as a
//! child) and the tus project's Node server.
//! The load generator shares the machine's cores with the server: numbers are for
//! comparison within one run, not absolute.

mod echo_relay;
mod fsync_probe;
mod plain_upload;
mod procs;
mod relay;
mod sched_probe;
mod upload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use securechat_client::{b64, Client, Identity, RegisterRequest};

#[derive(Parser)]
#[command(about = "Benchmarks for securechat")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Logins/s at a bcrypt cost, and /healthz latency alone vs during a login storm.
    LoginStorm {
        /// The securechat binary to start (build it with --release).
        #[arg(long, default_value = "target/release/securechat")]
        server_bin: PathBuf,
        #[arg(long, default_value_t = 12)]
        bcrypt_cost: u32,
        /// Concurrent logins in the storm (and users registered).
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// /healthz probes per second.
        #[arg(long, default_value_t = 200)]
        probe_rate: u64,
        /// After a 429, a client waits this many ms before its next attempt (clients that
        /// heed the server); 0: it tries again at once (a flood).
        #[arg(long, default_value_t = 0)]
        backoff_ms: u64,
    },
    /// WebSocket relay throughput, latency and memory vs an echo-relay ceiling, one run.
    Relay(relay::RelayArgs),
    /// A minimal relay that stores nothing (the ceiling `relay` compares with).
    EchoRelay {
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Read buffer per connection in bytes.
        #[arg(long, default_value_t = 4096)]
        read_buffer: usize,
    },
    /// tus upload and download MB/s and server RSS vs a plain handler and @tus/server, one run.
    Upload(upload::UploadArgs),
    /// A minimal tus-shaped upload server that writes and fdatasyncs only (`upload`'s baseline).
    PlainUploadServer {
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Directory the uploads are written to.
        #[arg(long)]
        dir: PathBuf,
    },
    /// The scheduling probe's child (started by `relay`, not by hand): samples wake-up
    /// lateness at 1 kHz until stdin closes, then prints it.
    #[command(hide = true)]
    SchedProbe,
}

#[derive(Debug)]
struct Latencies {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
    errors: u64,
}

fn summarize(mut ms: Vec<f64>, errors: u64) -> Latencies {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[((ms.len() as f64 - 1.0) * q).round() as usize]
        }
    };
    Latencies {
        n: ms.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: ms.last().copied().unwrap_or(f64::NAN),
        errors,
    }
}

/// Probes `/healthz` at `rate`/s for `secs` on its own connection; returns latencies in ms.
async fn probe(base: String, rate: u64, secs: u64) -> anyhow::Result<Latencies> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let url = format!("{base}/healthz");
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut ms = Vec::new();
    let mut errors = 0;
    while Instant::now() < end {
        tick.tick().await;
        let t = Instant::now();
        match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            _ => errors += 1,
        }
    }
    Ok(summarize(ms, errors))
}

/// The shape of a login storm.
struct Storm {
    concurrency: usize,
    secs: u64,
    probe_rate: u64,
    /// Wait after a 429 (zero: a flood).
    backoff: Duration,
}

async fn login_storm(bin: PathBuf, cost: u32, storm: Storm) -> anyhow::Result<()> {
    let Storm {
        concurrency,
        secs,
        probe_rate: rate,
        backoff,
    } = storm;
    let server = procs::start_server(&bin, &[("SECURECHAT_AUTH__BCRYPT_COST", cost.to_string())])?;
    let base = server.addr.clone();
    let client = Client::new(&base)?;
    println!(
        "server {base}, bcrypt cost {cost}, {concurrency} concurrent logins, {secs}s phases, healthz probe {rate}/s, after a 429 wait {} ms",
        backoff.as_millis()
    );

    // One identity for all users: the benchmark is about the server's bcrypt, not RSA keygen.
    let identity = Identity::generate()?;
    let mut creds = Vec::new();
    for i in 0..concurrency {
        let name = format!("bench_{i:03}");
        let req = RegisterRequest::build(&name, "benchmark password", 1000, &identity)?;
        client.register_request(&req).await?;
        creds.push((name, b64::decode(&req.auth_key)?));
    }

    let alone = probe(base.clone(), rate, secs).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for (name, key) in creds {
        let (client, stop, ok, failed, limited) = (
            client.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            limited.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.login_with_auth_key(&name, &key).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    // A rate-limit refusal is the server working as configured: counted apart.
                    Err(e) if e.is_api(429, "rate_limited") => {
                        if !backoff.is_zero() {
                            tokio::time::sleep(backoff).await;
                        }
                        limited.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Let the storm reach steady state before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ok_before = ok.load(Ordering::Relaxed);
    let limited_before = limited.load(Ordering::Relaxed);
    let started = Instant::now();
    let during = probe(base.clone(), rate, secs).await?;
    let logins = ok.load(Ordering::Relaxed) - ok_before;
    let refused = limited.load(Ordering::Relaxed) - limited_before;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let logins_per_sec = logins as f64 / elapsed;
    println!(
        "logins/s (cost {cost}): {logins_per_sec:.2}  ({logins} in {elapsed:.1}s, {} failed; {refused} refused 429 rate_limited = {:.1}/s)",
        failed.load(Ordering::Relaxed),
        refused as f64 / elapsed
    );
    println!(
        "healthz alone:        n={} p50={:.3}ms p99={:.3}ms max={:.3}ms errors={}",
        alone.n, alone.p50, alone.p99, alone.max, alone.errors
    );
    println!(
        "healthz during storm: n={} p50={:.3}ms p99={:.3}ms max={:.3}ms errors={}",
        during.n, during.p50, during.p99, during.max, during.errors
    );
    println!("p99 ratio (storm/alone): {:.2}", during.p99 / alone.p99);
    println!(
        "RESULT logins_per_sec={logins_per_sec:.2} rate_limited_per_sec={:.1} healthz_p99_alone_ms={:.3} healthz_p99_storm_ms={:.3}",
        refused as f64 / elapsed,
        alone.p99,
        during.p99
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::LoginStorm {
            server_bin,
            bcrypt_cost,
            concurrency,
            seconds,
            probe_rate,
            backoff_ms,
        } => {
            let storm = Storm {
                concurrency,
                secs: seconds,
                probe_rate,
                backoff: Duration::from_millis(backoff_ms),
            };
            login_storm(server_bin, bcrypt_cost, storm).await
        }
        Cmd::Relay(args) => relay::relay(args).await,
        Cmd::EchoRelay { port, read_buffer } => echo_relay::run(port, read_buffer).await,
        Cmd::Upload(args) => upload::upload(args).await,
        Cmd::PlainUploadServer { port, dir } => plain_upload::run(port, &dir).await,
        Cmd::SchedProbe => sched_probe::run_child(),
    }
}
