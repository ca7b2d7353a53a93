//! securechat-client: the browser client's cryptography and HTTP calls in Rust, byte for
//! byte (docs/PROTOCOL.md, docs/API-CONTRACT.md). Used by the server's black-box tests,
//! by the cross-check with the browser (the `securechat-client` binary and
//! `testdata/crypto-vectors.json`), and by load generation.
//!
//! Modules: [`b64`] (strict base64url), [`kdf`] (password to `auth_key` and `kek`),
//! [`identity`] (keys and their encodings, RSA-OAEP), [`bundle`] (wrapped private keys),
//! [`sig`] (`self_sig`, `prev_sig`), [`mod@fingerprint`] (fingerprints, safety numbers),
//! [`requests`] (register / rotate bodies), [`api`] (answers), [`client`] (HTTP),
//! [`envelope`] (message envelopes: seal, open, replay guard), [`files`] (file records
//! and manifests), [`uploads`] (tus uploads and verified downloads), [`ws`] (tickets, the
//! WebSocket and its frames), [`history`] (conversations and message history), [`report`]
//! (abuse reports: disclosing one message's key and plaintext), [`tls`] (which server
//! certificates `https://` and `wss://` accept).

pub mod api;
pub mod b64;
pub mod bundle;
pub mod client;
pub mod envelope;
pub mod error;
pub mod files;
pub mod fingerprint;
pub mod history;
pub mod identity;
pub mod kdf;
pub mod report;
pub mod requests;
pub mod sig;
pub mod tls;
pub mod uploads;
pub mod ws;

pub use api::{
    ErrorBody, ErrorDetail, KeyChange, KeyChanges, LoginRequest, LoginResponse, Me,
    PreloginResponse, Tokens, UserKeys, UserList, UserSummary, UserVersion,
};
pub use bundle::{bundle_aad, unwrap_bundle, wrap_bundle, wrap_bundle_with_iv, KeyBundle};
pub use client::{Client, RawResponse, Registered, Session};
pub use envelope::{open, seal, seal_text, Envelope, Opened, ReaderKeys, ReplayGuard};
pub use error::{Error, Result};
pub use fingerprint::{fingerprint, safety_number};
pub use history::{Conversation, Conversations, History, HistoryItem};
pub use identity::{
    parse_enc_spki, parse_sign_spki, rsa_oaep_decrypt, rsa_oaep_encrypt, Identity, PublicKeys,
};
pub use kdf::derive_keys;
pub use report::{disclose, Reason, ReportBody, ReportReceipt};
pub use requests::{KdfParams, RegisterRequest, RotateRequest};
pub use reqwest::Method;
pub use sig::{prev_sig, self_sig, verify_prev_sig, verify_self_sig};
pub use tls::Trust;
pub use ws::{ClientFrame, RawEnvelope, ServerFrame, Ticket, WsClient, WsEvent, WsOptions};

#[cfg(test)]
pub(crate) mod test_util {
    //! Cached deterministic identities (RSA key generation is slow).
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use rand::SeedableRng;

    use crate::Identity;

    pub(crate) fn test_identity(seed: u64) -> Identity {
        static CACHE: OnceLock<Mutex<HashMap<u64, Identity>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(id) = cache.lock().unwrap().get(&seed) {
            return id.clone();
        }
        let id = Identity::generate_with(&mut rand::rngs::StdRng::seed_from_u64(seed)).unwrap();
        cache.lock().unwrap().insert(seed, id.clone());
        id
    }
}
