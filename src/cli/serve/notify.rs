//! systemd readiness protocol (`Type=notify`): READY, RELOADING, STOPPING and watchdog
//! pings. Every call is a no-op when not started by systemd (no `NOTIFY_SOCKET`).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    // A failed notification is not a reason to stop answering DNS; systemd will time
    // the unit out if it really cannot hear us.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Sockets bound and lists loaded: the service is up.
pub(crate) fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("answering queries")]);
}

/// A SIGHUP reload begins; [`ready`] ends it.
pub(crate) fn reloading() {
    send(&[NotifyState::Reloading]);
}

/// Shutdown begins.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Tell the watchdog we are alive.
pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC` when systemd set it for us.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
    } else {
        None
    }
}
