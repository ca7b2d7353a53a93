//! `relay`: WebSocket relay throughput, delivery latency and memory, against the real
//! server and, in the same run and with the same load, against `echo-relay` (the
//! ceiling: a relay that stores nothing), so results read as a ratio to the ceiling.
//!
//! Per target: start it, (server only) register and log in N users and fetch a ticket per
//! connection; optionally open K idle connections and report the server's RSS growth per
//! connection; connect one socket per user; then every user sends `send` frames to random
//! contacts — in `saturate` mode keeping up to W sends unacknowledged, in `paced` mode at
//! a total of R msg/s spread evenly over the users — for a warm-up and a measured window,
//! then drains. Delivery latency is send to receipt of the `message` frame at the
//! recipient, matched by envelope id through a map of send instants (nothing is embedded
//! in the envelope). The load generator shares the machine's cores with the target.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use securechat_client::envelope::{new_message_id, now_ms, pad, seal_with, Reader, SealInputs};
use securechat_client::ws::{self, WsOptions, WsStream};
use securechat_client::{b64, Client, Identity, RegisterRequest};
use serde::Deserialize;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::fsync_probe::FsyncProbe;
use crate::procs::{self, Proc};
use crate::sched_probe::{SchedProbe, SchedResult};

/// Client-side read buffer per socket, so that thousands of sockets fit in the loadgen.
const CLIENT_READ_BUFFER: usize = 4 * 1024;
const PASSWORD: &str = "benchmark password";
const KDF_ITERATIONS: u32 = 1000;
const SHARDS: usize = 64;
const FRAME_HEAD: &str = "{\"type\":\"send\",\"envelope\":{\"v\":1,\"id\":\"";

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOPPED: u8 = 2;

/// How each user sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// As fast as acks allow: up to `window` unacknowledged sends per user.
    Saturate,
    /// `rate` msg/s in total, spread evenly over the users (open loop).
    Paced,
}

/// Which relays to run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Targets {
    Both,
    Server,
    Echo,
}

/// The `relay` subcommand's options.
#[derive(Clone, Debug, clap::Args)]
pub struct RelayArgs {
    /// The securechat binary to start (build it with --release).
    #[arg(long, default_value = "target/release/securechat")]
    pub server_bin: PathBuf,
    /// Users, one socket each.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    #[arg(long, value_enum, default_value_t = Mode::Saturate)]
    pub mode: Mode,
    /// Total messages per second in paced mode.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Seconds at most to wait, after sending stops, for outstanding deliveries and acks.
    #[arg(long, default_value_t = 5)]
    pub drain: u64,
    /// Unacknowledged sends per user in saturate mode.
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Random peers each user writes to (all others if fewer exist); one envelope is
    /// built and signed per (sender, contact) pair.
    #[arg(long, default_value_t = 16)]
    pub contacts: usize,
    /// Plaintext text length in bytes (the ciphertext is this plus JSON, padded to its size
    /// bucket as the clients pad it (PROTOCOL.md §8.2), plus the tag).
    #[arg(long, default_value_t = 200)]
    pub text_bytes: usize,
    /// Also open this many idle authenticated connections and report the RSS they cost.
    #[arg(long, default_value_t = 0)]
    pub idle_connections: usize,
    /// The server's SQLite synchronous mode (storage.synchronous).
    #[arg(long, default_value = "normal")]
    pub synchronous: String,
    /// The server's bcrypt cost (registration and login speed only).
    #[arg(long, default_value_t = 4)]
    pub bcrypt_cost: u32,
    /// Concurrent registrations / logins.
    #[arg(long, default_value_t = 16)]
    pub register_concurrency: usize,
    /// Concurrent connection set-ups (ticket + upgrade).
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    #[arg(long, value_enum, default_value_t = Targets::Both)]
    pub targets: Targets,
    /// While the load runs against the server, rewrite a 4 KiB block of a file in its data
    /// dir and fdatasync it this many times a second, and report the latencies: the disk's
    /// fsync floor in the same run. Default: 50 in paced mode, 0 (off) in saturate mode.
    #[arg(long)]
    pub fsync_probe_hz: Option<u32>,
    /// While the load runs, measure the machine's scheduling floor (a 1 kHz real-time
    /// sampling thread's wake-up lateness and the hypervisor's steal time). Default: on in
    /// paced mode.
    #[arg(long)]
    pub sched_probe: Option<bool>,
}

impl RelayArgs {
    /// The fsync probe's rate (0: off).
    fn fsync_probe_hz(&self) -> u32 {
        self.fsync_probe_hz.unwrap_or(match self.mode {
            Mode::Paced => 50,
            Mode::Saturate => 0,
        })
    }

    fn sched_probe(&self) -> bool {
        self.sched_probe.unwrap_or(matches!(self.mode, Mode::Paced))
    }
}

/// A prebuilt `send` frame for one (sender, recipient) pair, split around the two values
/// that change per message (`id` and `sent_at`).
struct Template {
    /// `","from":"A","to":"B","sent_at":`
    mid: String,
    /// `,"iv":...,"sig":"..."}}` (closes the envelope and the frame).
    tail: String,
}

impl Template {
    fn frame(&self, id: &str, sent_at: u64) -> String {
        let mut s = String::with_capacity(
            FRAME_HEAD.len() + id.len() + self.mid.len() + 16 + self.tail.len(),
        );
        s.push_str(FRAME_HEAD);
        s.push_str(id);
        s.push_str(&self.mid);
        let _ = write!(s, "{sent_at}");
        s.push_str(&self.tail);
        s
    }
}

fn user_name(i: usize) -> String {
    format!("u{i:05}")
}

/// One valid envelope (sealed and signed) per (sender, contact) pair.
fn build_templates(
    identity: &Identity,
    users: usize,
    contacts: usize,
    text_bytes: usize,
    seed: u64,
) -> anyhow::Result<Vec<Vec<Template>>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let enc = identity.enc.to_public_key();
    let text: String = (0..text_bytes)
        .map(|_| char::from(rng.gen_range(b'a'..=b'z')))
        .collect();
    let plaintext = pad(serde_json::to_vec(&serde_json::json!({ "text": text }))?);
    let mut all = Vec::with_capacity(users);
    for from in 0..users {
        let mut peers: Vec<usize> = (0..users).filter(|&p| p != from).collect();
        let take = contacts.min(peers.len());
        for k in 0..take {
            let j = rng.gen_range(k..peers.len());
            peers.swap(k, j);
        }
        peers.truncate(take);
        let from_name = user_name(from);
        let mut list = Vec::with_capacity(take);
        for to in peers {
            let to_name = user_name(to);
            let inputs = SealInputs::fresh_with(&mut rng, now_ms());
            let readers = [
                Reader {
                    name: &from_name,
                    enc: &enc,
                },
                Reader {
                    name: &to_name,
                    enc: &enc,
                },
            ];
            let env = seal_with(
                &mut rng,
                &inputs,
                &from_name,
                &identity.sign,
                &to_name,
                &readers,
                &plaintext,
            )?;
            let json = env.to_json()?;
            let mid = format!(
                "\",\"from\":{},\"to\":{},\"sent_at\":",
                serde_json::Value::String(from_name.clone()),
                serde_json::Value::String(to_name)
            );
            let head = format!("{{\"v\":1,\"id\":\"{}{mid}{}", env.id, env.sent_at);
            let rest = json
                .strip_prefix(&head)
                .context("envelope JSON does not start as expected")?;
            let t = Template {
                mid,
                tail: format!("{rest}}}"),
            };
            anyhow::ensure!(
                t.frame(&env.id, env.sent_at)
                    == format!("{{\"type\":\"send\",\"envelope\":{json}}}"),
                "template does not rebuild the envelope"
            );
            list.push(t);
        }
        all.push(list);
    }
    Ok(all)
}

#[derive(Clone, Copy)]
struct Pending {
    sent: Instant,
    in_window: bool,
    acked: bool,
    delivered: bool,
}

struct Shared {
    pending: Vec<Mutex<HashMap<u128, Pending>>>,
    phase: AtomicU8,
    /// When the load started (warm-up included): the origin of the latency timeline.
    started: Instant,
}

/// The latency timeline's bucket: messages are grouped by when they were sent.
const TIMELINE_BUCKET: Duration = Duration::from_millis(250);

impl Shared {
    fn new() -> Shared {
        Shared {
            pending: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            phase: AtomicU8::new(WARMUP),
            started: Instant::now(),
        }
    }

    fn shard(&self, key: u128) -> &Mutex<HashMap<u128, Pending>> {
        &self.pending[(key as usize) % SHARDS]
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// In-window messages not yet (delivered, acked).
    fn outstanding(&self) -> (u64, u64) {
        let (mut undelivered, mut unacked) = (0, 0);
        for shard in &self.pending {
            if let Ok(map) = shard.lock() {
                for p in map.values().filter(|p| p.in_window) {
                    undelivered += u64::from(!p.delivered);
                    unacked += u64::from(!p.acked);
                }
            }
        }
        (undelivered, unacked)
    }
}

fn id_key(id: &str) -> Option<u128> {
    uuid::Uuid::try_parse(id).ok().map(|u| u.as_u128())
}

#[derive(Default)]
struct WriterStats {
    sent: u64,
    sent_window: u64,
    send_failures: u64,
    /// Paced mode: how late each send was against its schedule, µs.
    lag_us: Vec<u32>,
}

#[derive(Default)]
struct ReaderStats {
    delivered: u64,
    delivered_window: u64,
    delivery_us: Vec<u32>,
    /// Worst delivery latency (µs) of the messages sent in each TIMELINE_BUCKET since the
    /// load started, warm-up included.
    timeline_us: Vec<u32>,
    ack_us: Vec<u32>,
    acks: u64,
    error_frames: HashMap<String, u64>,
    disconnects: u64,
    unexpected: u64,
    other_frames: u64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[derive(Deserialize)]
struct LightFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    envelope: Option<LightEnvelope<'a>>,
}

#[derive(Deserialize)]
struct LightEnvelope<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

#[allow(clippy::too_many_arguments)]
async fn writer(
    mut sink: SplitSink<WsStream, Message>,
    templates: Arc<Vec<Vec<Template>>>,
    me: usize,
    shared: Arc<Shared>,
    mode: Mode,
    window: Arc<Semaphore>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) -> (WriterStats, SplitSink<WsStream, Message>) {
    let mut stats = WriterStats::default();
    let mine = &templates[me];
    if mine.is_empty() {
        return (stats, sink);
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 ^ me as u64);
    let mut tick = if mode == Mode::Paced {
        let offset = period.mul_f64(rng.gen_range(0.0..1.0));
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Some(t)
    } else {
        None
    };
    loop {
        match &mut tick {
            Some(t) => {
                let scheduled = tokio::select! {
                    s = t.tick() => s,
                    _ = stop.changed() => break,
                };
                let late = tokio::time::Instant::now().saturating_duration_since(scheduled);
                stats.lag_us.push(micros(late));
            }
            None => {
                let permit = tokio::select! {
                    p = window.acquire() => p,
                    _ = stop.changed() => break,
                };
                match permit {
                    Ok(p) => p.forget(),
                    Err(_) => break,
                }
            }
        }
        let phase = shared.phase();
        if phase == STOPPED {
            break;
        }
        let t = &mine[rng.gen_range(0..mine.len())];
        let id = new_message_id(&mut rng);
        let Some(key) = id_key(&id) else { continue };
        let frame = t.frame(&id, now_ms());
        let in_window = phase == MEASURE;
        if let Ok(mut shard) = shared.shard(key).lock() {
            shard.insert(
                key,
                Pending {
                    sent: Instant::now(),
                    in_window,
                    acked: false,
                    delivered: false,
                },
            );
        }
        if sink.send(Message::text(frame)).await.is_err() {
            stats.send_failures += 1;
            if let Ok(mut shard) = shared.shard(key).lock() {
                shard.remove(&key);
            }
            break;
        }
        stats.sent += 1;
        stats.sent_window += u64::from(in_window);
    }
    (stats, sink)
}

/// What a reader does with each event, factored for both load and idle sockets.
async fn reader(
    mut stream: SplitStream<WsStream>,
    shared: Arc<Shared>,
    window: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> ReaderStats {
    let mut stats = ReaderStats::default();
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = stop.changed() => break,
        };
        let text = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                if !*stop.borrow() {
                    stats.disconnects += 1;
                }
                break;
            }
            Some(Ok(_)) => continue,
        };
        let now = Instant::now();
        let Ok(frame) = serde_json::from_str::<LightFrame<'_>>(text.as_str()) else {
            stats.other_frames += 1;
            continue;
        };
        match frame.kind.as_ref() {
            "message" => {
                stats.delivered += 1;
                if shared.phase() == MEASURE {
                    stats.delivered_window += 1;
                }
                let Some(key) = frame.envelope.and_then(|e| id_key(&e.id)) else {
                    stats.unexpected += 1;
                    continue;
                };
                let Ok(mut shard) = shared.shard(key).lock() else {
                    continue;
                };
                match shard.get_mut(&key) {
                    Some(p) if !p.delivered => {
                        p.delivered = true;
                        let latency = micros(now - p.sent);
                        if p.in_window {
                            stats.delivery_us.push(latency);
                        }
                        let bucket = (p.sent.saturating_duration_since(shared.started).as_millis()
                            / TIMELINE_BUCKET.as_millis())
                            as usize;
                        if stats.timeline_us.len() <= bucket {
                            stats.timeline_us.resize(bucket + 1, 0);
                        }
                        stats.timeline_us[bucket] = stats.timeline_us[bucket].max(latency);
                        if p.acked {
                            shard.remove(&key);
                        }
                    }
                    _ => stats.unexpected += 1,
                }
            }
            "ack" => {
                stats.acks += 1;
                window.add_permits(1);
                let Some(key) = frame.id.and_then(|id| id_key(&id)) else {
                    stats.unexpected += 1;
                    continue;
                };
                let Ok(mut shard) = shared.shard(key).lock() else {
                    continue;
                };
                match shard.get_mut(&key) {
                    Some(p) if !p.acked => {
                        p.acked = true;
                        if p.in_window {
                            stats.ack_us.push(micros(now - p.sent));
                        }
                        if p.delivered {
                            shard.remove(&key);
                        }
                    }
                    _ => stats.unexpected += 1,
                }
            }
            "error" => {
                let code = frame.code.map_or_else(|| "?".to_owned(), Cow::into_owned);
                *stats.error_frames.entry(code).or_default() += 1;
                // A refused send will not be acked: give its slot back, forget it.
                if let Some(key) = frame.id.and_then(|id| id_key(&id)) {
                    if let Ok(mut shard) = shared.shard(key).lock() {
                        if shard.remove(&key).is_some() {
                            window.add_permits(1);
                        }
                    }
                }
            }
            _ => stats.other_frames += 1,
        }
    }
    stats
}

/// Latency summary in ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Percentiles of latencies given in µs, in ms.
pub(crate) fn summarize(mut us: Vec<u32>) -> Summary {
    us.sort_unstable();
    let at = |q: f64| -> f64 {
        if us.is_empty() {
            return f64::NAN;
        }
        let i = ((us.len() as f64 - 1.0) * q).round() as usize;
        f64::from(us[i.min(us.len() - 1)]) / 1000.0
    };
    Summary {
        n: us.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: us.last().map_or(f64::NAN, |m| f64::from(*m) / 1000.0),
    }
}

/// The outcome of one load phase.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub elapsed: f64,
    pub sent_total: u64,
    pub sent_window: u64,
    pub delivered_window: u64,
    pub delivered_per_sec: f64,
    pub sent_per_sec: f64,
    pub delivery: Summary,
    pub ack: Summary,
    pub lag: Summary,
    /// Worst delivery latency (ms) per TIMELINE_BUCKET of send time, warm-up included.
    pub timeline_ms: Vec<f64>,
    pub error_frames: HashMap<String, u64>,
    pub disconnects: u64,
    pub send_failures: u64,
    pub lost: u64,
    pub unacked: u64,
    pub unexpected: u64,
    pub other_frames: u64,
}

impl LoadResult {
    /// Every kind of failure, added up.
    pub fn errors(&self) -> u64 {
        self.error_frames.values().sum::<u64>()
            + self.disconnects
            + self.send_failures
            + self.lost
            + self.unacked
            + self.unexpected
    }
}

async fn run_load(
    conns: Vec<WsStream>,
    templates: Arc<Vec<Vec<Template>>>,
    args: &RelayArgs,
) -> LoadResult {
    let shared = Arc::new(Shared::new());
    let (stop_readers, readers_rx) = watch::channel(false);
    let (stop_writers, writers_rx) = watch::channel(false);
    let users = conns.len();
    let period = if args.mode == Mode::Paced {
        Duration::from_secs_f64(users as f64 / args.rate.max(1) as f64)
    } else {
        Duration::ZERO
    };
    let mut writers = Vec::with_capacity(users);
    let mut readers = Vec::with_capacity(users);
    for (me, ws) in conns.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        let window = Arc::new(Semaphore::new(args.window.max(1)));
        readers.push(tokio::spawn(reader(
            stream,
            shared.clone(),
            window.clone(),
            readers_rx.clone(),
        )));
        writers.push(tokio::spawn(writer(
            sink,
            templates.clone(),
            me,
            shared.clone(),
            args.mode,
            window,
            period,
            writers_rx.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    shared.phase.store(MEASURE, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    shared.phase.store(STOPPED, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let _ = stop_writers.send(true);
    let mut result = LoadResult {
        elapsed,
        ..LoadResult::default()
    };
    let mut lag = Vec::new();
    // The write halves stay open until the readers are done.
    let mut sinks = Vec::with_capacity(users);
    for w in writers {
        if let Ok((s, sink)) = w.await {
            result.sent_window += s.sent_window;
            result.sent_total += s.sent;
            result.send_failures += s.send_failures;
            lag.extend(s.lag_us);
            sinks.push(sink);
        }
    }
    // Drain: wait for in-window messages to be delivered and acked.
    let drain_end = Instant::now() + Duration::from_secs(args.drain);
    loop {
        let (undelivered, unacked) = shared.outstanding();
        if (undelivered == 0 && unacked == 0) || Instant::now() >= drain_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_readers.send(true);
    let (mut delivery, mut ack) = (Vec::new(), Vec::new());
    for r in readers {
        if let Ok(s) = r.await {
            result.delivered_window += s.delivered_window;
            delivery.extend(s.delivery_us);
            ack.extend(s.ack_us);
            if result.timeline_ms.len() < s.timeline_us.len() {
                result.timeline_ms.resize(s.timeline_us.len(), 0.0);
            }
            for (worst, us) in result.timeline_ms.iter_mut().zip(&s.timeline_us) {
                *worst = worst.max(f64::from(*us) / 1000.0);
            }
            for (code, n) in s.error_frames {
                *result.error_frames.entry(code).or_default() += n;
            }
            result.disconnects += s.disconnects;
            result.unexpected += s.unexpected;
            result.other_frames += s.other_frames;
        }
    }
    drop(sinks);
    let (lost, unacked) = shared.outstanding();
    result.lost = lost;
    result.unacked = unacked;
    result.delivered_per_sec = result.delivered_window as f64 / elapsed;
    result.sent_per_sec = result.sent_window as f64 / elapsed;
    result.delivery = summarize(delivery);
    result.ack = summarize(ack);
    result.lag = summarize(lag);
    result
}

/// How to open a socket for user `i` on a target.
enum Connector {
    Server { client: Client, tokens: Vec<String> },
    Echo { url: String },
}

impl Connector {
    async fn connect(&self, user: usize) -> anyhow::Result<WsStream> {
        let config = ws::small_config(Default::default()).read_buffer_size(CLIENT_READ_BUFFER);
        let ws = match self {
            Connector::Server { client, tokens } => {
                let token = &tokens[user % tokens.len()];
                let ticket = client.ws_ticket(token).await?;
                let url = ws::ws_url(client.base_url(), &ticket.ticket)?;
                let opts = WsOptions {
                    origin: Some(client.origin()),
                    config,
                };
                ws::connect_with(&url, &opts).await?
            }
            Connector::Echo { url } => {
                let opts = WsOptions {
                    origin: None,
                    config,
                };
                ws::connect_with(&format!("{url}/?user={}", user_name(user)), &opts).await?
            }
        };
        Ok(ws.into_inner())
    }

    /// Sockets for users `users[k]`, `concurrency` set-ups at a time, in order.
    async fn connect_many(
        self: &Arc<Self>,
        users: Vec<usize>,
        concurrency: usize,
    ) -> anyhow::Result<Vec<WsStream>> {
        let results: Vec<anyhow::Result<WsStream>> = futures_util::stream::iter(users)
            .map(|u| {
                let c = self.clone();
                async move {
                    c.connect(u)
                        .await
                        .with_context(|| format!("connecting {}", user_name(u)))
                }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }
}

/// Register and log in `users` users (one shared identity); their access tokens.
async fn register_users(
    client: &Client,
    identity: &Identity,
    users: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let results: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..users)
        .map(|i| async move {
            let name = user_name(i);
            let req = RegisterRequest::build(&name, PASSWORD, KDF_ITERATIONS, identity)?;
            client
                .register_request(&req)
                .await
                .with_context(|| format!("registering {name}"))?;
            let login = client
                .login_with_auth_key(&name, &b64::decode(&req.auth_key)?)
                .await
                .with_context(|| format!("logging in {name}"))?;
            Ok(login.access_token)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// RSS growth for `k` idle authenticated connections.
#[derive(Debug, Clone, Copy)]
pub struct IdleResult {
    pub connections: usize,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    pub kb_per_conn: f64,
    pub disconnects: u64,
}

async fn idle_phase(
    proc_: &Proc,
    connector: &Arc<Connector>,
    users: usize,
    k: usize,
    concurrency: usize,
) -> anyhow::Result<IdleResult> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kb = proc_.rss_kb().context("reading the target's RSS")?;
    let conns = connector
        .connect_many((0..k).map(|c| c % users.max(1)).collect(), concurrency)
        .await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new());
    let mut tasks = Vec::with_capacity(k);
    let mut sinks = Vec::with_capacity(k);
    for ws in conns {
        let (sink, stream) = ws.split();
        sinks.push(sink);
        tasks.push(tokio::spawn(reader(
            stream,
            shared.clone(),
            Arc::new(Semaphore::new(0)),
            stop_rx.clone(),
        )));
    }
    // Let the server settle (presence fan-out, allocator) before reading its RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kb = proc_.rss_kb().context("reading the target's RSS")?;
    let _ = stop_tx.send(true);
    let mut disconnects = 0;
    for t in tasks {
        if let Ok(s) = t.await {
            disconnects += s.disconnects;
        }
    }
    drop(sinks);
    // Give the target a moment to tear the connections down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(IdleResult {
        connections: k,
        rss_before_kb,
        rss_after_kb,
        kb_per_conn: (rss_after_kb as f64 - rss_before_kb as f64) / k.max(1) as f64,
        disconnects,
    })
}

/// Everything measured on one target.
#[derive(Debug)]
pub struct TargetResult {
    pub name: &'static str,
    pub idle: Option<IdleResult>,
    pub rss_before_connect_kb: u64,
    pub rss_connected_kb: u64,
    pub rss_after_load_kb: u64,
    pub load: LoadResult,
    /// The fsync probe's latencies while the load ran (server only, if on).
    pub fsync: Option<Summary>,
    /// The scheduling probe's findings while the load ran (if on).
    pub sched: Option<SchedResult>,
}

async fn run_target(
    name: &'static str,
    args: &RelayArgs,
    identity: &Identity,
    templates: Arc<Vec<Vec<Template>>>,
) -> anyhow::Result<TargetResult> {
    let (proc_, connector) = if name == "server" {
        let proc_ = procs::start_server(
            &args.server_bin,
            &[
                ("SECURECHAT_AUTH__BCRYPT_COST", args.bcrypt_cost.to_string()),
                ("SECURECHAT_STORAGE__SYNCHRONOUS", args.synchronous.clone()),
                // Every user signs in from 127.0.0.1: lift the per-address sign-in limits.
                (
                    "SECURECHAT_PLUGINS__RATE_LIMIT__PRELOGIN_PER_IP__BURST",
                    "1000000".to_string(),
                ),
                (
                    "SECURECHAT_PLUGINS__RATE_LIMIT__LOGIN_PER_IP__BURST",
                    "1000000".to_string(),
                ),
                (
                    "SECURECHAT_PLUGINS__RATE_LIMIT__REGISTER_PER_IP__BURST",
                    "1000000".to_string(),
                ),
                // Saturation is the point here: frames are still asked about, never refused.
                (
                    "SECURECHAT_PLUGINS__RATE_LIMIT__WS_FRAMES_PER_CONNECTION__BURST",
                    "1000000".to_string(),
                ),
            ],
        )?;
        let client = Client::new(&proc_.addr)?;
        let started = Instant::now();
        let tokens =
            register_users(&client, identity, args.users, args.register_concurrency).await?;
        println!(
            "[{name}] {} at {}: registered and logged in {} users in {:.1}s",
            args.server_bin.display(),
            proc_.addr,
            args.users,
            started.elapsed().as_secs_f64()
        );
        (proc_, Connector::Server { client, tokens })
    } else {
        let proc_ = procs::start_echo_relay(CLIENT_READ_BUFFER)?;
        println!("[{name}] echo-relay at {}", proc_.addr);
        let url = proc_.addr.clone();
        (proc_, Connector::Echo { url })
    };
    let connector = Arc::new(connector);
    let idle = if args.idle_connections > 0 {
        let idle = idle_phase(
            &proc_,
            &connector,
            args.users,
            args.idle_connections,
            args.connect_concurrency,
        )
        .await?;
        println!(
            "[{name}] idle: {} connections, RSS {} -> {} kB: {:.2} KB per connection ({} disconnects)",
            idle.connections, idle.rss_before_kb, idle.rss_after_kb, idle.kb_per_conn, idle.disconnects
        );
        Some(idle)
    } else {
        None
    };
    let rss_before_connect_kb = proc_.rss_kb().unwrap_or(0);
    let started = Instant::now();
    let conns = connector
        .connect_many((0..args.users).collect(), args.connect_concurrency)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected_kb = proc_.rss_kb().unwrap_or(0);
    println!(
        "[{name}] {} sockets open in {:.1}s; RSS {} -> {} kB",
        args.users,
        started.elapsed().as_secs_f64(),
        rss_before_connect_kb,
        rss_connected_kb
    );
    let probe = match (proc_.dir(), args.fsync_probe_hz()) {
        (Some(dir), hz) if hz > 0 => Some(FsyncProbe::start(dir, hz)?),
        _ => None,
    };
    let sched = if args.sched_probe() {
        Some(SchedProbe::start()?)
    } else {
        None
    };
    let load = run_load(conns, templates, args).await;
    let sched = sched.map(SchedProbe::finish).transpose()?;
    let fsync = probe.map(FsyncProbe::finish).transpose()?;
    let rss_after_load_kb = proc_.rss_kb().unwrap_or(0);
    drop(proc_);
    Ok(TargetResult {
        name,
        idle,
        rss_before_connect_kb,
        rss_connected_kb,
        rss_after_load_kb,
        load,
        fsync,
        sched,
    })
}

fn print_target(r: &TargetResult) {
    let l = &r.load;
    let n = r.name;
    println!(
        "[{n}] delivered {:.0} msg/s ({} in {:.2}s); sent {:.0} msg/s ({} in the window, {} in all)",
        l.delivered_per_sec, l.delivered_window, l.elapsed, l.sent_per_sec, l.sent_window, l.sent_total
    );
    println!(
        "[{n}] delivery latency (send -> message frame): n={} p50={:.3}ms p99={:.3}ms max={:.3}ms",
        l.delivery.n, l.delivery.p50, l.delivery.p99, l.delivery.max
    );
    println!(
        "[{n}] ack latency (send -> ack):                n={} p50={:.3}ms p99={:.3}ms max={:.3}ms",
        l.ack.n, l.ack.p50, l.ack.p99, l.ack.max
    );
    if l.lag.n > 0 {
        println!(
            "[{n}] loadgen send lag behind schedule: p50={:.3}ms p99={:.3}ms max={:.3}ms",
            l.lag.p50, l.lag.p99, l.lag.max
        );
    }
    if !l.timeline_ms.is_empty() {
        let worst: Vec<String> = l.timeline_ms.iter().map(|ms| format!("{ms:.0}")).collect();
        println!(
            "[{n}] worst delivery latency (ms) of the messages sent in each {} ms since the load started (warm-up first): {}",
            TIMELINE_BUCKET.as_millis(),
            worst.join(" ")
        );
    }
    let mut codes: Vec<_> = l.error_frames.iter().collect();
    codes.sort();
    println!(
        "[{n}] errors={}: error_frames={codes:?} disconnects={} send_failures={} lost={} unacked={} unexpected={} other_frames={}",
        l.errors(), l.disconnects, l.send_failures, l.lost, l.unacked, l.unexpected, l.other_frames
    );
    println!(
        "[{n}] RSS kB: before connect {} / connected {} / after load {}",
        r.rss_before_connect_kb, r.rss_connected_kb, r.rss_after_load_kb
    );
    if let Some(f) = &r.fsync {
        println!(
            "[{n}] disk fsync floor (4 KiB pwrite + fdatasync in the data dir, during the load): n={} p50={:.3}ms p99={:.3}ms max={:.3}ms",
            f.n, f.p50, f.p99, f.max
        );
    }
    if let Some(s) = &r.sched {
        println!(
            "[{n}] machine scheduling floor ({} 1 kHz thread's wake-up lateness, during the load): n={} p50={:.3}ms p99={:.3}ms max={:.3}ms longest stall={:.1}ms; hypervisor steal {:.2}% of CPU time",
            if s.realtime { "a real-time (chrt -f 50)" } else { "a normal-priority" },
            s.late.n, s.late.p50, s.late.p99, s.late.max, s.longest_stall_ms, s.steal_pct
        );
    }
}

fn fmt_f(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "nan".into()
    }
}

/// Run the `relay` benchmark.
pub async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.users >= 2, "--users must be at least 2");
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    println!(
        "relay: users={} mode={:?}{} seconds={} warmup={} window={} contacts={} text_bytes={} synchronous={} idle_connections={} RLIMIT_NOFILE={nofile}",
        args.users,
        args.mode,
        if args.mode == Mode::Paced { format!(" rate={}/s", args.rate) } else { String::new() },
        args.seconds,
        args.warmup,
        args.window,
        args.contacts,
        args.text_bytes,
        args.synchronous,
        args.idle_connections,
    );
    let needed = (args.users + args.idle_connections + 64) as u64;
    if nofile < needed {
        println!(
            "warning: RLIMIT_NOFILE is {nofile}, about {needed} descriptors are needed here \
             and in the target (raise the hard limit, e.g. ulimit -Hn)"
        );
    }
    println!(
        "note: one envelope per (sender, contact) pair is sealed and signed once; each message \
         only gets a fresh id and sent_at, so signatures are not recomputed per message (the \
         server does not verify them and benchmark receivers do not decrypt)"
    );
    let identity = Identity::generate()?;
    let started = Instant::now();
    let templates = {
        let (identity, users, contacts, text_bytes) =
            (identity.clone(), args.users, args.contacts, args.text_bytes);
        tokio::task::spawn_blocking(move || {
            build_templates(&identity, users, contacts, text_bytes, 0x7e57)
        })
        .await??
    };
    let templates = Arc::new(templates);
    let frame_len = templates.first().and_then(|t| t.first()).map_or(0, |t| {
        t.frame(&new_message_id(&mut rand::thread_rng()), now_ms())
            .len()
    });
    println!(
        "built {} envelopes in {:.1}s; a send frame is {frame_len} bytes",
        templates.iter().map(Vec::len).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );

    let mut results = Vec::new();
    let names: &[&'static str] = match args.targets {
        Targets::Both => &["server", "echo"],
        Targets::Server => &["server"],
        Targets::Echo => &["echo"],
    };
    for &name in names {
        let r = run_target(name, &args, &identity, templates.clone()).await?;
        print_target(&r);
        results.push(r);
    }

    let server = results.iter().find(|r| r.name == "server");
    let echo = results.iter().find(|r| r.name == "echo");
    let ratio = match (server, echo) {
        (Some(s), Some(e)) if e.load.delivered_per_sec > 0.0 => {
            s.load.delivered_per_sec / e.load.delivered_per_sec
        }
        _ => f64::NAN,
    };
    if ratio.is_finite() {
        println!("server / echo ceiling, delivered msg/s: {ratio:.3}");
    }
    let mut line = format!(
        "RESULT mode={} users={} seconds={} window={} rate={} synchronous={}",
        match args.mode {
            Mode::Saturate => "saturate",
            Mode::Paced => "paced",
        },
        args.users,
        args.seconds,
        args.window,
        if args.mode == Mode::Paced {
            args.rate
        } else {
            0
        },
        args.synchronous
    );
    for r in &results {
        let l = &r.load;
        let n = r.name;
        let _ = write!(
            line,
            " {n}_msgs_per_sec={:.1} {n}_p50_ms={} {n}_p99_ms={} {n}_max_ms={} {n}_ack_p99_ms={} {n}_errors={} {n}_rss_before_kb={} {n}_rss_connected_kb={} {n}_rss_after_kb={}",
            l.delivered_per_sec,
            fmt_f(l.delivery.p50),
            fmt_f(l.delivery.p99),
            fmt_f(l.delivery.max),
            fmt_f(l.ack.p99),
            l.errors(),
            r.rss_before_connect_kb,
            r.rss_connected_kb,
            r.rss_after_load_kb
        );
        if let Some(f) = &r.fsync {
            let _ = write!(
                line,
                " {n}_fsync_p50_ms={} {n}_fsync_p99_ms={} {n}_fsync_max_ms={}",
                fmt_f(f.p50),
                fmt_f(f.p99),
                fmt_f(f.max)
            );
        }
        if let Some(sc) = &r.sched {
            let _ = write!(
                line,
                " {n}_sched_p99_ms={} {n}_sched_max_ms={} {n}_sched_stall_ms={} {n}_steal_pct={}",
                fmt_f(sc.late.p99),
                fmt_f(sc.late.max),
                fmt_f(sc.longest_stall_ms),
                fmt_f(sc.steal_pct)
            );
        }
        if let Some(idle) = r.idle {
            let _ = write!(
                line,
                " {n}_idle_connections={} {n}_idle_kb_per_conn={:.2}",
                idle.connections, idle.kb_per_conn
            );
        }
    }
    let _ = write!(line, " ratio={}", fmt_f(ratio));
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use securechat_client::Envelope;

    #[test]
    fn templates_rebuild_valid_envelopes() {
        let identity = Identity::generate_with(&mut StdRng::seed_from_u64(1)).unwrap();
        let t = build_templates(&identity, 4, 2, 50, 9).unwrap();
        assert_eq!(t.len(), 4);
        for (from, list) in t.iter().enumerate() {
            assert_eq!(list.len(), 2);
            for tpl in list {
                let id = new_message_id(&mut rand::thread_rng());
                let frame = tpl.frame(&id, 123);
                let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
                assert_eq!(v["type"], "send");
                let env: Envelope = serde_json::from_value(v["envelope"].clone()).unwrap();
                env.check_shape().unwrap();
                assert_eq!(env.id, id);
                assert_eq!(env.sent_at, 123);
                assert_eq!(env.from, user_name(from));
                assert_ne!(env.to, env.from);
                assert!(env.to.starts_with('u'));
            }
        }
        let all = build_templates(&identity, 3, 16, 10, 9).unwrap();
        assert!(all.iter().all(|l| l.len() == 2));
    }

    #[test]
    fn percentiles() {
        let s = summarize((1..=100).map(|x| x * 1000).collect());
        assert_eq!(s.n, 100);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.p99, 99.0);
        assert!(summarize(Vec::new()).p50.is_nan());
    }
}
