//! Owns reading a stored file back: the one `Range` form served (`bytes=a-b`, `a-`, `-n`),
//! and the body streamed from disk by a blocking reader through a small channel, never
//! held whole. A full-file GET re-hashes the blob as it streams and, if the BLAKE3 root
//! does not match, withholds the last chunk and aborts the body (the client sees a cut
//! response, never a complete bad one) and marks the file damaged. A ranged GET cannot be
//! checked cheaply by the server: the client's record authentication (AES-GCM per record)
//! catches any flipped byte in it.

use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::Files;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

const CHUNK: usize = 256 * 1024;

pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + Sync>>;

/// A download ready to answer.
pub struct Download {
    /// The BLAKE3 root, hex (the ETag without quotes).
    pub etag: String,
    pub total: u64,
    /// The inclusive byte range served, for a 206.
    pub range: Option<(u64, u64)>,
    pub body: BodyStream,
}

/// What a `Range` header asks for, against a file of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses one `bytes=` range. Anything this server does not serve as a range (several
/// ranges, other units, garbage) is answered with the whole file, as HTTP allows.
pub fn parse_range(header: Option<&str>, total: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", n) => match num(n) {
            Some(n) if n > 0 && total > 0 => RangeAsk::Part(total.saturating_sub(n), total - 1),
            Some(_) => RangeAsk::Unsatisfiable,
            None => RangeAsk::Whole,
        },
        (a, "") => match num(a) {
            Some(a) if a < total => RangeAsk::Part(a, total - 1),
            Some(_) => RangeAsk::Unsatisfiable,
            None => RangeAsk::Whole,
        },
        (a, b) => match (num(a), num(b)) {
            (Some(a), Some(b)) if a <= b && a < total => RangeAsk::Part(a, b.min(total - 1)),
            (Some(a), Some(b)) if a <= b => RangeAsk::Unsatisfiable,
            _ => RangeAsk::Whole,
        },
    }
}

impl Files {
    /// GET /api/files/{id} for `who`.
    pub async fn download(
        &self,
        who: &Principal,
        id: &str,
        range: Option<&str>,
    ) -> ApiResult<Download> {
        let row = self.party_file(who, id).await?;
        if row.state == "damaged" {
            return Err(ApiError::conflict(
                "file_damaged",
                "this file's stored bytes are damaged",
            ));
        }
        let total = u64::try_from(row.upload_length).unwrap_or(0);
        let root: [u8; 32] = row
            .blake3
            .as_deref()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ApiError::internal(format!("file {}: no BLAKE3 root", row.id)))?;
        let etag = blake3::Hash::from(root).to_hex().to_string();
        let ask = parse_range(range, total);
        let (start, end, verify) = match ask {
            RangeAsk::Whole => (0, total, true),
            RangeAsk::Part(a, b) => (a, b + 1, false),
            RangeAsk::Unsatisfiable => return Err(ApiError::range_not_satisfiable(total)),
        };
        let mut file = self
            .blobs()
            .open_read(&row.id)
            .map_err(|e| ApiError::internal(format!("file {}: {e}", row.id)))?;
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let reader = tokio::task::spawn_blocking(move || -> bool {
            stream_blob(&mut file, start, end, verify.then_some(root), &tx)
        });
        let files = self.clone();
        tokio::spawn(async move {
            if let Ok(false) = reader.await {
                if let Err(e) = files.mark_damaged(&row, "download").await {
                    tracing::warn!(error = %e, "could not mark a file damaged");
                }
            }
        });
        Ok(Download {
            etag,
            total,
            range: (!verify).then_some((start, end - 1)),
            // The Mutex only makes the receiver Sync (as a response body must be); `get_mut`
            // never locks.
            body: {
                let mut rx = std::sync::Mutex::new(rx);
                Box::pin(futures_util::stream::poll_fn(move |cx| {
                    match rx.get_mut() {
                        Ok(rx) => rx.poll_recv(cx),
                        Err(_) => std::task::Poll::Ready(None),
                    }
                }))
            },
        })
    }
}

/// Sends the bytes `start..end` of `file` in chunks; with `root`, hashes them and holds the
/// last chunk back until the root matches. Returns false if the blob proved damaged
/// (wrong root, or shorter than recorded); true otherwise (a client that went away too).
fn stream_blob(
    file: &mut std::fs::File,
    start: u64,
    end: u64,
    root: Option<[u8; 32]>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> bool {
    let fail = |tx: &mpsc::Sender<io::Result<Bytes>>, what: &str| {
        let _ = tx.blocking_send(Err(io::Error::other(what.to_string())));
    };
    if file.seek(SeekFrom::Start(start)).is_err() {
        fail(tx, "cannot read the blob");
        return true;
    }
    let mut hasher = blake3::Hasher::new();
    let mut held: Option<Bytes> = None;
    let mut left = end - start;
    while left > 0 {
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        let n = match file.read(&mut buf) {
            Ok(0) => {
                fail(tx, "the blob is shorter than the file");
                return false;
            }
            Ok(n) => n,
            Err(_) => {
                fail(tx, "cannot read the blob");
                return true;
            }
        };
        buf.truncate(n);
        left -= n as u64;
        if root.is_some() {
            hasher.update(&buf);
        }
        if let Some(prev) = held.replace(Bytes::from(buf)) {
            if tx.blocking_send(Ok(prev)).is_err() {
                return true;
            }
        }
    }
    if let Some(root) = root {
        if hasher.finalize().as_bytes() != &root {
            fail(tx, "the blob does not match its BLAKE3 root");
            return false;
        }
    }
    if let Some(last) = held {
        let _ = tx.blocking_send(Ok(last));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_http_says() {
        assert_eq!(parse_range(None, 100), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeAsk::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeAsk::Part(90, 99));
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100),
            RangeAsk::Part(50, 99)
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeAsk::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=100-200"), 100),
            RangeAsk::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=9-1"), 100), RangeAsk::Whole);
    }
}
