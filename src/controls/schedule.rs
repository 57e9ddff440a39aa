//! Schedules: a group's actions at set times of the week ("Meta AI blocked for kids on
//! school nights, 20:00 to 07:00"), in the local time zone. A window whose end is before
//! its start runs past midnight into the next day.

use std::fmt;
use std::str::FromStr;

use jiff::ZonedDateTime as Zoned;
use jiff::civil::Time;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::CategoryActions;

/// One schedule: during its windows, `categories` apply to `group`'s devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Schedule {
    pub(crate) group: String,
    /// The days a window starts on.
    pub(crate) days: Vec<Weekday>,
    pub(crate) from: Clock,
    pub(crate) to: Clock,
    pub(crate) categories: CategoryActions,
}

/// A day of the week, written `mon` … `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Weekday(jiff::civil::Weekday);

impl PartialOrd for Weekday {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Weekday {
    /// Monday first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .to_monday_zero_offset()
            .cmp(&other.0.to_monday_zero_offset())
    }
}

/// Each day's full name, written with its first three letters.
const DAYS: [(&str, jiff::civil::Weekday); 7] = {
    use jiff::civil::Weekday::*;
    [
        ("monday", Monday),
        ("tuesday", Tuesday),
        ("wednesday", Wednesday),
        ("thursday", Thursday),
        ("friday", Friday),
        ("saturday", Saturday),
        ("sunday", Sunday),
    ]
};

impl FromStr for Weekday {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        DAYS.iter()
            .find(|(n, _)| s.len() >= 3 && n.starts_with(&s))
            .map(|(_, d)| Weekday(*d))
            .ok_or_else(|| format!("{s:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"))
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = DAYS
            .iter()
            .find(|(_, d)| *d == self.0)
            .map_or("?", |(n, _)| &n[..3]);
        f.write_str(name)
    }
}

/// Days as the CLI takes them: `sun-thu`, `mon,wed,fri`, `all`, `weekdays`, `weekend`.
pub(crate) fn parse_days(s: &str) -> Result<Vec<Weekday>, String> {
    let all: Vec<Weekday> = DAYS.iter().map(|(_, d)| Weekday(*d)).collect();
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.trim() {
            "all" | "daily" => out.extend(all.iter().copied()),
            "weekdays" => out.extend(all[..5].iter().copied()),
            "weekend" => out.extend(all[5..].iter().copied()),
            p => match p.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.parse::<Weekday>()?, b.parse::<Weekday>()?);
                    let mut d = a.0;
                    out.push(Weekday(d));
                    while d != b.0 {
                        d = d.next();
                        out.push(Weekday(d));
                    }
                }
                None => out.push(p.parse()?),
            },
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err("no days given".into());
    }
    Ok(out)
}

/// A time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Clock(Time);

impl FromStr for Clock {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a time of day (HH:MM, 00:00 to 23:59)");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (h, m) = (
            h.parse::<i8>().map_err(|_| bad())?,
            m.parse::<i8>().map_err(|_| bad())?,
        );
        Time::new(h, m, 0, 0).map(Clock).map_err(|_| bad())
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

macro_rules! text_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
text_serde!(Weekday);
text_serde!(Clock);

impl Schedule {
    /// Whether a window is open at `now`.
    pub(crate) fn active(&self, now: &Zoned) -> bool {
        let (day, t) = (now.weekday(), now.time());
        let on = |d: jiff::civil::Weekday| self.days.contains(&Weekday(d));
        if self.from.0 <= self.to.0 {
            on(day) && self.from.0 <= t && t < self.to.0
        } else {
            // Past midnight: from `from` on a listed day to `to` on the next one.
            (on(day) && t >= self.from.0) || (on(day.previous()) && t < self.to.0)
        }
    }

    /// The next time after `now` a window may open or close (whichever day).
    pub(crate) fn next_edge(&self, now: &Zoned) -> Option<jiff::Timestamp> {
        let today = now.date();
        [Some(today), today.tomorrow().ok()]
            .into_iter()
            .flatten()
            .flat_map(|d| [(d, self.from.0), (d, self.to.0)])
            .filter_map(|(d, t)| {
                d.to_datetime(t)
                    .to_zoned_datetime(now.time_zone().clone())
                    .ok()
            })
            .map(|z| z.timestamp())
            .filter(|t| *t > now.timestamp())
            .min()
    }

    /// `sun-thu 20:00-07:00` for the CLI and the dashboard.
    pub(crate) fn when(&self) -> String {
        let days: Vec<String> = self.days.iter().map(ToString::to_string).collect();
        format!("{} {}–{}", days.join(","), self.from, self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        format!("{s}[UTC]").parse().unwrap()
    }

    fn school_nights() -> Schedule {
        Schedule {
            group: "kids".into(),
            days: parse_days("sun-thu").unwrap(),
            from: "20:00".parse().unwrap(),
            to: "07:00".parse().unwrap(),
            categories: CategoryActions::new(),
        }
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts() {
        let s = school_nights();
        // 2026-12-06 is a Sunday.
        assert!(!s.active(&at("2026-12-06T19:59:00")));
        assert!(s.active(&at("2026-12-06T20:00:00")));
        assert!(
            s.active(&at("2026-12-07T06:59:00")),
            "Monday morning, from Sunday"
        );
        assert!(!s.active(&at("2026-12-07T07:00:00")));
        // Friday night is not a school night; Saturday morning is not either.
        assert!(!s.active(&at("2026-12-11T21:00:00")));
        assert!(!s.active(&at("2026-12-12T06:00:00")));
        // Friday early morning: from Thursday night.
        assert!(s.active(&at("2026-12-11T06:00:00")));
        assert_eq!(
            s.next_edge(&at("2026-12-06T12:00:00")).unwrap(),
            at("2026-12-06T20:00:00").timestamp()
        );
        assert_eq!(
            s.next_edge(&at("2026-12-06T21:00:00")).unwrap(),
            at("2026-12-07T07:00:00").timestamp()
        );
    }

    #[test]
    fn days_and_times_parse_or_say_why() {
        assert_eq!(parse_days("sun-thu").unwrap().len(), 5);
        assert_eq!(parse_days("fri-mon").unwrap().len(), 4);
        assert_eq!(parse_days("weekend,mon").unwrap().len(), 3);
        assert_eq!(parse_days("Monday").unwrap().len(), 1);
        assert!(parse_days("moon").unwrap_err().contains("not a day"));
        assert!("24:00".parse::<Clock>().unwrap_err().contains("HH:MM"));
        assert_eq!("7:05".parse::<Clock>().unwrap().to_string(), "07:05");
    }
}
