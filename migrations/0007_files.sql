-- 0007: encrypted files (issue #14). One row per upload; the same row becomes the stored
-- file when finalize_upload marks it ready. `id` (a server-made uuid v4) is the upload id in
-- /api/uploads/{id} and the file id in /api/files/{id}, and names the blob on disk
-- (<data_dir>/blobs/<first 2 hex>/<id>); the client's `file_id` never names anything on disk.
-- `manifest` is the envelope text byte for byte as uploaded. `hash_state` is the resumable
-- BLAKE3 state (files/tree.rs) as of `upload_offset`; `blake3` the root once the offset
-- reached `upload_length`.

CREATE TABLE files (
    seq            INTEGER PRIMARY KEY,         -- paging cursor of the files list
    id             TEXT    NOT NULL UNIQUE,
    uploader_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    recipient_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_id        TEXT    NOT NULL,
    upload_length  INTEGER NOT NULL,
    upload_offset  INTEGER NOT NULL DEFAULT 0,
    record_size    INTEGER NOT NULL,
    manifest       TEXT    NOT NULL,
    hash_state     BLOB    NOT NULL,
    blake3         BLOB,
    state          TEXT    NOT NULL
                   CHECK (state = 'uploading' OR state = 'ready' OR state = 'damaged'),
    created_at     INTEGER NOT NULL,            -- ms since epoch
    expires_at     INTEGER NOT NULL,            -- unfinished uploads only
    finished_at    INTEGER,                     -- when finalize marked it ready
    scrubbed_at    INTEGER                      -- last verification by scrub_blobs
) STRICT;
CREATE INDEX files_by_uploader ON files(uploader_id, state);
CREATE INDEX files_by_pair ON files(uploader_id, recipient_id, seq);
CREATE INDEX files_by_expiry ON files(state, expires_at);
