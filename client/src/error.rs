//! The crate's one error type. HTTP failures keep the status and the server's stable
//! error `code` (API-CONTRACT: `{"error":{"code","message"}}`) so tests can assert on them.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A non-2xx answer carrying the contract's error body.
    #[error("HTTP {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// An answer whose status is not the one the contract promises (a 2xx other than the
    /// expected one, or a non-2xx without the error body).
    #[error("unexpected HTTP {status} (expected {expected}): {body}")]
    UnexpectedStatus {
        status: u16,
        expected: u16,
        body: String,
    },
    /// The connection failed, or the body could not be read.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// A body or field that does not have the contract's shape.
    #[error("decode: {0}")]
    Decode(String),
    /// Malformed key material, a failed decryption, a failed key generation.
    #[error("crypto: {0}")]
    Crypto(String),
    /// KDF parameters from the server that this client refuses to derive with (an
    /// unknown algorithm, too few or too many iterations, a salt of the wrong size).
    #[error("KDF parameters refused: {0}")]
    Kdf(String),
    /// A signature, key or fingerprint that does not verify.
    #[error("verification failed: {0}")]
    Verification(String),
    /// A CA certificate that cannot be read or used (see [`crate::tls::Trust`]).
    #[error("tls: {0}")]
    Tls(String),
    /// A WebSocket protocol or transport failure.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// Nothing arrived in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A file record, manifest, size or tus metadata refused (`code` as files.js spells it).
    #[error("{code}: {message}")]
    File {
        code: crate::files::FileErrorCode,
        message: String,
    },
    /// The WebSocket was closed (by a close frame, with its code, or by the stream ending).
    #[error("websocket closed (code {code:?}): {reason}")]
    Closed { code: Option<u16>, reason: String },
}

impl Error {
    /// The HTTP status, for `Api` and `UnexpectedStatus`.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::UnexpectedStatus { status, .. } => Some(*status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// The server's stable error code, for `Api`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The file error code, for `File`.
    pub fn file_code(&self) -> Option<crate::files::FileErrorCode> {
        match self {
            Error::File { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when this is the contract error `status` + `code`.
    pub fn is_api(&self, status: u16, code: &str) -> bool {
        self.status() == Some(status) && self.code() == Some(code)
    }
}

impl From<base64::DecodeError> for Error {
    fn from(e: base64::DecodeError) -> Self {
        Error::Decode(format!("base64url: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Decode(format!("json: {e}"))
    }
}
