//! The systemd watchdog: pings from a small thread of its own (`metaguard-wdog`) that
//! sleeps `WatchdogSec/2` between pings, and pings only while the threads that answer
//! DNS (the tokio runtime's workers, the UDP threads) are alive. Idle, the process then
//! wakes once per ping and nothing else: a timer in the runtime cost about five context
//! switches per ping (the timer wheel wakes a worker at level boundaries before the
//! deadline, then once more to re-arm).
//!
//! Alive means, for each group of threads: every thread is parked (waiting for events,
//! so it will answer the next one), or some thread went through a park since the last
//! ping (it is making progress). A thread that stays busy for a whole interval without
//! the others of its group parking (a task stuck in a loop or on a lock) stops the
//! pings and systemd restarts the service. [`Liveness`] counts the parks.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

pub(crate) use crate::server::Liveness;

/// The running pinger; dropping it stops the thread (at once: it waits on a channel).
pub(crate) struct Watchdog {
    _stop: mpsc::Sender<()>,
}

impl Watchdog {
    /// Ping `ping` every `every` while each group of `groups` (its parks, its number
    /// of threads) is alive. `None` when the thread cannot be started (then systemd's
    /// watchdog restarts us, as it should when we cannot even make a thread).
    pub(crate) fn start(
        groups: Vec<(Arc<Liveness>, usize)>,
        every: Duration,
        ping: impl Fn() + Send + 'static,
    ) -> Option<Watchdog> {
        let (stop, stopped) = mpsc::channel::<()>();
        let run = move || {
            let mut last = vec![0; groups.len()];
            alive(&groups, &mut last);
            // Only `Disconnected` (the server stopping) ends the wait early.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if alive(&groups, &mut last) {
                    ping();
                } else {
                    tracing::warn!("watchdog: DNS threads made no progress; not pinging");
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

/// Whether every group is alive, given each one's count of ended waits at the last
/// check (`last`, updated; every group is looked at, so each count is kept current).
fn alive(groups: &[(Arc<Liveness>, usize)], last: &mut [u64]) -> bool {
    groups
        .iter()
        .zip(last)
        .fold(true, |all, ((live, threads), last)| {
            live.alive(*threads, last) && all
        })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

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

    /// The UDP threads are a group of their own: one stuck among them (busy, no wait
    /// since the last check) stops the pings while the runtime is idle and well.
    #[test]
    fn one_stuck_group_is_enough_to_stop_the_pings() {
        let (_rt, workers) = runtime(1);
        assert!(eventually(|| workers.parked.load(Ordering::Relaxed) == 1));
        let udp = Arc::new(Liveness::default());
        udp.park();
        udp.park();
        let groups = vec![(workers, 1), (udp.clone(), 2)];
        let mut last = vec![0; 2];
        alive(&groups, &mut last);
        assert!(alive(&groups, &mut last), "all waiting");
        // One UDP thread takes a datagram and never waits again.
        udp.unpark();
        assert!(
            alive(&groups, &mut last),
            "it made progress since the last check"
        );
        assert!(
            !alive(&groups, &mut last),
            "busy through a whole interval: stuck"
        );
        // It waits again.
        udp.park();
        assert!(alive(&groups, &mut last));
    }

    #[test]
    fn dropping_the_watchdog_stops_its_thread_and_pings_go_out_while_alive() {
        let (_rt, live) = runtime(1);
        let (tx, rx) = mpsc::channel();
        let dog = Watchdog::start(vec![(live, 1)], Duration::from_millis(5), move || {
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
