//! Owns the SQL of the `users` and `key_changes` tables: accounts, their published public
//! keys, and the history of those keys.
//!
//! A deleted account ([`delete_account`]) stays as a tombstone row so that its name is
//! never registered again; every lookup here but [`id_including_deleted`] treats it as
//! absent.
//!
//! Invariant: a user's current key columns and the newest `key_changes` row always agree;
//! both are written in the same operation.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

/// Public key material as published, base64url text exactly as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKeys {
    pub key_version: i64,
    pub enc_public_key: String,
    pub sign_public_key: String,
    pub self_sig: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub auth_hash: String,
    pub kdf_alg: String,
    pub kdf_iterations: i64,
    pub kdf_salt: String,
    pub keys: PublishedKeys,
    pub bundle_iv: String,
    pub bundle_ct: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub auth_hash: String,
    pub kdf_alg: String,
    pub kdf_iterations: i64,
    pub kdf_salt: String,
    pub keys: PublishedKeys,
    pub bundle_iv: String,
    pub bundle_ct: String,
    pub is_admin: bool,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct KeyChange {
    pub keys: PublishedKeys,
    pub prev_sig: Option<String>,
    pub changed_at: i64,
}

const USER_COLUMNS: &str = "id, username, auth_hash, kdf_alg, kdf_iterations, kdf_salt, \
    key_version, enc_public_key, sign_public_key, self_sig, fingerprint, bundle_iv, bundle_ct, \
    is_admin, created_at, last_seen_at";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        auth_hash: r.get(2)?,
        kdf_alg: r.get(3)?,
        kdf_iterations: r.get(4)?,
        kdf_salt: r.get(5)?,
        keys: PublishedKeys {
            key_version: r.get(6)?,
            enc_public_key: r.get(7)?,
            sign_public_key: r.get(8)?,
            self_sig: r.get(9)?,
            fingerprint: r.get(10)?,
        },
        bundle_iv: r.get(11)?,
        bundle_ct: r.get(12)?,
        is_admin: r.get(13)?,
        created_at: r.get(14)?,
        last_seen_at: r.get(15)?,
    })
}

/// Inserts the account and its first key-history row. Fails with a unique violation if the
/// name is taken.
pub fn insert(conn: &Connection, u: &NewUser) -> DbResult<i64> {
    conn.execute(
        "INSERT INTO users (username, auth_hash, kdf_alg, kdf_iterations, kdf_salt, key_version, \
         enc_public_key, sign_public_key, self_sig, fingerprint, bundle_iv, bundle_ct, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            u.username,
            u.auth_hash,
            u.kdf_alg,
            u.kdf_iterations,
            u.kdf_salt,
            u.keys.key_version,
            u.keys.enc_public_key,
            u.keys.sign_public_key,
            u.keys.self_sig,
            u.keys.fingerprint,
            u.bundle_iv,
            u.bundle_ct,
            u.created_at
        ],
    )?;
    let id = conn.last_insert_rowid();
    insert_key_change(conn, id, &u.keys, None, u.created_at)?;
    Ok(id)
}

fn insert_key_change(
    conn: &Connection,
    user_id: i64,
    k: &PublishedKeys,
    prev_sig: Option<&str>,
    at: i64,
) -> DbResult<()> {
    conn.execute(
        "INSERT INTO key_changes (user_id, key_version, enc_public_key, sign_public_key, self_sig, \
         prev_sig, fingerprint, changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            user_id,
            k.key_version,
            k.enc_public_key,
            k.sign_public_key,
            k.self_sig,
            prev_sig,
            k.fingerprint,
            at
        ],
    )?;
    Ok(())
}

pub fn by_name(conn: &Connection, username: &str) -> DbResult<Option<User>> {
    let sql =
        format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1 AND deleted_at IS NULL");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([username], user_from_row)
        .optional()?)
}

/// The id of `username`, without reading the rest of the row.
pub fn id_by_name(conn: &Connection, username: &str) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM users WHERE username = ?1 AND deleted_at IS NULL")?
        .query_row([username], |r| r.get(0))
        .optional()?)
}

/// The id of `username`, also if the account was deleted (its partners' history stays).
pub fn id_including_deleted(conn: &Connection, username: &str) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM users WHERE username = ?1")?
        .query_row([username], |r| r.get(0))
        .optional()?)
}

pub fn by_id(conn: &Connection, id: i64) -> DbResult<Option<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND deleted_at IS NULL");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], user_from_row)
        .optional()?)
}

/// Usernames starting with `prefix`, after `cursor`, ascending; at most `limit`.
pub fn list(
    conn: &Connection,
    prefix: &str,
    cursor: Option<&str>,
    limit: u32,
) -> DbResult<Vec<(String, i64)>> {
    // Usernames are [a-z0-9_.-]: escape the LIKE wildcard `_` (and the escape char itself).
    let pattern = format!(
        "{}%",
        prefix
            .replace('\\', "\\\\")
            .replace('_', "\\_")
            .replace('%', "\\%")
    );
    let mut stmt = conn.prepare_cached(
        "SELECT username, key_version FROM users \
         WHERE username LIKE ?1 ESCAPE '\\' AND username > ?2 AND deleted_at IS NULL \
         ORDER BY username LIMIT +?3",
    )?;
    let rows = stmt
        .query_map(params![pattern, cursor.unwrap_or(""), limit], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn key_changes(conn: &Connection, user_id: i64) -> DbResult<Vec<KeyChange>> {
    let mut stmt = conn.prepare_cached(
        "SELECT key_version, enc_public_key, sign_public_key, self_sig, fingerprint, prev_sig, \
         changed_at FROM key_changes WHERE user_id = ?1 ORDER BY key_version",
    )?;
    let rows = stmt
        .query_map([user_id], |r| {
            Ok(KeyChange {
                keys: PublishedKeys {
                    key_version: r.get(0)?,
                    enc_public_key: r.get(1)?,
                    sign_public_key: r.get(2)?,
                    self_sig: r.get(3)?,
                    fingerprint: r.get(4)?,
                },
                prev_sig: r.get(5)?,
                changed_at: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Replaces a user's keys if their current version is `keys.key_version - 1`.
/// Returns false (and changes nothing) when the version moved meanwhile.
pub fn rotate_keys(
    conn: &Connection,
    user_id: i64,
    keys: &PublishedKeys,
    bundle_iv: &str,
    bundle_ct: &str,
    prev_sig: &str,
    at: i64,
) -> DbResult<bool> {
    let changed = conn.execute(
        "UPDATE users SET key_version = ?2, enc_public_key = ?3, sign_public_key = ?4, \
         self_sig = ?5, fingerprint = ?6, bundle_iv = ?7, bundle_ct = ?8 \
         WHERE id = ?1 AND key_version = ?2 - 1",
        params![
            user_id,
            keys.key_version,
            keys.enc_public_key,
            keys.sign_public_key,
            keys.self_sig,
            keys.fingerprint,
            bundle_iv,
            bundle_ct
        ],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    insert_key_change(conn, user_id, keys, Some(prev_sig), at)?;
    Ok(true)
}

/// Replaces the password-derived columns of a live account: the bcrypt of the auth key,
/// the KDF salt and parameters, and the key bundle wrapped under the new kek (the key
/// version and public keys stay). Returns false if there is no such live account.
pub fn set_password(
    conn: &Connection,
    user_id: i64,
    auth_hash: &str,
    kdf: (&str, i64, &str),
    bundle_iv: &str,
    bundle_ct: &str,
) -> DbResult<bool> {
    let (alg, iterations, salt) = kdf;
    Ok(conn.execute(
        "UPDATE users SET auth_hash = ?2, kdf_alg = ?3, kdf_iterations = ?4, kdf_salt = ?5, \
         bundle_iv = ?6, bundle_ct = ?7 WHERE id = ?1 AND deleted_at IS NULL",
        params![user_id, auth_hash, alg, iterations, salt, bundle_iv, bundle_ct],
    )? == 1)
}

/// Turns the account into a tombstone at `at`: the row (and so the name) stays, its auth
/// hash, KDF salt, public keys, signature, fingerprint and key bundle are cleared, its
/// key-change log is deleted, and it is no admin. Sessions and messages are the callers'
/// (`sessions::delete_all`, `messages::delete_undelivered_of`). Returns false if there is
/// no such live account.
pub fn delete_account(conn: &Connection, user_id: i64, at: i64) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE users SET deleted_at = ?2, auth_hash = '', kdf_salt = '', enc_public_key = '', \
         sign_public_key = '', self_sig = '', fingerprint = '', bundle_iv = '', bundle_ct = '', \
         is_admin = 0 WHERE id = ?1 AND deleted_at IS NULL",
        params![user_id, at],
    )?;
    if n == 0 {
        return Ok(false);
    }
    conn.execute("DELETE FROM key_changes WHERE user_id = ?1", [user_id])?;
    Ok(true)
}

/// Sets or clears the admin flag. Returns false if there is no such user.
pub fn set_admin(conn: &Connection, username: &str, admin: bool) -> DbResult<bool> {
    Ok(conn.execute(
        "UPDATE users SET is_admin = ?2 WHERE username = ?1",
        params![username, admin],
    )? == 1)
}

/// `user_id`'s name and when they were last seen: what a presence frame needs, without the
/// key bundle the full row carries.
pub fn presence_of(conn: &Connection, user_id: i64) -> DbResult<Option<(String, Option<i64>)>> {
    Ok(conn
        .prepare_cached("SELECT username, last_seen_at FROM users WHERE id = ?1")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// When `user_id` was last seen online (None if never, or no such user). Presence needs
/// only this column, not the whole row with its key bundle.
pub fn last_seen(conn: &Connection, user_id: i64) -> DbResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT last_seen_at FROM users WHERE id = ?1")?
        .query_row([user_id], |r| r.get::<_, Option<i64>>(0))
        .optional()?
        .flatten())
}

pub fn touch_last_seen(conn: &Connection, user_id: i64, at: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE users SET last_seen_at = ?2 WHERE id = ?1",
        params![user_id, at],
    )?;
    Ok(())
}

/// Live accounts (a deleted account's tombstone is not counted).
pub fn count(conn: &Connection) -> DbResult<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM users WHERE deleted_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}
