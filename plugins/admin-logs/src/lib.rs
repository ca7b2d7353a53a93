//! The admin-logs plugin: the admin console's API over ciphertext and routing metadata,
//! the hash-chained audit log of every admin read and action, and verifiable abuse reports.
//! It reaches the core only through [`AdminStore`] (plugins/api).
//!
//! Invariant: nothing here can decrypt a message on its own; the only key it ever holds is
//! the one message key a reporter chose to disclose, for the length of one check.

pub mod audit;
pub mod csv;
pub mod report;
mod routes;
mod submit;

use std::sync::Arc;

use securechat_plugin_api::admin::AdminStore;
use securechat_plugin_api::{Plugin, PluginContext, Routes};
use serde::{Deserialize, Serialize};

/// The plugin's config table, `[plugins.admin_logs]`.
pub const NAME: &str = "admin_logs";

/// `[plugins.admin_logs]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// false: every /api/admin/* and /api/reports route answers 404 `feature_disabled`.
    pub enabled: bool,
    /// Most rows a CSV export holds.
    pub csv_max_rows: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            csv_max_rows: 100_000,
        }
    }
}

impl Settings {
    /// Reads the table over the defaults; an unknown key is an error naming it.
    pub fn from_value(v: &serde_json::Value) -> Result<Settings, String> {
        let s: Settings =
            serde_json::from_value(v.clone()).map_err(|e| format!("plugins.{NAME}: {e}"))?;
        if s.csv_max_rows == 0 {
            return Err(format!("plugins.{NAME}.csv_max_rows must be at least 1"));
        }
        Ok(s)
    }
}

/// The plugin: its settings and the core's admin services.
pub struct AdminLogs {
    settings: Settings,
    store: Option<Arc<dyn AdminStore>>,
}

impl AdminLogs {
    pub fn new(cx: &PluginContext) -> Result<AdminLogs, String> {
        Ok(AdminLogs {
            settings: Settings::from_value(&cx.config)?,
            store: cx.admin.clone(),
        })
    }
}

impl Plugin for AdminLogs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn enabled(&self) -> bool {
        self.settings.enabled
    }

    fn routes(&self) -> Option<Routes> {
        let store = self.store.clone().filter(|_| self.settings.enabled)?;
        Some(routes::routes(Arc::new(routes::Console {
            store,
            csv_max_rows: self.settings.csv_max_rows,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = Settings::from_value(&json!({ "csv_max_rowz": 3 })).expect_err("must fail");
        assert!(err.contains("csv_max_rowz"), "{err}");
    }

    #[test]
    fn an_empty_table_is_the_defaults() {
        assert_eq!(
            Settings::from_value(&json!({})).expect("ok"),
            Settings::default()
        );
    }
}
