//! One control change, from the dashboard or the command line, made whole or not at
//! all: under a lock on the state directory the controls are read, changed, laid over
//! the config and checked like a config file (a change that cannot work is refused with
//! the reason), the audit row is written in a transaction, the file is replaced by
//! rename, and only then is the transaction committed.

use std::fs::File;
use std::net::IpAddr;
use std::path::Path;

use super::{ControlError, Controls, DeviceControl, Schedule, action_word, audit, overlay};
use crate::clients::{DeviceMatch, Mac};
use crate::config::{Config, ListedName};
use crate::policy::Action;

/// Whose actions a change sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The household's default.
    Household,
    /// A group's.
    Group(String),
    /// One device's (id, name, MAC or address).
    Device(String),
}

/// A list a name can be put on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameList {
    Allow,
    Block,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Put a device in a group; `None`: in none.
    Group {
        device: String,
        group: Option<String>,
    },
    /// Set a category's action; `None`: back to what it would be without.
    Action {
        scope: Scope,
        category: String,
        action: Option<Action>,
    },
    /// Allow or block a name; `None`: take it off both lists.
    Name {
        name: String,
        list: Option<NameList>,
    },
    /// Pause blocking for a device (or everyone) until then; `None`: resume.
    Pause {
        device: Option<String>,
        until: Option<i64>,
    },
    /// Add a schedule.
    AddSchedule(Schedule),
    /// Remove schedule number `n` (1-based, as listed).
    RemoveSchedule(usize),
}

/// A change as the audit log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Done {
    pub(crate) what: String,
    pub(crate) old: String,
    pub(crate) new: String,
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.old == self.new {
            write!(f, "{}: already {}", self.what, self.new)
        } else {
            write!(f, "{}: {} → {}", self.what, self.old, self.new)
        }
    }
}

fn refused(why: impl Into<String>) -> ControlError {
    ControlError::Refused(why.into())
}

/// Make `change` to the controls of `config` (the config file's settings, without the
/// controls), as `actor`, judged at `now`.
pub(crate) fn make(
    config: &Config,
    change: &Change,
    actor: &str,
    now: i64,
) -> Result<Done, ControlError> {
    let dir = &config.remote.state_dir;
    let io = |source| ControlError::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let lock = lock_file(&dir.join("controls.lock")).map_err(io)?;
    flock(&lock).map_err(io)?;
    let file = super::path(dir);
    let old = Controls::load(&file)?;
    let mut new = old.clone();
    let done = edit(config, &mut new, change, now)?;
    if new == old {
        return Ok(done);
    }
    check(config, &old, &new, now)?;
    let entry = audit::Entry {
        ts: now,
        actor: actor.to_string(),
        what: done.what.clone(),
        old: done.old.clone(),
        new: done.new.clone(),
    };
    let db = &config.store.db;
    let audit_err = |source| ControlError::Audit {
        db: db.clone(),
        source,
    };
    let mut conn = crate::store::schema::open_rw(db).map_err(audit_err)?;
    crate::store::schema::give_to_dir_owner(db);
    let tx = conn
        .transaction()
        .map_err(crate::store::StoreError::sqlite(db))
        .map_err(audit_err)?;
    audit::record(&tx, &entry)
        .map_err(crate::store::StoreError::sqlite(db))
        .map_err(audit_err)?;
    write_file(&file, &new.to_text()).map_err(|source| ControlError::Io {
        path: file.clone(),
        source,
    })?;
    if let Err(e) = tx.commit() {
        // Not recorded: put the old file back, so nothing half applies.
        let _ = write_file(&file, &old.to_text());
        return Err(audit_err(crate::store::StoreError::sqlite(db)(e)));
    }
    Ok(done)
}

/// Hold an exclusive lock on `f` until it is closed (`File::lock` needs Rust 1.89, the
/// MSRV is 1.88).
fn flock(f: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor `f` keeps open for the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Open (creating) the lock file; read-only when another user made it.
fn lock_file(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .or_else(|_| File::open(path))
}

/// Replace `path` with `text` whole, owned like its directory (a root shell must not
/// leave a file the service's own user cannot replace).
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    crate::files::write_atomic(path, text.as_bytes(), 0o640)?;
    crate::store::schema::give_to_dir_owner(path);
    Ok(())
}

/// Refuse `new` when laid over `config` it leaves something out that `old` did not, or
/// gives a config that would not load.
fn check(config: &Config, old: &Controls, new: &Controls, now: i64) -> Result<(), ControlError> {
    let mut before = config.clone();
    let skipped_before = overlay::apply(&mut before, old, now).skipped;
    let mut after = config.clone();
    let applied = overlay::apply(&mut after, new, now);
    let fresh: Vec<_> = applied
        .skipped
        .iter()
        .filter(|s| !skipped_before.contains(s))
        .cloned()
        .collect();
    if !fresh.is_empty() {
        return Err(refused(fresh.join("; ")));
    }
    after.validate().map_err(|e| refused(e.to_string()))?;
    crate::clients::Clients::new(&after.devices, &after.clients)
        .map_err(|e| refused(e.to_string()))?;
    Ok(())
}

fn edit(
    config: &Config,
    c: &mut Controls,
    change: &Change,
    now: i64,
) -> Result<Done, ControlError> {
    let known = crate::lists::known_categories(config);
    let category_ok = |cat: &str| {
        if known.contains(cat) {
            Ok(())
        } else {
            Err(refused(format!(
                "unknown category {cat:?}; the lists have: {}",
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    Ok(match change {
        Change::Group { device, group } => {
            if let Some(g) = group
                && !config.groups.contains_key(g)
                && !c.groups.contains_key(g)
                && !c.schedules.iter().any(|s| &s.group == g)
            {
                let mut all: Vec<&str> = config.groups.keys().map(String::as_str).collect();
                all.extend(c.groups.keys().map(String::as_str));
                all.sort();
                all.dedup();
                let all = if all.is_empty() {
                    "none yet".into()
                } else {
                    all.join(", ")
                };
                return Err(refused(format!(
                    "there is no group {g:?} (groups: {all}); a group exists once it has an \
                     action: `metaguard controls action --group {g} CATEGORY ACTION`"
                )));
            }
            let (i, label) = device_entry(config, c, device)?;
            let before = effective_group(config, c, i);
            c.devices[i].group = Some(group.clone().unwrap_or_default());
            let after = effective_group(config, c, i);
            tidy(c);
            Done {
                what: format!("group of {label}"),
                old: before,
                new: after,
            }
        }
        Change::Action {
            scope,
            category,
            action,
        } => {
            category_ok(category)?;
            let (table, what) = match scope {
                Scope::Household => (
                    &mut c.categories,
                    format!("household action for {category}"),
                ),
                Scope::Group(g) => (
                    c.groups.entry(g.clone()).or_default(),
                    format!("action for {category} in group {g}"),
                ),
                Scope::Device(d) => {
                    let (i, label) = device_entry(config, c, d)?;
                    (
                        &mut c.devices[i].categories,
                        format!("action for {category} on {label}"),
                    )
                }
            };
            let before = action_word(table.get(category).copied());
            match action {
                Some(a) => table.insert(category.clone(), *a),
                None => table.remove(category),
            };
            tidy(c);
            Done {
                what,
                old: before.into(),
                new: action_word(*action).into(),
            }
        }
        Change::Name { name, list } => {
            let listed: ListedName = name
                .parse()
                .map_err(|e: crate::config::NotADomain| refused(e.to_string()))?;
            let on = |c: &Controls| {
                if c.allow.contains(&listed) {
                    "allowed"
                } else if c.block.contains(&listed) {
                    "blocked"
                } else {
                    "not listed"
                }
            };
            let before = on(c);
            c.allow.retain(|n| n != &listed);
            c.block.retain(|n| n != &listed);
            match list {
                Some(NameList::Allow) => c.allow.push(listed.clone()),
                Some(NameList::Block) => c.block.push(listed.clone()),
                None => {
                    let in_file = config.filter.allow.contains(&listed)
                        || config.filter.block.contains(&listed);
                    if in_file && before == "not listed" {
                        return Err(refused(format!(
                            "{listed} is in the config file's [filter] allow or block, not in \
                             the controls: remove it there"
                        )));
                    }
                }
            }
            Done {
                what: format!("name {listed}"),
                old: before.into(),
                new: on(c).into(),
            }
        }
        Change::Pause { device, until } => {
            let until = until.filter(|t| *t > now);
            let word = |t: Option<i64>| match t {
                Some(t) if t > now => format!("paused until {}", stamp(t)),
                _ => "blocking".to_string(),
            };
            match device {
                None => {
                    let before = word(c.paused_until);
                    c.paused_until = until;
                    Done {
                        what: "pause for everyone".into(),
                        old: before,
                        new: word(until),
                    }
                }
                Some(d) => {
                    let (i, label) = device_entry(config, c, d)?;
                    let before = word(c.devices[i].paused_until);
                    c.devices[i].paused_until = until;
                    tidy(c);
                    Done {
                        what: format!("pause for {label}"),
                        old: before,
                        new: word(until),
                    }
                }
            }
        }
        Change::AddSchedule(s) => {
            for cat in s.categories.keys() {
                category_ok(cat)?;
            }
            if s.categories.is_empty() {
                return Err(refused("a schedule needs at least one category action"));
            }
            if s.from == s.to {
                return Err(refused(
                    "a schedule's window needs different from and to times",
                ));
            }
            c.schedules.push(s.clone());
            Done {
                what: format!("schedule {} for group {}", c.schedules.len(), s.group),
                old: "none".into(),
                new: schedule_text(s),
            }
        }
        Change::RemoveSchedule(n) => {
            if *n == 0 || *n > c.schedules.len() {
                return Err(refused(format!(
                    "there is no schedule {n} (there are {})",
                    c.schedules.len()
                )));
            }
            let s = c.schedules.remove(n - 1);
            Done {
                what: format!("schedule {n} for group {}", s.group),
                old: schedule_text(&s),
                new: "none".into(),
            }
        }
    })
}

/// `meta-ai block, sun,mon 20:00–07:00`.
pub(crate) fn schedule_text(s: &Schedule) -> String {
    let acts: Vec<String> = s
        .categories
        .iter()
        .map(|(c, a)| format!("{c} {a}"))
        .collect();
    format!("{}, {}", acts.join(", "), s.when())
}

fn stamp(t: i64) -> String {
    crate::report::period::rfc3339(t, &jiff::tz::TimeZone::system())
}

/// Drop device entries with nothing left to say.
fn tidy(c: &mut Controls) {
    c.devices.retain(|d| !d.is_empty());
}

/// The group device control `i` ends up in, in words.
fn effective_group(config: &Config, c: &Controls, i: usize) -> String {
    let mut eff = config.clone();
    let one = Controls {
        devices: vec![c.devices[i].clone()],
        groups: c.groups.clone(),
        schedules: c.schedules.clone(),
        ..Default::default()
    };
    overlay::apply(&mut eff, &one, 0);
    let d = &c.devices[i];
    eff.devices
        .iter()
        .find(|e| {
            e.matches.iter().any(|m| d.matches.contains(m))
                || e.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&d.name))
        })
        .and_then(|e| e.group.clone())
        .unwrap_or_else(|| "none".into())
}

/// The controls entry of the device `spec` names (made when it has none), and its label.
fn device_entry(
    config: &Config,
    c: &mut Controls,
    spec: &str,
) -> Result<(usize, String), ControlError> {
    let (name, matches) = resolve(config, spec)?;
    let i = match c.device(&matches, &name) {
        Some(i) => {
            let d = &mut c.devices[i];
            for m in matches {
                if !d.matches.contains(&m) {
                    d.matches.push(m);
                }
            }
            i
        }
        None => {
            c.devices.push(DeviceControl {
                name: name.clone(),
                matches,
                group: None,
                categories: Default::default(),
                paused_until: None,
            });
            c.devices.len() - 1
        }
    };
    Ok((i, name))
}

/// The name and the MAC or addresses of the device `spec` names: from the hit log (id,
/// name, MAC, key), else `[[devices]]` by name, else a MAC or address as given.
pub(crate) fn resolve(
    config: &Config,
    spec: &str,
) -> Result<(String, Vec<DeviceMatch>), ControlError> {
    let spec = spec.trim();
    if let Some(d) = config.devices.iter().find(|d| {
        d.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(spec))
    }) {
        return Ok((spec.to_string(), d.matches.clone()));
    }
    let db = &config.store.db;
    if db.exists() {
        match crate::store::read::open(db)
            .and_then(|conn| crate::store::edit::identity(&conn, spec))
        {
            Ok((label, mac, addrs)) => {
                let matches = match mac {
                    Some(m) => vec![DeviceMatch::Mac(m)],
                    None => addrs.into_iter().map(DeviceMatch::Ip).collect(),
                };
                if !matches.is_empty() {
                    return Ok((label, matches));
                }
            }
            Err(e @ crate::store::StoreError::AmbiguousDevice { .. }) => {
                return Err(refused(e.to_string()));
            }
            // Not there, or a log not readable yet (being made): by MAC or address.
            Err(_) => {}
        }
    }
    if let Ok(m) = spec.parse::<Mac>() {
        return Ok((m.to_string(), vec![DeviceMatch::Mac(m)]));
    }
    if let Ok(ip) = spec.parse::<IpAddr>() {
        return Ok((ip.to_string(), vec![DeviceMatch::Ip(ip.to_canonical())]));
    }
    Err(refused(format!(
        "no device {spec:?}: give an id, name or MAC as `metaguard devices` lists them, or a \
         MAC or IP address"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config::parse(
            &format!(
                "[filter]\nlists_dir = \"/nonexistent\"\n[remote]\nstate_dir = {:?}\n\
                 [store]\ndb = {:?}\n[groups.kids]\nmeta-ai = \"block\"\n",
                dir.join("state"),
                dir.join("m.db")
            ),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn a_change_is_checked_recorded_and_kept_or_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let tablet = "02:00:00:00:00:42";
        let done = make(
            &c,
            &Change::Group {
                device: tablet.into(),
                group: Some("kids".into()),
            },
            "test",
            1000,
        )
        .unwrap();
        assert_eq!((done.old.as_str(), done.new.as_str()), ("none", "kids"));
        let file = super::super::path(&c.remote.state_dir);
        let saved = Controls::load(&file).unwrap();
        assert_eq!(saved.devices[0].group.as_deref(), Some("kids"));
        // Refused: an unknown group, an unknown category, a name that is none.
        for bad in [
            Change::Group {
                device: tablet.into(),
                group: Some("teens".into()),
            },
            Change::Action {
                scope: Scope::Household,
                category: "nosuch".into(),
                action: Some(Action::Block),
            },
            Change::Name {
                name: "not a name".into(),
                list: Some(NameList::Allow),
            },
        ] {
            let e = make(&c, &bad, "test", 1001).unwrap_err();
            assert!(matches!(e, ControlError::Refused(_)), "{e}");
        }
        assert_eq!(
            Controls::load(&file).unwrap(),
            saved,
            "nothing half applied"
        );
        make(
            &c,
            &Change::Pause {
                device: None,
                until: Some(1300),
            },
            "test",
            1002,
        )
        .unwrap();
        let conn = crate::store::read::open(&c.store.db).unwrap();
        let rows = audit::read(&conn, 0, i64::MAX, 10).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].what, "pause for everyone");
        assert_eq!(rows[1].actor, "test");
        assert!(Controls::load(&file).unwrap().paused_at(1299));
    }
}
