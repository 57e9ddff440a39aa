//! The shutdown signal as a UDP receive loop reads it between datagrams: a flag read
//! with one atomic load, and a wait that registers the loop's waker with one
//! compare-and-swap. (The cancellation token's own `is_cancelled` and `cancelled()`
//! take a mutex on every call: about 300 instructions per query at household rates,
//! where the loop waits once per datagram.) [`Stop::trigger`] sets it when the server
//! stops, next to the token.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// Set once; wakes every loop waiting on it.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    set: AtomicBool,
    waiters: Mutex<Vec<Arc<AtomicWaker>>>,
}

impl Stop {
    /// Set the signal and wake the loops that wait on it.
    pub(crate) fn trigger(&self) {
        self.set.store(true, Ordering::Release);
        let waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        for w in waiters.iter() {
            w.wake();
        }
    }

    /// Whether the signal is set.
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// A place for one loop to wait on the signal.
    pub(crate) fn waiter(&self) -> Waiter<'_> {
        let waker = Arc::new(AtomicWaker::new());
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(waker.clone());
        Waiter { stop: self, waker }
    }
}

/// One loop's wait on a [`Stop`]; leaves its list when dropped.
#[derive(Debug)]
pub(crate) struct Waiter<'a> {
    stop: &'a Stop,
    waker: Arc<AtomicWaker>,
}

impl Waiter<'_> {
    /// Whether the signal is set.
    pub(crate) fn is_set(&self) -> bool {
        self.stop.is_set()
    }

    /// Ready once the signal is set.
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.is_set() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // Set between the load and the registration: its wake may have missed us.
            if self.is_set() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.stop
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|w| !Arc::ptr_eq(w, &self.waker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_loops_are_woken_by_the_trigger() {
        let stop = Arc::new(Stop::default());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                let (tx, rx) = tokio::sync::oneshot::channel();
                let task = tokio::spawn(async move {
                    let w = stop.waiter();
                    let _ = tx.send(());
                    w.wait().await;
                    assert!(w.is_set());
                });
                (task, rx)
            })
            .collect();
        let mut tasks = Vec::new();
        for (task, registered) in waiters {
            registered.await.unwrap();
            tasks.push(task);
        }
        tokio::task::yield_now().await;
        assert!(tasks.iter().all(|t| !t.is_finished()));
        stop.trigger();
        for t in tasks {
            // Bounded, so a missed wake fails the test instead of hanging it.
            tokio::time::timeout(std::time::Duration::from_secs(10), t)
                .await
                .expect("the trigger woke the loop")
                .unwrap();
        }
        assert!(
            stop.waiters.lock().unwrap().is_empty(),
            "dropped waiters leave"
        );
    }

    #[tokio::test]
    async fn a_signal_set_before_is_seen() {
        let stop = Stop::default();
        stop.trigger();
        let w = stop.waiter();
        assert!(w.is_set());
        w.wait().await;
    }
}
