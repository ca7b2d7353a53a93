-- 0001: accounts, their public keys and key history, and login sessions.
-- Binary values that came over the wire are kept as the base64url text the client sent,
-- so that the server can hand them back byte for byte.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    username        TEXT    NOT NULL UNIQUE,
    auth_hash       TEXT    NOT NULL,           -- bcrypt(auth_key)
    kdf_alg         TEXT    NOT NULL,
    kdf_iterations  INTEGER NOT NULL,
    kdf_salt        TEXT    NOT NULL,
    key_version     INTEGER NOT NULL,
    enc_public_key  TEXT    NOT NULL,           -- SPKI, RSA-OAEP-2048
    sign_public_key TEXT    NOT NULL,           -- SPKI, ECDSA P-256
    bundle_iv       TEXT    NOT NULL,
    bundle_ct       TEXT    NOT NULL,           -- private keys wrapped under the client's kek
    self_sig        TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    is_admin        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,           -- ms since epoch
    last_seen_at    INTEGER
) STRICT;

-- Every key version a user ever published, the first one included; readable by everyone
-- signed in, so clients can explain a changed safety number.
CREATE TABLE key_changes (
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_version     INTEGER NOT NULL,
    enc_public_key  TEXT    NOT NULL,
    sign_public_key TEXT    NOT NULL,
    self_sig        TEXT    NOT NULL,
    prev_sig        TEXT,                       -- NULL for version 1
    fingerprint     TEXT    NOT NULL,
    changed_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, key_version)
) STRICT;

CREATE TABLE sessions (
    id            TEXT    PRIMARY KEY,          -- random, 128 bits, hex
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions(user_id);

-- Refresh tokens are stored only as SHA-256 hashes. A superseded token presented again
-- means it was stolen or replayed: its whole session is revoked.
CREATE TABLE refresh_tokens (
    token_hash    BLOB    PRIMARY KEY,
    session_id    TEXT    NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    issued_at     INTEGER NOT NULL,
    superseded_at INTEGER
) STRICT;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);
