//! Owns the server's side of the admin console: [`AdminHost`] implements the plugin API's
//! [`AdminStore`] over the core's own services (auth, the job queue, the relay hub) and the
//! SQL in `db::admin`.
//!
//! Invariant: sessions are revoked in the database first and the sockets told after the
//! write committed (through `LiveSessions`), exactly like logout-all.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use securechat_plugin_api::admin::{
    AdminStore, AuditEntry, Caller, EntryHasher, FailedJob, FileRow, Health, JobChange, LogQuery,
    MessageRow, NewReport, QueueRow, ReportRow, ReportedMessage, StoreError, StoreResult, UserRow,
};

use crate::auth::Auth;
use crate::db::admin::{self as sql, Counted, LogFilter};
use crate::db::{now_ms, sessions, users, Db, DbError};
use crate::jobs::{CancelOutcome, JobState, JobsError, Queue};
use crate::live::{Ended, LiveSessions};
use crate::relay::Hub;

/// The core's services, as the admin console needs them.
pub struct AdminHost {
    pub db: Db,
    pub auth: Arc<Auth>,
    pub hub: Arc<Hub>,
    pub jobs: Queue,
    pub data_dir: std::path::PathBuf,
    pub started: Instant,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    tracing::error!(detail = %e, "admin store error");
    StoreError::Internal("internal error".into())
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        internal(e)
    }
}

impl AdminHost {
    /// Resolves the log query's user names (unknown: `UnknownUser` naming the parameter).
    async fn filter(&self, q: LogQuery) -> StoreResult<LogFilter> {
        let (sender, recipient) = (q.sender.clone(), q.recipient.clone());
        let ids = self
            .db
            .read(move |c| {
                let s = sender.map(|n| sql::user_id(c, &n)).transpose()?;
                let r = recipient.map(|n| sql::user_id(c, &n)).transpose()?;
                Ok((s, r))
            })
            .await?;
        let (sender, recipient) = (ids.0.flatten(), ids.1.flatten());
        if q.sender.is_some() && sender.is_none() {
            return Err(StoreError::UnknownUser("sender"));
        }
        if q.recipient.is_some() && recipient.is_none() {
            return Err(StoreError::UnknownUser("recipient"));
        }
        Ok(LogFilter {
            sender,
            recipient,
            since: q.since,
            until: q.until,
            before: q.before,
            limit: q.limit,
        })
    }

    /// Revokes every session of `username` (disabling it first if asked), then closes
    /// their sockets. `None`: no such user.
    async fn end_sessions(
        &self,
        username: String,
        disable: Option<bool>,
    ) -> StoreResult<Option<u64>> {
        let now = now_ms();
        let done = self
            .db
            .write(move |c| {
                let id = match disable {
                    Some(d) => sql::set_disabled(c, &username, d, now)?,
                    None => sql::user_id(c, &username)?,
                };
                let Some(id) = id else { return Ok(None) };
                let n = match disable {
                    Some(false) => 0,
                    _ => sessions::revoke_all(c, id, "admin", now)?,
                };
                Ok(Some((id, n as u64)))
            })
            .await?;
        Ok(done.map(|(id, n)| {
            if disable != Some(false) {
                self.hub.sessions_ended(id, Ended::All);
            }
            n
        }))
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn disk_free(path: &std::path::Path) -> u64 {
    rustix::fs::statvfs(path)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0)
}

fn jobs_error(e: JobsError) -> StoreError {
    internal(e)
}

#[async_trait]
impl AdminStore for AdminHost {
    async fn authenticate(&self, authorization: Option<&str>) -> Option<Caller> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let who = self.auth.authenticate(token).await.ok()?;
        let uid = who.user_id;
        let user = self.db.read(move |c| users::by_id(c, uid)).await.ok()??;
        Some(Caller {
            username: user.username,
            is_admin: user.is_admin,
        })
    }

    async fn messages(&self, q: LogQuery) -> StoreResult<Vec<MessageRow>> {
        let f = self.filter(q).await?;
        Ok(self.db.read(move |c| sql::messages(c, &f)).await?)
    }

    async fn files(&self, q: LogQuery) -> StoreResult<Vec<FileRow>> {
        let f = self.filter(q).await?;
        Ok(self.db.read(move |c| sql::files(c, &f)).await?)
    }

    async fn users(
        &self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<UserRow>> {
        Ok(self
            .db
            .read(move |c| sql::users(c, &prefix, after.as_deref(), limit))
            .await?)
    }

    async fn set_disabled(&self, username: String, disabled: bool) -> StoreResult<Option<u64>> {
        self.end_sessions(username, Some(disabled)).await
    }

    async fn revoke_sessions(&self, username: String) -> StoreResult<Option<u64>> {
        self.end_sessions(username, None).await
    }

    async fn job_queues(&self) -> StoreResult<Vec<QueueRow>> {
        let counts = self.jobs.counts().await.map_err(jobs_error)?;
        Ok(counts
            .into_iter()
            .map(|q| QueueRow {
                queue: q.queue,
                available: q.available,
                running: q.running,
                done: q.done,
                failed: q.failed,
                cancelled: q.cancelled,
                oldest_due_ms: q.oldest_available_age_ms,
            })
            .collect())
    }

    async fn failed_jobs(&self, limit: u32) -> StoreResult<Vec<FailedJob>> {
        let list = self
            .jobs
            .list(Some(JobState::Failed), None, limit)
            .await
            .map_err(jobs_error)?;
        Ok(list
            .into_iter()
            .map(|j| FailedJob {
                id: j.id,
                queue: j.queue,
                kind: j.kind,
                attempt: j.attempt,
                max_attempts: j.max_attempts,
                last_error: j.last_error,
                updated_at: j.finished_at,
            })
            .collect())
    }

    async fn retry_job(&self, id: i64) -> StoreResult<JobChange> {
        match self.jobs.get(id).await.map_err(jobs_error)? {
            None => Ok(JobChange::NotFound),
            Some(j) if j.state != JobState::Failed => Ok(JobChange::WrongState),
            Some(_) => match self.jobs.retry(id).await {
                Ok(()) => Ok(JobChange::Done),
                Err(JobsError::NotFound(_)) => Ok(JobChange::NotFound),
                Err(JobsError::Conflict(_)) => Ok(JobChange::WrongState),
                Err(e) => Err(jobs_error(e)),
            },
        }
    }

    async fn cancel_job(&self, id: i64) -> StoreResult<JobChange> {
        match self.jobs.cancel(id).await {
            Ok(CancelOutcome::Cancelled { .. }) => Ok(JobChange::Done),
            Ok(CancelOutcome::AlreadyFinished(_)) => Ok(JobChange::WrongState),
            Err(JobsError::NotFound(_)) => Ok(JobChange::NotFound),
            Err(e) => Err(jobs_error(e)),
        }
    }

    async fn health(&self) -> StoreResult<Health> {
        let (users, messages, files, blob_bytes) = self
            .db
            .read(|c| {
                Ok((
                    users::count(c)?,
                    sql::count_of(c, Counted::Messages)?,
                    sql::count_of(c, Counted::Files)?,
                    sql::blob_bytes(c)?,
                ))
            })
            .await?;
        let db_path = self.db.path();
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Health {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: self.started.elapsed().as_secs(),
            users,
            messages,
            files,
            connections: self.hub.connection_count(),
            db_bytes: file_len(db_path),
            wal_bytes: file_len(std::path::Path::new(&wal)),
            blob_bytes: u64::try_from(blob_bytes).unwrap_or(0),
            disk_free_bytes: disk_free(&self.data_dir),
        })
    }

    async fn audit_append(
        &self,
        entry: AuditEntry,
        hasher: EntryHasher,
    ) -> StoreResult<AuditEntry> {
        Ok(self
            .db
            .write(move |c| sql::audit_append(c, entry.clone(), hasher))
            .await?)
    }

    async fn audit_list(&self, before: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        Ok(self
            .db
            .read(move |c| sql::audit_list(c, before, Some(limit)))
            .await?)
    }

    async fn audit_all(&self) -> StoreResult<Vec<AuditEntry>> {
        Ok(self.db.read(|c| sql::audit_list(c, None, None)).await?)
    }

    async fn reported_message(
        &self,
        reporter: String,
        message_id: String,
    ) -> StoreResult<Option<ReportedMessage>> {
        Ok(self
            .db
            .read(move |c| match sql::user_id(c, &reporter)? {
                Some(uid) => sql::reported_message(c, uid, &message_id),
                None => Ok(None),
            })
            .await?)
    }

    async fn report_insert(&self, report: NewReport) -> StoreResult<Option<i64>> {
        Ok(self
            .db
            .write(move |c| sql::report_insert(c, &report))
            .await?)
    }

    async fn reports(&self, before: Option<i64>, limit: u32) -> StoreResult<Vec<ReportRow>> {
        Ok(self
            .db
            .read(move |c| sql::reports(c, before, limit))
            .await?)
    }
}

/// Every audit entry of the database at `path`, oldest first (for `securechat audit verify`,
/// which may run while the server is stopped).
pub fn audit_entries(conn: &rusqlite::Connection) -> crate::db::DbResult<Vec<AuditEntry>> {
    sql::audit_list(conn, None, None)
}
