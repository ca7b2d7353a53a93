//! Owns log set-up: text or JSON lines on stderr via tracing-subscriber, filtered by
//! `log.level` (or `RUST_LOG`).
//!
//! Invariant: nothing logs request bodies, headers or query strings, so tokens, tickets,
//! passwords, keys, ciphertext and file names never reach the log.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
