//! Waking on a file's changes without polling it: inotify on its directory (and on its
//! link target's, for a file that is a symlink into /run) wakes `serve` only when an
//! entry there is written, renamed or removed, so an idle server does not stat the file
//! every 2 s; where inotify is unavailable (no such directory yet, out of watches) it
//! polls. `serve` follows resolv.conf, the household controls and the test clock so.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How often a file is looked at (a stat) when it cannot be watched.
const POLL: Duration = Duration::from_secs(2);

/// When to look at a file again: after an inotify event that concerns it, or every
/// [`POLL`] where it cannot be watched; never without one.
pub(super) struct FileEvents {
    path: Option<PathBuf>,
    watch: Option<Watch>,
}

impl FileEvents {
    pub(super) fn new(path: Option<PathBuf>) -> FileEvents {
        let watch = path.as_deref().and_then(Watch::new);
        FileEvents { path, watch }
    }

    /// Follow another file (the running config's resolv.conf after a reload).
    pub(super) fn follow(&mut self, path: Option<PathBuf>) {
        if path != self.path {
            *self = FileEvents::new(path);
        }
    }

    /// Whether inotify watches the file (else it is polled).
    #[cfg(test)]
    pub(super) fn watching(&self) -> bool {
        self.watch.is_some()
    }

    /// Returns when the file may have changed: true after an event that touched
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
                tokio::time::sleep(POLL).await;
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

/// An inotify instance on the directories of the file and of its link target.
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
