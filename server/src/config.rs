//! Owns the server's configuration: its shape, its defaults, and how it is layered
//! (`Config::default()` <- `config.toml` <- `SECURECHAT_*` environment, `__` nests).
//!
//! Invariant: every key has a default here, and `config.toml` at the repository root spells
//! out exactly these defaults (a test holds the two together).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The whole configuration. Unknown keys are errors, so a typo never silently falls back to a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub messages: MessagesConfig,
    pub directory: DirectoryConfig,
    pub relay: RelayConfig,
    pub log: LogConfig,
    pub jobs: JobsConfig,
    pub files: FilesConfig,
    pub plugins: PluginsConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// The origin people use to reach the server (scheme://host[:port]).
    pub public_origin: String,
    /// Extra origins allowed to open WebSockets, besides the public origin and localhost.
    pub allowed_origins: Vec<String>,
    /// Set when a TLS proxy sits in front: turns on HSTS.
    pub behind_tls: bool,
    /// Largest JSON request body accepted, in bytes.
    pub max_json_body_bytes: u64,
    /// Seconds that in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Seconds a client has to send a complete request head, counted from the moment the
    /// connection was accepted or its previous response ended (hyper's header-read timer);
    /// a slow or stalled head (slowloris) is closed then.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may sit with no request in flight and no byte of a new one
    /// received before it is closed; at most `header_read_timeout_secs`.
    pub keepalive_idle_secs: u64,
    /// Seconds a request body may take to arrive in full (408 `request_timeout` after). An
    /// upload body (tus PATCH, or POST with creation-with-upload) may take as long as it
    /// needs but is cut if no byte of it arrives for this long.
    pub request_timeout_secs: u64,
    /// HTTP connections open at once (upgraded WebSockets do not count). At the limit a
    /// new connection closes the oldest one that has no request in flight, or is refused.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            public_origin: "http://localhost:8080".into(),
            allowed_origins: Vec::new(),
            behind_tls: false,
            max_json_body_bytes: 64 * 1024,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            keepalive_idle_secs: 5,
            request_timeout_secs: 30,
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    pub fn pragma_value(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for the database, secrets and blobs (created 0700).
    pub data_dir: PathBuf,
    /// SQLite `synchronous` mode in WAL: "full" survives power loss, "normal" survives crashes.
    pub synchronous: Synchronous,
    /// Connections in the read pool.
    pub read_pool_size: usize,
    /// Most write operations the writer folds into one transaction.
    pub max_batch: usize,
    /// Milliseconds the background checkpoint waits, once one is due, before copying the
    /// WAL into the database file (0-10000), so the commits of a burst share it.
    pub checkpoint_delay_ms: u64,
    /// WAL pages (4 KiB) written since the last checkpoint that make the next one due
    /// (1-65536); fewer are checkpointed once the writer has been idle for a second.
    /// Checkpointing after every commit makes the next commit start the WAL over, which
    /// costs it an extra fsync.
    pub checkpoint_pages: u32,
    /// Under `synchronous = "normal"`, allocate the WAL file's disk space at start-up, for
    /// as many frames as it holds before the writer starts it over (about 274 MiB at 4 KiB
    /// pages; see `db::checkpoint`). A WAL that grows into new blocks makes each commit's
    /// writes reserve them, and those reservations wait while the checkpoint thread's fsync
    /// allocates the blocks written before. Not done under "full", where each commit's own
    /// fsync was slower with preallocated blocks. Off: the WAL grows as it is written.
    pub preallocate_wal: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            synchronous: Synchronous::Full,
            read_pool_size: 4,
            max_batch: 4096,
            checkpoint_delay_ms: 5,
            checkpoint_pages: 1000,
            preallocate_wal: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// bcrypt cost for stored auth keys (4..=31).
    pub bcrypt_cost: u32,
    /// Lowest PBKDF2 iteration count a client may register with.
    pub min_kdf_iterations: u32,
    /// Highest PBKDF2 iteration count accepted (keeps logins finite).
    pub max_kdf_iterations: u32,
    /// Lifetime of an access token, seconds.
    pub access_ttl_secs: u64,
    /// Lifetime of a session's refresh token chain, seconds.
    pub refresh_ttl_secs: u64,
    /// HS256 secret for access tokens (at least 32 bytes). Empty: read or create `jwt_secret_file`.
    pub jwt_secret: String,
    /// Where the generated secret lives; empty means `<data_dir>/jwt_secret`.
    pub jwt_secret_file: String,
    /// `iss` and `aud` of issued tokens.
    pub issuer: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            bcrypt_cost: 12,
            min_kdf_iterations: 600_000,
            max_kdf_iterations: 10_000_000,
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            jwt_secret: String::new(),
            jwt_secret_file: String::new(),
            issuer: "securechat".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// Largest envelope accepted, in bytes of its JSON text; a larger WebSocket frame
    /// closes the connection with 1009.
    pub max_envelope_bytes: usize,
    /// Seconds between runs of the job that deletes the ciphertext of expired disappearing
    /// messages; a message outlives its timer by at most about this long.
    pub expiry_sweep_secs: u64,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        Self {
            max_envelope_bytes: 64 * 1024,
            expiry_sweep_secs: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// The shortest user search (`GET /api/users?query=`) answered with a list of names;
    /// a shorter query finds only the user of exactly that name (else 400
    /// `query_too_short`), so nobody can list every account.
    pub min_query_chars: usize,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self { min_query_chars: 3 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Lifetime of a WebSocket ticket, seconds (single use).
    pub ticket_ttl_secs: u64,
    /// Seconds between server pings on an idle connection.
    pub ping_interval_secs: u64,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout_secs: u64,
    /// Frames queued for one connection before it counts as too slow and is dropped.
    pub outgoing_queue: usize,
    /// Sends one connection may have waiting for their commit at once.
    pub max_in_flight: usize,
    /// Bad frames tolerated per minute before the connection is closed with 1008.
    pub max_bad_frames_per_minute: u32,
    /// Read buffer per connection, bytes (memory per idle connection).
    pub read_buffer_bytes: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            ticket_ttl_secs: 30,
            ping_interval_secs: 25,
            idle_timeout_secs: 60,
            outgoing_queue: 1024,
            max_in_flight: 64,
            max_bad_frames_per_minute: 10,
            read_buffer_bytes: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// "text" or "json".
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "securechat=debug,info". `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

// --- [jobs] (the job queue, server/src/jobs/) ----------------------------------------------

/// The durable job queue (`jobs/`): queues and their workers, leases, retries, pruning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Seconds a claimed job may run without a heartbeat before the reaper takes it back.
    pub lease_secs: u64,
    /// Attempts a job gets when its enqueuer does not say (a crash while running counts).
    pub max_attempts: u32,
    /// First retry delay in ms; it doubles per attempt (plus up to 50% jitter).
    pub retry_base_ms: u64,
    /// Longest retry delay, in seconds.
    pub retry_max_secs: u64,
    /// Done and cancelled jobs are deleted this many seconds after they finished.
    pub prune_done_after_secs: u64,
    /// Failed jobs are kept longer, for `securechat jobs retry`.
    pub prune_failed_after_secs: u64,
    /// How often the internal prune job runs, in seconds.
    pub prune_interval_secs: u64,
    /// Rows deleted per prune transaction (small, so other writers never wait long).
    pub prune_batch: u32,
    /// Seconds running jobs get to finish at shutdown before their leases are released.
    pub shutdown_grace_secs: u64,
    /// Handlers running at once, per queue. Jobs can only be enqueued into queues named here.
    pub workers: std::collections::BTreeMap<String, u32>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            lease_secs: 60,
            max_attempts: 5,
            retry_base_ms: 1000,
            retry_max_secs: 3600,
            prune_done_after_secs: 7 * 24 * 3600,
            prune_failed_after_secs: 30 * 24 * 3600,
            prune_interval_secs: 3600,
            prune_batch: 500,
            shutdown_grace_secs: 10,
            workers: [("default".to_string(), 4), ("files".to_string(), 2)]
                .into_iter()
                .collect(),
        }
    }
}

impl JobsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("jobs.{key}: {why}")));
        if !(1..=86_400).contains(&self.lease_secs) {
            return fail("lease_secs", "must be between 1 and 86400");
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return fail("max_attempts", "must be between 1 and 1000");
        }
        if self.retry_base_ms == 0 {
            return fail("retry_base_ms", "must be at least 1");
        }
        if self.retry_max_secs.saturating_mul(1000) < self.retry_base_ms {
            return fail("retry_max_secs", "must be at least retry_base_ms");
        }
        if self.prune_interval_secs == 0 {
            return fail("prune_interval_secs", "must be at least 1");
        }
        if !(1..=100_000).contains(&self.prune_batch) {
            return fail("prune_batch", "must be between 1 and 100000");
        }
        if self.workers.is_empty() {
            return fail("workers", "must name at least one queue");
        }
        for (name, n) in &self.workers {
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && !name.starts_with('_')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
            if !valid_name {
                return fail(
                    &format!("workers.{name}"),
                    "a queue name is 1-64 of [a-z0-9_.-] and does not start with '_'",
                );
            }
            if !(1..=1024).contains(n) {
                return fail(&format!("workers.{name}"), "must be between 1 and 1024");
            }
        }
        Ok(())
    }
}

// --- end [jobs] ----------------------------------------------------------------------------

// --- [files] (encrypted file sharing, server/src/files/) -----------------------------------

/// Who may send files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Senders {
    Everyone,
    Admins,
    Nobody,
}

/// Limits of file sharing (tus uploads at /api/uploads, downloads, retention, scrubbing).
/// Sizes count ciphertext bytes (`Upload-Length`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Largest `record_size` a client may choose (the smallest is 1024).
    pub record_size_max: u64,
    /// Largest upload (`Upload-Length`), bytes.
    pub max_file_bytes: u64,
    /// Largest body of one PATCH, bytes.
    pub max_patch_bytes: u64,
    /// Bytes one user may hold: unfinished uploads plus stored files they sent.
    pub quota_bytes: u64,
    /// Unfinished uploads one user may have at once.
    pub max_uploads_in_flight: u32,
    /// Seconds an unfinished upload lives after its creation.
    pub upload_expiry_secs: u64,
    /// Seconds a finished file is kept; 0 keeps files forever.
    pub retention_secs: u64,
    /// Who may send files: everyone, admins or nobody.
    pub senders: Senders,
    /// Seconds between runs of the blob scrubber (one batch of files per run).
    pub scrub_interval_secs: u64,
    /// Files re-verified per scrub run.
    pub scrub_batch: u32,
    /// Seconds between runs of expire_uploads and purge_expired_files.
    pub cleanup_interval_secs: u64,
    /// For tests only: milliseconds finalize_upload waits before committing, so that a
    /// test can kill the server in the middle of it. Leave at 0.
    pub finalize_delay_ms: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            record_size_max: 1 << 20,
            max_file_bytes: 1 << 30,
            max_patch_bytes: 64 << 20,
            quota_bytes: 5 << 30,
            max_uploads_in_flight: 4,
            upload_expiry_secs: 86_400,
            retention_secs: 0,
            senders: Senders::Everyone,
            scrub_interval_secs: 3600,
            scrub_batch: 16,
            cleanup_interval_secs: 300,
            finalize_delay_ms: 0,
        }
    }
}

impl FilesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("files.{key}: {why}")));
        if !(1024..=1 << 20).contains(&self.record_size_max) {
            return fail("record_size_max", "must be between 1024 and 1048576");
        }
        if self.max_file_bytes < 17 {
            return fail("max_file_bytes", "must be at least 17");
        }
        if self.max_patch_bytes < 1024 {
            return fail("max_patch_bytes", "must be at least 1024");
        }
        if self.max_uploads_in_flight == 0 {
            return fail("max_uploads_in_flight", "must be at least 1");
        }
        if self.upload_expiry_secs == 0 {
            return fail("upload_expiry_secs", "must be at least 1");
        }
        if self.scrub_interval_secs == 0 {
            return fail("scrub_interval_secs", "must be at least 1");
        }
        if self.scrub_batch == 0 {
            return fail("scrub_batch", "must be at least 1");
        }
        if self.cleanup_interval_secs == 0 {
            return fail("cleanup_interval_secs", "must be at least 1");
        }
        if self.finalize_delay_ms > 600_000 {
            return fail("finalize_delay_ms", "must be at most 600000");
        }
        Ok(())
    }
}

// --- end [files] ---------------------------------------------------------------------------

/// Per-plugin tables, `[plugins.<name>]`; each plugin parses its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct PluginsConfig(pub std::collections::BTreeMap<String, toml::Table>);

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Layers defaults, the TOML file (if it exists, or must exist when named explicitly)
    /// and `SECURECHAT_*` variables, then checks values.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => {
                let default_path = Path::new("config.toml");
                if default_path.exists() {
                    figment = figment.merge(Toml::file(default_path));
                }
            }
        }
        // Every setting lives in a section, so a setting's variable always has a `__`
        // (SECURECHAT_SERVER__PORT). Others (SECURECHAT_CONFIG, or a script's own
        // SECURECHAT_BIN) are not settings: they are left alone, with a note.
        for (name, _) in std::env::vars() {
            if let Some(rest) = name.strip_prefix("SECURECHAT_") {
                if !rest.contains("__") && rest != "CONFIG" {
                    eprintln!("securechat: note: {name} is not a setting (settings look like SECURECHAT_SECTION__KEY); ignored");
                }
            }
        }
        figment = figment.merge(
            Env::prefixed("SECURECHAT_")
                .filter(|key| key.as_str().contains("__"))
                .split("__")
                .lowercase(true),
        );
        Self::from_figment(figment)
    }

    /// Parses a TOML string on top of the defaults (used by tests and `config.toml` checks).
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)),
        )
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            ConfigError(msgs.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that serde cannot (ranges, shapes), naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if !(4..=31).contains(&self.auth.bcrypt_cost) {
            return fail("auth.bcrypt_cost", "must be between 4 and 31");
        }
        if self.auth.min_kdf_iterations < 1000 {
            return fail("auth.min_kdf_iterations", "must be at least 1000");
        }
        if self.auth.max_kdf_iterations < self.auth.min_kdf_iterations {
            return fail(
                "auth.max_kdf_iterations",
                "must not be below auth.min_kdf_iterations",
            );
        }
        if self.auth.access_ttl_secs == 0 || self.auth.access_ttl_secs > 24 * 3600 {
            return fail("auth.access_ttl_secs", "must be between 1 and 86400");
        }
        if self.auth.refresh_ttl_secs < self.auth.access_ttl_secs {
            return fail(
                "auth.refresh_ttl_secs",
                "must be at least auth.access_ttl_secs",
            );
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < 32 {
            return fail(
                "auth.jwt_secret",
                "must be at least 32 bytes (or empty to generate one)",
            );
        }
        if self.auth.issuer.is_empty() {
            return fail("auth.issuer", "must not be empty");
        }
        if self.server.max_json_body_bytes < 1024 {
            return fail("server.max_json_body_bytes", "must be at least 1024");
        }
        if !(1..=3600).contains(&self.server.header_read_timeout_secs) {
            return fail(
                "server.header_read_timeout_secs",
                "must be between 1 and 3600",
            );
        }
        if !(1..=self.server.header_read_timeout_secs).contains(&self.server.keepalive_idle_secs) {
            return fail(
                "server.keepalive_idle_secs",
                "must be between 1 and server.header_read_timeout_secs (whose timer also runs while a connection waits for its next request)",
            );
        }
        if !(1..=3600).contains(&self.server.request_timeout_secs) {
            return fail("server.request_timeout_secs", "must be between 1 and 3600");
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return fail("server.max_connections", "must be between 1 and 1000000");
        }
        for (key, origin) in std::iter::once(("server.public_origin", &self.server.public_origin))
            .chain(
                self.server
                    .allowed_origins
                    .iter()
                    .map(|o| ("server.allowed_origins", o)),
            )
        {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return fail(
                    key,
                    "must look like scheme://host[:port] with no trailing slash",
                );
            }
        }
        if self.storage.read_pool_size == 0 {
            return fail("storage.read_pool_size", "must be at least 1");
        }
        if self.storage.checkpoint_delay_ms > 10_000 {
            return fail("storage.checkpoint_delay_ms", "must be between 0 and 10000");
        }
        if !(1..=65_536).contains(&self.storage.checkpoint_pages) {
            return fail("storage.checkpoint_pages", "must be between 1 and 65536");
        }
        if self.storage.max_batch == 0 {
            return fail("storage.max_batch", "must be at least 1");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.messages.max_envelope_bytes) {
            return fail(
                "messages.max_envelope_bytes",
                "must be between 1024 and 16777216",
            );
        }
        if !(1..=32).contains(&self.directory.min_query_chars) {
            return fail("directory.min_query_chars", "must be between 1 and 32");
        }
        if !(1..=86_400).contains(&self.messages.expiry_sweep_secs) {
            return fail("messages.expiry_sweep_secs", "must be between 1 and 86400");
        }
        let r = &self.relay;
        if r.ticket_ttl_secs == 0 || r.ticket_ttl_secs > 600 {
            return fail("relay.ticket_ttl_secs", "must be between 1 and 600");
        }
        if r.ping_interval_secs == 0 {
            return fail("relay.ping_interval_secs", "must be at least 1");
        }
        if r.idle_timeout_secs <= r.ping_interval_secs {
            return fail(
                "relay.idle_timeout_secs",
                "must be longer than relay.ping_interval_secs",
            );
        }
        if r.outgoing_queue < 8 {
            return fail("relay.outgoing_queue", "must be at least 8");
        }
        if r.max_in_flight == 0 {
            return fail("relay.max_in_flight", "must be at least 1");
        }
        if r.read_buffer_bytes < 1024 {
            return fail("relay.read_buffer_bytes", "must be at least 1024");
        }
        if self.log.level.trim().is_empty() {
            return fail("log.level", "must not be empty");
        }
        self.jobs.validate()?;
        self.files.validate()?;
        Ok(())
    }

    /// The effective configuration as TOML, with secrets replaced by a marker.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        if !shown.auth.jwt_secret.is_empty() {
            shown.auth.jwt_secret = "<hidden>".into();
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    pub fn jwt_secret_path(&self) -> PathBuf {
        if self.auth.jwt_secret_file.is_empty() {
            self.storage.data_dir.join("jwt_secret")
        } else {
            PathBuf::from(&self.auth.jwt_secret_file)
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.storage.data_dir.join("securechat.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_toml_is_exactly_the_defaults() {
        let text = include_str!("../../config.toml");
        let mut parsed = Config::from_toml_str(text).expect("config.toml parses");
        // Plugin tables are each plugin's own: plugins.rs checks them against its defaults.
        parsed.plugins = PluginsConfig::default();
        assert_eq!(parsed, Config::default());
        // And not merely because defaults filled everything: every section is spelled out.
        let table: toml::Table = toml::from_str(text).expect("valid toml");
        for section in [
            "server",
            "storage",
            "auth",
            "messages",
            "directory",
            "relay",
            "log",
            "jobs",
            "files",
        ] {
            assert!(table.contains_key(section), "config.toml lacks [{section}]");
        }
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = Config::from_toml_str("[server]\nprot = 1\n").expect_err("must fail");
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn a_bad_value_is_refused_by_name() {
        let err = Config::from_toml_str("[auth]\nbcrypt_cost = 2\n").expect_err("must fail");
        assert!(err.to_string().contains("auth.bcrypt_cost"), "{err}");
        let err = Config::from_toml_str("[server]\nport = \"x\"\n").expect_err("must fail");
        assert!(err.to_string().contains("port"), "{err}");
        let err = Config::from_toml_str("[auth]\njwt_secret = \"short\"\n").expect_err("must fail");
        assert!(err.to_string().contains("auth.jwt_secret"), "{err}");
        let err = Config::from_toml_str("[storage]\ncheckpoint_delay_ms = 10001\n")
            .expect_err("must fail");
        assert!(
            err.to_string().contains("storage.checkpoint_delay_ms"),
            "{err}"
        );
        let err =
            Config::from_toml_str("[server]\nkeepalive_idle_secs = 11\n").expect_err("must fail");
        assert!(
            err.to_string().contains("server.keepalive_idle_secs"),
            "{err}"
        );
        let err = Config::from_toml_str("[server]\nmax_connections = 0\n").expect_err("must fail");
        assert!(err.to_string().contains("server.max_connections"), "{err}");
        let err =
            Config::from_toml_str("[server]\nrequest_timeout_secs = 0\n").expect_err("must fail");
        assert!(
            err.to_string().contains("server.request_timeout_secs"),
            "{err}"
        );
        let err =
            Config::from_toml_str("[storage]\ncheckpoint_pages = 0\n").expect_err("must fail");
        assert!(
            err.to_string().contains("storage.checkpoint_pages"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_jobs_value_is_refused_by_name() {
        let err = Config::from_toml_str("[jobs]\nlease_secs = 0\n").expect_err("must fail");
        assert!(err.to_string().contains("jobs.lease_secs"), "{err}");
        let err =
            Config::from_toml_str("[jobs.workers]\n\"Bad Name\" = 2\n").expect_err("must fail");
        assert!(err.to_string().contains("jobs.workers.Bad Name"), "{err}");
        let err = Config::from_toml_str("[jobs.workers]\nfiles = 0\n").expect_err("must fail");
        assert!(err.to_string().contains("jobs.workers.files"), "{err}");
    }

    #[test]
    fn a_bad_files_value_is_refused_by_name() {
        let err = Config::from_toml_str("[files]\nrecord_size_max = 10\n").expect_err("must fail");
        assert!(err.to_string().contains("files.record_size_max"), "{err}");
        let err = Config::from_toml_str("[files]\nsenders = \"some\"\n").expect_err("must fail");
        assert!(err.to_string().contains("senders"), "{err}");
        let ok = Config::from_toml_str("[files]\nsenders = \"admins\"\n").expect("admins");
        assert_eq!(ok.files.senders, Senders::Admins);
    }

    #[test]
    fn secrets_are_hidden_when_printed() {
        let mut c = Config::default();
        c.auth.jwt_secret = "x".repeat(40);
        let shown = c.redacted_toml();
        assert!(!shown.contains(&"x".repeat(40)));
        assert!(shown.contains("<hidden>"));
    }
}
