//! The admin console's view of the core: [`AdminStore`], implemented by the server, and
//! the rows it answers with. It is deliberately narrow: routing metadata, counts and the
//! audit/report tables, never a raw database handle.
//!
//! Invariant: no row type here carries a password hash, token, wrapped key or key bundle.
//! The one exception to "no message content" is [`ReportedMessage`], handed over only for
//! the recipient who is reporting that message, so the plugin can check the report.

use async_trait::async_trait;
use serde::Serialize;

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A filter named a user who does not exist; the query parameter's name.
    UnknownUser(&'static str),
    /// Ours, not the caller's: the detail is logged by the store, not shown.
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Who presented a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub username: String,
    pub is_admin: bool,
}

/// Filters of the message and file logs. `before` is an exclusive seq bound (the cursor).
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// One stored message. `envelope` is given only so the plugin can fingerprint it.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub seq: i64,
    pub id: String,
    pub sender: String,
    pub recipient: String,
    pub server_ts: i64,
    pub size: i64,
    pub envelope: String,
    pub state: &'static str,
}

/// One shared file (routing metadata, the blob's BLAKE3 once complete).
#[derive(Debug, Clone)]
pub struct FileRow {
    pub seq: i64,
    pub id: String,
    pub sender: String,
    pub recipient: String,
    pub created_at: i64,
    pub size: i64,
    pub blake3: Option<Vec<u8>>,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub username: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    pub messages_sent: i64,
    pub messages_received: i64,
    pub files: i64,
    pub storage_bytes: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueRow {
    pub queue: String,
    pub available: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub oldest_due_ms: i64,
}

/// A failed job, never its payload.
#[derive(Debug, Clone, Serialize)]
pub struct FailedJob {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    pub updated_at: Option<i64>,
}

/// What a job retry or cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobChange {
    Done,
    NotFound,
    /// Retry: the job is not failed. Cancel: it had already finished.
    WrongState,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub version: String,
    pub uptime_secs: u64,
    pub users: i64,
    pub messages: i64,
    pub files: i64,
    pub connections: u64,
    pub db_bytes: u64,
    pub wal_bytes: u64,
    pub blob_bytes: u64,
    pub disk_free_bytes: u64,
}

/// One audit log entry as stored. `prev_hash` and `hash` are 32 bytes each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Computes an entry's own hash from every other field (the plugin's chain rule).
pub type EntryHasher = fn(&AuditEntry) -> Vec<u8>;

/// The message a recipient reports, with what checking the report needs.
#[derive(Debug, Clone)]
pub struct ReportedMessage {
    pub seq: i64,
    pub sender: String,
    pub recipient: String,
    pub server_ts: i64,
    pub envelope: String,
    /// The sender's signing key (b64url SPKI) of the version current at `server_ts`.
    pub sender_sign_public_key: String,
}

#[derive(Debug, Clone)]
pub struct NewReport {
    pub message_seq: i64,
    pub message_id: String,
    pub reporter: String,
    pub sender: String,
    pub recipient: String,
    pub server_ts: i64,
    pub reported_at: i64,
    pub reason: String,
    pub verdict: String,
    pub detail: Option<String>,
    /// The disclosed plaintext's `text` member, kept only for a verified report.
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    #[serde(skip)]
    pub seq: i64,
    pub id: i64,
    pub message_id: String,
    pub reporter: String,
    pub sender: String,
    pub recipient: String,
    pub server_ts: i64,
    pub reported_at: i64,
    pub reason: String,
    pub verdict: String,
    pub detail: Option<String>,
    pub text: Option<String>,
}

/// The core's admin services. Lists are newest first (users: ascending by name) and return
/// at most `limit` rows.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// The holder of a live access token (the `Authorization` header value), or `None`.
    async fn authenticate(&self, authorization: Option<&str>) -> Option<Caller>;
    async fn messages(&self, q: LogQuery) -> StoreResult<Vec<MessageRow>>;
    async fn files(&self, q: LogQuery) -> StoreResult<Vec<FileRow>>;
    /// Users whose name starts with `prefix`, after the name `after`, ascending.
    async fn users(
        &self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<UserRow>>;
    /// Disables or enables an account; disabling also revokes every session and closes
    /// every socket (4401). `None`: no such user. `Some(n)`: sessions revoked.
    async fn set_disabled(&self, username: String, disabled: bool) -> StoreResult<Option<u64>>;
    /// Revokes every session of the user and closes their sockets.
    async fn revoke_sessions(&self, username: String) -> StoreResult<Option<u64>>;
    async fn job_queues(&self) -> StoreResult<Vec<QueueRow>>;
    async fn failed_jobs(&self, limit: u32) -> StoreResult<Vec<FailedJob>>;
    async fn retry_job(&self, id: i64) -> StoreResult<JobChange>;
    async fn cancel_job(&self, id: i64) -> StoreResult<JobChange>;
    async fn health(&self) -> StoreResult<Health>;
    /// Appends one audit entry: the store picks `seq` (last + 1) and `prev_hash` (the last
    /// entry's hash, or 32 zero bytes), fills `hash` with `hasher`, all in one serialized
    /// write, so concurrent appends never fork the chain.
    async fn audit_append(&self, entry: AuditEntry, hasher: EntryHasher)
        -> StoreResult<AuditEntry>;
    /// Entries with seq below `before` (all when `None`), newest first.
    async fn audit_list(&self, before: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>>;
    /// Every entry in stored (rowid) order, for verification.
    async fn audit_all(&self) -> StoreResult<Vec<AuditEntry>>;
    /// The message `message_id` if `reporter` is its recipient.
    async fn reported_message(
        &self,
        reporter: String,
        message_id: String,
    ) -> StoreResult<Option<ReportedMessage>>;
    /// Keeps a report; `Ok(None)` when the reporter reported that message before.
    async fn report_insert(&self, report: NewReport) -> StoreResult<Option<i64>>;
    async fn reports(&self, before: Option<i64>, limit: u32) -> StoreResult<Vec<ReportRow>>;
}
