//! The period a report covers: whole local days, from midnight to midnight in the local
//! time zone, so a week across a DST change lasts 167 or 169 hours.

use jiff::civil::{Date, ISOWeekDate, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use super::ReportError;

/// Local days `first ..= first + days - 1` in `tz`.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub(crate) first: Date,
    /// Number of days (7 for a week).
    pub(crate) days: i64,
    pub(crate) tz: TimeZone,
    /// `2026-W10`, or `2026-03-01..2026-03-07`.
    pub label: String,
}

fn add_days(d: Date, n: i64) -> Result<Date, ReportError> {
    Ok(d.checked_add(Span::new().try_days(n)?)?)
}

impl Period {
    /// The ISO week `year`-W`week`.
    pub(crate) fn iso_week(year: i16, week: i8, tz: &TimeZone) -> Result<Period, ReportError> {
        let first = ISOWeekDate::new(year, week, Weekday::Monday)
            .map_err(|_| ReportError::BadWeek(format!("{year}-W{week:02}")))?
            .date();
        Ok(Period {
            first,
            days: 7,
            tz: tz.clone(),
            label: format!("{year}-W{week:02}"),
        })
    }

    /// `YYYY-Www` (also `YYYYWww` and lower-case `w`).
    pub fn parse_week(s: &str, tz: &TimeZone) -> Result<Period, ReportError> {
        let bad = || ReportError::BadWeek(s.to_string());
        let t = s.trim();
        let (y, w) = t
            .split_once(['W', 'w'])
            .map(|(y, w)| (y.trim_end_matches('-'), w))
            .ok_or_else(bad)?;
        if y.len() != 4 || w.is_empty() || w.len() > 2 {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        let week: i8 = w.parse().map_err(|_| bad())?;
        Period::iso_week(year, week, tz).map_err(|_| bad())
    }

    /// The last Monday-to-Sunday week that has ended at `now` in `tz`.
    pub fn last_complete_week(now: Timestamp, tz: &TimeZone) -> Result<Period, ReportError> {
        let today = tz.to_datetime(now).date();
        let monday = add_days(today, -i64::from(today.weekday().to_monday_zero_offset()))?;
        let iso = add_days(monday, -7)?.iso_week_date();
        Period::iso_week(iso.year(), iso.week(), tz)
    }

    /// Dates `since ..= until`, `YYYY-MM-DD`.
    pub(crate) fn parse_range(
        since: &str,
        until: &str,
        tz: &TimeZone,
    ) -> Result<Period, ReportError> {
        let parse = |s: &str| -> Result<Date, ReportError> {
            s.trim()
                .parse::<Date>()
                .map_err(|_| ReportError::BadDate(s.to_string()))
        };
        let (a, b) = (parse(since)?, parse(until)?);
        if b < a {
            return Err(ReportError::BadRange {
                since: since.to_string(),
                until: until.to_string(),
            });
        }
        let days = i64::from(a.until(b)?.get_days()) + 1;
        Ok(Period {
            first: a,
            days,
            tz: tz.clone(),
            label: format!("{a}..{b}"),
        })
    }

    /// The period of the same length just before this one.
    pub fn previous(&self) -> Result<Period, ReportError> {
        let first = add_days(self.first, -self.days)?;
        let label = if self.days == 7 && self.first.weekday() == Weekday::Monday {
            let iso = first.iso_week_date();
            format!("{}-W{:02}", iso.year(), iso.week())
        } else {
            format!("{first}..{}", add_days(first, self.days - 1)?)
        };
        Ok(Period {
            first,
            days: self.days,
            tz: self.tz.clone(),
            label,
        })
    }

    /// The local day `i` (0-based).
    pub(crate) fn day(&self, i: i64) -> Result<Date, ReportError> {
        add_days(self.first, i)
    }

    /// The local days, first to last.
    pub(crate) fn dates(&self) -> Result<Vec<Date>, ReportError> {
        (0..self.days).map(|i| self.day(i)).collect()
    }

    /// The first second of day `date`, unix seconds.
    fn midnight(&self, date: Date) -> Result<i64, ReportError> {
        Ok(date
            .to_zoned_datetime(self.tz.clone())?
            .timestamp()
            .as_second())
    }

    /// Start, unix seconds (included).
    pub fn start(&self) -> Result<i64, ReportError> {
        self.midnight(self.first)
    }

    /// End, unix seconds (excluded).
    pub fn end(&self) -> Result<i64, ReportError> {
        self.midnight(add_days(self.first, self.days)?)
    }

    /// Length in hours (167 or 169 for a week with a DST change).
    pub(crate) fn hours(&self) -> Result<i64, ReportError> {
        Ok((self.end()? - self.start()?) / 3600)
    }

    /// The time zone's name, or its offset when it has none.
    pub(crate) fn tz_name(&self) -> String {
        self.tz.iana_name().map(str::to_string).unwrap_or_else(|| {
            self.tz
                .to_offset(Timestamp::from_second(self.start().unwrap_or(0)).unwrap_or_default())
                .to_string()
        })
    }
}

/// `ts` as local RFC 3339 (`2026-03-02T08:15:00+01:00`): for the CLI and files.
pub(crate) fn rfc3339(ts: i64, tz: &TimeZone) -> String {
    local(ts, tz, "%Y-%m-%dT%H:%M:%S%:z")
}

/// `ts` as people read it on a page (`Mon 2 Mar 2026, 08:15`).
pub(crate) fn readable(ts: i64, tz: &TimeZone) -> String {
    local(ts, tz, "%a %-d %b %Y, %H:%M")
}

/// `ts` in `tz` as `format` (jiff's strftime), or the bare number when out of range.
pub(crate) fn local(ts: i64, tz: &TimeZone, format: &str) -> String {
    match Timestamp::from_second(ts) {
        Ok(t) => t.to_zoned_datetime(tz.clone()).strftime(format).to_string(),
        Err(_) => ts.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    #[test]
    fn report_week_across_dst_start_is_167_hours() {
        // 2025-03-30: clocks go forward in Berlin; that Sunday ends ISO week 13.
        let p = Period::parse_week("2025-W13", &berlin()).unwrap();
        assert_eq!(p.first.to_string(), "2025-03-24");
        assert_eq!(p.hours().unwrap(), 167);
        assert_eq!(
            rfc3339(p.start().unwrap(), &p.tz),
            "2025-03-24T00:00:00+01:00"
        );
        assert_eq!(
            rfc3339(p.end().unwrap(), &p.tz),
            "2025-03-31T00:00:00+02:00"
        );
    }

    #[test]
    fn report_week_across_dst_end_is_169_hours() {
        // 2025-10-26: clocks go back.
        let p = Period::parse_week("2025-W43", &berlin()).unwrap();
        assert_eq!(p.hours().unwrap(), 169);
        assert_eq!(
            Period::parse_week("2025-W44", &berlin())
                .unwrap()
                .hours()
                .unwrap(),
            168
        );
    }

    #[test]
    fn report_last_complete_week_is_monday_to_sunday_before_now() {
        let tz = berlin();
        // Wednesday 2026-03-11 10:00 UTC -> week 10 (2-8 March).
        let now: Timestamp = "2026-03-11T10:00:00Z".parse().unwrap();
        let p = Period::last_complete_week(now, &tz).unwrap();
        assert_eq!(
            (p.label.as_str(), p.first.to_string()),
            ("2026-W10", "2026-03-02".into())
        );
        // Sunday 23:30 local is still inside week 10, so last complete is week 9.
        let now: Timestamp = "2026-03-08T22:30:00Z".parse().unwrap();
        assert_eq!(
            Period::last_complete_week(now, &tz).unwrap().label,
            "2026-W09"
        );
        // Monday 00:30 local: week 10 has just ended.
        let now: Timestamp = "2026-03-08T23:30:00Z".parse().unwrap();
        assert_eq!(
            Period::last_complete_week(now, &tz).unwrap().label,
            "2026-W10"
        );
        // Across a year boundary.
        let now: Timestamp = "2026-01-02T12:00:00Z".parse().unwrap();
        assert_eq!(
            Period::last_complete_week(now, &tz).unwrap().label,
            "2025-W52"
        );
    }

    #[test]
    fn report_weeks_and_ranges_parse_or_explain() {
        let tz = TimeZone::UTC;
        assert_eq!(Period::parse_week("2026w3", &tz).unwrap().label, "2026-W03");
        for bad in ["2026", "2026-W54", "26-W01", "2026-Wxx", ""] {
            let e = Period::parse_week(bad, &tz).unwrap_err().to_string();
            assert!(e.contains("YYYY-Www"), "{bad}: {e}");
        }
        let p = Period::parse_range("2026-03-01", "2026-03-03", &tz).unwrap();
        assert_eq!((p.days, p.hours().unwrap()), (3, 72));
        assert_eq!(p.previous().unwrap().first.to_string(), "2026-02-26");
        assert!(Period::parse_range("2026-03-03", "2026-03-01", &tz).is_err());
        assert!(Period::parse_range("yesterday", "2026-03-01", &tz).is_err());
        let w = Period::parse_week("2026-W01", &tz).unwrap();
        assert_eq!(w.previous().unwrap().label, "2025-W52");
    }
}
