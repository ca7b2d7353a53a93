//! The contract between securechat and its compiled-in plugins: the [`Plugin`] trait, the
//! [`PluginContext`] a plugin is built with, the [`Guard`] asked before work is admitted,
//! and the [`Event`]s plugins observe.
//!
//! Invariant: this is the only crate a plugin imports from securechat, so `server` can
//! depend on plugins without a cycle. Events carry routing metadata only — never a token,
//! key, password, ciphertext or file name.

use std::net::IpAddr;
use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Routes a plugin mounts; they are served beside the core's, under the same headers and
/// error handling.
pub type Routes = BoxedFilter<(Response,)>;

/// What a plugin gets at start-up.
#[derive(Debug, Clone)]
pub struct PluginContext {
    /// The plugin's own table, `[plugins.<name>]` (an empty object when absent).
    pub config: serde_json::Value,
    /// Path of the SQLite database, for plugins that read it.
    pub database_path: std::path::PathBuf,
}

/// What a guard is asked about.
#[derive(Debug, Clone)]
pub enum Admission<'a> {
    /// An HTTP request, before routing.
    Request { peer: Option<IpAddr>, path: &'a str },
    /// A WebSocket frame from a signed-in user.
    Frame { username: &'a str, bytes: usize },
    /// Upload bytes from a signed-in user.
    UploadBytes { username: &'a str, bytes: u64 },
}

/// A guard's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse, and tell the client to come back after this many seconds.
    Refuse {
        retry_after_secs: u64,
    },
}

/// Asked before requests, WebSocket frames and upload bytes are admitted.
pub trait Guard: Send + Sync {
    fn admit(&self, what: &Admission<'_>) -> Verdict;
}

/// Things that happened, for plugins to observe.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    UserRegistered { username: String },
    LoginSucceeded { username: String },
    LoginFailed { username: String },
}

/// An optional feature compiled into the binary.
pub trait Plugin: Send + Sync + 'static {
    /// The name of the plugin's config table, `[plugins.<name>]`.
    fn name(&self) -> &'static str;
    fn routes(&self, _cx: &PluginContext) -> Option<Routes> {
        None
    }
    fn guard(&self) -> Option<Arc<dyn Guard>> {
        None
    }
    fn on_event(&self, _ev: &Event) {}
}
