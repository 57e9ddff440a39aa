//! Following resolv.conf: [`ResolvWatch`] says whether its text changed (the
//! `file_events` watch says when to look).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cli::serve::file_events::FileEvents;

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
    async fn next(events: &mut FileEvents) {
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
        let mut events = FileEvents::new(Some(p.clone()));
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
        let mut events = FileEvents::new(Some(p.clone()));
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
