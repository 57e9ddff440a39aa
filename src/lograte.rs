//! At most one log line per period for a recurring event (an upstream failing, queries
//! refused): the first occurrence is logged at once, later ones are counted and folded
//! into the next line. The caller passes the time, so tests drive it without sleeping,
//! and nothing runs while the event does not recur (no timer).

use std::time::{Duration, Instant};

/// How often a recurring event may be logged: once a minute.
pub(crate) const PERIOD: Duration = Duration::from_secs(60);

/// The state of one rate-limited log line.
#[derive(Debug, Default)]
pub(crate) struct LogEvery {
    /// When the last line was logged.
    last: Option<Instant>,
    /// Occurrences since that line that were not logged.
    suppressed: u64,
}

/// What [`LogEvery::occurred`] decided for one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogChoice {
    /// Counted; no line now.
    Quiet,
    /// Log a line now. `more` occurrences were counted in the `since` before this one
    /// (0 and `None` for the first line ever).
    Log { more: u64, since: Option<Duration> },
}

impl LogEvery {
    pub(crate) const fn new() -> LogEvery {
        LogEvery {
            last: None,
            suppressed: 0,
        }
    }

    /// One occurrence at `now`.
    pub(crate) fn occurred(&mut self, now: Instant) -> LogChoice {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < PERIOD => {
                self.suppressed += 1;
                LogChoice::Quiet
            }
            last => {
                let more = std::mem::take(&mut self.suppressed);
                self.last = Some(now);
                LogChoice::Log {
                    more,
                    since: last.map(|l| now.saturating_duration_since(l)),
                }
            }
        }
    }
}

/// A duration for a log line, rounded to whole seconds ("1m 5s").
pub(crate) fn round(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_logged_then_one_line_a_minute_with_the_count() {
        let t0 = Instant::now();
        let mut l = LogEvery::new();
        assert_eq!(
            l.occurred(t0),
            LogChoice::Log {
                more: 0,
                since: None
            }
        );
        for s in 1..60 {
            assert_eq!(
                l.occurred(t0 + Duration::from_secs(s)),
                LogChoice::Quiet,
                "{s}"
            );
        }
        assert_eq!(
            l.occurred(t0 + Duration::from_secs(61)),
            LogChoice::Log {
                more: 59,
                since: Some(Duration::from_secs(61))
            }
        );
        assert_eq!(l.occurred(t0 + Duration::from_secs(62)), LogChoice::Quiet);
        // A quiet hour, then one more: logged at once, counting the one in between.
        assert_eq!(
            l.occurred(t0 + Duration::from_secs(3661)),
            LogChoice::Log {
                more: 1,
                since: Some(Duration::from_secs(3600))
            }
        );
    }

    #[test]
    fn a_clock_going_backwards_never_logs_twice() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut l = LogEvery::new();
        assert!(matches!(l.occurred(t0), LogChoice::Log { .. }));
        assert_eq!(l.occurred(t0 - Duration::from_secs(50)), LogChoice::Quiet);
    }

    #[test]
    fn durations_are_rounded_to_seconds() {
        assert_eq!(round(Duration::from_millis(65_400)).to_string(), "1m 5s");
    }
}
