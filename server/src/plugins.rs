//! Owns the set of compiled-in plugins: which exist (the ONLY file with plugin
//! `#[cfg(feature)]` lines), building each from its `[plugins.<name>]` table, their guards,
//! and what `GET /api/features` reports.
//!
//! Invariant: the core talks to plugins only through `securechat-plugin-api`. A plugin that
//! is not compiled in is simply absent: `/api/features` does not list it and nothing of it
//! runs (a `[plugins.<name>]` table for it is ignored with a warning).

use std::sync::Arc;

use securechat_plugin_api::{Admission, Guard, Plugin, PluginContext, Verdict};
use serde_json::json;

use crate::config::PluginsConfig;

/// The routes this module answers.
pub const ROUTES: &[(&str, &str)] = &[("GET", "/api/features")];

/// `GET /api/features`.
pub fn route(plugins: Arc<Plugins>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    use warp::{Filter, Reply};
    warp::path!("api" / "features")
        .and(warp::get())
        .map(move || warp::reply::json(&plugins.features()).into_response())
        .boxed()
}

/// Names of every plugin that exists, compiled in or not.
pub const KNOWN: &[&str] = &["rate_limit"];

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
    pub fn compiled_in(config: &PluginsConfig) -> anyhow::Result<Plugins> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_plugin_table_is_refused_by_name() {
        let mut c = PluginsConfig::default();
        c.0.insert("rate_limti".into(), toml::Table::new());
        let err = Plugins::compiled_in(&c)
            .err()
            .expect("must fail")
            .to_string();
        assert!(err.contains("rate_limti"), "{err}");
    }

    /// config.toml spells out every key of every plugin table with its default.
    #[cfg(feature = "rate-limit")]
    #[test]
    fn the_shipped_rate_limit_table_is_exactly_the_defaults() {
        use securechat_plugin_rate_limit::Settings;
        let text = include_str!("../../config.toml");
        let table: toml::Table = toml::from_str(text).expect("valid toml");
        let rl = table["plugins"]["rate_limit"].clone();
        let value = serde_json::to_value(&rl).expect("json");
        assert_eq!(
            Settings::from_value(&value).expect("parses"),
            Settings::default()
        );
        let defaults = serde_json::to_value(Settings::default()).expect("json");
        for key in defaults.as_object().expect("object").keys() {
            assert!(
                value.get(key).is_some(),
                "config.toml lacks plugins.rate_limit.{key}"
            );
        }
    }
}
