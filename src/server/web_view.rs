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

    fn check(&self, name: &str, client: Option<&str>) -> crate::check::CheckLine {
        let snap = self.dispatcher.handler.state.load();
        let device = client.and_then(|c| snap.clients.lookup(c));
        let actions = match &device {
            Some(d) => snap.policy.actions_of(d),
            None => snap.policy.actions(None),
        };
        crate::check::CheckLine {
            device: device
                .as_ref()
                .map(|d| d.name.as_deref().unwrap_or(d.key.as_str()).to_string()),
            group: device
                .as_ref()
                .and_then(|d| d.group.as_deref().map(str::to_string)),
            ..crate::check::line(&snap.filter, actions, name)
        }
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
