//! The threads that answer DNS as the systemd watchdog sees them: each counts its waits
//! (parks), so a thread that stays busy through a whole watchdog interval, without a
//! wait, shows as stuck. The runtime's workers count through its park hooks
//! ([`Liveness::count`]), the UDP threads around their receive call. Two atomic
//! additions per wait, none per query under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The waits of a group of threads.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// Threads waiting now.
    pub(crate) parked: AtomicUsize,
    /// Ends of waits so far (any thread).
    pub(crate) unparks: AtomicU64,
}

impl Liveness {
    /// Count the parks of the runtime `builder` makes into a new `Liveness`.
    pub(crate) fn hook(builder: &mut tokio::runtime::Builder) -> Arc<Liveness> {
        let live = Arc::new(Liveness::default());
        live.count(builder);
        live
    }

    /// Count the parks of the runtime `builder` makes into this one.
    pub(crate) fn count(self: &Arc<Self>, builder: &mut tokio::runtime::Builder) {
        let (park, unpark) = (self.clone(), self.clone());
        builder
            .on_thread_park(move || park.park())
            .on_thread_unpark(move || unpark.unpark());
    }

    /// A thread starts to wait.
    pub(crate) fn park(&self) {
        self.parked.fetch_add(1, Ordering::Relaxed);
    }

    /// A thread's wait ended.
    pub(crate) fn unpark(&self) {
        self.parked.fetch_sub(1, Ordering::Relaxed);
        self.unparks.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the `threads` are alive: all waiting, or some wait ended since the last
    /// check (`last`, the count of ends then, is updated).
    pub(crate) fn alive(&self, threads: usize, last: &mut u64) -> bool {
        let unparks = self.unparks.load(Ordering::Relaxed);
        let moved = unparks != *last;
        *last = unparks;
        moved || self.parked.load(Ordering::Relaxed) >= threads
    }
}
