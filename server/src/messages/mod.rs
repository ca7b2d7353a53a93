//! Owns messages: checking an envelope a sender hands in (`envelope`), storing it and its
//! receipts, and reading them back — a user's conversations with unread counts and the
//! history of one conversation by seq (`routes` serves those over REST). Live delivery is
//! the relay's: it asks this module to check and store, then fans out what was stored.
//!
//! Invariants: a history is only ever the caller's own conversation with the named peer;
//! there is no way to name a conversation one is not part of, and asking for one that
//! does not exist (no message yet, or no such peer) is a 404. A store resolves only after
//! its transaction committed; how ids are kept unique (the id index and its filter) and
//! which thread writes are the storage layer's business, not the caller's.

pub mod envelope;
pub mod routes;

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::Principal;
use crate::config::MessagesConfig;
use crate::db::messages::NewMessage;
use crate::db::{messages, users, Db, DbResult, Pending};
use crate::error::{ApiError, ApiResult};
use crate::username::Username;

pub use crate::db::messages::{MessageState, StoreOutcome, Stored};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

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
}

impl Messages {
    pub fn new(db: Db, config: &MessagesConfig) -> Messages {
        Messages {
            db,
            max_envelope_bytes: config.max_envelope_bytes,
        }
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
                let Some(p) = users::by_name(c, name.as_str())? else {
                    return Ok(None);
                };
                if !messages::share_conversation(c, me, p.id)? {
                    return Ok(None);
                }
                messages::history(c, me, p.id, after, before, limit).map(Some)
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
