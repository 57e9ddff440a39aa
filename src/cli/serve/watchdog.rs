//! The systemd watchdog: pings from a small thread of its own (`metaguard-wdog`) that
//! sleeps `WatchdogSec/2` between pings, and pings only while the tokio runtime is
//! alive. Idle, the process then wakes once per ping and nothing else: a timer in the
//! runtime cost about five context switches per ping (the timer wheel wakes a worker
//! at level boundaries before the deadline, then once more to re-arm).
//!
//! Alive means: every worker is parked (waiting for events, so it will answer the next
//! one), or some worker went through a park since the last ping (it is making
//! progress). A worker that stays busy for a whole interval without the others parking
//! (a task stuck in a loop or on a lock) stops the pings and systemd restarts the
//! service. [`Liveness::hook`] installs the counters on the runtime builder; they cost
//! two atomic additions per park, none per query.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The runtime's workers as the park hooks see them.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// Workers parked now.
    parked: AtomicUsize,
    /// Unparks so far (any worker).
    unparks: AtomicU64,
}

impl Liveness {
    /// Count the parks of the runtime `builder` makes into a new `Liveness`.
    pub(crate) fn hook(builder: &mut tokio::runtime::Builder) -> Arc<Liveness> {
        let live = Arc::new(Liveness::default());
        let (park, unpark) = (live.clone(), live.clone());
        builder
            .on_thread_park(move || {
                park.parked.fetch_add(1, Ordering::Relaxed);
            })
            .on_thread_unpark(move || {
                unpark.parked.fetch_sub(1, Ordering::Relaxed);
                unpark.unparks.fetch_add(1, Ordering::Relaxed);
            });
        live
    }

    /// Whether the `workers` are alive, given the unpark count seen at the last check
    /// (updated).
    fn alive(&self, workers: usize, last: &mut u64) -> bool {
        let unparks = self.unparks.load(Ordering::Relaxed);
        let moved = unparks != *last;
        *last = unparks;
        moved || self.parked.load(Ordering::Relaxed) >= workers
    }
}

/// The running pinger; dropping it stops the thread (at once: it waits on a channel).
pub(crate) struct Watchdog {
    _stop: mpsc::Sender<()>,
}

impl Watchdog {
    /// Ping `ping` every `every` while the `workers` of `live` are alive. `None` when
    /// the thread cannot be started (then systemd's watchdog restarts us, as it should
    /// when we cannot even make a thread).
    pub(crate) fn start(
        live: Arc<Liveness>,
        workers: usize,
        every: Duration,
        ping: impl Fn() + Send + 'static,
    ) -> Option<Watchdog> {
        let (stop, stopped) = mpsc::channel::<()>();
        let run = move || {
            let mut last = live.unparks.load(Ordering::Relaxed);
            // Only `Disconnected` (the server stopping) ends the wait early.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if live.alive(workers, &mut last) {
                    ping();
                } else {
                    tracing::warn!("watchdog: the runtime made no progress; not pinging");
                }
            }
        };
        match std::thread::Builder::new()
            .name("metaguard-wdog".into())
            .spawn(run)
        {
            Ok(_) => Some(Watchdog { _stop: stop }),
            Err(e) => {
                tracing::error!("cannot start the watchdog thread: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn runtime(workers: usize) -> (tokio::runtime::Runtime, Arc<Liveness>) {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers).enable_all();
        let live = Liveness::hook(&mut b);
        (b.build().unwrap(), live)
    }

    /// Wait (bounded) until `f` holds; the hooks run on the workers' own time.
    fn eventually(mut f: impl FnMut() -> bool) -> bool {
        (0..500).any(|_| {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
            false
        })
    }

    #[test]
    fn an_idle_runtime_is_alive_and_a_stuck_worker_is_not() {
        let (rt, live) = runtime(1);
        let mut last = 0;
        assert!(eventually(|| live.parked.load(Ordering::Relaxed) == 1));
        assert!(live.alive(1, &mut last));
        assert!(
            live.alive(1, &mut last),
            "parked, nothing moved: still alive"
        );

        // The one worker busy in a task that never yields.
        let release = Arc::new(AtomicBool::new(false));
        let (r, started) = (release.clone(), Arc::new(AtomicBool::new(false)));
        let s = started.clone();
        rt.spawn(async move {
            s.store(true, Ordering::Relaxed);
            while !r.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
        });
        assert!(eventually(|| started.load(Ordering::Relaxed)));
        live.alive(1, &mut last); // the unpark that started it
        assert!(!live.alive(1, &mut last), "busy and no park since: stuck");
        release.store(true, Ordering::Relaxed);
        assert!(eventually(|| live.alive(1, &mut last)));
    }

    #[test]
    fn dropping_the_watchdog_stops_its_thread_and_pings_go_out_while_alive() {
        let (_rt, live) = runtime(1);
        let (tx, rx) = mpsc::channel();
        let dog = Watchdog::start(live, 1, Duration::from_millis(5), move || {
            let _ = tx.send(());
        })
        .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).expect("a ping");
        drop(dog);
        // The thread ends and drops its sender: the channel disconnects.
        while rx.recv_timeout(Duration::from_secs(5)) == Ok(()) {}
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
