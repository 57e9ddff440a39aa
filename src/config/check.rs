//! Settings that parse but cannot work: zero timeouts, a burst below its rate, unknown
//! categories and groups, an upstream that is metaguard itself, listen addresses that
//! collide. (Zero counts never parse: their fields are `NonZero*`, see `limit.rs`.)
//! Each problem names the setting by its path in the file, so `Config::parse` can
//! point at the offending value's line and column.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::Config;

/// One step of a setting's path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A setting that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where it is: `["upstream", "servers", 0]`.
    pub(crate) path: Vec<Seg>,
    pub(crate) message: String,
    /// The key itself is wrong (an unknown category), not its value.
    pub(crate) at_key: bool,
}

impl fmt::Display for Problem {
    /// `[upstream] servers[0]: message`, for settings that came from no file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys = self.path.iter().peekable();
        // The section as it is written in a file: `[server.rate_limit]`, `[[devices]]`.
        let mut section = String::new();
        let mut rest = String::new();
        while let Some(seg) = keys.next() {
            match seg {
                Seg::Key(k) if rest.is_empty() && keys.peek().is_some() => {
                    if !section.is_empty() {
                        section.push('.');
                    }
                    section.push_str(k);
                }
                Seg::Key(k) => {
                    if !rest.is_empty() {
                        rest.push('.');
                    }
                    rest.push_str(k);
                }
                Seg::Index(i) => rest.push_str(&format!("[{i}]")),
            }
        }
        write!(f, "[{section}] {rest}: {}", self.message)
    }
}

fn key(path: &[&str]) -> Vec<Seg> {
    path.iter().map(|k| Seg::Key(k.to_string())).collect()
}

fn at(path: &[&str], i: usize) -> Vec<Seg> {
    let mut p = key(path);
    p.push(Seg::Index(i));
    p
}

/// Collects the problems of one config.
#[derive(Default)]
struct Checks(Vec<Problem>);

impl Checks {
    fn fail(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        self.0.push(Problem {
            path,
            message: message.into(),
            at_key: false,
        });
    }

    fn bad_key(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        self.fail(path, message);
        if let Some(p) = self.0.last_mut() {
            p.at_key = true;
        }
    }

    /// A count that must be at least 1.
    fn positive(&mut self, path: &[&str], n: u64) {
        if n == 0 {
            let name = path.last().copied().unwrap_or_default();
            self.fail(
                key(path),
                format!("{name} = 0 cannot work: it must be at least 1"),
            );
        }
    }

    /// A duration that must be longer than zero.
    fn nonzero(&mut self, path: &[&str], d: Duration) {
        if d.is_zero() {
            let name = path.last().copied().unwrap_or_default();
            self.fail(
                key(path),
                format!("{name} = \"0s\" cannot work: it must be longer than 0s"),
            );
        }
    }
}

/// Every problem of `c`, in no particular order.
pub(crate) fn problems(c: &Config) -> Vec<Problem> {
    let mut ch = Checks::default();
    server(c, &mut ch);
    limits(c, &mut ch);
    categories(c, &mut ch);
    devices(c, &mut ch);
    email(c, &mut ch);
    ch.0
}

/// Whether sockets bound on `a` and `b` would take the same port on some address.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn server(c: &Config, ch: &mut Checks) {
    let listen = &c.server.listen;
    if listen.is_empty() {
        ch.fail(
            key(&["server", "listen"]),
            "listen is empty: name at least one address to answer on",
        );
    }
    for (i, addr) in listen.iter().enumerate() {
        if let Some(prev) = listen[..i].iter().find(|p| overlap(**p, *addr)) {
            let why = if prev == addr {
                format!("{addr} is listed twice")
            } else {
                format!(
                    "{addr} and {prev} would both take port {} on the same address",
                    addr.port()
                )
            };
            ch.fail(at(&["server", "listen"], i), why);
        }
    }
    if c.server
        .allow_clients
        .as_ref()
        .is_some_and(|a| a.is_empty())
    {
        ch.fail(
            key(&["server", "allow_clients"]),
            "allow_clients is empty: every client would be REFUSED",
        );
    }
    // Forwarding to ourselves loops every query until the deadline.
    let own: Vec<SocketAddr> = listen.iter().copied().filter(|a| a.port() != 0).collect();
    for (i, s) in c.upstream.servers.iter().enumerate() {
        if crate::upstream::is_own(&s.addr(), &own) {
            ch.fail(
                at(&["upstream", "servers"], i),
                format!(
                    "{} is metaguard's own listen address (a loop): name the resolver \
                     metaguard forwards to",
                    s.addr()
                ),
            );
        }
    }
    if let Some(m) = c.metrics.listen
        && let Some(l) = listen.iter().find(|l| overlap(**l, m))
    {
        ch.fail(
            key(&["metrics", "listen"]),
            format!("{m} is also the DNS listen address {l}: give metrics its own port"),
        );
    }
}

/// Durations that must be above zero, a burst that holds its rate, and TTL bounds in
/// order.
fn limits(c: &Config, ch: &mut Checks) {
    let s = &c.server;
    ch.nonzero(&["server", "tcp_idle_timeout"], s.tcp_idle_timeout);
    // The bucket holds at least one second of the rate (it was raised to that silently).
    let rate = &s.rate_limit;
    if rate.qps > 0 && rate.burst.get() < rate.qps {
        ch.fail(
            key(&["server", "rate_limit", "burst"]),
            format!(
                "burst = {} is below qps = {}: the bucket must hold at least one second \
                 of the rate; set burst to at least {}",
                rate.burst, rate.qps, rate.qps
            ),
        );
    }
    ch.nonzero(&["upstream", "deadline"], c.upstream.deadline);
    ch.nonzero(&["upstream", "attempt_timeout"], c.upstream.attempt_timeout);
    if c.cache.min_ttl > c.cache.max_ttl {
        ch.fail(
            key(&["cache", "min_ttl"]),
            format!(
                "min_ttl ({}) is above max_ttl ({})",
                humantime::format_duration(c.cache.min_ttl),
                humantime::format_duration(c.cache.max_ttl)
            ),
        );
    }
    let st = &c.store;
    ch.nonzero(&["store", "batch_interval"], st.batch_interval);
    ch.nonzero(&["clients", "refresh"], c.clients.refresh);
    ch.nonzero(&["remote", "timeout"], c.remote.timeout);
    for (i, l) in c.lists.iter().enumerate() {
        let mut path = at(&["lists"], i);
        if l.refresh.is_zero() {
            path.push(Seg::Key("refresh".into()));
            ch.fail(
                path,
                "refresh = \"0s\" cannot work: it must be longer than 0s",
            );
        } else if l.category.trim().is_empty() {
            path.push(Seg::Key("category".into()));
            ch.fail(
                path,
                "category is empty: name the category its rules belong to",
            );
        }
    }
}

/// `[categories]` and `[groups.NAME]` may name only categories the lists have: a
/// misspelt one would be accepted and its action would never happen.
fn categories(c: &Config, ch: &mut Checks) {
    let known = crate::lists::known_categories(c);
    let list = || known.iter().cloned().collect::<Vec<_>>().join(", ");
    for name in c.categories.keys() {
        if !known.contains(name) {
            ch.bad_key(
                key(&["categories", name]),
                format!("unknown category {name:?}; the lists have: {}", list()),
            );
        }
    }
    for (group, actions) in &c.groups {
        for name in actions.keys() {
            if !known.contains(name) {
                ch.bad_key(
                    key(&["groups", group, name]),
                    format!("unknown category {name:?}; the lists have: {}", list()),
                );
            }
        }
    }
}

fn devices(c: &Config, ch: &mut Checks) {
    let mut seen: HashMap<_, usize> = HashMap::new();
    for (i, d) in c.devices.iter().enumerate() {
        if let Some(g) = &d.group
            && !c.groups.contains_key(g)
        {
            let mut path = at(&["devices"], i);
            path.push(Seg::Key("group".into()));
            let defined: Vec<&str> = c.groups.keys().map(String::as_str).collect();
            let defined = if defined.is_empty() {
                "none is defined".to_string()
            } else {
                format!("defined: {}", defined.join(", "))
            };
            ch.fail(
                path,
                format!("group {g:?} has no [groups.{g}] table ({defined})"),
            );
        }
        for (j, m) in d.matches.iter().enumerate() {
            if let Some(first) = seen.insert(*m, i)
                && first != i
            {
                let first = c.devices[first].label();
                let mut path = at(&["devices"], i);
                path.push(Seg::Key("match".into()));
                path.push(Seg::Index(j));
                ch.fail(
                    path,
                    format!("{m} already names device {first:?} (a device is one entry)"),
                );
            }
        }
    }
}

/// With `[report.email] server` set, the mail needs a sender and recipients.
fn email(c: &Config, ch: &mut Checks) {
    let e = &c.report.email;
    if e.server.trim().is_empty() {
        return;
    }
    if e.from.trim().is_empty() {
        ch.fail(
            key(&["report", "email", "server"]),
            "server is set but `from` is empty: the report could not be sent",
        );
    }
    if e.to.is_empty() {
        ch.fail(
            key(&["report", "email", "server"]),
            "server is set but `to` is empty: the report would go to no one",
        );
    }
    ch.positive(&["report", "email", "port"], u64::from(e.port));
}
