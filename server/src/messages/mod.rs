//! Owns messages as the REST API sees them: a user's conversations with unread counts,
//! and the history of one conversation by seq. Envelope checks are in `envelope`; live
//! delivery is the relay's.
//!
//! Invariant: a history is only ever the caller's own conversation with the named peer;
//! there is no way to name a conversation one is not part of, and asking for one that
//! does not exist (no message yet, or no such peer) is a 404.

pub mod envelope;
pub mod routes;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::{db_error, Principal};
use crate::db::{messages, users, Db};
use crate::error::{ApiError, ApiResult};

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

#[derive(Clone)]
pub struct Messages {
    db: Db,
}

impl Messages {
    pub fn new(db: Db) -> Messages {
        Messages { db }
    }

    pub async fn conversations(&self, who: &Principal) -> ApiResult<Vec<Conversation>> {
        let me = who.user_id;
        let rows = self
            .db
            .read(move |c| messages::conversations(c, me))
            .await
            .map_err(db_error)?;
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
        if !crate::auth::valid_username(peer) {
            return Err(ApiError::not_found("conversation"));
        }
        let me = who.user_id;
        let name = peer.to_owned();
        let rows = self
            .db
            .read(move |c| {
                // A conversation exists once a message does; outside one there is nothing
                // to read, and the answer is the same as for a peer that does not exist.
                let Some(p) = users::by_name(c, &name)? else {
                    return Ok(None);
                };
                if !messages::share_conversation(c, me, p.id)? {
                    return Ok(None);
                }
                messages::history(c, me, p.id, after, before, limit).map(Some)
            })
            .await
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found("conversation"))?;
        rows.into_iter()
            .map(|r| {
                Ok(HistoryItem {
                    seq: r.seq,
                    server_ts: r.server_ts,
                    state: messages::state_name(r.state),
                    envelope: RawValue::from_string(r.envelope).map_err(|e| {
                        ApiError::internal(format!("stored envelope is not JSON: {e}"))
                    })?,
                })
            })
            .collect()
    }
}
