//! Owns log set-up: text or JSON lines on stderr via tracing-subscriber, filtered by
//! `log.level` (or `RUST_LOG`). Colours only when stderr is a terminal: logs written to a
//! pipe or a file (a container's log driver, journald) carry no ANSI escapes. Shipped logs
//! should use `log.format = "json"` (one object per line, the fields as keys).
//!
//! Invariant: nothing logs request bodies, headers or query strings, so tokens, tickets,
//! passwords, keys, ciphertext and file names never reach the log.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
