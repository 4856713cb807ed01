//! Durations as the regulations state them: `P1Y` (ISO 8601), `30d`, `72h`, `5wd`
//! (working days on the unit's calendar, see [`crate::calendar`]). Years and months are
//! calendar months, so a year of probation that starts on 29 Feb ends on 28 Feb.

use crate::calendar::Calendar;
use chrono::{DateTime, Months, Utc};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub months: u32,
    pub days: u32,
    pub working_days: u32,
    pub seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(pub String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Span {
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let t = text.trim();
        let bad = || {
            DurationError(format!(
                "bad duration \"{text}\": use ISO 8601 like P1Y, P3M, P5D, PT24H, or a number with a unit: 30d, 72h, 15m, 45s, 2w, 6mo, 1y, 5wd (working days)"
            ))
        };
        let span = if let Some(iso) = t.strip_prefix('P') {
            parse_iso(iso).ok_or_else(bad)?
        } else {
            let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (num, unit) = t.split_at(split);
            let n: u32 = num.parse().map_err(|_| bad())?;
            let mut s = Span::default();
            match unit {
                "y" => s.months = n * 12,
                "mo" => s.months = n,
                "w" => s.days = n * 7,
                "d" => s.days = n,
                "wd" => s.working_days = n,
                "h" => s.seconds = u64::from(n) * 3600,
                "m" => s.seconds = u64::from(n) * 60,
                "s" => s.seconds = u64::from(n),
                _ => return Err(bad()),
            }
            s
        };
        if span == Span::default() {
            return Err(DurationError(format!("duration \"{text}\" is zero")));
        }
        Ok(span)
    }

    /// The instant this span after `start`; working days need the unit's calendar.
    pub fn after(&self, start: DateTime<Utc>, calendar: Option<&Calendar>) -> Result<DateTime<Utc>, String> {
        let mut t = start
            .checked_add_months(Months::new(self.months))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        t += chrono::Duration::days(i64::from(self.days));
        if self.working_days > 0 {
            let cal = calendar.ok_or("working days (wd) are counted on a unit's calendar, and none applies here")?;
            t = cal.add_working_days(t, self.working_days)?;
        }
        Ok(t + chrono::Duration::seconds(self.seconds as i64))
    }

    /// `n` times this span (`2x` of a 5-working-day limit is 10 working days).
    pub fn times(&self, n: u32) -> Span {
        Span {
            months: self.months * n,
            days: self.days * n,
            working_days: self.working_days * n,
            seconds: self.seconds * u64::from(n),
        }
    }
}

/// `2x`: a multiple of a state's time limit (an escalation at twice the limit).
pub fn limit_multiple(text: &str) -> Option<u32> {
    text.strip_suffix('x')?.parse().ok().filter(|n| *n > 0)
}

fn parse_iso(s: &str) -> Option<Span> {
    let mut span = Span::default();
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        match c {
            '0'..='9' => num.push(c),
            'T' if num.is_empty() && !in_time => in_time = true,
            _ => {
                let n: u32 = num.parse().ok()?;
                num.clear();
                any = true;
                match (in_time, c) {
                    (false, 'Y') => span.months += n * 12,
                    (false, 'M') => span.months += n,
                    (false, 'W') => span.days += n * 7,
                    (false, 'D') => span.days += n,
                    (true, 'H') => span.seconds += u64::from(n) * 3600,
                    (true, 'M') => span.seconds += u64::from(n) * 60,
                    (true, 'S') => span.seconds += u64::from(n),
                    _ => return None,
                }
            }
        }
    }
    (num.is_empty() && any).then_some(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_both_forms() {
        assert_eq!(Span::parse("P1Y").unwrap().months, 12);
        assert_eq!(Span::parse("P1Y6M").unwrap().months, 18);
        assert_eq!(Span::parse("PT24H").unwrap().seconds, 86400);
        assert_eq!(Span::parse("72h").unwrap().seconds, 72 * 3600);
        assert_eq!(Span::parse("30d").unwrap().days, 30);
        assert_eq!(Span::parse("5wd").unwrap().working_days, 5);
        for bad in ["", "P", "PT", "3x", "h", "P1H", "0d", "-3d"] {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn calendar_arithmetic() {
        let fri = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
        let table = crate::calendar::YearTable::parse("t.csv", "date,kind,name\n2026-11-25,holiday,x\n").unwrap();
        let cal = Calendar::nearest_first("u", [&table]);
        let five_wd = Span::parse("5wd").unwrap().after(fri, Some(&cal)).unwrap();
        assert_eq!(five_wd, Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap());
        assert!(Span::parse("5wd").unwrap().after(fri, None).is_err());
        let leap = Utc.with_ymd_and_hms(2024, 2, 29, 0, 0, 0).unwrap();
        assert_eq!(
            Span::parse("P1Y").unwrap().after(leap, None).unwrap(),
            Utc.with_ymd_and_hms(2025, 2, 28, 0, 0, 0).unwrap()
        );
        assert_eq!(Span::parse("5wd").unwrap().times(2).working_days, 10);
    }
}
