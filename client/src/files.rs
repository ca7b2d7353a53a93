//! File records and file manifests (DESIGN §4, §8 "File records"; the issue #14 contract),
//! byte for byte as `frontend/js/files.js`; `testdata/file-vectors.json` pins both. Owns the
//! record layout (count, ciphertext size, nonce and AAD of record `i`), the file key
//! ([`FileKey`]), streams of records ([`RecordSealer`], [`RecordOpener`]), the manifest
//! envelope ([`seal_manifest`], [`open_manifest`]: sealed like a message, its plaintext
//! exactly eight keys) and the tus `Upload-Metadata` value ([`tus_metadata`]).
//!
//! ```text
//! record i: nonce = N with its last 4 bytes xor i (big-endian u32)
//!           aad   = "securechat/v1/file|" || file_id || "|" || i || "|" || (1 if last else 0)
//!           ct    = AES-256-GCM(K, nonce, plaintext record, aad)     (record + 16 bytes)
//! records n = max(1, ceil(size / record_size)); Upload-Length = size + 16 * n
//! ```

use std::fmt;
use std::io::{Read, Write};

use aes_gcm::aead::{Aead as _, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{self, is_username, is_uuid_v4, pad, seal_with, Reader, SealInputs};
use crate::{b64, Envelope, Error, Identity, Result};

/// The record size clients use unless told otherwise.
pub const DEFAULT_RECORD_SIZE: u32 = 65_536;
/// The smallest record size the server accepts.
pub const MIN_RECORD_SIZE: u32 = 1024;
/// The largest record size the server accepts.
pub const MAX_RECORD_SIZE: u32 = 1_048_576;
/// AES-GCM tag bytes added to every record.
pub const TAG_BYTES: usize = 16;
/// Domain prefix of the record AAD.
pub const RECORD_AAD_PREFIX: &str = "securechat/v1/file|";
/// The `Upload-Metadata` keys, in the order they are written.
pub const TUS_METADATA_KEYS: [&str; 4] = ["recipient", "file_id", "record_size", "manifest"];

/// Why a file operation was refused (the codes of files.js `FileError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileErrorCode {
    /// A record does not authenticate where it stands (moved, dropped, appended, cut,
    /// spliced, altered), or the stream is too short or too long.
    RecordAuth,
    /// The manifest envelope or its plaintext is refused.
    Manifest,
    /// Sizes that do not agree.
    Size,
    /// The plaintext is not the one the manifest names.
    Sha256,
    /// An `Upload-Metadata` value that is not well formed.
    Metadata,
}

impl FileErrorCode {
    /// The code as files.js spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FileErrorCode::RecordAuth => "record_auth",
            FileErrorCode::Manifest => "manifest",
            FileErrorCode::Size => "size",
            FileErrorCode::Sha256 => "sha256",
            FileErrorCode::Metadata => "metadata",
        }
    }
}

impl fmt::Display for FileErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn refuse(code: FileErrorCode, message: impl Into<String>) -> Error {
    Error::File {
        code,
        message: message.into(),
    }
}

fn check_record_size(record_size: u32) -> Result<()> {
    if (MIN_RECORD_SIZE..=MAX_RECORD_SIZE).contains(&record_size) {
        Ok(())
    } else {
        Err(refuse(
            FileErrorCode::Size,
            format!("record_size must be in {MIN_RECORD_SIZE}..={MAX_RECORD_SIZE}"),
        ))
    }
}

/// `max(1, ceil(size / record_size))`; an error for a record size out of range or more
/// than 2^32 records.
pub fn record_count(size: u64, record_size: u32) -> Result<u64> {
    check_record_size(record_size)?;
    let n = size.div_ceil(u64::from(record_size)).max(1);
    if n > u64::from(u32::MAX) + 1 {
        return Err(refuse(FileErrorCode::Size, "more than 2^32 records"));
    }
    Ok(n)
}

/// The ciphertext size (tus `Upload-Length`): `size + 16 * record_count`.
pub fn cipher_size(size: u64, record_size: u32) -> Result<u64> {
    let n = record_count(size, record_size)?;
    size.checked_add(TAG_BYTES as u64 * n)
        .ok_or_else(|| refuse(FileErrorCode::Size, "size overflows"))
}

/// The plaintext size of a file whose ciphertext is `cipher_bytes` long; an error when no
/// plaintext size gives exactly that.
pub fn plain_size(cipher_bytes: u64, record_size: u32) -> Result<u64> {
    check_record_size(record_size)?;
    let tag = TAG_BYTES as u64;
    let n = cipher_bytes.div_ceil(u64::from(record_size) + tag).max(1);
    match cipher_bytes.checked_sub(tag * n) {
        Some(size) if cipher_size(size, record_size)? == cipher_bytes => Ok(size),
        _ => Err(refuse(
            FileErrorCode::Size,
            format!("no file has {cipher_bytes} ciphertext bytes"),
        )),
    }
}

/// The plaintext length of record `i` (the last holds the rest; an empty file is one
/// empty record).
pub fn record_plain_len(size: u64, record_size: u32, i: u64) -> Result<usize> {
    let n = record_count(size, record_size)?;
    if i >= n {
        return Err(refuse(
            FileErrorCode::Size,
            format!("record {i} is not in 0..{n}"),
        ));
    }
    let len = if i + 1 < n {
        u64::from(record_size)
    } else {
        size - (n - 1) * u64::from(record_size)
    };
    usize::try_from(len).map_err(|_| refuse(FileErrorCode::Size, "record too large"))
}

/// `"securechat/v1/file|" || file_id || "|" || i || "|" || (1 if last else 0)`.
pub fn record_aad(file_id: &str, i: u32, last: bool) -> Vec<u8> {
    format!("{RECORD_AAD_PREFIX}{file_id}|{i}|{}", u8::from(last)).into_bytes()
}

/// `N` with its last 4 bytes xor `i` (big-endian).
pub fn record_nonce(nonce: &[u8; 12], i: u32) -> [u8; 12] {
    let mut out = *nonce;
    for (b, x) in out[8..].iter_mut().zip(i.to_be_bytes()) {
        *b ^= x;
    }
    out
}

/// A file key `K` and base nonce `N`. Zeroed on drop; `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey {
    pub key: [u8; 32],
    pub nonce: [u8; 12],
}

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKey").finish_non_exhaustive()
    }
}

impl Drop for FileKey {
    fn drop(&mut self) {
        self.key.fill(0);
    }
}

impl FileKey {
    /// A fresh key and nonce from the OS random source.
    pub fn generate() -> FileKey {
        Self::generate_with(&mut rand::rngs::OsRng)
    }

    /// A fresh key and nonce from `rng`.
    pub fn generate_with<R: RngCore + CryptoRng>(rng: &mut R) -> FileKey {
        let mut key = FileKey {
            key: [0; 32],
            nonce: [0; 12],
        };
        rng.fill_bytes(&mut key.key);
        rng.fill_bytes(&mut key.nonce);
        key
    }

    /// From b64 text (as in a manifest).
    pub fn from_b64(key: &str, nonce: &str) -> Result<FileKey> {
        Ok(FileKey {
            key: b64::decode_array(key)?,
            nonce: b64::decode_array(nonce)?,
        })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.key).into())
    }
}

fn index_u32(i: u64) -> Result<u32> {
    u32::try_from(i).map_err(|_| refuse(FileErrorCode::Size, "record index beyond 2^32"))
}

fn seal_one(
    cipher: &Aes256Gcm,
    nonce: &[u8; 12],
    file_id: &str,
    i: u32,
    last: bool,
    plain: &[u8],
) -> Result<Vec<u8>> {
    let aad = record_aad(file_id, i, last);
    cipher
        .encrypt(
            &Nonce::from(record_nonce(nonce, i)),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Crypto("AES-GCM encrypt".into()))
}

fn open_one(
    cipher: &Aes256Gcm,
    nonce: &[u8; 12],
    file_id: &str,
    i: u32,
    last: bool,
    ct: &[u8],
) -> Result<Vec<u8>> {
    let aad = record_aad(file_id, i, last);
    cipher
        .decrypt(
            &Nonce::from(record_nonce(nonce, i)),
            Payload { msg: ct, aad: &aad },
        )
        .map_err(|_| {
            refuse(
                FileErrorCode::RecordAuth,
                format!("record {i} does not authenticate"),
            )
        })
}

/// Seal record `i` alone.
pub fn seal_record(
    key: &FileKey,
    file_id: &str,
    i: u32,
    last: bool,
    plain: &[u8],
) -> Result<Vec<u8>> {
    seal_one(&key.cipher(), &key.nonce, file_id, i, last, plain)
}

/// Open record `i` alone; `Error::File { code: RecordAuth }` when it does not authenticate.
pub fn open_record(key: &FileKey, file_id: &str, i: u32, last: bool, ct: &[u8]) -> Result<Vec<u8>> {
    open_one(&key.cipher(), &key.nonce, file_id, i, last, ct)
}

fn check_file_id(file_id: &str) -> Result<()> {
    if is_uuid_v4(file_id) {
        Ok(())
    } else {
        Err(Error::Decode(format!(
            "file_id {file_id:?} is not a lower-case UUID v4"
        )))
    }
}

/// Seals a file's records in order: give it each plaintext record (exactly `record_size`
/// bytes, the last one the rest), get its ciphertext.
pub struct RecordSealer {
    cipher: Aes256Gcm,
    nonce: [u8; 12],
    file_id: String,
    size: u64,
    record_size: u32,
    count: u64,
    next: u64,
}

impl fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSealer")
            .field("size", &self.size)
            .field("record_size", &self.record_size)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl RecordSealer {
    /// A sealer for a file of `size` plaintext bytes.
    pub fn new(key: &FileKey, file_id: &str, size: u64, record_size: u32) -> Result<RecordSealer> {
        check_file_id(file_id)?;
        let count = record_count(size, record_size)?;
        Ok(RecordSealer {
            cipher: key.cipher(),
            nonce: key.nonce,
            file_id: file_id.to_owned(),
            size,
            record_size,
            count,
            next: 0,
        })
    }

    /// The index of the next record (= records sealed so far).
    pub fn index(&self) -> u64 {
        self.next
    }

    /// The number of records of the file.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when every record was sealed.
    pub fn is_done(&self) -> bool {
        self.next == self.count
    }

    /// The plaintext length the next record must have (0 when done).
    pub fn next_len(&self) -> usize {
        if self.is_done() {
            0
        } else {
            record_plain_len(self.size, self.record_size, self.next).unwrap_or(0)
        }
    }

    /// Continue from record `i` (a resumed upload re-seals from the server's offset; the
    /// same record seals to the same bytes).
    pub fn set_index(&mut self, i: u64) -> Result<()> {
        if i > self.count {
            return Err(refuse(
                FileErrorCode::Size,
                format!("record {i} is beyond the {} records", self.count),
            ));
        }
        self.next = i;
        Ok(())
    }

    /// The ciphertext offset where record `i` starts.
    pub fn cipher_offset(&self, i: u64) -> u64 {
        i * (u64::from(self.record_size) + TAG_BYTES as u64)
    }

    /// Seal the next record.
    pub fn seal_next(&mut self, plain: &[u8]) -> Result<Vec<u8>> {
        if self.is_done() {
            return Err(refuse(
                FileErrorCode::Size,
                format!("all {} records are sealed", self.count),
            ));
        }
        let want = self.next_len();
        if plain.len() != want {
            return Err(refuse(
                FileErrorCode::Size,
                format!("record {} must hold {want} bytes", self.next),
            ));
        }
        let i = index_u32(self.next)?;
        let last = self.next + 1 == self.count;
        let ct = seal_one(&self.cipher, &self.nonce, &self.file_id, i, last, plain)?;
        self.next += 1;
        Ok(ct)
    }

    /// Read exactly the file's `size` bytes from `input`, seal them, write the ciphertext
    /// to `output`; returns the ciphertext bytes written.
    pub fn seal_stream(mut self, input: &mut impl Read, output: &mut impl Write) -> Result<u64> {
        let mut written = 0u64;
        let mut buf = vec![0u8; self.record_size as usize];
        while !self.is_done() {
            let n = self.next_len();
            input
                .read_exact(&mut buf[..n])
                .map_err(|e| refuse(FileErrorCode::Size, format!("reading the plaintext: {e}")))?;
            let ct = self.seal_next(&buf[..n])?;
            output
                .write_all(&ct)
                .map_err(|e| Error::Decode(format!("writing the ciphertext: {e}")))?;
            written += ct.len() as u64;
        }
        buf.fill(0);
        let mut probe = [0u8; 1];
        match input.read(&mut probe) {
            Ok(0) => Ok(written),
            Ok(_) => Err(refuse(
                FileErrorCode::Size,
                "the input is longer than the size",
            )),
            Err(e) => Err(refuse(
                FileErrorCode::Size,
                format!("reading the plaintext: {e}"),
            )),
        }
    }
}

/// Opens a file's ciphertext as it arrives, in chunks of any size: [`push`] returns the
/// plaintext records that completed and verified, in order. A record that does not
/// authenticate, or bytes after the last record, fail with `RecordAuth`, and the opener
/// stays failed; [`finish`] fails unless the last record arrived. `size` is the
/// plaintext size from the manifest.
///
/// [`push`]: RecordOpener::push
/// [`finish`]: RecordOpener::finish
pub struct RecordOpener {
    cipher: Aes256Gcm,
    nonce: [u8; 12],
    file_id: String,
    size: u64,
    record_size: u32,
    count: u64,
    next: u64,
    buf: Vec<u8>,
    verified: u64,
    failed: bool,
}

impl fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordOpener")
            .field("size", &self.size)
            .field("record_size", &self.record_size)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl RecordOpener {
    /// An opener for a file of `size` plaintext bytes.
    pub fn new(key: &FileKey, file_id: &str, size: u64, record_size: u32) -> Result<RecordOpener> {
        check_file_id(file_id)?;
        let count = record_count(size, record_size)?;
        Ok(RecordOpener {
            cipher: key.cipher(),
            nonce: key.nonce,
            file_id: file_id.to_owned(),
            size,
            record_size,
            count,
            next: 0,
            buf: Vec::new(),
            verified: 0,
            failed: false,
        })
    }

    /// The index of the next record expected (= records verified so far).
    pub fn index(&self) -> u64 {
        self.next
    }

    /// True when the last record verified.
    pub fn is_done(&self) -> bool {
        self.next == self.count
    }

    /// Ciphertext bytes of the records verified so far (a download resumes from here).
    pub fn verified_cipher_bytes(&self) -> u64 {
        self.verified
    }

    fn fail(&mut self, e: Error) -> Error {
        self.failed = true;
        self.buf.clear();
        e
    }

    /// Feed ciphertext bytes; get the records that completed and verified.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.failed {
            return Err(refuse(
                FileErrorCode::RecordAuth,
                "the stream already failed",
            ));
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0usize;
        while !self.is_done() {
            let want = record_plain_len(self.size, self.record_size, self.next)? + TAG_BYTES;
            if self.buf.len() - start < want {
                break;
            }
            let i = index_u32(self.next)?;
            let last = self.next + 1 == self.count;
            let ct = &self.buf[start..start + want];
            match open_one(&self.cipher, &self.nonce, &self.file_id, i, last, ct) {
                Ok(plain) => out.push(plain),
                Err(e) => return Err(self.fail(e)),
            }
            start += want;
            self.next += 1;
            self.verified += want as u64;
        }
        self.buf.drain(..start);
        if self.is_done() && !self.buf.is_empty() {
            let extra = self.buf.len();
            return Err(self.fail(refuse(
                FileErrorCode::RecordAuth,
                format!("{extra} bytes after the last record"),
            )));
        }
        Ok(out)
    }

    /// Fails unless every record arrived and verified.
    pub fn finish(&self) -> Result<()> {
        if self.failed {
            return Err(refuse(FileErrorCode::RecordAuth, "the stream failed"));
        }
        if !self.is_done() {
            return Err(refuse(
                FileErrorCode::RecordAuth,
                format!(
                    "the stream ended after {} of {} records ({} bytes of a record)",
                    self.next,
                    self.count,
                    self.buf.len()
                ),
            ));
        }
        Ok(())
    }

    /// Read the whole ciphertext from `input`, write verified plaintext records to
    /// `output` as they verify; returns the plaintext bytes written.
    pub fn open_stream(mut self, input: &mut impl Read, output: &mut impl Write) -> Result<u64> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| Error::Decode(format!("reading the ciphertext: {e}")))?;
            if n == 0 {
                break;
            }
            for record in self.push(&buf[..n])? {
                output
                    .write_all(&record)
                    .map_err(|e| Error::Decode(format!("writing the plaintext: {e}")))?;
                written += record.len() as u64;
            }
        }
        self.finish()?;
        Ok(written)
    }
}

/// The manifest plaintext: exactly these eight keys, in this order (DESIGN §8).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub file_id: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// b64 of the 32-byte SHA-256 of the plaintext.
    pub sha256: String,
    pub record_size: u32,
    /// b64 of `N`.
    pub nonce: String,
    /// b64 of `K`.
    pub file_key: String,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("file_id", &self.file_id)
            .field("size", &self.size)
            .field("record_size", &self.record_size)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// A manifest from its parts.
    pub fn new(
        file_id: &str,
        name: &str,
        mime: &str,
        size: u64,
        sha256: &[u8; 32],
        record_size: u32,
        key: &FileKey,
    ) -> Result<Manifest> {
        let m = Manifest {
            file_id: file_id.to_owned(),
            name: name.to_owned(),
            mime: mime.to_owned(),
            size,
            sha256: b64::encode(sha256),
            record_size,
            nonce: b64::encode(key.nonce),
            file_key: b64::encode(key.key),
        };
        m.check()?;
        Ok(m)
    }

    /// Check the values' shapes: a UUID v4 file_id, sha256 32 bytes, record_size in range,
    /// nonce 12 bytes, file_key 32 bytes (types are checked by deserializing).
    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| refuse(FileErrorCode::Manifest, m);
        if !is_uuid_v4(&self.file_id) {
            return Err(bad("file_id is not a lower-case UUID v4"));
        }
        if !(MIN_RECORD_SIZE..=MAX_RECORD_SIZE).contains(&self.record_size) {
            return Err(bad("record_size is out of range"));
        }
        for (field, value, len) in [
            ("sha256", &self.sha256, 32),
            ("nonce", &self.nonce, 12),
            ("file_key", &self.file_key, 32),
        ] {
            match b64::decode(value) {
                Ok(bytes) if bytes.len() == len => {}
                _ => return Err(bad(&format!("{field} is not b64 of {len} bytes"))),
            }
        }
        record_count(self.size, self.record_size).map_err(|_| bad("size is out of range"))?;
        Ok(())
    }

    /// `K` and `N` of the file.
    pub fn file_key(&self) -> Result<FileKey> {
        FileKey::from_b64(&self.file_key, &self.nonce)
    }

    /// The 32-byte SHA-256 of the plaintext.
    pub fn sha256_bytes(&self) -> Result<[u8; 32]> {
        b64::decode_array(&self.sha256)
    }

    /// The ciphertext size of the file.
    pub fn cipher_size(&self) -> Result<u64> {
        cipher_size(self.size, self.record_size)
    }

    /// Compact JSON, keys in the documented order (what is sealed, before padding).
    pub fn to_json_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }
}

/// Seal a manifest exactly like a message (AAD "securechat/v1/msg|...", signature, keys
/// for `from` and `to`, padded plaintext) with fresh id, time, `K` and iv.
pub fn seal_manifest(
    from: &str,
    identity: &Identity,
    to: &str,
    to_enc: &RsaPublicKey,
    manifest: &Manifest,
) -> Result<Envelope> {
    seal_manifest_with(
        &mut rand::rngs::OsRng,
        &SealInputs::fresh(),
        from,
        identity,
        to,
        to_enc,
        manifest,
    )
}

/// [`seal_manifest`] with the per-envelope values given (test vectors).
pub fn seal_manifest_with<R: RngCore + CryptoRng>(
    rng: &mut R,
    inputs: &SealInputs,
    from: &str,
    identity: &Identity,
    to: &str,
    to_enc: &RsaPublicKey,
    manifest: &Manifest,
) -> Result<Envelope> {
    manifest.check()?;
    let own = identity.enc.to_public_key();
    let mut readers = vec![Reader {
        name: from,
        enc: &own,
    }];
    if to != from {
        readers.push(Reader {
            name: to,
            enc: to_enc,
        });
    }
    let mut plain = pad(manifest.to_json_bytes()?);
    let sealed = seal_with(rng, inputs, from, &identity.sign, to, &readers, &plain);
    plain.fill(0);
    sealed
}

/// Open a manifest envelope as `me` and check it: the envelope verifies with the sender's
/// pinned signing key and decrypts; the plaintext has exactly the eight keys with the right
/// types; its file_id is `file_id` (the listed one); its size and record_size give exactly
/// `cipher_size_bytes` (the listed ciphertext size). Errors: `Manifest`, or `Size` when the
/// sizes disagree.
pub fn open_manifest(
    envelope: &Envelope,
    me: &str,
    identity: &Identity,
    sender_sign_spki: &[u8],
    file_id: &str,
    cipher_size_bytes: u64,
) -> Result<Manifest> {
    let opened = envelope::open(envelope, me, identity, sender_sign_spki).map_err(|e| {
        refuse(
            FileErrorCode::Manifest,
            format!("the manifest envelope is refused: {e}"),
        )
    })?;
    let manifest: Manifest = serde_json::from_value(Value::Object(opened.plaintext))
        .map_err(|e| refuse(FileErrorCode::Manifest, format!("manifest plaintext: {e}")))?;
    manifest.check()?;
    if manifest.file_id != file_id {
        return Err(refuse(
            FileErrorCode::Manifest,
            "the manifest is for another file_id",
        ));
    }
    if manifest.cipher_size()? != cipher_size_bytes {
        return Err(refuse(
            FileErrorCode::Size,
            "the manifest size does not match the ciphertext size",
        ));
    }
    Ok(manifest)
}

/// The tus `Upload-Metadata` value: `recipient`, `file_id`, `record_size` (decimal),
/// `manifest` (the envelope as compact JSON), in that order, values standard base64.
pub fn tus_metadata(
    recipient: &str,
    file_id: &str,
    record_size: u32,
    manifest: &Envelope,
) -> Result<String> {
    if !is_username(recipient) {
        return Err(refuse(
            FileErrorCode::Metadata,
            "recipient is not a user name",
        ));
    }
    if !is_uuid_v4(file_id) {
        return Err(refuse(FileErrorCode::Metadata, "file_id is not a UUID v4"));
    }
    check_record_size(record_size)?;
    let values = [
        recipient.to_owned(),
        file_id.to_owned(),
        record_size.to_string(),
        manifest.to_json()?,
    ];
    Ok(TUS_METADATA_KEYS
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(","))
}

/// Parse an `Upload-Metadata` value into `(key, decoded UTF-8 value)` pairs in order (a
/// key alone gets ""). `Metadata` errors: an empty or repeated key, more than one space, a
/// value that is not canonical standard base64 or not UTF-8.
pub fn parse_tus_metadata(header: &str) -> Result<Vec<(String, String)>> {
    let bad = |m: String| refuse(FileErrorCode::Metadata, m);
    let mut out: Vec<(String, String)> = Vec::new();
    if header.trim().is_empty() {
        return Ok(out);
    }
    for pair in header.split(',') {
        let mut parts = pair.trim().split(' ');
        let key = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        if key.is_empty() || parts.next().is_some() {
            return Err(bad("a metadata pair is not \"key value\"".into()));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(bad(format!("metadata key {key} is repeated")));
        }
        let bytes = STANDARD
            .decode(value)
            .map_err(|_| bad(format!("metadata value of {key} is not standard base64")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| bad(format!("metadata value of {key} is not UTF-8")))?;
        out.push((key.to_owned(), text));
    }
    Ok(out)
}

/// The `Upload-Checksum` header of a PATCH body: `sha256 <standard base64>`.
pub fn upload_checksum(body: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256 {}", STANDARD.encode(sha2::Sha256::digest(body)))
}

/// A fresh lower-case UUID v4 (a `file_id`).
pub fn new_file_id() -> String {
    envelope::new_message_id(&mut rand::rngs::OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::test_identity;

    const RS: u32 = 1024;
    const FILE_ID: &str = "0b7f1c9e-2d4a-4e6b-9c3d-5a1f2e3d4c5b";

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn seal_all(key: &FileKey, file_id: &str, plain: &[u8]) -> Vec<Vec<u8>> {
        let mut s = RecordSealer::new(key, file_id, plain.len() as u64, RS).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while !s.is_done() {
            let n = s.next_len();
            out.push(s.seal_next(&plain[at..at + n]).unwrap());
            at += n;
        }
        out
    }

    fn open_all(
        key: &FileKey,
        file_id: &str,
        size: u64,
        ct: &[u8],
        chunk: usize,
    ) -> Result<Vec<u8>> {
        let mut o = RecordOpener::new(key, file_id, size, RS)?;
        let mut out = Vec::new();
        for piece in ct.chunks(chunk.max(1)) {
            for r in o.push(piece)? {
                out.extend(r);
            }
        }
        o.finish()?;
        Ok(out)
    }

    fn code(r: Result<Vec<u8>>) -> Option<FileErrorCode> {
        match r {
            Err(Error::File { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn sizes_follow_the_contract() {
        assert_eq!(record_count(0, RS).unwrap(), 1);
        assert_eq!(record_count(1024, RS).unwrap(), 1);
        assert_eq!(record_count(1025, RS).unwrap(), 2);
        assert_eq!(cipher_size(0, RS).unwrap(), 16);
        assert_eq!(cipher_size(1025, RS).unwrap(), 1025 + 32);
        for size in [0u64, 1, 1023, 1024, 1025, 5000] {
            assert_eq!(
                plain_size(cipher_size(size, RS).unwrap(), RS).unwrap(),
                size
            );
        }
        assert!(plain_size(15, RS).is_err());
        assert!(plain_size(1024 + 17, RS).is_err());
        assert!(record_count(1, 1023).is_err());
        assert!(record_count(1, 1_048_577).is_err());
    }

    #[test]
    fn nonce_and_aad_are_the_documented_bytes() {
        let n = [1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0x00, 0xf0, 0x0f];
        assert_eq!(record_nonce(&n, 0), n);
        assert_eq!(
            record_nonce(&n, 0x0102_0304),
            [1, 2, 3, 4, 5, 6, 7, 8, 0xfe, 0x02, 0xf3, 0x0b]
        );
        assert_eq!(
            record_aad(FILE_ID, 12, true),
            format!("securechat/v1/file|{FILE_ID}|12|1").into_bytes()
        );
        assert_eq!(
            record_aad(FILE_ID, 0, false),
            format!("securechat/v1/file|{FILE_ID}|0|0").into_bytes()
        );
    }

    #[test]
    fn records_round_trip_for_edge_sizes_and_chunkings() {
        let key = FileKey::generate();
        for size in [0usize, 1, 1023, 1024, 1025, 7 * 1024 + 5, 8 * 1024] {
            let plain = data(size, 3);
            let ct: Vec<u8> = seal_all(&key, FILE_ID, &plain).concat();
            assert_eq!(ct.len() as u64, cipher_size(size as u64, RS).unwrap());
            for chunk in [1, 100, 1040, 100_000] {
                assert_eq!(
                    open_all(&key, FILE_ID, size as u64, &ct, chunk).unwrap(),
                    plain
                );
            }
        }
    }

    #[test]
    fn every_kind_of_tampering_fails_with_record_auth() {
        let key = FileKey::generate();
        let plain = data(4 * 1024 + 100, 1);
        let size = plain.len() as u64;
        let r = seal_all(&key, FILE_ID, &plain);
        let other_id = new_file_id();
        let other_file = seal_all(&key, &other_id, &data(4 * 1024 + 100, 9));
        let other_key = seal_all(&FileKey::generate(), FILE_ID, &data(4 * 1024 + 100, 9));
        let flip = |mut v: Vec<u8>, at: usize| {
            v[at] ^= 1;
            v
        };
        let all = r.concat();
        let last = all.len() - 1;
        let cases: Vec<(&str, u64, &str, Vec<u8>)> = vec![
            (
                "moved",
                size,
                FILE_ID,
                [&r[0], &r[2], &r[1], &r[3], &r[4]]
                    .map(|x| x.as_slice())
                    .concat(),
            ),
            (
                "dropped",
                size,
                FILE_ID,
                [&r[0], &r[1], &r[3], &r[4]].map(|x| x.as_slice()).concat(),
            ),
            ("last dropped", size, FILE_ID, r[..4].concat()),
            (
                "appended",
                size,
                FILE_ID,
                [all.clone(), r[0].clone()].concat(),
            ),
            (
                "one byte appended",
                size,
                FILE_ID,
                [all.clone(), vec![0]].concat(),
            ),
            ("last record cut", size, FILE_ID, all[..last].to_vec()),
            (
                "non-last presented as last",
                4 * 1024,
                FILE_ID,
                r[..4].concat(),
            ),
            (
                "spliced, same key, other file_id",
                size,
                FILE_ID,
                [&r[0], &other_file[1], &r[2], &r[3], &r[4]]
                    .map(|x| x.as_slice())
                    .concat(),
            ),
            (
                "spliced, other key",
                size,
                FILE_ID,
                [&r[0], &r[1], &r[2], &other_key[3], &r[4]]
                    .map(|x| x.as_slice())
                    .concat(),
            ),
            ("opened as another file_id", size, &other_id, all.clone()),
            ("flipped first byte", size, FILE_ID, flip(all.clone(), 0)),
            (
                "flipped tag byte",
                size,
                FILE_ID,
                flip(all.clone(), 2 * 1040 - 1),
            ),
            ("flipped last byte", size, FILE_ID, flip(all.clone(), last)),
        ];
        assert_eq!(open_all(&key, FILE_ID, size, &all, 1040).unwrap(), plain);
        for (what, size, file_id, ct) in cases {
            for chunk in [1040, 333] {
                assert_eq!(
                    code(open_all(&key, file_id, size, &ct, chunk)),
                    Some(FileErrorCode::RecordAuth),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn the_sealer_refuses_wrong_lengths_and_extra_records() {
        let key = FileKey::generate();
        let mut s = RecordSealer::new(&key, FILE_ID, 1027, RS).unwrap();
        assert!(s.seal_next(&[0; 1023]).is_err());
        s.seal_next(&[0; 1024]).unwrap();
        assert!(s.seal_next(&[0; 1024]).is_err());
        s.seal_next(&[0; 3]).unwrap();
        assert!(s.is_done());
        assert!(s.seal_next(&[]).is_err());
        assert!(RecordSealer::new(&key, "not-a-uuid", 1, RS).is_err());
    }

    #[test]
    fn streams_seal_and_open_through_readers_and_writers() {
        let key = FileKey::generate();
        let plain = data(5000, 4);
        let mut ct = Vec::new();
        let n = RecordSealer::new(&key, FILE_ID, 5000, RS)
            .unwrap()
            .seal_stream(&mut plain.as_slice(), &mut ct)
            .unwrap();
        assert_eq!(n, cipher_size(5000, RS).unwrap());
        let mut out = Vec::new();
        RecordOpener::new(&key, FILE_ID, 5000, RS)
            .unwrap()
            .open_stream(&mut ct.as_slice(), &mut out)
            .unwrap();
        assert_eq!(out, plain);
        // the input must be exactly `size` bytes
        let long = data(5001, 4);
        assert!(RecordSealer::new(&key, FILE_ID, 5000, RS)
            .unwrap()
            .seal_stream(&mut long.as_slice(), &mut Vec::new())
            .is_err());
    }

    fn manifest(key: &FileKey) -> Manifest {
        Manifest::new(
            FILE_ID,
            "Ferien – Strand 🏖.jpg",
            "image/jpeg",
            5000,
            &[7; 32],
            RS,
            key,
        )
        .unwrap()
    }

    #[test]
    fn a_manifest_round_trips_and_is_refused_when_anything_disagrees() {
        let alice = test_identity(1);
        let bob = test_identity(2);
        let key = FileKey::generate();
        let m = manifest(&key);
        let env = seal_manifest("alice", &alice, "bob", &bob.enc.to_public_key(), &m).unwrap();
        assert_ne!(env.id, m.file_id);
        let alice_spki = alice.sign_spki().unwrap();
        let cs = cipher_size(5000, RS).unwrap();
        let opened = open_manifest(&env, "bob", &bob, &alice_spki, FILE_ID, cs).unwrap();
        assert_eq!(opened, m);
        assert_eq!(opened.file_key().unwrap(), key);
        let opened = open_manifest(&env, "alice", &alice, &alice_spki, FILE_ID, cs).unwrap();
        assert_eq!(opened, m);
        let err_code = |r: Result<Manifest>| match r {
            Err(Error::File { code, .. }) => Some(code),
            _ => None,
        };
        let bob_spki = bob.sign_spki().unwrap();
        assert_eq!(
            err_code(open_manifest(&env, "bob", &bob, &bob_spki, FILE_ID, cs)),
            Some(FileErrorCode::Manifest)
        );
        assert_eq!(
            err_code(open_manifest(
                &env,
                "bob",
                &bob,
                &alice_spki,
                &new_file_id(),
                cs
            )),
            Some(FileErrorCode::Manifest)
        );
        assert_eq!(
            err_code(open_manifest(
                &env,
                "bob",
                &bob,
                &alice_spki,
                FILE_ID,
                cs + 1
            )),
            Some(FileErrorCode::Size)
        );
        assert_eq!(
            err_code(open_manifest(
                &env,
                "bob",
                &bob,
                &alice_spki,
                FILE_ID,
                cs - 16
            )),
            Some(FileErrorCode::Size)
        );
        // plaintexts of the wrong shape, validly sealed by alice
        let json = serde_json::to_value(&m).unwrap();
        let mut shapes = Vec::new();
        let mut missing = json.clone();
        missing.as_object_mut().unwrap().remove("file_key");
        shapes.push(("missing key", missing));
        let mut extra = json.clone();
        extra["note"] = "x".into();
        shapes.push(("extra key", extra));
        let mut string_size = json.clone();
        string_size["size"] = "5000".into();
        shapes.push(("size as a string", string_size));
        let mut short_hash = json.clone();
        short_hash["sha256"] = b64::encode([0u8; 31]).into();
        shapes.push(("sha256 short", short_hash));
        for (what, plaintext) in shapes {
            let env = envelope::seal("alice", &alice, "bob", &bob.enc.to_public_key(), &plaintext)
                .unwrap();
            assert_eq!(
                err_code(open_manifest(&env, "bob", &bob, &alice_spki, FILE_ID, cs)),
                Some(FileErrorCode::Manifest),
                "{what}"
            );
        }
    }

    #[test]
    fn tus_metadata_round_trips_in_order_with_standard_base64() {
        let alice = test_identity(1);
        let bob = test_identity(2);
        let m = manifest(&FileKey::generate());
        let env = seal_manifest("alice", &alice, "bob", &bob.enc.to_public_key(), &m).unwrap();
        let header = tus_metadata("bob", FILE_ID, RS, &env).unwrap();
        let parsed = parse_tus_metadata(&header).unwrap();
        let keys: Vec<&str> = parsed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, TUS_METADATA_KEYS);
        assert_eq!(parsed[0].1, "bob");
        assert_eq!(parsed[2].1, "1024");
        assert_eq!(parsed[3].1, env.to_json().unwrap());
        assert!(header.starts_with("recipient Ym9i,"));
        for bad in ["a YQ==,a YQ==", "a YQ", "a -_8", "a YQ== b", ",a YQ=="] {
            assert!(parse_tus_metadata(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_tus_metadata("flag,a YQ==").unwrap(),
            vec![
                ("flag".to_owned(), String::new()),
                ("a".to_owned(), "a".to_owned())
            ]
        );
        assert_eq!(
            upload_checksum(b"abc"),
            "sha256 ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }
}
