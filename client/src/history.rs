//! Message history over REST (docs/PROTOCOL.md §6.4): `GET /api/conversations/{peer}/messages`
//! (ascending by `seq`, `after`/`before` exclusive, `limit` default 50, max 200) and
//! `GET /api/conversations` (one row per peer). Envelopes stay raw JSON, as stored.

use serde::{Deserialize, Serialize};

use crate::client::path_segment;
use crate::ws::RawEnvelope;
use crate::{Client, Method, Result};

/// One stored message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub seq: u64,
    pub server_ts: u64,
    pub state: String,
    pub envelope: RawEnvelope,
}

/// `GET /api/conversations/{peer}/messages` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub messages: Vec<HistoryItem>,
}

/// One conversation of the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub peer: String,
    pub last_seq: u64,
    pub unread: u64,
}

/// `GET /api/conversations` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversations {
    pub conversations: Vec<Conversation>,
}

/// The path and query of a history request (parameters left out when `None`).
pub fn history_path(
    peer: &str,
    after: Option<u64>,
    before: Option<u64>,
    limit: Option<u32>,
) -> String {
    let mut query = Vec::new();
    if let Some(a) = after {
        query.push(format!("after={a}"));
    }
    if let Some(b) = before {
        query.push(format!("before={b}"));
    }
    if let Some(l) = limit {
        query.push(format!("limit={l}"));
    }
    let mut path = format!("/api/conversations/{}/messages", path_segment(peer));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

impl Client {
    /// `GET /api/conversations/{peer}/messages?after=&before=&limit=` (200).
    pub async fn history(
        &self,
        access_token: &str,
        peer: &str,
        after: Option<u64>,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<History> {
        self.request(
            Method::GET,
            &history_path(peer, after, before, limit),
            Some(access_token),
            None,
        )
        .await?
        .expect(200)
    }

    /// `GET /api/conversations` (200).
    pub async fn conversations(&self, access_token: &str) -> Result<Conversations> {
        self.request(Method::GET, "/api/conversations", Some(access_token), None)
            .await?
            .expect(200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            history_path("bob", None, None, None),
            "/api/conversations/bob/messages"
        );
        assert_eq!(
            history_path("b.o_b", Some(3), Some(9), Some(200)),
            "/api/conversations/b.o_b/messages?after=3&before=9&limit=200"
        );
        assert_eq!(
            history_path("a/b", None, Some(1), None),
            "/api/conversations/a%2Fb/messages?before=1"
        );
    }

    #[test]
    fn answers_keep_envelopes_raw() {
        let text = r#"{"messages":[{"seq":4,"server_ts":5,"state":"delivered","envelope":{"v":1, "id":"x"}}]}"#;
        let h: History = serde_json::from_str(text).unwrap();
        assert_eq!(h.messages[0].envelope.get(), r#"{"v":1, "id":"x"}"#);
        assert_eq!(h.messages[0].state, "delivered");
        let c: Conversations =
            serde_json::from_str(r#"{"conversations":[{"peer":"bob","last_seq":9,"unread":2}]}"#)
                .unwrap();
        assert_eq!(c.conversations[0].unread, 2);
    }
}
