//! Owns the set of open HTTP connections: the `server.max_connections` limit and which
//! connection makes room for a new one, each connection's idle watch (keep-alive idle
//! timeout), the one rate-limited warning when the limit is reached, and the counters that
//! `/metrics` shows.
//!
//! Invariant: a connection with a request in flight (head parsed, response not yet fully
//! written) is never closed from here; only idle ones (waiting for a request, or still
//! sending a head) are. Upgraded WebSockets leave the set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How often, at most, the limit warning is logged while a flood goes on.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The open connections and the edge's counters; one per server, in `AppState`.
pub struct Connections {
    limit: usize,
    epoch: Instant,
    next_id: AtomicU64,
    /// Accept order: the first idle entry is the oldest idle connection.
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    limit_log: Mutex<Option<Instant>>,
    counters: Counters,
}

/// What the edge has done since start, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// New connections closed at once because every open one was busy.
    pub refused: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// Connections closed after `server.keepalive_idle_secs` without a request.
    pub idle_closed: AtomicU64,
    /// Request bodies cut by `server.request_timeout_secs`.
    pub body_timeouts: AtomicU64,
}

impl Connections {
    pub fn new(limit: usize) -> Connections {
        Connections {
            limit,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            limit_log: Mutex::new(None),
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// HTTP connections open now.
    pub fn open_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for a just-accepted connection. At the limit the oldest idle connection
    /// is told to close and gives up its slot; if every connection is busy, `None`: the
    /// caller closes the new one at once.
    pub fn admit(self: &Arc<Self>) -> Option<Registration> {
        let mut open = self.lock();
        if open.len() >= self.limit {
            let victim = open
                .iter()
                .find(|(_, c)| !c.busy.load(Ordering::Acquire))
                .map(|(id, _)| *id);
            match victim.and_then(|id| open.remove(&id)) {
                Some(conn) => {
                    conn.evict.notify_one();
                    self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                    self.limit_reached();
                }
                None => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    self.limit_reached();
                    return None;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            busy: AtomicBool::new(false),
            heard: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(ms_since(self.epoch)),
            evict: Notify::new(),
        });
        open.insert(id, conn.clone());
        Some(Registration {
            id,
            conn,
            connections: self.clone(),
        })
    }

    /// The warning an operator needs, once per `LIMIT_LOG_EVERY` however hard the flood.
    fn limit_reached(&self) {
        let mut last = self
            .limit_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LIMIT_LOG_EVERY) {
            return;
        }
        *last = Some(now);
        tracing::warn!(
            max_connections = self.limit,
            evicted_total = self.counters.evicted.load(Ordering::Relaxed),
            refused_total = self.counters.refused.load(Ordering::Relaxed),
            "connection limit reached (server.max_connections): idle connections are closed \
             to make room, new ones refused while all are busy; logged at most once a minute"
        );
    }
}

/// A connection's slot; dropping it (the connection's task ends) frees the slot.
pub struct Registration {
    id: u64,
    pub conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

/// One connection's state as the idle watch sees it.
pub struct Conn {
    epoch: Instant,
    /// A request is in flight: its head was parsed and its response not yet fully sent.
    busy: AtomicBool,
    /// A byte arrived since the connection last became idle (a head is on its way).
    heard: AtomicBool,
    idle_since_ms: AtomicU64,
    evict: Notify,
}

/// Why the idle watch ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Closed to make room for a new connection at the limit.
    Evicted,
    /// No request and no byte for `server.keepalive_idle_secs`.
    Idle,
}

impl Conn {
    /// Marks a request in flight until the returned guard is dropped (with the response body).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.store(true, Ordering::Release);
        Busy(self.clone())
    }

    /// Notes that bytes arrived (called by the socket wrapper on every read).
    pub fn heard(&self) {
        if !self.heard.load(Ordering::Relaxed) {
            self.heard.store(true, Ordering::Relaxed);
        }
    }

    fn quiet(&self) -> bool {
        !self.busy.load(Ordering::Acquire) && !self.heard.load(Ordering::Relaxed)
    }

    fn idle_since(&self) -> u64 {
        self.idle_since_ms.load(Ordering::Acquire)
    }

    /// Resolves when the connection is to be dropped: evicted, or quiet (no request in
    /// flight, no byte received) for `keepalive` since it was accepted or last answered.
    pub async fn until_dropped(&self, keepalive: Duration) -> Dropped {
        loop {
            let since = self.idle_since();
            let quiet = self.quiet();
            let deadline = if quiet {
                self.epoch + Duration::from_millis(since) + keepalive
            } else {
                Instant::now() + keepalive
            };
            tokio::select! {
                () = self.evict.notified() => return Dropped::Evicted,
                () = tokio::time::sleep_until(deadline) => {
                    if quiet && self.quiet() && self.idle_since() == since {
                        return Dropped::Idle;
                    }
                }
            }
        }
    }
}

/// A request in flight on a connection; dropped when its response has been sent (or the
/// connection is gone), which starts the connection's idle time.
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        let c = &self.0;
        c.idle_since_ms.store(ms_since(c.epoch), Ordering::Release);
        c.heard.store(false, Ordering::Relaxed);
        c.busy.store(false, Ordering::Release);
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
