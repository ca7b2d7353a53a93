//! Owns the real-time relay: who is connected (per-user sets of connections), pushing
//! frames to them, and presence. The WebSocket upgrade is in `upgrade`, one connection's
//! loop in `socket`, tickets in `tickets`.
//!
//! Invariants: a user's second tab or device adds a connection and never evicts one; a
//! push never waits on a slow connection — a connection whose queue is full is kicked
//! (it catches up from history on reconnect); presence goes only to users who share a
//! conversation; a connection belongs to the session its ticket was issued for and is
//! closed (4401, [`SESSION_ENDED`]) when that session ends.

pub mod routes;
pub mod socket;
pub mod tickets;
pub mod upgrade;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::RelayConfig;
use crate::db::{self, messages, now_ms, sessions, users, Db};
use crate::live::{Ended, LiveSessions};
use crate::messages::Messages;

/// The close code of a connection whose session ended (logout, logout-all, a reused
/// refresh token): the client must not reconnect with that session (PROTOCOL.md §10.4).
pub const SESSION_ENDED: u16 = 4401;

/// The hub's side of one registered connection: where to queue frames for it, and how to
/// tell its task to close.
#[derive(Clone)]
struct ConnectionHandle {
    id: u64,
    session_id: Arc<str>,
    tx: mpsc::Sender<Utf8Bytes>,
    kick: Arc<Notify>,
    ended: Arc<Notify>,
}

/// A registered connection, as its task holds it: its id, the frames queued for it, the
/// signal that it is too slow and must go, and the signal that its session ended.
pub struct Registration {
    pub conn_id: u64,
    pub rx: mpsc::Receiver<Utf8Bytes>,
    pub kick: Arc<Notify>,
    pub ended: Arc<Notify>,
}

pub struct Hub {
    db: Db,
    pub(crate) relay: RelayConfig,
    /// Checks and stores what connections send.
    pub(crate) messages: Messages,
    conns: RwLock<HashMap<i64, Vec<ConnectionHandle>>>,
    next_conn: AtomicU64,
    /// username -> id; users are never renamed, and a deleted account's entry is removed
    /// (`account_deleted`), after which the database no longer finds the name.
    ids: RwLock<HashMap<String, i64>>,
    /// Set to true when the server shuts down; every connection task watches it.
    shutdown: watch::Sender<bool>,
    connections: AtomicU64,
}

impl Hub {
    pub fn new(db: Db, relay: RelayConfig, messages: Messages) -> Arc<Hub> {
        Arc::new(Hub {
            db,
            relay,
            messages,
            conns: RwLock::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            ids: RwLock::new(HashMap::new()),
            shutdown: watch::Sender::new(false),
            connections: AtomicU64::new(0),
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Open connections right now.
    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Adds a connection of `user_id` in `session_id`; the bool says whether it is the
    /// user's first.
    fn register(&self, user_id: i64, session_id: &str) -> (Registration, bool) {
        let (tx, rx) = mpsc::channel(self.relay.outgoing_queue);
        let kick = Arc::new(Notify::new());
        let ended = Arc::new(Notify::new());
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.conns.write().unwrap_or_else(|p| p.into_inner());
        let set = conns.entry(user_id).or_default();
        let first = set.is_empty();
        set.push(ConnectionHandle {
            id: conn_id,
            session_id: Arc::from(session_id),
            tx,
            kick: kick.clone(),
            ended: ended.clone(),
        });
        self.connections.fetch_add(1, Ordering::Relaxed);
        (
            Registration {
                conn_id,
                rx,
                kick,
                ended,
            },
            first,
        )
    }

    /// Whether `session_id` is still live in the database. A connection asks once, after
    /// it registered: a session that ended between the ticket and the registration is
    /// caught here, and one that ends later finds the connection registered.
    async fn session_is_live(&self, session_id: &str) -> db::DbResult<bool> {
        let sid = session_id.to_owned();
        let session = self.db.read(move |c| sessions::get(c, &sid)).await?;
        Ok(session.is_some_and(|s| s.is_live(now_ms())))
    }

    /// Removes a connection (if still registered); the bool says whether it was the user's last.
    fn unregister(&self, user_id: i64, conn_id: u64) -> bool {
        let mut conns = self.conns.write().unwrap_or_else(|p| p.into_inner());
        let Some(set) = conns.get_mut(&user_id) else {
            return false;
        };
        let before = set.len();
        set.retain(|c| c.id != conn_id);
        if set.len() < before {
            self.connections.fetch_sub(1, Ordering::Relaxed);
        }
        if set.is_empty() {
            conns.remove(&user_id);
            before > 0
        } else {
            false
        }
    }

    pub fn is_online(&self, user_id: i64) -> bool {
        self.conns
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user_id)
            .is_some_and(|s| !s.is_empty())
    }

    /// Queues `frame` for every connection of `user_id` but `except`. Never waits: a
    /// connection whose queue is full is kicked and removed.
    pub fn push(&self, user_id: i64, frame: &Utf8Bytes, except: Option<u64>) {
        let mut too_slow = Vec::new();
        {
            let conns = self.conns.read().unwrap_or_else(|p| p.into_inner());
            let Some(set) = conns.get(&user_id) else {
                return;
            };
            for c in set.iter().filter(|c| Some(c.id) != except) {
                if let Err(mpsc::error::TrySendError::Full(_)) = c.tx.try_send(frame.clone()) {
                    too_slow.push(c.clone());
                }
            }
        }
        for c in too_slow {
            tracing::info!(user_id, conn = c.id, "connection too slow; dropping it");
            c.kick.notify_one();
            self.unregister(user_id, c.id);
        }
    }

    /// The id of `username`, from memory or the database.
    pub async fn user_id(&self, username: &str) -> db::DbResult<Option<i64>> {
        if let Some(id) = self
            .ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(username)
        {
            return Ok(Some(*id));
        }
        let name = username.to_owned();
        let found = self.db.read(move |c| users::id_by_name(c, &name)).await?;
        if let Some(id) = found {
            self.ids
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(username.to_owned(), id);
        }
        Ok(found)
    }

    /// Presence of each of `user_id`'s conversation partners (online now, or offline
    /// with when they were last seen), for a connection that just opened. If this is the
    /// user's first connection, their online partners are told it came online.
    async fn presence_on_connect(
        &self,
        user_id: i64,
        username: &str,
        first: bool,
    ) -> db::DbResult<Vec<Utf8Bytes>> {
        let partners = self
            .db
            .read(move |c| {
                let mut out = Vec::new();
                for id in messages::partners(c, user_id)? {
                    if let Some((name, last_seen)) = users::presence_of(c, id)? {
                        out.push((id, name, last_seen));
                    }
                }
                Ok(out)
            })
            .await?;
        let me = presence_frame(username, true, None);
        let mut frames = Vec::with_capacity(partners.len());
        for (pid, pname, last_seen) in partners {
            let online = self.is_online(pid);
            if online && first {
                self.push(pid, &me, None);
            }
            frames.push(presence_frame(
                &pname,
                online,
                if online { None } else { last_seen },
            ));
        }
        Ok(frames)
    }

    /// A conversation just started (or this connection just learned of it): both sides
    /// learn the other's presence. Returns the frame for `a`'s connection at once when `b`
    /// is online (no database read: a burst of new conversations costs no queries);
    /// otherwise `b`'s last-seen time is read first.
    pub(crate) fn introduce(&self, a_name: &str, b: i64, b_name: &str) -> Introduction {
        if self.is_online(b) {
            self.push(b, &presence_frame(a_name, true, None), None);
            return Introduction::Now(presence_frame(b_name, true, None));
        }
        Introduction::Offline
    }

    /// The presence frame of an offline user `b`, with when they were last seen.
    pub(crate) async fn offline_presence(&self, b: i64, b_name: &str) -> Option<Utf8Bytes> {
        let last_seen = self.db.read(move |c| users::last_seen(c, b)).await.ok()?;
        Some(presence_frame(b_name, false, last_seen))
    }

    /// Records last-seen and tells online partners that `user_id` went offline.
    async fn announce_offline(&self, user_id: i64, username: &str) -> db::DbResult<()> {
        let at = now_ms();
        self.db
            .write(move |c| users::touch_last_seen(c, user_id, at))
            .await?;
        let frame = presence_frame(username, false, Some(at));
        for (pid, _) in self.partners_online(user_id).await? {
            self.push(pid, &frame, None);
        }
        Ok(())
    }

    async fn partners_online(&self, user_id: i64) -> db::DbResult<Vec<(i64, String)>> {
        let ids = self
            .db
            .read(move |c| messages::partners(c, user_id))
            .await?;
        let online: Vec<i64> = ids.into_iter().filter(|id| self.is_online(*id)).collect();
        if online.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .read(move |c| {
                let mut out = Vec::with_capacity(online.len());
                for id in online {
                    if let Some((name, _)) = users::presence_of(c, id)? {
                        out.push((id, name));
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Tells the chosen connections of `user_id` to close with [`SESSION_ENDED`] and
    /// removes them, so nothing more is queued for them.
    fn end_connections(&self, user_id: i64, which: Ended<'_>) {
        let mut conns = self.conns.write().unwrap_or_else(|p| p.into_inner());
        let Some(set) = conns.get_mut(&user_id) else {
            return;
        };
        let before = set.len();
        set.retain(|c| {
            let ends = match which {
                Ended::All => true,
                Ended::Sessions(ids) => ids.iter().any(|s| **s == *c.session_id),
            };
            if ends {
                c.ended.notify_one();
            }
            !ends
        });
        let gone = before - set.len();
        self.connections.fetch_sub(gone as u64, Ordering::Relaxed);
        if set.is_empty() {
            conns.remove(&user_id);
        }
    }

    /// Asks every connection to close (server shutdown).
    pub fn close_all(&self) {
        self.shutdown.send_replace(true);
    }

    /// Asks every connection to close (1001) and waits, at most `within`, until they have:
    /// a process that ends right after shutdown would otherwise cut sockets before their
    /// close frame is written. Every socket holds a receiver of the shutdown signal from
    /// its upgrade to its end (`shutdown_signal`), so their count is the sockets alive,
    /// registered or not yet.
    pub async fn close_all_and_wait(&self, within: Duration) {
        self.close_all();
        let deadline = tokio::time::Instant::now() + within;
        while self.shutdown.receiver_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The shutdown signal, for one socket to hold from its upgrade to its end.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

impl LiveSessions for Hub {
    fn sessions_ended(&self, user_id: i64, which: Ended<'_>) {
        self.end_connections(user_id, which);
    }

    fn keys_changed(&self, user_id: i64, key_version: i64) {
        let frame = Utf8Bytes::from(
            json!({ "type": "keys_changed", "key_version": key_version }).to_string(),
        );
        self.push(user_id, &frame, None);
    }

    fn account_deleted(&self, user_id: i64, username: &str) {
        self.ids
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(username);
        self.end_connections(user_id, Ended::All);
    }
}

/// What [`Hub::introduce`] found.
pub(crate) enum Introduction {
    /// The partner is online: this presence frame goes to the introducing connection.
    Now(Utf8Bytes),
    /// The partner is offline: ask [`Hub::offline_presence`] for its last-seen time.
    Offline,
}

pub fn presence_frame(user: &str, online: bool, last_seen: Option<i64>) -> Utf8Bytes {
    Utf8Bytes::from(
        json!({ "type": "presence", "user": user, "online": online, "last_seen": last_seen })
            .to_string(),
    )
}
