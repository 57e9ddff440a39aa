//! Following resolv.conf: [`ResolvWatch`] says whether its text changed, [`ResolvEvents`]
//! says when to look. inotify on its directory (and on its link target's, for a
//! resolv.conf that is a symlink into /run) wakes `serve` only when an entry there is
//! written, renamed or removed, so an idle server does not stat the file every 2 s;
//! where inotify is unavailable (no such directory yet, out of watches) it polls as before.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How often resolv.conf is looked at (a stat; a read only when it changed) when it
/// cannot be watched.
const RESOLV_CONF_POLL: Duration = Duration::from_secs(2);

/// What resolv.conf looked like when last read: its path, modification time and text.
pub(super) struct ResolvWatch {
    seen: Option<(PathBuf, Option<SystemTime>, Option<String>)>,
}

/// A file's modification time, `None` when it cannot be read.
fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ResolvWatch {
    pub(super) fn new(path: Option<PathBuf>) -> ResolvWatch {
        let seen = path.map(|p| {
            let (m, t) = (mtime(&p), std::fs::read_to_string(&p).ok());
            (p, m, t)
        });
        ResolvWatch { seen }
    }

    /// Take `path`'s text as seen when it is not the file followed so far (a reload
    /// switched to it, and has just read it).
    pub(super) fn follow(&mut self, path: Option<PathBuf>) {
        if self.seen.as_ref().map(|(p, ..)| p) != path.as_ref() {
            *self = ResolvWatch::new(path);
        }
    }

    /// Whether the upstreams must be read again: the file `path` (the running config's,
    /// `None` when `[upstream] servers` is set) has other text than last time. A stat
    /// each time; the file is read only when its modification time moved.
    pub(super) fn changed(&mut self, path: Option<PathBuf>) -> bool {
        self.check(path, false)
    }

    /// [`ResolvWatch::changed`] when an event said the file was touched: read it
    /// whatever its modification time (two writes within a clock tick share one).
    pub(super) fn reread(&mut self, path: Option<PathBuf>) -> bool {
        self.check(path, true)
    }

    fn check(&mut self, path: Option<PathBuf>, touched: bool) -> bool {
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
        if !touched && now.is_some() && now == *seen_mtime {
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

/// When to look at resolv.conf again: after an inotify event that concerns it, or
/// every [`RESOLV_CONF_POLL`] where it cannot be watched; never without one.
pub(super) struct ResolvEvents {
    path: Option<PathBuf>,
    watch: Option<Watch>,
}

impl ResolvEvents {
    pub(super) fn new(path: Option<PathBuf>) -> ResolvEvents {
        let watch = path.as_deref().and_then(Watch::new);
        ResolvEvents { path, watch }
    }

    /// Follow the running config's resolv.conf (after a reload).
    pub(super) fn follow(&mut self, path: Option<PathBuf>) {
        if path != self.path {
            *self = ResolvEvents::new(path);
        }
    }

    /// Whether inotify watches the file (else it is polled).
    #[cfg(test)]
    fn watching(&self) -> bool {
        self.watch.is_some()
    }

    /// Returns when resolv.conf may have changed: true after an event that touched
    /// it (read it again), false after a poll interval or a lost watch (a stat will
    /// do). Cancel-safe: an event read is returned at once.
    pub(super) async fn wait(&mut self) -> bool {
        let Some(path) = &self.path else {
            return std::future::pending().await;
        };
        match &self.watch {
            Some(w) => {
                let still = w.event().await;
                // A link may point elsewhere now, or a directory be gone: watch anew.
                if !still || Watch::targets(path) != w.targets {
                    self.watch = Watch::new(path);
                }
                still
            }
            None => {
                tokio::time::sleep(RESOLV_CONF_POLL).await;
                self.watch = Watch::new(path);
                false
            }
        }
    }
}

/// Writes, renames and removals of the entries in a directory (and a new symlink).
const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_ATTRIB;

/// An inotify instance on the directories of resolv.conf and of its link target.
struct Watch {
    fd: AsyncFd<OwnedFd>,
    /// The (directory, file name) pairs watched.
    targets: Vec<(PathBuf, OsString)>,
}

impl Watch {
    /// The file and, when it is a symlink, the file it points to, as (directory, name).
    fn targets(path: &Path) -> Vec<(PathBuf, OsString)> {
        let split = |p: &Path| -> Option<(PathBuf, OsString)> {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            Some((dir, p.file_name()?.to_os_string()))
        };
        let mut t: Vec<_> = split(path).into_iter().collect();
        if let Ok(real) = std::fs::canonicalize(path)
            && real != path
            && let Some(r) = split(&real)
            && !t.contains(&r)
        {
            t.push(r);
        }
        t
    }

    /// Watch `path`; `None` when inotify cannot (then `serve` polls, silently as it
    /// always did: no inotify, a directory not there yet, out of watches).
    fn new(path: &Path) -> Option<Watch> {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: no pointer arguments; the result is checked before use.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a descriptor we just opened and own alone.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let targets = Watch::targets(path);
        for (dir, _) in &targets {
            let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
            // SAFETY: `fd` is open and `c` a NUL-terminated path that outlives the call.
            if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), MASK) } < 0 {
                return None;
            }
        }
        // SAFETY: the AsyncFd owns `fd`, so it stays open and the same until dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()?;
        Some(Watch { fd, targets })
    }

    /// Wait for an event that concerns one of the watched names; false when the
    /// watch ended (a directory removed, a queue overflow, a read error).
    async fn event(&self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return false;
            };
            let read = ready.try_io(|fd| {
                // SAFETY: `buf` is valid for writes of its length for the whole call.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
            });
            match read {
                Ok(Ok(n)) => match self.concerns(&buf[..n]) {
                    Some(true) => return true,
                    Some(false) => {}
                    None => return false,
                },
                Ok(Err(_)) => return false,
                Err(_would_block) => {}
            }
        }
    }

    /// Whether `events` (raw `inotify_event`s) name a watched file; `None` when one
    /// says the watch is gone.
    fn concerns(&self, mut events: &[u8]) -> Option<bool> {
        use std::os::unix::ffi::OsStrExt;
        const HEADER: usize = 16; // wd, mask, cookie, len: four 32-bit fields
        let mut hit = false;
        while events.len() >= HEADER {
            let field =
                |i: usize| u32::from_ne_bytes(events[i..i + 4].try_into().unwrap_or_default());
            let (mask, len) = (field(4), field(12) as usize);
            let name = events.get(HEADER..HEADER + len).unwrap_or_default();
            events = events.get(HEADER + len..).unwrap_or_default();
            if mask & (libc::IN_IGNORED | libc::IN_Q_OVERFLOW) != 0 {
                return None;
            }
            let name =
                std::ffi::OsStr::from_bytes(name.split(|b| *b == 0).next().unwrap_or_default());
            let Some((dir, _)) = self.targets.iter().find(|(_, n)| n == name) else {
                continue;
            };
            // A regular file is read once written (IN_CLOSE_WRITE), not while still
            // empty; a symlink has no write to wait for.
            if mask & libc::IN_CREATE != 0
                && !std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_symlink())
            {
                continue;
            }
            hit = true;
        }
        Some(hit)
    }
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

    /// Waits for the next event, failing after a while instead of hanging.
    async fn next(events: &mut ResolvEvents) {
        let touched = tokio::time::timeout(Duration::from_secs(10), events.wait())
            .await
            .expect("an inotify event");
        assert!(touched);
    }

    #[tokio::test]
    async fn inotify_wakes_on_a_rename_a_rewrite_and_a_removal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "nameserver 192.0.2.53\n").unwrap();
        let mut events = ResolvEvents::new(Some(p.clone()));
        assert!(events.watching());
        let mut w = ResolvWatch::new(Some(p.clone()));
        // Another file in the directory is not a reason to look.
        std::fs::write(dir.path().join("hosts"), "x").unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(200), events.wait()).await;
        assert!(quiet.is_err(), "woken by another file");
        // Replaced by rename, as resolvconf and NetworkManager do.
        let tmp = dir.path().join("resolv.conf.new");
        std::fs::write(&tmp, "nameserver 192.0.2.54\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        next(&mut events).await;
        assert!(w.reread(Some(p.clone())));
        // Rewritten in place, as udhcpc does.
        std::fs::write(&p, "nameserver 192.0.2.55\n").unwrap();
        next(&mut events).await;
        assert!(w.reread(Some(p.clone())));
        std::fs::remove_file(&p).unwrap();
        next(&mut events).await;
        assert!(w.reread(Some(p.clone())));
    }

    #[tokio::test]
    async fn inotify_follows_a_symlink_into_another_directory() {
        let etc = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let real = run.path().join("stub-resolv.conf");
        std::fs::write(&real, "nameserver 192.0.2.53\n").unwrap();
        let p = etc.path().join("resolv.conf");
        std::os::unix::fs::symlink(&real, &p).unwrap();
        let mut events = ResolvEvents::new(Some(p.clone()));
        assert!(events.watching());
        let mut w = ResolvWatch::new(Some(p.clone()));
        // The target replaced by rename in its own directory (systemd-resolved).
        let tmp = run.path().join(".stub-resolv.conf.tmp");
        std::fs::write(&tmp, "nameserver 192.0.2.54\n").unwrap();
        std::fs::rename(&tmp, &real).unwrap();
        next(&mut events).await;
        assert!(w.reread(Some(p.clone())));
    }
}
