//! The live hit feed: the hit writer's thread offers each hit it takes off its queue
//! to a `tokio::sync::broadcast` channel without waiting, only while someone watches (a
//! counter, so an unwatched feed costs one atomic load per hit); a watcher that falls
//! behind loses the oldest. The query path never touches it: building the page's row
//! and waking the dashboard's thread per hit cost the DNS worker ~8 % CPU per query
//! (docs/performance.md, issue 18).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::HitEvent;

/// Hits a slow watcher may fall behind by before it loses the oldest: more than the hit
/// writer hands over at once (a batch, `[store] batch_size`, 2000 by default), or a busy
/// household loses a third of its hits from the page (256 lost ~35 % at 440 hits/s).
/// Held only while a page watches (with no receiver a send keeps nothing).
const BACKLOG: usize = 2048;

/// One hit as the live page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LiveHit {
    pub(crate) ts: i64,
    pub(crate) device: String,
    /// The store's key of the device (`mac:…` or `ip:…`).
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) category: String,
    pub(crate) action: &'static str,
}

/// The sending side, called from the hit writer (`Logger::on_hit`).
#[derive(Clone, Debug)]
pub(crate) struct LiveFeed {
    tx: broadcast::Sender<Arc<LiveHit>>,
    watchers: Arc<AtomicUsize>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed {
            tx: broadcast::channel(BACKLOG).0,
            watchers: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A watcher: receives hits until dropped.
pub(crate) struct Watch {
    pub(crate) rx: broadcast::Receiver<Arc<LiveHit>>,
    watchers: Arc<AtomicUsize>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl LiveFeed {
    /// Offer a hit to the watchers; nothing (no allocation) when there are none.
    pub(crate) fn offer(&self, e: &HitEvent) {
        if self.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let device = e
            .device
            .name
            .as_deref()
            .map_or_else(|| e.device.key.to_string(), str::to_string);
        // No receiver left (a race with the last one leaving) is not an error.
        let _ = self.tx.send(Arc::new(LiveHit {
            ts: e.ts,
            device,
            key: e.device.key.to_string(),
            name: e.name.clone(),
            category: e.category.clone(),
            action: e.action.as_str(),
        }));
    }

    /// Start watching.
    pub(crate) fn watch(&self) -> Watch {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        Watch {
            rx: self.tx.subscribe(),
            watchers: self.watchers.clone(),
        }
    }
}
