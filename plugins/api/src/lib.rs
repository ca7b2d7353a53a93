//! The contract between securechat and its compiled-in plugins: the [`Plugin`] trait, the
//! [`PluginContext`] a plugin is built with, the [`Guard`] asked before work is admitted,
//! the [`Routes`] a plugin may answer, and the narrow [`admin::AdminStore`] through which
//! the admin console reads and steers the core.
//!
//! Invariant: this is the only crate a plugin imports from securechat, so `server` can
//! depend on plugins without a cycle. Admissions carry routing metadata only — never a
//! token, key, password, ciphertext or file name.

pub mod admin;

use std::net::IpAddr;
use std::sync::Arc;

/// HTTP routes a plugin answers: a boxed warp filter producing a whole response (errors
/// included). A request it does not match falls through to the core's own routes.
pub type Routes = warp::filters::BoxedFilter<(warp::reply::Response,)>;

/// What a plugin gets at start-up.
#[derive(Clone)]
pub struct PluginContext {
    /// The plugin's own table, `[plugins.<name>]` (an empty object when absent).
    pub config: serde_json::Value,
    /// The core's admin services, for plugins that serve the admin console.
    pub admin: Option<Arc<dyn admin::AdminStore>>,
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("config", &self.config)
            .field("admin", &self.admin.is_some())
            .finish()
    }
}

/// Where a request came from: the TCP peer and, verbatim, the proxy headers it sent. Only a
/// guard that knows which peers are trusted proxies may believe the headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    pub peer: Option<IpAddr>,
    pub x_forwarded_for: Option<&'a str>,
    pub forwarded: Option<&'a str>,
}

/// The steps of signing in and up that are limited per address and per account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthStep {
    Prelogin,
    Login,
    Register,
}

/// What a guard is asked about.
#[derive(Debug, Clone)]
pub enum Admission<'a> {
    /// An HTTP request, before routing.
    Request { client: Client<'a>, path: &'a str },
    /// A prelogin, login or registration attempt naming `username`, before it is worked on.
    Auth {
        client: Client<'a>,
        step: AuthStep,
        username: &'a str,
    },
    /// A new WebSocket connection of a signed-in user, before it is registered.
    Connect { username: &'a str },
    /// A WebSocket frame on connection `connection` (unique while the server runs).
    Frame { connection: u64, username: &'a str },
    /// Upload bytes from a signed-in user, before they are written.
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

/// Asked before requests, sign-in attempts, WebSocket connections and frames, and upload
/// bytes are admitted.
pub trait Guard: Send + Sync {
    fn admit(&self, what: &Admission<'_>) -> Verdict;
}

/// An optional feature compiled into the binary, built from its config table.
pub trait Plugin: Send + Sync + 'static {
    /// The name of the plugin's config table, `[plugins.<name>]`.
    fn name(&self) -> &'static str;
    /// False when its table says `enabled = false`: it then guards nothing.
    fn enabled(&self) -> bool;
    fn guard(&self) -> Option<Arc<dyn Guard>> {
        None
    }
    /// HTTP routes the plugin answers while enabled.
    fn routes(&self) -> Option<Routes> {
        None
    }
}
