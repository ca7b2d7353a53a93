//! Owns the seam through which the account and key services (`auth`, `directory`) tell the
//! holder of live connections (the relay's `Hub`) that sessions ended or keys changed. It
//! is a leaf: the services call the trait, `lib.rs` hands them the hub, so neither side
//! imports the other.
//!
//! Invariant: callers report only what has committed (after the write returned), so a
//! connection is never closed for a revocation that was rolled back.

/// Which of a user's sessions ended.
#[derive(Debug, Clone, Copy)]
pub enum Ended<'a> {
    /// These sessions (logout; a reused refresh token).
    Sessions(&'a [String]),
    /// Every session of the user (logout-all).
    All,
}

/// What holds live connections and must hear about sessions and keys.
pub trait LiveSessions: Send + Sync {
    /// The sessions ended: close their connections now.
    fn sessions_ended(&self, user_id: i64, which: Ended<'_>);
    /// The user published key version `key_version`: tell every connection of theirs.
    fn keys_changed(&self, user_id: i64, key_version: i64);
    /// The account `username` (`user_id`) was deleted: close all its connections and
    /// forget anything remembered about the name, so nothing more is delivered to it.
    fn account_deleted(&self, user_id: i64, username: &str);
}
