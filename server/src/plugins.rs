//! Owns the set of compiled-in plugins: which exist (the ONLY file with plugin
//! `#[cfg(feature)]` lines), their guards and events.
//!
//! Invariant: the core talks to plugins only through `securechat-plugin-api`.
//!
//! Today no plugin crate exists, so the list is empty in every build and a plugin's path
//! is answered like any unknown path (404 `not_found`); a clear "not compiled in" answer
//! arrives with the plugins issue.

use std::sync::Arc;

use securechat_plugin_api::{Admission, Event, Guard, Plugin, Verdict};

/// The plugins of this build.
pub struct Plugins {
    plugins: Vec<Box<dyn Plugin>>,
    guards: Vec<Arc<dyn Guard>>,
}

impl Plugins {
    /// The plugins compiled into this binary, in a fixed order.
    pub fn compiled_in() -> Plugins {
        #[allow(unused_mut)]
        let mut plugins: Vec<Box<dyn Plugin>> = Vec::new();
        // Plugin crates (admin-logs, rate-limit) register here behind their features.
        let guards = plugins.iter().filter_map(|p| p.guard()).collect();
        Plugins { plugins, guards }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

    /// Tells every plugin about `ev`.
    pub fn emit(&self, ev: &Event) {
        for p in &self.plugins {
            p.on_event(ev);
        }
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
