//! The household dashboard served by `serve` (`[web]`): pages (`pages`) and a JSON API
//! (`api`) over the hit log, read on read-only SQLite connections (`data`) with bounded
//! concurrency; login, sessions and CSRF (`auth`); the HTTP/1 server with its limits
//! (`http`); and the live hit feed over server-sent events (`live`). docs/api.md lists
//! the routes and the ids the browser tests rely on.

mod api;
mod auth;
mod controls;
mod data;
mod http;
pub(crate) mod live;
mod pages;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub(crate) use auth::new_password;
pub use auth::set_password;
pub(crate) use live::LiveFeed;

/// `[web]`: the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the dashboard (on by default, on loopback).
    pub enabled: bool,
    /// Where to listen. Only clients on `[server] allow_clients` (the DNS allow-list)
    /// are answered.
    pub listen: SocketAddr,
    /// A bearer token for `/api/v1/` (scripts, Home Assistant); empty: sessions only.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_token: String,
    /// How long a login lasts.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
}

/// The default dashboard address: loopback, a port neither Technitium (5380) nor
/// AdGuard Home (3000) uses, next to metaguard's DNS port 5335.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5336";

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 5336)),
            api_token: String::new(),
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

/// The file holding the admin password's argon2 hash, in the state directory.
pub fn password_path(state_dir: &Path) -> PathBuf {
    state_dir.join("web-password")
}

/// Why the dashboard could not start, or its password not be set.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The listen address could not be bound.
    #[error("dashboard: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The password file could not be read or written.
    #[error("dashboard password file {}: {source}", .path.display())]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The password could not be hashed, or the stored hash is not one.
    #[error("dashboard password hash: {0}")]
    Hash(String),
    /// The dashboard's own thread or runtime could not be started.
    #[error("dashboard: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// What the dashboard asks of the running server (implemented by `server`).
pub(crate) trait ServerView: Send + Sync + 'static {
    /// Whether `ip` is on the DNS allow-list.
    fn allowed(&self, ip: IpAddr) -> bool;
    /// The running config.
    fn config(&self) -> Arc<crate::config::Config>;
    /// The counters and uptime, as `status` stores them.
    fn status(&self) -> serde_json::Value;
    /// `check` for one name under the running lists, as `client` (an address, MAC or
    /// device name) would get it; the household's defaults without one.
    fn check(&self, name: &str, client: Option<&str>) -> crate::check::CheckLine;
    /// The lists of the running filter.
    fn lists(&self) -> Vec<crate::cli::lists::ListRow>;
    /// A household control was changed: apply it now.
    fn controls_changed(&self);
    /// Notified (to every waiter) when a reload swapped a new snapshot in.
    fn reloaded(&self) -> Arc<tokio::sync::Notify>;
}

/// A running dashboard.
#[derive(Debug)]
pub(crate) struct Web {
    /// The bound address.
    pub(crate) addr: SocketAddr,
}

/// Bind `[web] listen`, make the first password when there is none, and serve until
/// `shutdown` on a thread and runtime of its own (`metaguard-web`: one worker, and the
/// blocking threads that read SQLite): the pages' HTTP, rendering and the live feed's
/// writes never take the DNS workers' time (issue 18: DNS under 20 page views a second,
/// scripts/dashboard-load.sh).
pub(crate) async fn start(
    cfg: &WebConfig,
    state_dir: &Path,
    db: PathBuf,
    view: Arc<dyn ServerView>,
    feed: LiveFeed,
    shutdown: CancellationToken,
) -> Result<Web, WebError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| WebError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    let path = password_path(state_dir);
    let hash = match auth::load_or_create(&path)? {
        (hash, Some(first)) => {
            tracing::warn!(
                "dashboard: first start, the admin password is {first} (shown once; stored \
                 hashed in {}; `metaguard web password` sets another)",
                path.display()
            );
            hash
        }
        (hash, None) => hash,
    };
    let app = Arc::new(http::App::new(cfg, hash, path, db, view, feed));
    let listener = listener.into_std().map_err(WebError::Thread)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("metaguard-web")
        .on_thread_start(yield_to_dns)
        .enable_all()
        .build()
        .map_err(WebError::Thread)?;
    std::thread::Builder::new()
        .name("metaguard-web".into())
        .spawn(move || {
            yield_to_dns();
            rt.block_on(async move {
                // Registered with this runtime's reactor, not the DNS runtime's.
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => http::serve(l, app, shutdown).await,
                    Err(e) => tracing::error!("dashboard: {e}; the dashboard is off"),
                }
            });
            // A page still reading SQLite gets a moment, not a hang at exit.
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(WebError::Thread)?;
    tracing::info!("dashboard on http://{addr}/");
    Ok(Web { addr })
}

/// The dashboard's threads run under `SCHED_IDLE`: they get the CPU that DNS leaves, and
/// a waking DNS worker takes it from them at once. On a 2-core router a page (10–25 ms
/// of CPU) otherwise shares a core with DNS: at nice 10 the p99 of DNS under 20 page
/// views a second was still +15 %, under `SCHED_IDLE` −2 % (docs/performance.md, issue
/// 18). It is not a hard floor: an idle-class thread keeps a small weight, so a page
/// still renders, slowly, on a CPU that something else keeps busy. Linux sets the policy
/// per thread; threads these start inherit it.
fn yield_to_dns() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and sched_setscheduler on the calling thread only, with a valid
    // `sched_param` on the stack.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
        let p = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(tid, libc::SCHED_IDLE, &p) != 0 {
            tracing::debug!(
                "dashboard: SCHED_IDLE refused: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Bench support, not API (only with the `test-fixtures` feature): the household and
/// device pages rendered straight from a database, as `serve` renders them.
#[cfg(feature = "test-fixtures")]
#[doc(hidden)]
pub mod bench {
    use std::path::Path;

    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    use super::{auth, data, pages};

    fn session() -> auth::Session {
        auth::Auth::new(std::time::Duration::from_secs(60))
            .create()
            .1
    }

    /// The household page of `week` (`YYYY-Www`).
    pub fn household(
        db: &Path,
        week: &str,
        tz: &TimeZone,
        now: Timestamp,
    ) -> Result<String, String> {
        let conn = crate::store::read::open(db).map_err(|e| e.to_string())?;
        let w = data::Week::pick(Some(week), tz, now).map_err(|e| e.to_string())?;
        let p = data::household(&conn, w).map_err(|e| e.to_string())?;
        Ok(pages::household_page(&p, &session()))
    }

    /// Device `id`'s page of `week`.
    pub fn device(
        db: &Path,
        id: i64,
        week: &str,
        tz: &TimeZone,
        now: Timestamp,
    ) -> Result<String, String> {
        let conn = crate::store::read::open(db).map_err(|e| e.to_string())?;
        let w = data::Week::pick(Some(week), tz, now).map_err(|e| e.to_string())?;
        let p = data::device(&conn, id, w)
            .map_err(|e| e.to_string())?
            .ok_or("no such device")?;
        Ok(pages::device_page(&p, &session(), tz, None))
    }
}
