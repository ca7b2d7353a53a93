//! Owns messages: checking an envelope a sender hands in (`envelope`), storing it and its
//! receipts, and reading them back — a user's conversations with unread counts and the
//! history of one conversation by seq (`routes` serves those over REST). Live delivery is
//! the relay's: it asks this module to check and store, then fans out what was stored.
//! Also deleting: a sender's delete for everyone, and disappearing messages — each
//! conversation's retention timer and the periodic `expire_messages` job (`jobs`) that
//! deletes the ciphertext of expired messages.
//!
//! Invariants: a history is only ever the caller's own conversation with the named peer;
//! there is no way to name a conversation one is not part of, and asking for one that
//! does not exist (no message yet, or no such peer) is a 404. A store resolves only after
//! its transaction committed; how ids are kept unique (the id index and its filter) and
//! which thread writes are the storage layer's business, not the caller's.

pub mod envelope;
pub mod jobs;
pub mod routes;

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::Principal;
use crate::config::MessagesConfig;
use crate::db::messages::NewMessage;
use crate::db::{messages, now_ms, users, Db, DbResult, Pending};
use crate::error::{ApiError, ApiResult};
use crate::username::Username;

pub use crate::db::messages::{MessageState, StoreOutcome, Stored};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// The shortest retention a conversation timer may set (0 turns it off).
pub const MIN_TIMER_SECS: i64 = 5;
/// The longest: a year.
pub const MAX_TIMER_SECS: i64 = 365 * 24 * 3600;

/// A conversation's disappearing-messages setting, as the API answers it.
#[derive(Debug, Serialize)]
pub struct TimerView {
    pub secs: i64,
    pub from_seq: i64,
    pub set_at: Option<i64>,
}

#[derive(Serialize)]
pub struct HistoryItem {
    pub seq: i64,
    pub server_ts: i64,
    pub state: &'static str,
    /// The envelope exactly as stored.
    pub envelope: Box<RawValue>,
}

#[derive(Serialize)]
pub struct HistoryPage {
    pub messages: Vec<HistoryItem>,
}

#[derive(Serialize)]
pub struct Conversation {
    pub peer: String,
    pub last_seq: i64,
    pub last_server_ts: i64,
    pub unread: i64,
}

/// The messages service, shared by the REST routes and the relay.
#[derive(Clone)]
pub struct Messages {
    db: Db,
    max_envelope_bytes: usize,
    expiry_sweep_secs: u64,
}

impl Messages {
    pub fn new(db: Db, config: &MessagesConfig) -> Messages {
        Messages {
            db,
            max_envelope_bytes: config.max_envelope_bytes,
            expiry_sweep_secs: config.expiry_sweep_secs,
        }
    }

    /// Seconds between runs of the expiry sweep (`messages.expiry_sweep_secs`).
    pub fn expiry_sweep_secs(&self) -> u64 {
        self.expiry_sweep_secs
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Deletes the stored ciphertext of message `id` for everyone, if the caller sent it
    /// (idempotent). Anyone else, and an unknown id, get the same 404.
    pub async fn delete(&self, who: &Principal, id: &str) -> ApiResult<()> {
        if !envelope::is_uuid_v4(id) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "a message id is a lower-case UUID v4",
            ));
        }
        if self.db.delete_message(who.user_id, id.to_owned()).await? {
            Ok(())
        } else {
            Err(ApiError::not_found("message"))
        }
    }

    /// The peer's id if the caller shares a conversation with them; else 404.
    async fn partner(&self, who: &Principal, peer: &str) -> ApiResult<i64> {
        let name = Username::parse(peer).map_err(|_| ApiError::not_found("conversation"))?;
        let me = who.user_id;
        self.db
            .read(move |c| {
                let Some(p) = users::id_by_name(c, name.as_str())? else {
                    return Ok(None);
                };
                Ok(messages::share_conversation(c, me, p)?.then_some(p))
            })
            .await?
            .ok_or_else(|| ApiError::not_found("conversation"))
    }

    /// The conversation's disappearing-messages timer (`secs` 0 when never set).
    pub async fn timer(&self, who: &Principal, peer: &str) -> ApiResult<TimerView> {
        let p = self.partner(who, peer).await?;
        let me = who.user_id;
        let t = self.db.read(move |c| messages::timer(c, me, p)).await?;
        Ok(t.map_or(
            TimerView {
                secs: 0,
                from_seq: 0,
                set_at: None,
            },
            |t| TimerView {
                secs: t.secs,
                from_seq: t.from_seq,
                set_at: Some(t.set_at),
            },
        ))
    }

    /// Sets the conversation's timer to `secs` (0 = off; else 5 s to a year) for the
    /// messages after its newest one. Either party may.
    pub async fn set_timer(&self, who: &Principal, peer: &str, secs: i64) -> ApiResult<TimerView> {
        if secs != 0 && !(MIN_TIMER_SECS..=MAX_TIMER_SECS).contains(&secs) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("secs must be 0 (off) or between {MIN_TIMER_SECS} and {MAX_TIMER_SECS}"),
            ));
        }
        let p = self.partner(who, peer).await?;
        let me = who.user_id;
        let t = self
            .db
            .write(move |c| messages::set_timer(c, me, p, me, secs, now_ms()))
            .await?;
        Ok(TimerView {
            secs: t.secs,
            from_seq: t.from_seq,
            set_at: Some(t.set_at),
        })
    }

    /// The largest envelope accepted, in bytes of its JSON text.
    pub fn max_envelope_bytes(&self) -> usize {
        self.max_envelope_bytes
    }

    /// Checks an envelope `sender` hands in, without copying it (see `envelope::check`).
    pub fn check<'a>(
        &self,
        raw: &'a str,
        sender: &str,
    ) -> Result<envelope::Envelope<'a>, envelope::Refusal> {
        envelope::check(raw, sender, self.max_envelope_bytes)
    }

    /// Stores a checked envelope from `sender_id` to `recipient_id`: queues it and returns
    /// at once with a future that resolves after COMMIT (a resend of a stored id resolves
    /// to the original seq). Stores one caller makes commit in the order it made them.
    pub async fn store(
        &self,
        sender_id: i64,
        recipient_id: i64,
        id: String,
        envelope: Arc<str>,
    ) -> DbResult<Pending<StoreOutcome>> {
        self.db
            .submit_message(NewMessage {
                sender_id,
                recipient_id,
                msg_id: id,
                envelope,
            })
            .await
    }

    /// Records that `recipient` got (or read) message `id`: queued like [`Messages::store`];
    /// resolves to the sender's id, or `None` if `recipient` received no such message.
    pub async fn mark(
        &self,
        recipient: i64,
        id: String,
        state: MessageState,
        at: i64,
    ) -> DbResult<Pending<Option<i64>>> {
        self.db.submit_receipt(recipient, id, state, at).await
    }

    /// Whether `a` and `b` have exchanged any message.
    pub async fn share_conversation(&self, a: i64, b: i64) -> DbResult<bool> {
        self.db
            .read(move |c| messages::share_conversation(c, a, b))
            .await
    }

    pub async fn conversations(&self, who: &Principal) -> ApiResult<Vec<Conversation>> {
        let me = who.user_id;
        let rows = self
            .db
            .read(move |c| messages::conversations(c, me))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Conversation {
                peer: r.peer,
                last_seq: r.last_seq,
                last_server_ts: r.last_server_ts,
                unread: r.unread,
            })
            .collect())
    }

    pub async fn history(
        &self,
        who: &Principal,
        peer: &str,
        after: Option<i64>,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> ApiResult<Vec<HistoryItem>> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        if after.is_some_and(|a| a < 0) || before.is_some_and(|b| b < 0) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "after and before are sequence numbers (>= 0)",
            ));
        }
        let name = Username::parse(peer).map_err(|_| ApiError::not_found("conversation"))?;
        let me = who.user_id;
        let rows = self
            .db
            .read(move |c| {
                // A conversation exists once a message does; outside one there is nothing
                // to read, and the answer is the same as for a peer that does not exist.
                // A deleted account's partners keep their history with it.
                let Some(p) = users::id_including_deleted(c, name.as_str())? else {
                    return Ok(None);
                };
                if !messages::share_conversation(c, me, p)? {
                    return Ok(None);
                }
                messages::history(c, me, p, after, before, limit).map(Some)
            })
            .await?
            .ok_or_else(|| ApiError::not_found("conversation"))?;
        rows.into_iter()
            .map(|r| {
                Ok(HistoryItem {
                    seq: r.seq,
                    server_ts: r.server_ts,
                    state: r.state.as_str(),
                    envelope: RawValue::from_string(r.envelope).map_err(|e| {
                        ApiError::internal(format!("stored envelope is not JSON: {e}"))
                    })?,
                })
            })
            .collect()
    }
}
