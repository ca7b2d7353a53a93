//! Owns the set of compiled-in plugins: which exist (the ONLY file with plugin
//! `#[cfg(feature)]` lines), building each from its `[plugins.<name>]` table, their guards,
//! their routes (and the core's 404 for the admin console's paths when the plugin is absent
//! or disabled), the audit chain check behind `securechat audit verify`, and what
//! `GET /api/features` reports.
//!
//! Invariant: the core talks to plugins only through `securechat-plugin-api`. A plugin that
//! is not compiled in is simply absent: `/api/features` does not list it and nothing of it
//! runs (a `[plugins.<name>]` table for it is ignored with a warning).

use std::sync::Arc;

use securechat_plugin_api::admin::AdminStore;
use securechat_plugin_api::{Admission, Guard, Plugin, PluginContext, Verdict};
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::config::PluginsConfig;
use crate::error::ApiError;

/// The routes this module answers: `/api/features`, and the admin console's (served by the
/// admin-logs plugin, or refused here with 404 `feature_not_compiled_in`/`feature_disabled`).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/features"),
    ("GET", "/api/admin/messages"),
    ("GET", "/api/admin/messages.csv"),
    ("GET", "/api/admin/files"),
    ("GET", "/api/admin/files.csv"),
    ("GET", "/api/admin/users"),
    ("POST", "/api/admin/users/{name}/disable"),
    ("POST", "/api/admin/users/{name}/enable"),
    ("POST", "/api/admin/users/{name}/revoke-sessions"),
    ("GET", "/api/admin/jobs"),
    ("POST", "/api/admin/jobs/{id}/retry"),
    ("POST", "/api/admin/jobs/{id}/cancel"),
    ("GET", "/api/admin/health"),
    ("GET", "/api/admin/audit"),
    ("GET", "/api/admin/audit/verify"),
    ("GET", "/api/admin/reports"),
    ("POST", "/api/reports"),
];

/// `GET /api/features`.
pub fn route(plugins: Arc<Plugins>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    use warp::{Filter, Reply};
    warp::path!("api" / "features")
        .and(warp::get())
        .map(move || warp::reply::json(&plugins.features()).into_response())
        .boxed()
}

/// Names of every plugin that exists, compiled in or not.
pub const KNOWN: &[&str] = &["rate_limit", ADMIN_LOGS];

/// The admin console's plugin; the core answers its paths itself when it is absent or off.
const ADMIN_LOGS: &str = "admin_logs";

/// Paths that belong to the admin-logs plugin.
fn is_admin_console_path(path: &str) -> bool {
    path == "/api/admin" || path.starts_with("/api/admin/") || path == "/api/reports"
}

/// The plugins of this build.
pub struct Plugins {
    plugins: Vec<Box<dyn Plugin>>,
    guards: Vec<Arc<dyn Guard>>,
}

impl Plugins {
    /// No plugin at all (tools and tests that need no guard).
    pub fn none() -> Plugins {
        Plugins {
            plugins: Vec::new(),
            guards: Vec::new(),
        }
    }

    /// Builds the plugins compiled into this binary, in a fixed order, from their tables.
    /// An unknown plugin table, or an unknown key in one, is an error naming it.
    /// `admin` is the core's side of the admin console (absent for tools).
    pub fn compiled_in(
        config: &PluginsConfig,
        admin: Option<Arc<dyn AdminStore>>,
    ) -> anyhow::Result<Plugins> {
        for name in config.0.keys() {
            if !KNOWN.contains(&name.as_str()) {
                anyhow::bail!(
                    "configuration error: [plugins.{name}]: no such plugin (known: {KNOWN:?})"
                );
            }
        }
        let cx = |name: &str| -> anyhow::Result<PluginContext> {
            Ok(PluginContext {
                config: match config.0.get(name) {
                    Some(table) => serde_json::to_value(table)?,
                    None => json!({}),
                },
                admin: admin.clone(),
            })
        };
        let _ = &cx;
        #[allow(unused_mut)]
        let mut plugins: Vec<Box<dyn Plugin>> = Vec::new();
        #[cfg(feature = "rate-limit")]
        plugins.push(Box::new(
            securechat_plugin_rate_limit::RateLimit::new(&cx(securechat_plugin_rate_limit::NAME)?)
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?,
        ));
        #[cfg(feature = "admin-logs")]
        plugins.push(Box::new(
            securechat_plugin_admin_logs::AdminLogs::new(&cx(securechat_plugin_admin_logs::NAME)?)
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?,
        ));
        for name in config.0.keys() {
            if !plugins.iter().any(|p| p.name() == name) {
                tracing::warn!(plugin = %name, "[plugins.{name}] ignored: not compiled into this build");
            }
        }
        for p in &plugins {
            if p.enabled() {
                tracing::info!(plugin = p.name(), "plugin enabled");
            } else {
                tracing::info!(
                    plugin = p.name(),
                    "plugin disabled in config: mounts nothing"
                );
            }
        }
        let guards = plugins.iter().filter_map(|p| p.guard()).collect();
        Ok(Plugins { plugins, guards })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

    /// `GET /api/features`: the compiled-in plugins and whether each is enabled.
    pub fn features(&self) -> serde_json::Value {
        let list: Vec<_> = self
            .plugins
            .iter()
            .map(|p| json!({ "name": p.name(), "enabled": p.enabled() }))
            .collect();
        json!({ "plugins": list })
    }

    /// The routes of every enabled plugin, then the core's answer for the admin console's
    /// paths when that plugin is not compiled in (404 `feature_not_compiled_in`) or is
    /// disabled (404 `feature_disabled`).
    pub fn routes(&self) -> BoxedFilter<(Response,)> {
        use warp::Filter;
        let refusal = match self.plugins.iter().find(|p| p.name() == ADMIN_LOGS) {
            None => Some(ApiError::new(
                StatusCode::NOT_FOUND,
                "feature_not_compiled_in",
                "this build has no admin console (feature admin-logs)",
            )),
            Some(p) if !p.enabled() => Some(ApiError::new(
                StatusCode::NOT_FOUND,
                "feature_disabled",
                "the admin console is disabled ([plugins.admin_logs] enabled = false)",
            )),
            Some(_) => None,
        };
        let gate = warp::path::full()
            .and_then(move |path: warp::path::FullPath| {
                let refusal = refusal
                    .clone()
                    .filter(|_| is_admin_console_path(path.as_str()));
                async move {
                    Err::<Response, _>(match refusal {
                        Some(e) => warp::reject::custom(e),
                        None => warp::reject::not_found(),
                    })
                }
            })
            .boxed();
        self.plugins
            .iter()
            .filter(|p| p.enabled())
            .filter_map(|p| p.routes())
            .fold(gate, |rest, r| r.or(rest).unify().boxed())
    }

    /// Asks every guard; the first refusal wins.
    pub fn admit(&self, what: &Admission<'_>) -> Verdict {
        for g in &self.guards {
            if let refusal @ Verdict::Refuse { .. } = g.admit(what) {
                return refusal;
            }
        }
        Verdict::Allow
    }
}

/// `securechat audit verify`: checks the audit chain (docs/PROTOCOL.md §12) of the
/// entries, oldest first. `None` when this build has no admin-logs plugin.
pub fn verify_audit_chain(
    entries: &[securechat_plugin_api::admin::AuditEntry],
) -> Option<AuditVerdict> {
    #[cfg(feature = "admin-logs")]
    {
        use securechat_plugin_admin_logs::audit::{verify, Verification};
        Some(match verify(entries) {
            Verification::Ok { entries } => AuditVerdict::Ok { entries },
            Verification::Broken {
                entries,
                first_bad_seq,
                reason,
            } => AuditVerdict::Broken {
                entries,
                first_bad_seq,
                reason,
            },
        })
    }
    #[cfg(not(feature = "admin-logs"))]
    {
        let _ = entries;
        None
    }
}

/// What [`verify_audit_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    Ok {
        entries: usize,
    },
    Broken {
        entries: usize,
        first_bad_seq: i64,
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_plugin_table_is_refused_by_name() {
        let mut c = PluginsConfig::default();
        c.0.insert("rate_limti".into(), toml::Table::new());
        let err = Plugins::compiled_in(&c, None)
            .err()
            .expect("must fail")
            .to_string();
        assert!(err.contains("rate_limti"), "{err}");
    }

    /// The `[plugins.<name>]` table of the shipped config.toml, as JSON.
    #[cfg(any(feature = "rate-limit", feature = "admin-logs"))]
    fn shipped_table(name: &str) -> serde_json::Value {
        let text = include_str!("../../config.toml");
        let table: toml::Table = toml::from_str(text).expect("valid toml");
        serde_json::to_value(&table["plugins"][name]).expect("json")
    }

    /// Asserts that the shipped table parses to the defaults and spells out every key.
    #[cfg(any(feature = "rate-limit", feature = "admin-logs"))]
    fn assert_shipped_is_defaults<S>(
        name: &str,
        parse: impl Fn(&serde_json::Value) -> S,
        defaults: S,
    ) where
        S: serde::Serialize + PartialEq + std::fmt::Debug,
    {
        let value = shipped_table(name);
        assert_eq!(parse(&value), defaults);
        let defaults = serde_json::to_value(defaults).expect("json");
        for key in defaults.as_object().expect("object").keys() {
            assert!(
                value.get(key).is_some(),
                "config.toml lacks plugins.{name}.{key}"
            );
        }
    }

    /// config.toml spells out every key of every plugin table with its default.
    #[cfg(feature = "rate-limit")]
    #[test]
    fn the_shipped_rate_limit_table_is_exactly_the_defaults() {
        use securechat_plugin_rate_limit::Settings;
        assert_shipped_is_defaults(
            "rate_limit",
            |v| Settings::from_value(v).expect("parses"),
            Settings::default(),
        );
    }

    #[cfg(feature = "admin-logs")]
    #[test]
    fn the_shipped_admin_logs_table_is_exactly_the_defaults() {
        use securechat_plugin_admin_logs::Settings;
        assert_shipped_is_defaults(
            "admin_logs",
            |v| Settings::from_value(v).expect("parses"),
            Settings::default(),
        );
    }

    #[cfg(feature = "admin-logs")]
    #[test]
    fn an_unknown_key_in_the_admin_logs_table_is_refused_by_name() {
        let mut c = PluginsConfig::default();
        let t: toml::Table = toml::from_str("csv_max_rowz = 5").expect("toml");
        c.0.insert("admin_logs".into(), t);
        let err = Plugins::compiled_in(&c, None)
            .err()
            .expect("must fail")
            .to_string();
        assert!(err.contains("csv_max_rowz"), "{err}");
    }
}
