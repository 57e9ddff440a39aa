//! What the dashboard (`crate::web`) sees of the running server: the allow-list, the
//! config, the counters, `check` and the lists of the snapshot in force.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::dispatch::Dispatcher;
use crate::config::Config;

/// The running server as the dashboard reads it.
pub(super) struct View {
    pub(super) dispatcher: Arc<Dispatcher>,
    pub(super) started: Instant,
    pub(super) started_unix: i64,
    pub(super) controls_changed: Arc<tokio::sync::Notify>,
    pub(super) reloaded: Arc<tokio::sync::Notify>,
}

impl crate::web::ServerView for View {
    fn allowed(&self, ip: IpAddr) -> bool {
        self.dispatcher.handler.state.load().access.is_allowed(ip)
    }

    fn config(&self) -> Arc<Config> {
        Arc::new(self.dispatcher.handler.state.load().config.clone())
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.dispatcher.status_json(self.started, self.started_unix))
            .unwrap_or_default()
    }

    fn check(&self, name: &str) -> crate::check::CheckLine {
        let snap = self.dispatcher.handler.state.load();
        crate::check::line(&snap.filter, snap.policy.actions(None), name)
    }

    fn controls_changed(&self) {
        self.controls_changed.notify_one();
    }

    fn reloaded(&self) -> Arc<tokio::sync::Notify> {
        self.reloaded.clone()
    }

    fn lists(&self) -> Vec<crate::cli::lists::ListRow> {
        let snap = self.dispatcher.handler.state.load();
        crate::cli::lists::rows_of(&snap.config, &snap.filter, &snap.policy)
    }
}
