//! Owns the tus 1.0.0 header vocabulary: the version check, `Upload-Metadata`,
//! `Upload-Checksum` (and the digest computed as a body streams), `Upload-Expires` dates.
//! Parsing only: no I/O, no state.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::Digest;
use warp::http::{HeaderMap, StatusCode};

use crate::error::ApiError;
use crate::messages::envelope::is_uuid_v4;

pub const VERSION: &str = "1.0.0";
pub const EXTENSIONS: &str = "creation,creation-with-upload,checksum,expiration,termination";
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";
pub const OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `Tus-Resumable: 1.0.0` must be on every request but OPTIONS.
pub fn check_version(h: &HeaderMap) -> Result<(), ApiError> {
    if header(h, "tus-resumable") == Some(VERSION) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "unsupported_tus_version",
            "send Tus-Resumable: 1.0.0",
        ))
    }
}

/// A non-negative integer header; `None` if absent, an error naming `code` if malformed.
pub fn u64_header(h: &HeaderMap, name: &str, code: &'static str) -> Result<Option<u64>, ApiError> {
    match header(h, name) {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(code, format!("{name} is out of range"))),
        Some(_) => Err(ApiError::bad_request(
            code,
            format!("{name} must be a non-negative integer"),
        )),
    }
}

/// The four keys of `Upload-Metadata` (DESIGN §8), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub recipient: String,
    pub file_id: String,
    pub record_size: u64,
    pub manifest: String,
}

fn invalid_metadata(why: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_metadata", why)
}

/// Parses `Upload-Metadata`: comma-separated `key base64(value)` pairs; the keys recipient,
/// file_id, record_size and manifest are required, each once, and no other key is allowed.
/// `record_size` must be within 1024..=`record_size_max`.
pub fn parse_metadata(h: &HeaderMap, record_size_max: u64) -> Result<Metadata, ApiError> {
    let raw = header(h, "upload-metadata")
        .ok_or_else(|| invalid_metadata("Upload-Metadata is required"))?;
    let (mut recipient, mut file_id, mut record_size, mut manifest) = (None, None, None, None);
    for pair in raw.split(',') {
        let mut parts = pair.trim().splitn(2, ' ');
        let key = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default().trim();
        let decoded = STANDARD
            .decode(value)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| invalid_metadata(format!("the value of {key:?} is not base64 UTF-8")))?;
        let slot = match key {
            "recipient" => &mut recipient,
            "file_id" => &mut file_id,
            "record_size" => &mut record_size,
            "manifest" => &mut manifest,
            _ => return Err(invalid_metadata(format!("unknown metadata key {key:?}"))),
        };
        if slot.replace(decoded).is_some() {
            return Err(invalid_metadata(format!(
                "metadata key {key:?} appears twice"
            )));
        }
    }
    let (Some(recipient), Some(file_id), Some(record_size), Some(manifest)) =
        (recipient, file_id, record_size, manifest)
    else {
        return Err(invalid_metadata(
            "Upload-Metadata needs recipient, file_id, record_size and manifest",
        ));
    };
    if !is_uuid_v4(&file_id) {
        return Err(invalid_metadata("file_id must be a lower-case uuid v4"));
    }
    let record_size = record_size
        .parse::<u64>()
        .ok()
        .filter(|n| (1024..=record_size_max).contains(n) && !record_size.starts_with('0'))
        .ok_or_else(|| {
            invalid_metadata(format!(
                "record_size must be a decimal between 1024 and {record_size_max}"
            ))
        })?;
    Ok(Metadata {
        recipient,
        file_id,
        record_size,
        manifest,
    })
}

/// The algorithm and expected digest of `Upload-Checksum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub sha256: bool,
    pub digest: Vec<u8>,
}

/// Parses `Upload-Checksum: sha256|sha1 <standard base64>`; absent is `None`.
pub fn parse_checksum(h: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    let Some(raw) = header(h, "upload-checksum") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_checksum",
            "Upload-Checksum must be \"sha256 <base64>\" or \"sha1 <base64>\"",
        )
    };
    let (algo, value) = raw.split_once(' ').ok_or_else(bad)?;
    let (sha256, len) = match algo {
        "sha256" => (true, 32),
        "sha1" => (false, 20),
        _ => return Err(bad()),
    };
    let digest = STANDARD.decode(value.trim()).map_err(|_| bad())?;
    if digest.len() != len {
        return Err(bad());
    }
    Ok(Some(Checksum { sha256, digest }))
}

/// The digest of a PATCH body, computed as it streams.
pub enum BodyDigest {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
}

impl BodyDigest {
    pub fn for_checksum(c: &Checksum) -> BodyDigest {
        if c.sha256 {
            BodyDigest::Sha256(sha2::Sha256::new())
        } else {
            BodyDigest::Sha1(sha1::Sha1::new())
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            BodyDigest::Sha256(h) => h.update(data),
            BodyDigest::Sha1(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            BodyDigest::Sha256(h) => h.finalize().to_vec(),
            BodyDigest::Sha1(h) => h.finalize().to_vec(),
        }
    }
}

/// An `Upload-Expires` value (RFC 7231 date) for `ms` since the epoch.
pub fn http_date(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().expect("header value"));
        h
    }

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn well_formed_metadata_is_decoded() {
        let v = format!(
            "recipient {},file_id {},record_size {},manifest {}",
            b64("bob"),
            b64("0b7d3a4e-5f60-4c1d-9e2f-3a4b5c6d7e8f"),
            b64("65536"),
            b64("{}")
        );
        let m = parse_metadata(&with("upload-metadata", &v), 1 << 20).expect("parses");
        assert_eq!(m.recipient, "bob");
        assert_eq!(m.record_size, 65536);
        assert_eq!(m.manifest, "{}");
    }

    #[test]
    fn defective_metadata_is_refused() {
        let good = |rs: &str| {
            format!(
                "recipient {},file_id {},record_size {},manifest {}",
                b64("bob"),
                b64("0b7d3a4e-5f60-4c1d-9e2f-3a4b5c6d7e8f"),
                b64(rs),
                b64("{}")
            )
        };
        for v in [
            good("1023"),
            good("2097152"),
            good("065536"),
            good("x"),
            format!("{},extra {}", good("65536"), b64("1")),
            format!("{},recipient {}", good("65536"), b64("eve")),
            "recipient !!!".to_string(),
            format!("recipient {}", b64("bob")),
        ] {
            let e = parse_metadata(&with("upload-metadata", &v), 1 << 20).expect_err(&v);
            assert_eq!(e.code, "invalid_metadata", "{v}");
        }
    }

    #[test]
    fn checksums_are_parsed_by_algorithm() {
        let c = parse_checksum(&with(
            "upload-checksum",
            &format!("sha1 {}", STANDARD.encode([1u8; 20])),
        ))
        .expect("parses")
        .expect("present");
        assert!(!c.sha256);
        assert!(parse_checksum(&with("upload-checksum", "md5 AAAA")).is_err());
        assert!(parse_checksum(&with(
            "upload-checksum",
            &format!("sha256 {}", STANDARD.encode([1u8; 20]))
        ))
        .is_err());
        assert_eq!(parse_checksum(&HeaderMap::new()).expect("none"), None);
    }

    #[test]
    fn the_expiry_date_is_an_http_date() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
