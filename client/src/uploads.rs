//! Encrypted file transfer over HTTP (the issue #14 contract): a tus 1.0.0 client for
//! `/api/uploads` (creation with metadata and an optional first body, HEAD, PATCH in whole
//! records with `Upload-Checksum: sha256 ...`, resume from the server's offset after a
//! dropped connection, DELETE), `GET /api/files/limits`, the files of a conversation, and
//! downloads of `GET /api/files/{id}` that resume with `Range` and verify record by record
//! ([`RecordOpener`]) and the manifest's SHA-256 at the end. Plaintext is read and
//! written through `Read + Seek` / `Write`, never held whole.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::Method;
use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::client::path_segment;
use crate::files::{
    cipher_size, new_file_id, open_manifest, seal_manifest, tus_metadata, upload_checksum,
    FileErrorCode, FileKey, Manifest, RecordOpener, RecordSealer, DEFAULT_RECORD_SIZE, TAG_BYTES,
};
use crate::{Client, Envelope, Error, Identity, RawResponse, Result, Session};

/// The tus protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";
/// The media type of a PATCH body.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// `GET /api/files/limits`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLimits {
    pub may_send: bool,
    pub max_file_bytes: u64,
    pub max_patch_bytes: u64,
    pub quota_bytes: u64,
    pub used_bytes: u64,
    pub max_uploads_in_flight: u64,
    pub uploads_in_flight: u64,
    pub upload_expiry_secs: u64,
    pub retention_secs: u64,
    pub record_size: u32,
}

/// A file as the files list and `file_ready` carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The server's id (= the upload id), used by `GET /api/files/{id}`.
    pub id: String,
    pub file_id: String,
    pub from: String,
    pub to: String,
    /// Ciphertext bytes.
    pub size: u64,
    pub state: String,
    pub server_ts: u64,
    pub manifest: Envelope,
}

/// `GET /api/conversations/{peer}/files`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    pub files: Vec<FileInfo>,
    pub next_cursor: Option<String>,
}

/// Where an upload stands on the server (POST or HEAD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    /// The relative upload URL (`/api/uploads/{id}`).
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
    pub expires: Option<String>,
}

impl UploadStatus {
    /// The upload id (the last path segment of the location).
    pub fn id(&self) -> &str {
        self.location.rsplit('/').next().unwrap_or_default()
    }
}

fn header_u64(resp: &RawResponse, name: &str) -> Result<u64> {
    resp.header(name)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Decode(format!("answer without a valid {name}")))
}

impl Client {
    fn tus(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http()
            .request(method, format!("{}{}", self.base_url(), path))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header("Tus-Resumable", TUS_VERSION)
    }

    async fn raw(req: reqwest::RequestBuilder) -> Result<RawResponse> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers: HeaderMap = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// `GET /api/files/limits`.
    pub async fn file_limits(&self, token: &str) -> Result<FileLimits> {
        self.request(Method::GET, "/api/files/limits", Some(token), None)
            .await?
            .expect(200)
    }

    /// `GET /api/conversations/{peer}/files` (newest first; `before` a cursor).
    pub async fn conversation_files(
        &self,
        token: &str,
        peer: &str,
        before: Option<&str>,
        limit: Option<u32>,
    ) -> Result<FileList> {
        let mut path = format!("/api/conversations/{}/files", path_segment(peer));
        let mut query = Vec::new();
        if let Some(b) = before {
            query.push(format!("before={}", path_segment(b)));
        }
        if let Some(l) = limit {
            query.push(format!("limit={l}"));
        }
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        self.request(Method::GET, &path, Some(token), None)
            .await?
            .expect(200)
    }

    /// tus creation: `POST /api/uploads` with `Upload-Length` and `Upload-Metadata`, and
    /// `first_body` (whole records) as creation-with-upload. 201 with `Location`.
    pub async fn upload_create(
        &self,
        token: &str,
        length: u64,
        metadata: &str,
        first_body: Option<Vec<u8>>,
    ) -> Result<UploadStatus> {
        let mut req = self
            .tus(Method::POST, "/api/uploads", token)
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", metadata);
        if let Some(body) = first_body {
            req = req
                .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
                .header("Upload-Checksum", upload_checksum(&body))
                .body(body);
        }
        let resp = Self::raw(req).await?;
        resp.expect_status(201)?;
        let location = resp
            .header("Location")
            .ok_or_else(|| Error::Decode("201 without Location".into()))?
            .to_owned();
        let location = match location.find("/api/uploads/") {
            Some(at) => location[at..].to_owned(),
            None => return Err(Error::Decode(format!("unexpected Location {location:?}"))),
        };
        Ok(UploadStatus {
            location,
            offset: header_u64(&resp, "Upload-Offset").unwrap_or(0),
            length: Some(length),
            expires: resp.header("Upload-Expires").map(str::to_owned),
        })
    }

    /// tus HEAD: the server's offset (and length) of an upload.
    pub async fn upload_head(&self, token: &str, location: &str) -> Result<UploadStatus> {
        let resp = Self::raw(self.tus(Method::HEAD, location, token)).await?;
        resp.expect_status(200)?;
        Ok(UploadStatus {
            location: location.to_owned(),
            offset: header_u64(&resp, "Upload-Offset")?,
            length: header_u64(&resp, "Upload-Length").ok(),
            expires: resp.header("Upload-Expires").map(str::to_owned),
        })
    }

    /// tus PATCH of `body` at `offset` with `Upload-Checksum: sha256 ...`; 204, the new offset.
    pub async fn upload_patch(
        &self,
        token: &str,
        location: &str,
        offset: u64,
        body: Vec<u8>,
    ) -> Result<u64> {
        let req = self
            .tus(Method::PATCH, location, token)
            .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .header("Upload-Offset", offset.to_string())
            .header("Upload-Checksum", upload_checksum(&body))
            .body(body);
        let resp = Self::raw(req).await?;
        resp.expect_status(204)?;
        header_u64(&resp, "Upload-Offset")
    }

    /// tus termination: `DELETE /api/uploads/{id}`, 204.
    pub async fn upload_delete(&self, token: &str, location: &str) -> Result<()> {
        Self::raw(self.tus(Method::DELETE, location, token))
            .await?
            .expect_status(204)
    }

    /// `GET /api/files/{id}` from ciphertext byte `from` (a `Range` request when not 0);
    /// the response is checked (200 for the whole, 206 starting at `from`) and returned
    /// for streaming with `chunk()`.
    pub async fn file_response(
        &self,
        token: &str,
        id: &str,
        from: u64,
    ) -> Result<reqwest::Response> {
        let mut req = self
            .http()
            .get(format!(
                "{}/api/files/{}",
                self.base_url(),
                path_segment(id)
            ))
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if from > 0 {
            req = req.header(RANGE, format!("bytes={from}-"));
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let want = if from > 0 { 206 } else { 200 };
        if status != want {
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            RawResponse {
                status,
                headers,
                body,
            }
            .expect_status(want)?;
            return Err(Error::Decode(format!("GET /api/files answered {status}")));
        }
        if from > 0 {
            let start = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start != Some(from) {
                return Err(Error::Decode(format!("206 does not start at byte {from}")));
            }
        }
        Ok(resp)
    }
}

/// How an upload is sent.
#[derive(Clone, Debug)]
pub struct UploadOptions {
    pub record_size: u32,
    /// Records per PATCH (their ciphertext must fit the server's `max_patch_bytes`).
    pub records_per_patch: u64,
    /// Records in the POST body (creation-with-upload); 0 for none.
    pub records_in_create: u64,
    /// Consecutive failed PATCHes (transport errors, 5xx, 460, 409) before giving up.
    pub max_retries: u32,
    /// Pause before a retry.
    pub retry_delay: Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            record_size: DEFAULT_RECORD_SIZE,
            records_per_patch: 16,
            records_in_create: 0,
            max_retries: 5,
            retry_delay: Duration::from_millis(200),
        }
    }
}

/// An upload in progress: the plaintext source, its key and sealer, the server's upload.
/// [`Uploader::start`] hashes the source, seals the manifest and creates the upload;
/// [`Uploader::send_next`] sends one PATCH; [`Uploader::resume`] asks the server for its
/// offset (HEAD) and continues from there; [`Uploader::run`] does all with retries.
pub struct Uploader<R: Read + Seek> {
    source: R,
    sealer: RecordSealer,
    options: UploadOptions,
    token: String,
    pub status: UploadStatus,
    pub manifest: Manifest,
    pub envelope: Envelope,
    pub cipher_size: u64,
}

impl<R: Read + Seek> std::fmt::Debug for Uploader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("status", &self.status)
            .field("cipher_size", &self.cipher_size)
            .finish_non_exhaustive()
    }
}

/// SHA-256 and length of everything `source` holds (read from the start, in pieces).
pub fn hash_source(source: &mut (impl Read + Seek)) -> Result<([u8; 32], u64)> {
    let io = |e: std::io::Error| Error::Decode(format!("reading the file: {e}"));
    source.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = source.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().into(), size))
}

/// What a caller needs to send a file: who, to whom (the recipient's verified RSA key),
/// what name and type.
#[derive(Clone, Copy, Debug)]
pub struct SendTo<'a> {
    pub from: &'a str,
    pub identity: &'a Identity,
    pub to: &'a str,
    pub to_enc: &'a RsaPublicKey,
    pub name: &'a str,
    pub mime: &'a str,
}

impl<R: Read + Seek> Uploader<R> {
    /// Hash the source, make a fresh file key and file_id, seal the manifest, and create
    /// the upload (with the first records when `options.records_in_create` > 0).
    pub async fn start(
        client: &Client,
        token: &str,
        mut source: R,
        to: SendTo<'_>,
        options: UploadOptions,
    ) -> Result<Uploader<R>> {
        let (sha, size) = hash_source(&mut source)?;
        let key = FileKey::generate();
        let file_id = new_file_id();
        let manifest = Manifest::new(
            &file_id,
            to.name,
            to.mime,
            size,
            &sha,
            options.record_size,
            &key,
        )?;
        let envelope = seal_manifest(to.from, to.identity, to.to, to.to_enc, &manifest)?;
        let metadata = tus_metadata(to.to, &file_id, options.record_size, &envelope)?;
        let sealer = RecordSealer::new(&key, &file_id, size, options.record_size)?;
        let total = cipher_size(size, options.record_size)?;
        let mut up = Uploader {
            source,
            sealer,
            options,
            token: token.to_owned(),
            status: UploadStatus {
                location: String::new(),
                offset: 0,
                length: Some(total),
                expires: None,
            },
            manifest,
            envelope,
            cipher_size: total,
        };
        up.position(0)?;
        let first = if up.options.records_in_create > 0 {
            Some(up.next_body(up.options.records_in_create)?)
        } else {
            None
        };
        up.status = client.upload_create(token, total, &metadata, first).await?;
        // whatever the server kept of the first body, continue from its offset
        up.position(up.status.offset)?;
        Ok(up)
    }

    /// True when the server holds every byte.
    pub fn is_done(&self) -> bool {
        self.status.offset == self.cipher_size
    }

    /// Reposition the sealer and the source at ciphertext offset `offset` (a record
    /// boundary, or the end).
    fn position(&mut self, offset: u64) -> Result<()> {
        let rec = u64::from(self.options.record_size) + TAG_BYTES as u64;
        let index = if offset == self.cipher_size {
            self.sealer.count()
        } else if offset.is_multiple_of(rec) && offset < self.cipher_size {
            offset / rec
        } else {
            return Err(Error::File {
                code: FileErrorCode::Size,
                message: format!("the server's offset {offset} is not at a record boundary"),
            });
        };
        self.sealer.set_index(index)?;
        self.source
            .seek(SeekFrom::Start(index * u64::from(self.options.record_size)))
            .map_err(|e| Error::Decode(format!("seeking the file: {e}")))?;
        self.status.offset = offset;
        Ok(())
    }

    /// Seal up to `records` next records into one body.
    fn next_body(&mut self, records: u64) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut buf = vec![0u8; self.options.record_size as usize];
        for _ in 0..records.max(1) {
            if self.sealer.is_done() {
                break;
            }
            let n = self.sealer.next_len();
            self.source
                .read_exact(&mut buf[..n])
                .map_err(|e| Error::Decode(format!("reading the file: {e}")))?;
            body.extend(self.sealer.seal_next(&buf[..n])?);
        }
        buf.fill(0);
        Ok(body)
    }

    /// Send one PATCH of up to `records_per_patch` records; the new offset.
    pub async fn send_next(&mut self, client: &Client) -> Result<u64> {
        let offset = self.status.offset;
        let body = self.next_body(self.options.records_per_patch)?;
        let sent = body.len() as u64;
        match client
            .upload_patch(&self.token, &self.status.location, offset, body)
            .await
        {
            Ok(new) if new == offset + sent => {
                self.status.offset = new;
                Ok(new)
            }
            Ok(new) => {
                self.position(new)?;
                Err(Error::Decode(format!(
                    "PATCH at {offset} of {sent} bytes answered offset {new}"
                )))
            }
            Err(e) => {
                // the sealer moved ahead: put it back where the server stands (resume does)
                self.position(offset)?;
                Err(e)
            }
        }
    }

    /// HEAD the upload and continue from the server's offset.
    pub async fn resume(&mut self, client: &Client) -> Result<u64> {
        let head = client
            .upload_head(&self.token, &self.status.location)
            .await?;
        if head.length.is_some_and(|l| l != self.cipher_size) {
            return Err(Error::Decode("the server's Upload-Length differs".into()));
        }
        self.position(head.offset)?;
        self.status.expires = head.expires;
        Ok(head.offset)
    }

    /// PATCH until done; after a failure (dropped connection, 5xx, a checksum mismatch, an
    /// offset mismatch) wait, HEAD, and continue from the server's offset, up to
    /// `max_retries` failures in a row. `progress(offset, total)` after every PATCH.
    pub async fn run(&mut self, client: &Client, mut progress: impl FnMut(u64, u64)) -> Result<()> {
        let mut failures = 0u32;
        while !self.is_done() {
            match self.send_next(client).await {
                Ok(offset) => {
                    failures = 0;
                    progress(offset, self.cipher_size);
                }
                Err(e) if retryable(&e) && failures < self.options.max_retries => {
                    failures += 1;
                    tokio::time::sleep(self.options.retry_delay).await;
                    if let Err(e) = self.resume(client).await {
                        if !retryable(&e) {
                            return Err(e);
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Terminate the upload (DELETE).
    pub async fn cancel(self, client: &Client) -> Result<()> {
        client
            .upload_delete(&self.token, &self.status.location)
            .await
    }
}

/// Failures a resume may cure: transport errors, 5xx, 409 offset_mismatch, 460.
pub fn retryable(e: &Error) -> bool {
    match e {
        Error::Transport(_) => true,
        Error::Api { status, code, .. } => {
            *status >= 500 || *status == 460 || code == "offset_mismatch"
        }
        Error::UnexpectedStatus { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Download file `info` as the session's user: open and check its manifest (signed by `sender_sign_spki`,
/// the sender's pinned key), stream `GET /api/files/{id}` through a [`RecordOpener`]
/// writing verified records to `out`, resume with `Range` after a dropped connection (up
/// to `max_retries` in a row), and check the plaintext's SHA-256 against the manifest at
/// the end (`Sha256` error). Returns the manifest.
pub async fn download(
    client: &Client,
    session: &Session,
    sender_sign_spki: &[u8],
    info: &FileInfo,
    out: &mut impl Write,
    max_retries: u32,
) -> Result<Manifest> {
    let token = session.access_token.as_str();
    let manifest = open_manifest(
        &info.manifest,
        &session.username,
        &session.identity,
        sender_sign_spki,
        &info.file_id,
        info.size,
    )?;
    let key = manifest.file_key()?;
    let mut opener =
        RecordOpener::new(&key, &manifest.file_id, manifest.size, manifest.record_size)?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut failures = 0u32;
    while received < info.size {
        let attempt: Result<()> = async {
            let mut resp = client.file_response(token, &info.id, received).await?;
            while let Some(chunk) = resp.chunk().await? {
                if received + chunk.len() as u64 > info.size {
                    return Err(Error::File {
                        code: FileErrorCode::RecordAuth,
                        message: "the server sent more bytes than the file has".into(),
                    });
                }
                received += chunk.len() as u64;
                for record in opener.push(&chunk)? {
                    hasher.update(&record);
                    out.write_all(&record)
                        .map_err(|e| Error::Decode(format!("writing the file: {e}")))?;
                }
            }
            Ok(())
        }
        .await;
        match attempt {
            Ok(()) if received < info.size => {
                failures += 1;
                if failures > max_retries {
                    break;
                }
            }
            Ok(()) => {}
            Err(e) if matches!(e, Error::Transport(_)) && failures < max_retries => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
    opener.finish()?;
    let digest: [u8; 32] = hasher.finalize().into();
    if digest != manifest.sha256_bytes()? {
        return Err(Error::File {
            code: FileErrorCode::Sha256,
            message: "the file is not the one the manifest names (SHA-256 differs)".into(),
        });
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_the_ones_a_resume_cures() {
        let api = |status: u16, code: &str| Error::Api {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(retryable(&api(460, "checksum_mismatch")));
        assert!(retryable(&api(409, "offset_mismatch")));
        assert!(retryable(&api(503, "unavailable")));
        assert!(!retryable(&api(409, "upload_finished")));
        assert!(!retryable(&api(413, "quota_exceeded")));
        assert!(!retryable(&api(404, "not_found")));
    }

    #[test]
    fn hashing_the_source_reads_it_from_the_start() {
        let mut src = std::io::Cursor::new(b"abc".to_vec());
        src.set_position(2);
        let (sha, size) = hash_source(&mut src).unwrap();
        assert_eq!(size, 3);
        assert_eq!(
            crate::b64::encode(sha),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }

    #[test]
    fn upload_status_names_its_id() {
        let s = UploadStatus {
            location: "/api/uploads/0b7f1c9e-2d4a-4e6b-9c3d-5a1f2e3d4c5b".into(),
            offset: 0,
            length: None,
            expires: None,
        };
        assert_eq!(s.id(), "0b7f1c9e-2d4a-4e6b-9c3d-5a1f2e3d4c5b");
    }
}
