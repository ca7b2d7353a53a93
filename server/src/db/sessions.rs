//! Owns the SQL of the `sessions` and `refresh_tokens` tables: login sessions and the chain
//! of rotating refresh tokens that keeps each alive.
//!
//! Invariants: only hashes of refresh tokens are stored; a session has at most one live
//! (unsuperseded) token; presenting a superseded token revokes the whole session.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user_id: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl Session {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Refresh {
    /// The token was live; it is now superseded by the new hash.
    Rotated(Session),
    /// The token was already superseded: the session (`session_id` of `user_id`) is revoked.
    Reused { session_id: String, user_id: i64 },
    /// Unknown token, or its session is expired or revoked.
    Invalid,
}

pub fn create(
    conn: &Connection,
    id: &str,
    user_id: i64,
    token_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> DbResult<()> {
    conn.execute(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at) \
         VALUES (?1, ?2, ?3, ?3, ?4)",
        params![id, user_id, now, expires_at],
    )?;
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?1, ?2, ?3)",
        params![token_hash, id, now],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> DbResult<Option<Session>> {
    Ok(conn
        .prepare_cached("SELECT id, user_id, expires_at, revoked_at FROM sessions WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(Session {
                id: r.get(0)?,
                user_id: r.get(1)?,
                expires_at: r.get(2)?,
                revoked_at: r.get(3)?,
            })
        })
        .optional()?)
}

/// Rotates the refresh token `presented` to `next`, or detects its reuse.
pub fn refresh(conn: &Connection, presented: &[u8], next: &[u8], now: i64) -> DbResult<Refresh> {
    let found: Option<(String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT session_id, superseded_at FROM refresh_tokens WHERE token_hash = ?1",
        )?
        .query_row([presented], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((session_id, superseded)) = found else {
        return Ok(Refresh::Invalid);
    };
    let Some(session) = get(conn, &session_id)? else {
        return Ok(Refresh::Invalid);
    };
    if superseded.is_some() {
        if session.revoked_at.is_none() {
            revoke(conn, &session_id, "refresh token reused", now)?;
        }
        return Ok(Refresh::Reused {
            session_id,
            user_id: session.user_id,
        });
    }
    if !session.is_live(now) {
        return Ok(Refresh::Invalid);
    }
    conn.execute(
        "UPDATE refresh_tokens SET superseded_at = ?2 WHERE token_hash = ?1",
        params![presented, now],
    )?;
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?1, ?2, ?3)",
        params![next, session_id, now],
    )?;
    conn.execute(
        "UPDATE sessions SET last_used_at = ?2 WHERE id = ?1",
        params![session_id, now],
    )?;
    Ok(Refresh::Rotated(session))
}

pub fn revoke(conn: &Connection, id: &str, reason: &str, now: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE sessions SET revoked_at = ?2, revoke_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now, reason],
    )?;
    Ok(())
}

pub fn revoke_all(conn: &Connection, user_id: i64, reason: &str, now: i64) -> DbResult<usize> {
    Ok(conn.execute(
        "UPDATE sessions SET revoked_at = ?2, revoke_reason = ?3 WHERE user_id = ?1 AND revoked_at IS NULL",
        params![user_id, now, reason],
    )?)
}

/// Revokes every live session of `user_id` but `keep`; the ids revoked.
pub fn revoke_all_but(
    conn: &Connection,
    user_id: i64,
    keep: &str,
    reason: &str,
    now: i64,
) -> DbResult<Vec<String>> {
    let ids = conn
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?3, revoke_reason = ?4 \
             WHERE user_id = ?1 AND id <> ?2 AND revoked_at IS NULL RETURNING id",
        )?
        .query_map(params![user_id, keep, now, reason], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Deletes every session of `user_id` and their refresh tokens (a deleted account).
pub fn delete_all(conn: &Connection, user_id: i64) -> DbResult<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?)
}

/// A live session as its owner sees it in the list.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
}

/// `user_id`'s sessions that are neither revoked nor expired at `now`, newest first.
pub fn live_of(conn: &Connection, user_id: i64, now: i64) -> DbResult<Vec<LiveSession>> {
    let rows = conn
        .prepare_cached(
            "SELECT id, created_at, last_used_at, expires_at FROM sessions \
             WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2 \
             ORDER BY created_at DESC, id",
        )?
        .query_map(params![user_id, now], |r| {
            Ok(LiveSession {
                id: r.get(0)?,
                created_at: r.get(1)?,
                last_used_at: r.get(2)?,
                expires_at: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Whether `token_hash` is the live (not superseded) refresh token of session `session_id`.
pub fn is_current_token(conn: &Connection, session_id: &str, token_hash: &[u8]) -> DbResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM refresh_tokens \
             WHERE token_hash = ?1 AND session_id = ?2 AND superseded_at IS NULL",
        )?
        .query_row(params![token_hash, session_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The session a refresh token belongs to, if that token is live (for logout with a token).
pub fn session_of_token(conn: &Connection, token_hash: &[u8]) -> DbResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT session_id FROM refresh_tokens WHERE token_hash = ?1")?
        .query_row([token_hash], |r| r.get(0))
        .optional()?)
}
