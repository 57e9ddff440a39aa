//! The `serve` supervisor: starts the server, reloads it on SIGHUP, when resolv.conf
//! changes or when a remote list was refreshed, keeps systemd told (`Type=notify`,
//! watchdog), and stops it on SIGTERM/SIGINT.

mod notify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Overrides};
use crate::remote::RemoteSettings;
use crate::server::{self, ServeError};

/// How often `serve` looks at resolv.conf (a stat; a read only when it changed).
const RESOLV_CONF_POLL: Duration = Duration::from_secs(2);

/// What resolv.conf looked like when last read: its path, modification time and text.
struct ResolvWatch {
    seen: Option<(PathBuf, Option<std::time::SystemTime>, Option<String>)>,
}

/// A file's modification time, `None` when it cannot be read.
fn mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ResolvWatch {
    fn new(path: Option<PathBuf>) -> ResolvWatch {
        let seen = path.map(|p| {
            let (m, t) = (mtime(&p), std::fs::read_to_string(&p).ok());
            (p, m, t)
        });
        ResolvWatch { seen }
    }

    /// Whether the upstreams must be read again: the file `path` (the running config's,
    /// `None` when `[upstream] servers` is set) has other text than last time. A stat
    /// each time; the file is read only when its modification time moved.
    fn changed(&mut self, path: Option<PathBuf>) -> bool {
        let Some(path) = path else {
            self.seen = None;
            return false;
        };
        let Some((_, seen_mtime, seen_text)) = self.seen.as_mut().filter(|(p, ..)| *p == path)
        else {
            // A config reload switched to resolv.conf (or to another one): it was read.
            *self = ResolvWatch::new(Some(path));
            return false;
        };
        let now = mtime(&path);
        if now.is_some() && now == *seen_mtime {
            return false;
        }
        *seen_mtime = now;
        let text = std::fs::read_to_string(&path).ok();
        if text == *seen_text {
            return false;
        }
        *seen_text = text;
        true
    }
}

/// The `serve` command: start, reload on SIGHUP, stop on SIGTERM/SIGINT.
pub(crate) async fn run(
    config_path: Option<PathBuf>,
    overrides: Overrides,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let load = || -> Result<Config, ServeError> {
        let (mut config, _) = Config::locate(config_path.as_deref())?;
        config.apply(&overrides);
        Ok(config)
    };
    // Handlers first: a SIGHUP that arrives while the lists load must not kill us.
    let sig = |kind| {
        signal(kind).map_err(|e| ServeError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            proto: "signal",
            source: e,
        })
    };
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    );
    let config = load()?;
    // Upstreams from resolv.conf follow it, as dnsmasq does: DHCP rewrites it after
    // boot, or when the household changes router. Its text is taken before the start
    // reads it, so a change in between is seen at the first look.
    let mut resolv = ResolvWatch::new(config.upstream.resolv_conf_in_use().map(PathBuf::from));
    let running = server::start(config.clone()).await?;
    // Remote lists: refreshed on their schedule; a changed copy reloads like SIGHUP.
    // A reload that changes `[[lists]]` or `[remote]` restarts the refresher.
    let lists_changed = Arc::new(tokio::sync::Notify::new());
    let mut refresher = {
        let n = lists_changed.clone();
        crate::remote::Refresher::start(&RemoteSettings::of(&config), move || n.notify_one())
    };
    // Sockets are bound and the lists loaded: tell systemd (Type=notify).
    notify::ready();
    let watchdog = notify::watchdog_interval();
    let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resolv_tick = tokio::time::interval(RESOLV_CONF_POLL);
    resolv_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Why to reload, and whether systemd hears of it (RELOADING=1, then READY=1).
        let (why, tell_systemd) = tokio::select! {
            _ = resolv_tick.tick() => {
                if !resolv.changed(running.resolv_conf()) {
                    continue;
                }
                tracing::info!("resolv.conf changed: reloading the upstreams");
                (" after a resolv.conf change", true)
            }
            _ = lists_changed.notified() => (" after list update", false),
            _ = ping.tick(), if watchdog.is_some() => {
                notify::watchdog();
                continue;
            }
            _ = hup.recv() => ("", true),
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if tell_systemd {
            notify::reloading();
        }
        // Re-read the config and swap it in; the running one stays on error.
        match load().and_then(|c| running.reload(c.clone()).map(|()| c)) {
            Ok(c) => _ = refresher.follow(&RemoteSettings::of(&c)).await,
            Err(e) => tracing::error!("reload{why} failed, keeping the running config: {e}"),
        }
        if tell_systemd {
            notify::ready();
        }
    }
    notify::stopping();
    tracing::info!("shutting down");
    refresher.stop().await;
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_watch_reloads_on_new_text_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "nameserver 192.0.2.53\n").unwrap();
        let mut w = ResolvWatch::new(Some(p.clone()));
        assert!(!w.changed(Some(p.clone())), "nothing happened");
        // DHCP rewrites the same text (a new mtime): nothing to reload.
        std::fs::write(&p, "nameserver 192.0.2.53\n").unwrap();
        assert!(!w.changed(Some(p.clone())));
        std::fs::write(&p, "nameserver 192.0.2.54\n").unwrap();
        assert!(w.changed(Some(p.clone())));
        assert!(!w.changed(Some(p.clone())), "seen once");
        // Gone (a link into a /run not mounted yet) is a change too; back again as well.
        std::fs::remove_file(&p).unwrap();
        assert!(w.changed(Some(p.clone())));
        std::fs::write(&p, "nameserver 192.0.2.54\n").unwrap();
        assert!(w.changed(Some(p.clone())));
        // `[upstream] servers` set by a reload: resolv.conf no longer matters.
        std::fs::write(&p, "nameserver 192.0.2.99\n").unwrap();
        assert!(!w.changed(None));
    }
}
