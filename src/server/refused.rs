//! The log of queries refused because their source is not in the allow-list: one line
//! at most once a minute in all, with counts by source. The first refusal is logged at
//! once; later ones are counted and summed up when a refusal comes after the minute
//! (no timer; a flood of refusals costs a short lock and a scan of a fixed table).

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::lograte::{self, LogChoice, LogEvery};

/// Sources counted by address in one line; past that they are counted as "others".
const MAX_SOURCES: usize = 16;
/// Sources named in one line, the busiest first.
const SHOWN: usize = 5;

#[derive(Debug)]
struct Window {
    every: LogEvery,
    /// Refusals since the last line, by source (allocated once, never grown).
    sources: Vec<(IpAddr, u64)>,
    /// Refusals from sources that did not fit in `sources`.
    others: u64,
}

/// Counts refused queries and says when to log them.
#[derive(Debug)]
pub(crate) struct RefusedLog {
    window: Mutex<Window>,
}

impl Default for RefusedLog {
    fn default() -> Self {
        RefusedLog {
            window: Mutex::new(Window {
                every: LogEvery::new(),
                sources: Vec::with_capacity(MAX_SOURCES),
                others: 0,
            }),
        }
    }
}

impl RefusedLog {
    /// Count one query from `ip` refused at `now`; logs at WARN when it is time.
    pub(crate) fn refused(&self, ip: IpAddr, now: Instant) {
        if let Some(line) = self.note(ip, now) {
            tracing::warn!("{line}");
        }
    }

    /// [`RefusedLog::refused`] without the logging: the line to log, if any.
    pub(crate) fn note(&self, ip: IpAddr, now: Instant) -> Option<String> {
        let ip = ip.to_canonical();
        let mut guard = self.window.lock().ok()?;
        let w = &mut *guard;
        if let Some((_, n)) = w.sources.iter_mut().find(|(a, _)| *a == ip) {
            *n += 1;
        } else if w.sources.len() < MAX_SOURCES {
            w.sources.push((ip, 1));
        } else {
            w.others += 1;
        }
        let LogChoice::Log { since, .. } = w.every.occurred(now) else {
            return None;
        };
        let line = summary(&mut w.sources, w.others, since);
        w.sources.clear();
        w.others = 0;
        Some(line)
    }
}

/// "refused 37 queries from 3 sources not in allow_clients in the last 1m 2s:
/// 203.0.113.5 (30), 198.51.100.7 (5), 2001:db8::1 (2)".
fn summary(
    sources: &mut [(IpAddr, u64)],
    others: u64,
    since: Option<std::time::Duration>,
) -> String {
    let total: u64 = sources.iter().map(|(_, n)| n).sum::<u64>() + others;
    // A total order (the key ends in a unique field): an unstable sort gives the same order with less code (the 8 MiB gate).
    sources.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if total == 1 && since.is_none() {
        return format!(
            "refused a query from {}: not in allow_clients (refusals are logged at most once \
             a minute, with counts)",
            sources[0].0
        );
    }
    let mut line = format!(
        "refused {total} quer{} from {}{} source{} not in allow_clients",
        if total == 1 { "y" } else { "ies" },
        if others > 0 { "more than " } else { "" },
        sources.len(),
        if sources.len() == 1 && others == 0 {
            ""
        } else {
            "s"
        },
    );
    if let Some(since) = since {
        let _ = write!(line, " in the last {}", lograte::round(since));
    }
    line.push(':');
    for (i, (ip, n)) in sources.iter().take(SHOWN).enumerate() {
        let _ = write!(line, "{} {ip} ({n})", if i == 0 { "" } else { "," });
    }
    let rest = total - sources.iter().take(SHOWN).map(|(_, n)| n).sum::<u64>();
    if rest > 0 {
        let _ = write!(line, ", others ({rest})");
    }
    line
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_line_a_minute_with_counts_by_source() {
        let log = RefusedLog::default();
        let t0 = Instant::now();
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        let b: IpAddr = "198.51.100.7".parse().unwrap();
        let c: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let first = log.note(a, t0).expect("the first refusal is logged");
        assert!(
            first.starts_with("refused a query from 203.0.113.5"),
            "{first}"
        );
        let mut lines = Vec::new();
        for i in 0..36u64 {
            let ip = match i % 12 {
                0..=8 => a,
                9 | 10 => b,
                _ => c,
            };
            lines.extend(log.note(ip, t0 + Duration::from_secs(1 + i)));
        }
        assert!(lines.is_empty(), "{lines:?}");
        let line = log.note(a, t0 + Duration::from_secs(62)).unwrap();
        assert_eq!(
            line,
            "refused 37 queries from 3 sources not in allow_clients in the last 1m 2s: \
             203.0.113.5 (28), 198.51.100.7 (6), 192.0.2.1 (3)"
        );
        assert_eq!(log.note(b, t0 + Duration::from_secs(63)), None);
    }

    #[test]
    fn a_flood_from_many_sources_stays_one_bounded_line() {
        let log = RefusedLog::default();
        let t0 = Instant::now();
        log.note("192.0.2.1".parse().unwrap(), t0).unwrap();
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(log.note(ip, t0 + Duration::from_millis(1)), None);
        }
        let line = log
            .note("192.0.2.1".parse().unwrap(), t0 + Duration::from_secs(60))
            .unwrap();
        assert!(
            line.starts_with(
                "refused 10001 queries from more than 16 sources not in allow_clients in the \
                 last 1m: "
            ),
            "{line}"
        );
        assert!(line.ends_with(", others (9996)"), "{line}");
        assert!(line.len() < 300, "{line}");
    }
}
