//! The server's periodic work on a thread of its own (`metaguard-tick`), off the DNS
//! workers: the status ticker and the device-table refresher sleep here.
//!
//! Why: a timer pending in the workers' runtime makes every wait for the next packet
//! arm a kernel timer (`epoll_wait` with a timeout, then its cancel on wake-up; in a
//! virtual machine each one can exit to the hypervisor). With none, a worker waits as
//! dnsmasq's `poll` does, without a timeout: at 2000 queries a second with a warm
//! cache the machine then starts 0.9 fewer kernel timers per query, as many as with
//! dnsmasq (docs/performance.md). Only the timers of queries in flight (the upstream
//! attempts) are left on the workers.
//!
//! It is a runtime of its own with one worker, timers and no I/O driver; idle, the
//! worker sleeps until its next timer. (A multi-thread runtime, as the workers' is:
//! tokio's current-thread one would add 6 kB to the binary.) It stops when the
//! [`Housekeeping`] is dropped, and its tasks are dropped with it, wherever they were
//! waiting.

use std::io;

use tokio::runtime::{Handle, Runtime};

/// The housekeeping runtime; dropping it stops its thread.
pub(crate) struct Housekeeping {
    rt: Option<Runtime>,
    handle: Handle,
}

impl Housekeeping {
    /// Start the thread.
    pub(crate) fn start() -> io::Result<Housekeeping> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("metaguard-tick")
            .enable_time()
            .build()?;
        Ok(Housekeeping {
            handle: rt.handle().clone(),
            rt: Some(rt),
        })
    }

    /// Where to spawn periodic tasks.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Housekeeping {
    fn drop(&mut self) {
        // Without waiting: this may run on a runtime's thread, where blocking is not
        // allowed, and a device-table read may still run on the blocking pool.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Timers run on the housekeeping thread, and dropping it drops its tasks.
    #[test]
    fn tasks_sleep_on_their_thread_and_stop_with_it() {
        let h = Housekeeping::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (dropped_tx, dropped_rx) = std::sync::mpsc::channel::<()>();
        h.handle().spawn(async move {
            // Dropped with the task: the receiver then sees the channel closed.
            let _guard = dropped_tx;
            tokio::time::sleep(Duration::from_millis(1)).await;
            let name = std::thread::current().name().map(str::to_owned);
            tx.send(name).unwrap();
            std::future::pending::<()>().await;
        });
        let name = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(name.as_deref(), Some("metaguard-tick"));
        assert_eq!(
            dropped_rx.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty),
            "the task still waits"
        );
        drop(h);
        assert_eq!(
            dropped_rx.recv_timeout(Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "the task was dropped with the thread"
        );
    }
}
