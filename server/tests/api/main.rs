//! Black-box tests of securechat: the real server on 127.0.0.1:0, a real SQLite file in a
//! temp dir, and the Rust client doing what the browser does.

mod account;
mod admin;
mod auth;
mod backup;
mod binary;
mod deletion;
mod directory;
mod edge;
mod edge_limits;
mod files;
mod healthcheck;
mod helpers;
mod rate_limit;
mod relay;
mod sessions;
mod storage;
