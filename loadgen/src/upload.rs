//! `upload`: tus upload and download throughput of the real server, against two baselines
//! driven by the same client with the same bytes in the same run, plus the server's memory
//! while it works and the single-thread BLAKE3 rate the server's hashing is bounded by.
//!
//! Targets, one after the other, each started as a child with a fresh data dir and stopped
//! (its files removed) before the next:
//! - `server`: the real server (`[files]` limits raised through the environment so the
//!   files fit), two registered users, uploads from the first to the second with a real
//!   manifest envelope; it hashes (BLAKE3) and fdatasyncs every PATCH, and finalizes.
//! - `plain`: `plain-upload-server` (plain_upload.rs), which only writes the bytes at the
//!   offset and fdatasyncs at the end of each PATCH.
//! - `tus-node`: the tus project's own Node server (`@tus/server` + `@tus/file-store`,
//!   tests-web/tools/tus-node-server.mjs), which neither hashes nor fsyncs.
//!
//! Phases per target: A, one big upload; B, N concurrent uploads; C1, the big file
//! downloaded; C2, the N files downloaded concurrently (streamed, bytes counted, not
//! kept). Upload bodies are whole ciphertext records (record_size + 16 bytes) cut from one
//! buffer of pseudo-random bytes made once and reused for every PATCH of every upload: the
//! server cannot tell them from sealed records, and sealing is the client's cost, not
//! measured here. The target's VmRSS is sampled through every phase.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngCore as _, SeedableRng as _};
use securechat_client::envelope::seal;
use securechat_client::{b64, Client, Identity, RegisterRequest};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

use crate::procs::{self, Proc};

const MIB: u64 = 1 << 20;
/// The AES-GCM tag each ciphertext record carries.
const TAG_BYTES: u64 = 16;
const PASSWORD: &str = "benchmark password";
const KDF_ITERATIONS: u32 = 1000;
const SENDER: &str = "alice";
const RECIPIENT: &str = "bob";
/// How long a finished upload may take to become downloadable (finalize_upload).
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// What to run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Target {
    /// The real securechat server.
    Server,
    /// `plain-upload-server`: writes and fdatasyncs, nothing else.
    Plain,
    /// `@tus/server` + `@tus/file-store` in Node.
    TusNode,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Server => "server",
            Target::Plain => "plain",
            Target::TusNode => "tus_node",
        }
    }
}

/// The `upload` subcommand's options. Sizes are plaintext MiB; what is sent is their
/// ciphertext (`Upload-Length` = size + 16 bytes per record).
#[derive(Clone, Debug, clap::Args)]
pub struct UploadArgs {
    /// The securechat binary to start (build it with --release).
    #[arg(long, default_value = "target/release/securechat")]
    pub server_bin: PathBuf,
    /// Smoke run: defaults become a 64 MiB file, 4 × 16 MiB, 16 MiB PATCHes, 64 MiB hashed
    /// (flags given explicitly still win).
    #[arg(long)]
    pub quick: bool,
    /// Phase A: one upload of this many MiB [default: 1024; quick: 64].
    #[arg(long)]
    pub big_mib: Option<u64>,
    /// Phase B: this many uploads at once [default: 8; quick: 4].
    #[arg(long)]
    pub concurrent: Option<usize>,
    /// Phase B: MiB per upload [default: 128; quick: 16].
    #[arg(long)]
    pub each_mib: Option<u64>,
    /// Body of one PATCH in MiB, rounded down to whole records [default: 64; quick: 16].
    #[arg(long)]
    pub patch_mib: Option<u64>,
    /// MiB fed through one single-thread BLAKE3 hasher [default: 1024; quick: 64].
    #[arg(long)]
    pub hash_mib: Option<u64>,
    /// Plaintext bytes per record (a ciphertext record is 16 more).
    #[arg(long, default_value_t = 65536)]
    pub record_size: u64,
    /// Send `Upload-Checksum: sha256 ...` with every PATCH (off by default: the target is
    /// the server's receive path; the digests are computed once, before any timing).
    #[arg(long)]
    pub checksum: bool,
    /// Targets to run, in order, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "server,plain,tus-node"
    )]
    pub targets: Vec<Target>,
    /// The Node.js binary for the tus-node target.
    #[arg(long, default_value = "node")]
    pub node: PathBuf,
    /// The tus-node target's script (its packages: `npm install` in tests-web).
    #[arg(long, default_value = "tests-web/tools/tus-node-server.mjs")]
    pub tus_script: PathBuf,
    /// Milliseconds between two readings of the target's VmRSS.
    #[arg(long, default_value_t = 50)]
    pub rss_every_ms: u64,
    /// The server's bcrypt cost (registration speed only).
    #[arg(long, default_value_t = 4)]
    pub bcrypt_cost: u32,
}

/// The sizes of a run, in bytes, with the quick defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Phase A: plaintext bytes.
    pub big: u64,
    pub concurrent: usize,
    /// Phase B: plaintext bytes per upload.
    pub each: u64,
    pub record_size: u64,
    /// Ciphertext bytes per PATCH: a whole number of records.
    pub patch_bytes: u64,
    pub hash_bytes: u64,
}

impl Plan {
    pub fn from_args(a: &UploadArgs) -> anyhow::Result<Plan> {
        let pick = |given: Option<u64>, full: u64, quick: u64| {
            given.unwrap_or(if a.quick { quick } else { full })
        };
        anyhow::ensure!(
            (1024..=MIB).contains(&a.record_size),
            "--record-size must be between 1024 and 1048576"
        );
        let big = pick(a.big_mib, 1024, 64) * MIB;
        let each = pick(a.each_mib, 128, 16) * MIB;
        let concurrent = a.concurrent.unwrap_or(if a.quick { 4 } else { 8 });
        let patch = pick(a.patch_mib, 64, 16) * MIB;
        let hash_bytes = pick(a.hash_mib, 1024, 64) * MIB;
        let sealed = a.record_size + TAG_BYTES;
        let patch_bytes = patch / sealed * sealed;
        anyhow::ensure!(big > 0 && each > 0, "sizes must be at least 1 MiB");
        anyhow::ensure!(concurrent > 0, "--concurrent must be at least 1");
        anyhow::ensure!(patch_bytes > 0, "--patch-mib must hold at least one record");
        Ok(Plan {
            big,
            concurrent,
            each,
            record_size: a.record_size,
            patch_bytes,
            hash_bytes,
        })
    }

    /// `Upload-Length` of a file of `size` plaintext bytes (DESIGN §8).
    pub fn cipher_len(&self, size: u64) -> u64 {
        size + TAG_BYTES * size.div_ceil(self.record_size).max(1)
    }

    /// The body lengths of the PATCHes of an upload of `length` ciphertext bytes.
    pub fn patches(&self, length: u64) -> impl Iterator<Item = u64> + '_ {
        let full = length / self.patch_bytes;
        let rest = length % self.patch_bytes;
        std::iter::repeat_n(self.patch_bytes, full as usize).chain((rest > 0).then_some(rest))
    }
}

/// tus `Upload-Metadata`: `key base64(value)` pairs, standard base64, comma separated.
pub fn tus_metadata(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// An upload's URL from its `Location` (relative or absolute) and the base URL.
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            location.trim_start_matches('/')
        )
    }
}

/// The upload id: the last path segment of its URL.
pub fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// One target's HTTP side: the tus client every target gets, unchanged.
struct Tus {
    http: reqwest::Client,
    base: String,
    target: Target,
    /// `Bearer ...` (sent to every target; the baselines ignore it).
    auth: String,
    /// The bytes every PATCH body is cut from.
    body: Bytes,
    /// `Upload-Checksum` values by body length, when on.
    checksums: Arc<HashMap<u64, String>>,
    plan: Plan,
}

/// A finished upload.
struct Uploaded {
    /// Where its bytes are downloaded from.
    download_url: String,
    length: u64,
}

impl Tus {
    async fn upload(&self, length: u64, metadata: &str) -> anyhow::Result<Uploaded> {
        let r = self
            .http
            .post(format!("{}/api/uploads", self.base))
            .header("Tus-Resumable", "1.0.0")
            .header("Authorization", &self.auth)
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", metadata)
            .send()
            .await?;
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = r.text().await.unwrap_or_default();
        anyhow::ensure!(status == 201, "POST answered {status}: {text}");
        let url = resolve(
            &self.base,
            &location.context("POST answered without Location")?,
        );
        let mut offset = 0u64;
        for len in self.plan.patches(length) {
            let mut req = self
                .http
                .patch(&url)
                .header("Tus-Resumable", "1.0.0")
                .header("Authorization", &self.auth)
                .header("Content-Type", "application/offset+octet-stream")
                .header("Upload-Offset", offset.to_string());
            if let Some(sum) = self.checksums.get(&len) {
                req = req.header("Upload-Checksum", format!("sha256 {sum}"));
            }
            let r = req.body(self.body.slice(..len as usize)).send().await?;
            let status = r.status().as_u16();
            let new_offset = r
                .headers()
                .get("upload-offset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let text = r.text().await.unwrap_or_default();
            anyhow::ensure!(status == 204, "PATCH at {offset} answered {status}: {text}");
            offset += len;
            anyhow::ensure!(
                new_offset == Some(offset),
                "PATCH answered Upload-Offset {new_offset:?}, expected {offset}"
            );
        }
        let download_url = match self.target {
            Target::Server => format!("{}/api/files/{}", self.base, last_segment(&url)),
            Target::Plain | Target::TusNode => url,
        };
        Ok(Uploaded {
            download_url,
            length,
        })
    }

    /// Wait until a finished upload can be downloaded (the server's finalize_upload).
    async fn wait_ready(&self, up: &Uploaded) -> anyhow::Result<()> {
        if self.target != Target::Server {
            return Ok(());
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let r = self
                .http
                .get(&up.download_url)
                .header("Authorization", &self.auth)
                .header("Range", "bytes=0-0")
                .send()
                .await?;
            match r.status().as_u16() {
                200 | 206 => return Ok(()),
                404 if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                status => {
                    let text = r.text().await.unwrap_or_default();
                    anyhow::bail!("waiting for the file: GET answered {status}: {text}");
                }
            }
        }
    }

    /// Download a whole file, counting its bytes without keeping them.
    async fn download(&self, up: &Uploaded) -> anyhow::Result<u64> {
        let mut r = self
            .http
            .get(&up.download_url)
            .header("Authorization", &self.auth)
            .send()
            .await?;
        let status = r.status().as_u16();
        anyhow::ensure!(status == 200, "GET answered {status}");
        let mut n = 0u64;
        while let Some(chunk) = r.chunk().await? {
            n += chunk.len() as u64;
        }
        anyhow::ensure!(
            n == up.length,
            "downloaded {n} bytes, expected {}",
            up.length
        );
        Ok(n)
    }
}

/// VmRSS readings of a process while a phase runs.
struct RssSampler {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

/// What a sampler saw, KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    pub start_kb: u64,
    pub max_kb: u64,
    pub end_kb: u64,
    /// The readings a quarter, half and three quarters of the way through, and the last:
    /// a phase whose memory grows with the bytes moved shows a slope here.
    pub quarters_kb: [u64; 4],
    pub samples: usize,
}

/// The readings at 1/4, 1/2, 3/4 and the end of `seen` (taken at a steady period).
fn quarters(seen: &[u64]) -> [u64; 4] {
    let at = |k: usize| {
        seen.get(seen.len().saturating_sub(1) * k / 4)
            .copied()
            .unwrap_or(0)
    };
    [at(1), at(2), at(3), at(4)]
}

impl RssSampler {
    fn start(pid: u32, every: Duration) -> RssSampler {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => seen.extend(procs::rss_kb(pid)),
                    _ = &mut stopped => break,
                }
            }
            seen.extend(procs::rss_kb(pid));
            seen
        });
        RssSampler { stop, task }
    }

    async fn finish(self) -> Rss {
        let _ = self.stop.send(());
        let seen = self.task.await.unwrap_or_default();
        Rss {
            start_kb: seen.first().copied().unwrap_or(0),
            max_kb: seen.iter().copied().max().unwrap_or(0),
            end_kb: seen.last().copied().unwrap_or(0),
            quarters_kb: quarters(&seen),
            samples: seen.len(),
        }
    }
}

/// One phase on one target.
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseResult {
    pub files: usize,
    /// Bytes moved (ciphertext), all files.
    pub bytes: u64,
    /// From the first request to the last answer.
    pub secs: f64,
    /// Uploads on the server: from the last PATCH answer to the last file downloadable.
    pub ready_secs: f64,
    pub rss: Rss,
}

impl PhaseResult {
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }
}

/// Everything measured on one target.
#[derive(Debug)]
pub struct TargetResult {
    pub target: Target,
    pub idle_rss_kb: u64,
    /// A, B, C1, C2.
    pub phases: [PhaseResult; 4],
}

const PHASES: [&str; 4] = ["A", "B", "C1", "C2"];

/// A manifest envelope (real, sealed and signed from SENDER to RECIPIENT) and the
/// `Upload-Metadata` carrying it, for a file of `size` plaintext bytes.
fn metadata_for(identity: &Identity, plan: &Plan, size: u64, n: usize) -> anyhow::Result<String> {
    let mut rng = rand::thread_rng();
    let file_id = uuid::Uuid::new_v4().to_string();
    let mut sha = [0u8; 32];
    let mut nonce = [0u8; 12];
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut sha);
    rng.fill_bytes(&mut nonce);
    rng.fill_bytes(&mut key);
    let manifest = serde_json::json!({
        "file_id": file_id,
        "name": format!("bench-{n}.bin"),
        "mime": "application/octet-stream",
        "size": size,
        "sha256": b64::encode(sha),
        "record_size": plan.record_size,
        "nonce": b64::encode(nonce),
        "file_key": b64::encode(key),
    });
    let enc = identity.enc.to_public_key();
    let envelope = seal(SENDER, identity, RECIPIENT, &enc, &manifest)?;
    Ok(tus_metadata(&[
        ("recipient", RECIPIENT),
        ("file_id", &file_id),
        ("record_size", &plan.record_size.to_string()),
        ("manifest", &envelope.to_json()?),
    ]))
}

/// Register SENDER and RECIPIENT (one identity) and log SENDER in; its access token.
async fn register(base: &str, identity: &Identity) -> anyhow::Result<String> {
    let client = Client::new(base)?;
    let mut token = String::new();
    for name in [SENDER, RECIPIENT] {
        let req = RegisterRequest::build(name, PASSWORD, KDF_ITERATIONS, identity)?;
        client
            .register_request(&req)
            .await
            .with_context(|| format!("registering {name}"))?;
        if name == SENDER {
            token = client
                .login_with_auth_key(name, &b64::decode(&req.auth_key)?)
                .await
                .with_context(|| format!("logging in {name}"))?
                .access_token;
        }
    }
    Ok(token)
}

fn start_target(target: Target, args: &UploadArgs, plan: &Plan) -> anyhow::Result<Proc> {
    match target {
        Target::Server => {
            let largest = plan.cipher_len(plan.big).max(plan.cipher_len(plan.each));
            procs::start_server(
                &args.server_bin,
                &[
                    ("SECURECHAT_AUTH__BCRYPT_COST", args.bcrypt_cost.to_string()),
                    // One token serves the whole run, however slow the disk.
                    ("SECURECHAT_AUTH__ACCESS_TTL_SECS", "86400".to_string()),
                    ("SECURECHAT_FILES__MAX_FILE_BYTES", largest.to_string()),
                    (
                        "SECURECHAT_FILES__MAX_PATCH_BYTES",
                        plan.patch_bytes.max(1024).to_string(),
                    ),
                    ("SECURECHAT_FILES__QUOTA_BYTES", (1u64 << 50).to_string()),
                    (
                        "SECURECHAT_FILES__MAX_UPLOADS_IN_FLIGHT",
                        (plan.concurrent + 1).to_string(),
                    ),
                    // Measure the disk, not the upload rate limit (still asked per PATCH).
                    (
                        "SECURECHAT_PLUGINS__RATE_LIMIT__UPLOAD_BYTES_PER_ACCOUNT__BURST",
                        u32::MAX.to_string(),
                    ),
                ],
            )
        }
        Target::Plain => procs::start_plain_upload_server(),
        Target::TusNode => procs::start_tus_node(&args.node, &args.tus_script),
    }
}

async fn run_target(
    target: Target,
    args: &UploadArgs,
    plan: &Plan,
    identity: &Identity,
    body: Bytes,
    checksums: Arc<HashMap<u64, String>>,
) -> anyhow::Result<TargetResult> {
    let n = target.name();
    let proc_ = start_target(target, args, plan)?;
    let base = proc_.addr.clone();
    let auth = if target == Target::Server {
        format!("Bearer {}", register(&base, identity).await?)
    } else {
        "Bearer not-checked".to_owned()
    };
    println!("[{n}] at {base} (pid {})", proc_.pid());
    let tus = Arc::new(Tus {
        http: reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(plan.concurrent + 2)
            .build()?,
        base,
        target,
        auth,
        body,
        checksums,
        plan: plan.clone(),
    });
    // Every manifest is sealed before any timing.
    let big_meta = metadata_for(identity, plan, plan.big, 0)?;
    let each_meta = (0..plan.concurrent)
        .map(|i| metadata_for(identity, plan, plan.each, i + 1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss_kb = proc_.rss_kb().unwrap_or(0);
    let every = Duration::from_millis(args.rss_every_ms.max(1));

    // A: one big upload.
    let sampler = RssSampler::start(proc_.pid(), every);
    let started = Instant::now();
    let big = tus
        .upload(plan.cipher_len(plan.big), &big_meta)
        .await
        .context("phase A upload")?;
    let secs = started.elapsed().as_secs_f64();
    let ready = Instant::now();
    tus.wait_ready(&big).await?;
    let a = PhaseResult {
        files: 1,
        bytes: big.length,
        secs,
        ready_secs: finalized(target, ready),
        rss: sampler.finish().await,
    };
    print_phase(n, "A", "upload", &a);

    // B: concurrent uploads.
    let sampler = RssSampler::start(proc_.pid(), every);
    let started = Instant::now();
    let tasks: Vec<_> = each_meta
        .into_iter()
        .map(|meta| {
            let tus = tus.clone();
            let length = plan.cipher_len(plan.each);
            tokio::spawn(async move { tus.upload(length, &meta).await })
        })
        .collect();
    let mut many = Vec::with_capacity(tasks.len());
    for t in tasks {
        many.push(t.await.context("upload task")?.context("phase B upload")?);
    }
    let secs = started.elapsed().as_secs_f64();
    let ready = Instant::now();
    for up in &many {
        tus.wait_ready(up).await?;
    }
    let b = PhaseResult {
        files: many.len(),
        bytes: many.iter().map(|u| u.length).sum(),
        secs,
        ready_secs: finalized(target, ready),
        rss: sampler.finish().await,
    };
    print_phase(n, "B", "upload", &b);

    // C1: the big file downloaded.
    let sampler = RssSampler::start(proc_.pid(), every);
    let started = Instant::now();
    let bytes = tus.download(&big).await.context("phase C1 download")?;
    let c1 = PhaseResult {
        files: 1,
        bytes,
        secs: started.elapsed().as_secs_f64(),
        ready_secs: 0.0,
        rss: sampler.finish().await,
    };
    print_phase(n, "C1", "download", &c1);

    // C2: the concurrent uploads downloaded at once.
    let sampler = RssSampler::start(proc_.pid(), every);
    let started = Instant::now();
    let many = Arc::new(many);
    let tasks: Vec<_> = (0..many.len())
        .map(|i| {
            let (tus, many) = (tus.clone(), many.clone());
            tokio::spawn(async move { tus.download(&many[i]).await })
        })
        .collect();
    let mut bytes = 0;
    for t in tasks {
        bytes += t
            .await
            .context("download task")?
            .context("phase C2 download")?;
    }
    let c2 = PhaseResult {
        files: many.len(),
        bytes,
        secs: started.elapsed().as_secs_f64(),
        ready_secs: 0.0,
        rss: sampler.finish().await,
    };
    print_phase(n, "C2", "download", &c2);
    drop(proc_);
    Ok(TargetResult {
        target,
        idle_rss_kb,
        phases: [a, b, c1, c2],
    })
}

/// Seconds since `since` for the server (its finalize_upload), 0 for the baselines (a
/// finished upload is downloadable at once).
fn finalized(target: Target, since: Instant) -> f64 {
    if target == Target::Server {
        since.elapsed().as_secs_f64()
    } else {
        0.0
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn print_phase(n: &str, phase: &str, what: &str, p: &PhaseResult) {
    let ready = if p.ready_secs > 0.0 {
        format!("; downloadable {:.3} s after the last answer", p.ready_secs)
    } else {
        String::new()
    };
    println!(
        "[{n}] {phase} {what}: {} file(s), {:.1} MB in {:.3} s: {:.1} MB/s{ready}; RSS start {:.1} / max {:.1} / end {:.1} MiB; at 1/4, 1/2, 3/4, end: {} MiB ({} samples)",
        p.files,
        p.bytes as f64 / 1e6,
        p.secs,
        p.mb_per_sec(),
        mb(p.rss.start_kb),
        mb(p.rss.max_kb),
        mb(p.rss.end_kb),
        p.rss
            .quarters_kb
            .iter()
            .map(|&kb| format!("{:.1}", mb(kb)))
            .collect::<Vec<_>>()
            .join(" / "),
        p.rss.samples
    );
}

/// Single-thread BLAKE3 over `total` bytes: `body` fed to one `Hasher::update` again and
/// again (what `b3sum --num-threads 1` does over a file in memory). MB/s.
fn blake3_rate(body: &[u8], total: u64) -> f64 {
    let mut hasher = blake3::Hasher::new();
    let started = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = left.min(body.len() as u64) as usize;
        hasher.update(&body[..n]);
        left -= n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(hasher.finalize());
    total as f64 / 1e6 / secs
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// Run the `upload` benchmark.
pub async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(&args)?;
    println!(
        "upload: A = 1 × {} MiB, B = {} × {} MiB, PATCH = {} records ({} bytes), record_size = {}, checksum = {}, targets = {:?}",
        plan.big / MIB,
        plan.concurrent,
        plan.each / MIB,
        plan.patch_bytes / (plan.record_size + TAG_BYTES),
        plan.patch_bytes,
        plan.record_size,
        if args.checksum { "sha256" } else { "none" },
        args.targets
    );
    println!(
        "note: bodies are whole ciphertext-sized records of pseudo-random bytes made once and \
         reused for every PATCH (the server cannot tell them from sealed records); sealing is \
         the client's cost and is not measured here. MB = 10^6 bytes of ciphertext \
         (Upload-Length), MiB = 2^20."
    );
    let mut rng = StdRng::seed_from_u64(0xf11e);
    let mut buf = vec![0u8; plan.patch_bytes as usize];
    rng.fill_bytes(&mut buf);
    let body = Bytes::from(buf);
    let mut checksums = HashMap::new();
    if args.checksum {
        let lengths = [plan.cipher_len(plan.big), plan.cipher_len(plan.each)];
        for len in lengths
            .iter()
            .flat_map(|&l| plan.patches(l).collect::<Vec<_>>())
        {
            checksums
                .entry(len)
                .or_insert_with(|| STANDARD.encode(Sha256::digest(&body[..len as usize])));
        }
    }
    let checksums = Arc::new(checksums);

    let hashed = {
        let (body, total) = (body.clone(), plan.hash_bytes);
        tokio::task::spawn_blocking(move || blake3_rate(&body, total)).await?
    };
    println!(
        "BLAKE3, one thread, {} MiB in memory: {hashed:.1} MB/s",
        plan.hash_bytes / MIB
    );

    let identity = Identity::generate()?;
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for &target in &args.targets {
        match run_target(
            target,
            &args,
            &plan,
            &identity,
            body.clone(),
            checksums.clone(),
        )
        .await
        {
            Ok(r) => results.push(r),
            Err(e) => {
                println!("[{}] FAILED: {e:#}", target.name());
                failed.push(target.name());
            }
        }
    }

    let rate = |t: Target, i: usize| {
        results
            .iter()
            .find(|r| r.target == t)
            .map_or(f64::NAN, |r| r.phases[i].mb_per_sec())
    };
    for (base, goal) in [
        (Target::Plain, "target >= 0.70"),
        (Target::TusNode, "target >= 2.0"),
    ] {
        let line: Vec<String> = PHASES
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{p} {:.3}", ratio(rate(Target::Server, i), rate(base, i))))
            .collect();
        println!("server / {}: {} ({goal})", base.name(), line.join(", "));
    }
    if let Some(s) = results.iter().find(|r| r.target == Target::Server) {
        println!(
            "server received A at {:.1} MB/s = {:.3} of one thread's BLAKE3 ({hashed:.1} MB/s); B at {:.1} MB/s = {:.3}",
            s.phases[0].mb_per_sec(),
            ratio(s.phases[0].mb_per_sec(), hashed),
            s.phases[1].mb_per_sec(),
            ratio(s.phases[1].mb_per_sec(), hashed),
        );
        let grew = s.phases.iter().map(|p| p.rss.max_kb).max().unwrap_or(0);
        println!(
            "server RSS: idle {:.1} MiB, max over all phases {:.1} MiB (+{:.1}); per phase max A {:.1} / B {:.1} / C1 {:.1} / C2 {:.1} MiB",
            mb(s.idle_rss_kb),
            mb(grew),
            mb(grew.saturating_sub(s.idle_rss_kb)),
            mb(s.phases[0].rss.max_kb),
            mb(s.phases[1].rss.max_kb),
            mb(s.phases[2].rss.max_kb),
            mb(s.phases[3].rss.max_kb),
        );
    }
    let mut line = format!(
        "RESULT big_mib={} concurrent={} each_mib={} patch_bytes={} checksum={} blake3_mbps={hashed:.1}",
        plan.big / MIB,
        plan.concurrent,
        plan.each / MIB,
        plan.patch_bytes,
        args.checksum
    );
    for r in &results {
        let n = r.target.name();
        let _ = write!(line, " {n}_idle_rss_kb={}", r.idle_rss_kb);
        for (p, ph) in PHASES.iter().zip(&r.phases) {
            let _ = write!(
                line,
                " {n}_{p}_mbps={:.1} {n}_{p}_rss_max_kb={}",
                ph.mb_per_sec(),
                ph.rss.max_kb
            );
        }
    }
    for base in [Target::Plain, Target::TusNode] {
        for (i, p) in PHASES.iter().enumerate() {
            let r = ratio(rate(Target::Server, i), rate(base, i));
            if r.is_finite() {
                let _ = write!(line, " ratio_{}_{p}={r:.3}", base.name());
            }
        }
    }
    println!("{line}");
    anyhow::ensure!(failed.is_empty(), "targets failed: {}", failed.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: UploadArgs,
    }

    fn plan(argv: &[&str]) -> Plan {
        let cli = Cli::try_parse_from(std::iter::once("upload").chain(argv.iter().copied()))
            .expect("arguments parse");
        Plan::from_args(&cli.args).expect("a valid plan")
    }

    #[test]
    fn the_full_run_is_one_gib_then_eight_times_128_mib_in_64_mib_patches() {
        let p = plan(&[]);
        assert_eq!((p.big, p.concurrent, p.each), (1 << 30, 8, 128 << 20));
        // 1023 whole records of 65,552 bytes fit in 64 MiB.
        assert_eq!(p.patch_bytes, 1023 * 65552);
        assert_eq!(p.hash_bytes, 1 << 30);
        assert_eq!(p.cipher_len(1 << 30), (1 << 30) + 16 * 16384);
    }

    #[test]
    fn quick_mode_shrinks_the_defaults_but_explicit_flags_win() {
        let p = plan(&["--quick"]);
        assert_eq!((p.big, p.concurrent, p.each), (64 << 20, 4, 16 << 20));
        assert_eq!(p.patch_bytes, 255 * 65552);
        let p = plan(&["--quick", "--big-mib", "5", "--concurrent", "2"]);
        assert_eq!((p.big, p.concurrent, p.each), (5 << 20, 2, 16 << 20));
    }

    #[test]
    fn targets_and_checksum_parse() {
        let cli = Cli::try_parse_from(["upload", "--targets", "server,tus-node", "--checksum"])
            .expect("arguments parse");
        assert_eq!(cli.args.targets, vec![Target::Server, Target::TusNode]);
        assert!(cli.args.checksum);
        let cli = Cli::try_parse_from(["upload"]).expect("arguments parse");
        assert_eq!(
            cli.args.targets,
            vec![Target::Server, Target::Plain, Target::TusNode]
        );
        assert!(!cli.args.checksum);
        assert!(Cli::try_parse_from(["upload", "--targets", "nginx"]).is_err());
    }

    #[test]
    fn bad_sizes_are_refused() {
        for argv in [
            &["upload", "--record-size", "100"][..],
            &["upload", "--patch-mib", "0"][..],
            &["upload", "--concurrent", "0"][..],
            &["upload", "--big-mib", "0"][..],
        ] {
            let cli = Cli::try_parse_from(argv).expect("arguments parse");
            assert!(Plan::from_args(&cli.args).is_err(), "{argv:?} accepted");
        }
    }

    #[test]
    fn patches_are_whole_records_and_add_up() {
        let p = plan(&["--quick"]);
        for size in [1u64, 65536, 65537, 16 << 20, 64 << 20] {
            let length = p.cipher_len(size);
            let bodies: Vec<u64> = p.patches(length).collect();
            assert_eq!(bodies.iter().sum::<u64>(), length);
            for b in &bodies[..bodies.len() - 1] {
                assert_eq!(b % 65552, 0);
            }
        }
        assert_eq!(p.cipher_len(0), 16);
    }

    /// Not a benchmark: a few KiB through the client and the plain handler, in process.
    #[tokio::test]
    async fn the_client_uploads_and_downloads_through_the_plain_handler() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(crate::plain_upload::serve(listener, dir.path().join("up")));
        let p = Plan {
            big: 5000,
            concurrent: 1,
            each: 1,
            record_size: 1024,
            patch_bytes: 3 * 1040,
            hash_bytes: 0,
        };
        let mut body = vec![0u8; p.patch_bytes as usize];
        StdRng::seed_from_u64(3).fill_bytes(&mut body);
        let tus = Tus {
            http: reqwest::Client::new(),
            base: base.clone(),
            target: Target::Plain,
            auth: "Bearer x".into(),
            body: Bytes::from(body.clone()),
            checksums: Arc::new(HashMap::new()),
            plan: p.clone(),
        };
        let length = p.cipher_len(5000);
        assert_eq!(length, 5080);
        let up = tus.upload(length, "recipient Ym9i").await.unwrap();
        assert_eq!(tus.download(&up).await.unwrap(), 5080);
        let got = reqwest::get(&up.download_url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut want = body.clone();
        want.extend_from_slice(&body[..5080 - 3120]);
        assert_eq!(&got[..], &want[..]);
        // A PATCH at a stale offset is refused and changes nothing.
        let r = tus
            .http
            .patch(&up.download_url)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", "0")
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 409);
        assert_eq!(r.headers()["upload-offset"], "5080");
        let got = reqwest::get(&up.download_url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], &want[..]);
        let r = tus.http.head(&up.download_url).send().await.unwrap();
        assert_eq!(r.headers()["upload-length"], "5080");
        let missing = format!("{base}/api/uploads/nope");
        assert_eq!(reqwest::get(&missing).await.unwrap().status().as_u16(), 404);
    }

    #[test]
    fn rss_quarters_come_from_evenly_spaced_readings() {
        assert_eq!(quarters(&[]), [0, 0, 0, 0]);
        assert_eq!(quarters(&[7]), [7, 7, 7, 7]);
        assert_eq!(quarters(&[0, 1, 2, 3, 4, 5, 6, 7, 8]), [2, 4, 6, 8]);
    }

    #[test]
    fn metadata_and_locations_are_read_as_tus_says() {
        assert_eq!(
            tus_metadata(&[("recipient", "bob"), ("record_size", "65536")]),
            "recipient Ym9i,record_size NjU1MzY="
        );
        assert_eq!(
            resolve("http://h:1", "/api/uploads/x"),
            "http://h:1/api/uploads/x"
        );
        assert_eq!(resolve("http://h:1/", "http://o:2/u/y"), "http://o:2/u/y");
        assert_eq!(last_segment("http://h:1/api/uploads/abc"), "abc");
    }
}
