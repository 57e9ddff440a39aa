//! The refresher of a running server: a task that fetches each remote list again when
//! it is due, and is restarted when a reload changes `[[lists]]` or `[remote]`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{RemoteListConfig, RemoteSettings, UpdateResult, next_due, update_lists};

/// After a failed attempt, try again after this long (or the refresh, if shorter).
const RETRY: Duration = Duration::from_secs(15 * 60);

/// A task that sleeps until the next list is due, updates it, and calls `on_change`
/// when any copy changed. Ends when `shutdown` is cancelled.
pub fn spawn_refresher(
    cfg: RemoteSettings,
    on_change: impl Fn() + Send + Sync + 'static,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if cfg.lists.is_empty() {
            return;
        }
        let on_change = Arc::new(on_change);
        // In-memory schedule, seeded from the sidecars.
        let mut next: HashMap<String, SystemTime> = cfg
            .lists
            .iter()
            .map(|l| {
                (
                    l.url.clone(),
                    next_due(&cfg, l).unwrap_or(SystemTime::UNIX_EPOCH),
                )
            })
            .collect();
        loop {
            let soonest = next.values().min().copied().unwrap_or(SystemTime::now());
            let wait = soonest
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let now = SystemTime::now();
            let due: Vec<&RemoteListConfig> = cfg
                .lists
                .iter()
                .filter(|l| next.get(&l.url).is_none_or(|t| *t <= now))
                .collect();
            let outcomes = tokio::select! {
                _ = shutdown.cancelled() => return,
                o = update_lists(&cfg, &due, &|_| {}) => o,
            };
            let mut changed = false;
            for (list, o) in due.iter().zip(&outcomes) {
                let after = match &o.result {
                    UpdateResult::Updated { rules } => {
                        tracing::info!(url = %o.url, rules, "remote list updated");
                        changed = true;
                        list.refresh
                    }
                    UpdateResult::NotModified => list.refresh,
                    _ => {
                        tracing::warn!("{o}");
                        list.refresh.min(RETRY)
                    }
                };
                next.insert(list.url.clone(), SystemTime::now() + after);
            }
            if changed {
                on_change();
            }
        }
    })
}

/// The refresher of a running server, restarted when a reload changes what it refreshes
/// (`[[lists]]` or `[remote]`): a list added by SIGHUP is fetched without a restart,
/// and a removed one is no longer fetched.
pub struct Refresher {
    settings: RemoteSettings,
    on_change: Arc<dyn Fn() + Send + Sync>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Refresher {
    /// Start refreshing the lists of `cfg` when due; `on_change` runs after a list changed.
    pub fn start(cfg: &RemoteSettings, on_change: impl Fn() + Send + Sync + 'static) -> Refresher {
        Self::spawn(cfg, Arc::new(on_change))
    }

    fn spawn(cfg: &RemoteSettings, on_change: Arc<dyn Fn() + Send + Sync>) -> Refresher {
        let stop = CancellationToken::new();
        let call = on_change.clone();
        let task = spawn_refresher(cfg.clone(), move || call(), stop.clone());
        Refresher {
            settings: cfg.clone(),
            on_change,
            stop,
            task,
        }
    }

    /// Take up the config a reload put in force; `true` when that restarted the
    /// refresher (the lists or `[remote]` changed). An update under way is abandoned
    /// (its copy is written whole or not at all) and tried again when next due.
    pub async fn follow(&mut self, cfg: &RemoteSettings) -> bool {
        // `[tls]` alone does not restart it (as before the settings were split out).
        if cfg.lists == self.settings.lists && cfg.remote == self.settings.remote {
            return false;
        }
        let next = Self::spawn(cfg, self.on_change.clone());
        std::mem::replace(self, next).stop().await;
        tracing::info!(
            "[[lists]] changed: {} remote lists refreshed now",
            cfg.lists.len()
        );
        true
    }

    /// Stop and wait for the task to end.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
