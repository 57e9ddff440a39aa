//! The `serve` supervisor: starts the server, reloads it on SIGHUP, when resolv.conf
//! changes, when a remote list was refreshed, or when the household controls change
//! (a change, a pause that ends, a schedule's edge), keeps systemd told (`Type=notify`,
//! watchdog), and stops it on SIGTERM/SIGINT.

mod file_events;
mod notify;
mod resolv;
mod watchdog;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use file_events::FileEvents;
use resolv::ResolvWatch;
pub(crate) use watchdog::Liveness;

use crate::config::{Config, Overrides};
use crate::remote::RemoteSettings;
use crate::server::{self, ServeError};

/// The `serve` command: start, reload on SIGHUP, stop on SIGTERM/SIGINT.
/// `live` counts the parks of the runtime's workers ([`Liveness::hook`]): the systemd
/// watchdog pings only while they are alive.
pub(crate) async fn run(
    config_path: Option<PathBuf>,
    overrides: Overrides,
    live: Arc<Liveness>,
) -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    // The config file with the flags, then the household controls as they stand now;
    // also when they next change by themselves.
    let load = || -> Result<(Config, Option<i64>), ServeError> {
        let (mut config, _) = Config::locate(config_path.as_deref())?;
        config.apply(&overrides);
        let next = crate::controls::lay_over(&mut config)
            .map_err(|e| ServeError::Controls(e.to_string()))?
            .next;
        Ok((config, next))
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
    let (config, mut next_edge) = match load() {
        Err(ServeError::Controls(e)) => {
            // DNS comes first: start on the config file alone and say why.
            tracing::error!("household controls not applied: {e}");
            let (mut config, _) = Config::locate(config_path.as_deref())?;
            config.apply(&overrides);
            (config, None)
        }
        other => other?,
    };
    let mut effective = config.clone();
    // The controls file (and the test clock) wake us when they change.
    let state_dir = config.remote.state_dir.clone();
    let _ = std::fs::create_dir_all(&state_dir);
    let mut controls_events = FileEvents::new(Some(crate::controls::path(&state_dir)));
    let mut clock_events = FileEvents::new(crate::controls::clock::file());
    // Upstreams from resolv.conf follow it, as dnsmasq does: DHCP rewrites it after
    // boot, or when the household changes router. Its text is taken before the start
    // reads it (and watched before that), so a change in between is seen at once.
    let resolv_conf = config.upstream.resolv_conf_in_use().map(PathBuf::from);
    let mut resolv_events = FileEvents::new(resolv_conf.clone());
    let mut resolv = ResolvWatch::new(resolv_conf);
    let running = server::start(config.clone()).await?;
    let controls_changed = running.controls_changed();
    // Remote lists: refreshed on their schedule; a changed copy reloads like SIGHUP.
    // A reload that changes `[[lists]]` or `[remote]` restarts the refresher.
    let lists_changed = Arc::new(tokio::sync::Notify::new());
    let mut refresher = {
        let n = lists_changed.clone();
        crate::remote::Refresher::start(&RemoteSettings::of(&config), move || n.notify_one())
    };
    // Sockets are bound and the lists loaded: tell systemd (Type=notify).
    notify::ready();
    // Watchdog pings, only when systemd asked for them (every WatchdogSec/2), from a
    // thread of their own (watchdog.rs): idle, only that thread wakes.
    let watchdog = notify::watchdog_interval().and_then(|every| {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        watchdog::Watchdog::start(
            vec![(live, workers), running.udp_liveness()],
            every,
            notify::watchdog,
        )
    });
    loop {
        // Why to reload, and whether systemd hears of it (RELOADING=1, then READY=1).
        let (why, tell_systemd) = tokio::select! {
            touched = resolv_events.wait() => {
                let path = running.resolv_conf();
                let changed = if touched { resolv.reread(path) } else { resolv.changed(path) };
                if !changed {
                    continue;
                }
                tracing::info!("resolv.conf changed: reloading the upstreams");
                (" after a resolv.conf change", true)
            }
            _ = lists_changed.notified() => (" after list update", false),
            _ = controls_changed.notified() => (CONTROLS, false),
            touched = controls_events.wait() => {
                if !touched {
                    continue;
                }
                (CONTROLS, false)
            }
            touched = clock_events.wait() => {
                if !touched {
                    continue;
                }
                (CONTROLS, false)
            }
            _ = until(next_edge) => (CONTROLS, false),
            _ = hup.recv() => ("", true),
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if tell_systemd {
            notify::reloading();
        }
        // Re-read the config and swap it in; the running one stays on error. A
        // control that changes nothing (the dashboard's notice and inotify's, both for
        // one change) does not reload twice.
        match load() {
            Ok((c, next)) if why == CONTROLS && c == effective => next_edge = next,
            Ok((c, next)) => match running.reload(c.clone()) {
                Ok(()) => {
                    next_edge = next;
                    _ = refresher.follow(&RemoteSettings::of(&c)).await;
                    effective = c;
                }
                Err(e) => tracing::error!("reload{why} failed, keeping the running config: {e}"),
            },
            Err(e) => {
                next_edge = None;
                tracing::error!("reload{why} failed, keeping the running config: {e}");
            }
        }
        // A reload may have switched to (another) resolv.conf: watch it from now on.
        resolv_events.follow(running.resolv_conf());
        resolv.follow(running.resolv_conf());
        if tell_systemd {
            notify::ready();
        }
    }
    notify::stopping();
    tracing::info!("shutting down");
    refresher.stop().await;
    running.stop().await;
    // Pinged until here: a slow drain is not a hang.
    drop(watchdog);
    tracing::info!("stopped");
    Ok(())
}

/// Why a reload came from the household controls.
const CONTROLS: &str = " after a household control changed";

/// Sleep until `at` (Unix seconds, by the controls' clock); never without one.
async fn until(at: Option<i64>) {
    match at {
        Some(t) => {
            let wait = (t - crate::controls::clock::now()).max(0) as u64;
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
        None => std::future::pending().await,
    }
}
