//! Working-day calendars. A unit uploads one table per year (public holidays and the
//! make-up working days that fall on a weekend, as the State Council publishes them). The
//! calendar at a unit layers the tables of the unit and its ancestors for each year, the
//! nearest unit's word on a day winning, so a district adds its own day off without copying
//! the national table. Days
//! are counted in the calendar's time zone (default Asia/Shanghai), never on the UTC date.
//! A year that no table covers is an error that names the year and the unit: a time limit
//! is never guessed from weekends alone.

use crate::time::{DEFAULT_TIME_ZONE, parse_zone};
use crate::yaml::SourceDoc;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One year's table as uploaded.
#[derive(Debug, Clone, PartialEq)]
pub struct YearTable {
    pub year: i32,
    pub time_zone: Tz,
    /// Days off that would otherwise be working days (and named holidays on weekends).
    pub holidays: BTreeMap<NaiveDate, String>,
    /// Weekend days that are working days (调休上班).
    pub workdays: BTreeMap<NaiveDate, String>,
}

/// What is wrong with an uploaded table, with where (`line:col` for YAML, `row N` for CSV).
#[derive(Debug, Clone, PartialEq)]
pub struct TableProblem {
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for TableProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl YearTable {
    /// A table from YAML (`year`, optional `time_zone`, `holidays: [{name, from, to}]` or
    /// `[{name, date}]`, `workdays: [{name, date}]`) or CSV (`date,kind,name` with kind
    /// `holiday`/`workday`, or 休/班), chosen by the file name's extension.
    pub fn parse(file_name: &str, text: &str) -> Result<Self, Vec<TableProblem>> {
        if file_name.to_ascii_lowercase().ends_with(".csv") {
            Self::from_csv(text)
        } else {
            Self::from_yaml(file_name, text)
        }
    }

    fn from_yaml(file_name: &str, text: &str) -> Result<Self, Vec<TableProblem>> {
        let doc = SourceDoc::parse(file_name, text).map_err(|d| {
            vec![TableProblem {
                at: format!("{}:{}:{}", d.file, d.line, d.col),
                message: d.message,
            }]
        })?;
        let at = |pointer: &str| {
            let (line, col) = doc.position(pointer);
            format!("{file_name}:{line}:{col}")
        };
        let mut problems = Vec::new();
        let year = doc.value.get("year").and_then(Value::as_i64);
        let Some(year) = year
            .and_then(|y| i32::try_from(y).ok())
            .filter(|y| (1970..=2200).contains(y))
        else {
            return Err(vec![TableProblem {
                at: at("/year"),
                message: "a calendar needs its `year`, e.g. year: 2026".into(),
            }]);
        };
        let time_zone = match doc.value.get("time_zone").and_then(Value::as_str) {
            None => DEFAULT_TIME_ZONE,
            Some(name) => parse_zone(name).unwrap_or_else(|m| {
                problems.push(TableProblem {
                    at: at("/time_zone"),
                    message: m,
                });
                DEFAULT_TIME_ZONE
            }),
        };
        let mut days = Days::new(year);
        for list in ["holidays", "workdays"] {
            let items = doc
                .value
                .get(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, item) in items.iter().enumerate() {
                let pointer = format!("/{list}/{i}");
                let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
                let date = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);
                let (from, to) = match (date("date"), date("from"), date("to")) {
                    (Some(d), None, None) => (d.clone(), d),
                    (None, Some(f), Some(t)) if list == "holidays" => (f, t),
                    _ => {
                        let want = if list == "holidays" {
                            "`date`, or `from` and `to`"
                        } else {
                            "`date`"
                        };
                        problems.push(TableProblem {
                            at: at(&pointer),
                            message: format!("each entry needs {want} (YYYY-MM-DD)"),
                        });
                        continue;
                    }
                };
                if let Err(m) = days.add_range(list == "holidays", &from, &to, name) {
                    problems.push(TableProblem {
                        at: at(&pointer),
                        message: m,
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(days.into_table(time_zone))
        } else {
            Err(problems)
        }
    }

    fn from_csv(text: &str) -> Result<Self, Vec<TableProblem>> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut rows: Vec<(usize, String, String, String)> = Vec::new();
        let mut problems = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let row = i + 2;
            match record {
                Ok(r) => rows.push((
                    row,
                    r.get(0).unwrap_or("").to_string(),
                    r.get(1).unwrap_or("").to_string(),
                    r.get(2).unwrap_or("").to_string(),
                )),
                Err(e) => problems.push(TableProblem {
                    at: format!("row {row}"),
                    message: e.to_string(),
                }),
            }
        }
        let Some(year) = rows.first().and_then(|r| r.1.get(..4)).and_then(|y| y.parse().ok()) else {
            return Err(vec![TableProblem {
                at: "row 2".into(),
                message: "no dates: the columns are date,kind,name (kind: holiday or workday)".into(),
            }]);
        };
        let mut days = Days::new(year);
        for (row, date, kind, name) in rows {
            let holiday = match kind.as_str() {
                "holiday" | "休" => true,
                "workday" | "班" => false,
                other => {
                    problems.push(TableProblem {
                        at: format!("row {row}"),
                        message: format!("kind \"{other}\" is neither holiday (休) nor workday (班)"),
                    });
                    continue;
                }
            };
            if let Err(m) = days.add_range(holiday, &date, &date, &name) {
                problems.push(TableProblem {
                    at: format!("row {row}"),
                    message: m,
                });
            }
        }
        if problems.is_empty() {
            Ok(days.into_table(DEFAULT_TIME_ZONE))
        } else {
            Err(problems)
        }
    }

    /// The table as it is stored (and could be uploaded again): YAML's shape in JSON.
    pub fn to_json(&self) -> Value {
        let list = |m: &BTreeMap<NaiveDate, String>| {
            m.iter()
                .map(|(d, n)| serde_json::json!({"date": d.to_string(), "name": n}))
                .collect::<Vec<_>>()
        };
        serde_json::json!({
            "year": self.year,
            "time_zone": self.time_zone.name(),
            "holidays": list(&self.holidays),
            "workdays": list(&self.workdays),
        })
    }

    pub fn from_json(v: &Value) -> Result<Self, String> {
        let text = serde_json::to_string(v).map_err(|e| e.to_string())?;
        Self::from_yaml("stored calendar", &text)
            .map_err(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
    }
}

/// Days collected while reading a table, checked as they come.
struct Days {
    year: i32,
    holidays: BTreeMap<NaiveDate, String>,
    workdays: BTreeMap<NaiveDate, String>,
}

impl Days {
    fn new(year: i32) -> Self {
        Self {
            year,
            holidays: BTreeMap::new(),
            workdays: BTreeMap::new(),
        }
    }

    fn add_range(&mut self, holiday: bool, from: &str, to: &str, name: &str) -> Result<(), String> {
        let parse = |s: &str| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("\"{s}\" is not a date (YYYY-MM-DD)"))
        };
        let (first, last) = (parse(from)?, parse(to)?);
        if first > last {
            return Err(format!("{from} is after {to}"));
        }
        for day in first.iter_days().take_while(|d| *d <= last) {
            if day.year() != self.year {
                return Err(format!("{day} is not in {}", self.year));
            }
            let (this, other) = if holiday {
                (&mut self.holidays, &self.workdays)
            } else {
                if !is_weekend(day) {
                    return Err(format!(
                        "{day} is a {}: a make-up working day is a weekend day",
                        day.format("%A")
                    ));
                }
                (&mut self.workdays, &self.holidays)
            };
            if other.contains_key(&day) {
                return Err(format!("{day} is listed both as a holiday and as a working day"));
            }
            this.insert(day, name.to_string());
        }
        Ok(())
    }

    fn into_table(self, time_zone: Tz) -> YearTable {
        YearTable {
            year: self.year,
            time_zone,
            holidays: self.holidays,
            workdays: self.workdays,
        }
    }
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The calendar in force at one unit: the tables of the unit and its ancestors layered, a
/// nearer unit's entry for a day winning.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// Which unit asked, for messages.
    pub unit: String,
    pub time_zone: Tz,
    /// Years some table along the path covers.
    pub years: BTreeSet<i32>,
    /// Days that are not what their weekday says: `false` a day off, `true` a working day.
    days: BTreeMap<NaiveDate, bool>,
}

impl Calendar {
    /// No tables: days are still counted in the default zone, working days are refused.
    pub fn empty(unit: &str) -> Self {
        Self {
            unit: unit.to_string(),
            time_zone: DEFAULT_TIME_ZONE,
            years: BTreeSet::new(),
            days: BTreeMap::new(),
        }
    }

    /// The calendar of tables gathered nearest unit first; the nearest table's time zone.
    pub fn nearest_first<'t>(unit: &str, tables: impl IntoIterator<Item = &'t YearTable>) -> Self {
        let mut cal = Self::empty(unit);
        let mut zone = None;
        for t in tables {
            zone.get_or_insert(t.time_zone);
            cal.years.insert(t.year);
            for d in t.holidays.keys() {
                cal.days.entry(*d).or_insert(false);
            }
            for d in t.workdays.keys() {
                cal.days.entry(*d).or_insert(true);
            }
        }
        cal.time_zone = zone.unwrap_or(DEFAULT_TIME_ZONE);
        cal
    }

    pub fn is_working_day(&self, day: NaiveDate) -> Result<bool, String> {
        if !self.years.contains(&day.year()) {
            let have: Vec<String> = self.years.iter().map(ToString::to_string).collect();
            return Err(format!(
                "no working-day calendar for {} at unit \"{}\" (it has: {}); a district uploads the year's table",
                day.year(),
                self.unit,
                if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                }
            ));
        }
        Ok(self.days.get(&day).copied().unwrap_or(!is_weekend(day)))
    }

    /// `n` working days after `start`: the same local time on the `n`-th working day after
    /// the local day of `start`.
    pub fn add_working_days(&self, start: DateTime<Utc>, n: u32) -> Result<DateTime<Utc>, String> {
        let local = start.with_timezone(&self.time_zone).naive_local();
        let (mut day, time) = (local.date(), local.time());
        let mut left = n;
        while left > 0 {
            day = day.succ_opt().ok_or("date out of range")?;
            if self.is_working_day(day)? {
                left -= 1;
            }
        }
        let t = self
            .time_zone
            .from_local_datetime(&day.and_time(time))
            .earliest()
            .ok_or("local time does not exist")?;
        Ok(t.with_timezone(&Utc))
    }

    /// Working days from the local day of `from` (exclusive) to that of `to` (inclusive);
    /// negative when `to` is earlier.
    pub fn working_days_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<i64, String> {
        let day = |t: DateTime<Utc>| t.with_timezone(&self.time_zone).date_naive();
        let (a, b) = (day(from), day(to));
        let (lo, hi, sign) = if a <= b { (a, b, 1) } else { (b, a, -1) };
        let mut count = 0;
        for d in lo.iter_days().skip(1).take_while(|d| *d <= hi) {
            if self.is_working_day(d)? {
                count += 1;
            }
        }
        Ok(sign * count)
    }

    /// The local date of an instant (for `years_since` and day-based rules).
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.time_zone).date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CN_2026: &str = include_str!("../../../workflows/calendars/cn-2026.calendar.yaml");

    fn national() -> Calendar {
        let t = YearTable::parse("cn-2026.calendar.yaml", CN_2026).unwrap();
        Calendar::nearest_first("demo-city", [&t])
    }

    fn beijing(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        DEFAULT_TIME_ZONE
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_shipped_table_reads_as_the_state_council_wrote_it() {
        let cal = national();
        let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        assert!(!cal.is_working_day(day(10, 1)).unwrap());
        assert!(!cal.is_working_day(day(10, 7)).unwrap());
        assert!(
            cal.is_working_day(day(10, 10)).unwrap(),
            "Saturday 10 October is a make-up day"
        );
        assert!(cal.is_working_day(day(9, 20)).unwrap(), "Sunday 20 September too");
        assert!(!cal.is_working_day(day(2, 16)).unwrap());
        assert!(cal.is_working_day(day(1, 4)).unwrap());
        let t = YearTable::parse("cn-2026.calendar.yaml", CN_2026).unwrap();
        assert_eq!(t.holidays.len(), 3 + 9 + 3 + 5 + 3 + 3 + 7);
        assert_eq!(t.workdays.len(), 6);
    }

    #[test]
    fn five_working_days_across_national_day() {
        let cal = national();
        // Tuesday 29 September, 10:00 in Beijing: 30 Sep, then the holiday week, then
        // Thu 8, Fri 9, Sat 10 (make-up), Mon 12.
        let end = cal.add_working_days(beijing(2026, 9, 29, 10), 5).unwrap();
        assert_eq!(end, beijing(2026, 10, 12, 10));
        assert_eq!(cal.working_days_between(beijing(2026, 9, 29, 10), end).unwrap(), 5);
    }

    #[test]
    fn days_are_counted_in_the_local_zone() {
        let cal = national();
        // Monday 2 November 07:00 in Beijing is Sunday 23:00 UTC: five working days end on
        // Monday 9 November 07:00, not on Saturday.
        let end = cal.add_working_days(beijing(2026, 11, 2, 7), 5).unwrap();
        assert_eq!(end, beijing(2026, 11, 9, 7));
    }

    #[test]
    fn a_year_without_a_table_is_reported() {
        let err = national().add_working_days(beijing(2026, 12, 28, 9), 5).unwrap_err();
        assert!(err.contains("2027") && err.contains("demo-city"), "{err}");
    }

    #[test]
    fn a_district_adds_its_own_days_to_the_national_table() {
        let national = YearTable::parse("cn.yaml", CN_2026).unwrap();
        let local = YearTable::parse(
            "local.csv",
            "date,kind,name\n2026-11-02,holiday,区庆\n2026-11-07,workday,补班\n",
        )
        .unwrap();
        let cal = Calendar::nearest_first("c1", [&local, &national]);
        let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
        assert!(!cal.is_working_day(day(11, 2)).unwrap());
        assert!(cal.is_working_day(day(11, 7)).unwrap());
        // The national days still hold where the district said nothing.
        assert!(!cal.is_working_day(day(10, 1)).unwrap());
    }

    #[test]
    fn bad_tables_say_where() {
        let e = YearTable::parse("x.yaml", "year: 2026\nworkdays:\n  - {name: x, date: 2026-10-12}\n").unwrap_err();
        assert!(
            e[0].to_string().starts_with("x.yaml:3:5") && e[0].message.contains("Monday"),
            "{e:?}"
        );
        let e = YearTable::parse("x.csv", "date,kind,name\n2026-10-01,holiday,a\n2027-01-01,holiday,b\n").unwrap_err();
        assert_eq!(e[0].at, "row 3");
        let e = YearTable::parse("x.csv", "date,kind,name\n2026-10-01,rest,a\n").unwrap_err();
        assert!(e[0].message.contains("rest"));
    }
}
