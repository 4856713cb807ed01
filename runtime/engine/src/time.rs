//! Times are instants. Every time the engine writes into an instance or shows to an
//! expression has one text form, UTC with milliseconds (`2026-12-01T23:45:00.000Z`): fixed
//! width, so comparing two of them as text (`now <= data.deadline`) compares the instants.
//! Times arriving with another offset (`+08:00` from a form, a rule or a signal) are
//! rewritten to that form as they enter the instance, so no stored time compares wrongly.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// Where days are counted and schedules fire when nothing else is said.
pub const DEFAULT_TIME_ZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

/// The one text form of an instant.
pub fn canonical(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An RFC 3339 time with any offset, as an instant.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    // A date alone (`2026-10-01`) is a day, not an instant: it stays as written.
    if text.len() < 20 || text.as_bytes().get(10).is_none_or(|b| !matches!(b, b'T' | b't' | b' ')) {
        return None;
    }
    DateTime::parse_from_rfc3339(text).ok().map(|d| d.with_timezone(&Utc))
}

/// A time as people type it: RFC 3339 with an offset, or a local date and time without one
/// (`2026-12-02 14:30`, `2026-12-02T14:30`, seconds optional, as a browser's
/// `datetime-local` sends it) read in China time.
pub fn parse_local(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(t) = parse_instant(text) {
        return Some(t);
    }
    let normal = text.replacen(' ', "T", 1);
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(&normal, f).ok())
        .and_then(|naive| naive.and_local_timezone(DEFAULT_TIME_ZONE).earliest())
        .map(|t| t.with_timezone(&Utc))
}

/// An instant as a `datetime-local` input shows it: China time, to the minute.
pub fn local_input(t: DateTime<Utc>) -> String {
    t.with_timezone(&DEFAULT_TIME_ZONE).format("%Y-%m-%dT%H:%M").to_string()
}

/// Rewrite every RFC 3339 time inside `value` (at any depth) to its canonical form.
pub fn normalize(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Some(t) = parse_instant(s) {
                *s = canonical(t);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::Object(map) => map.values_mut().for_each(normalize),
        _ => {}
    }
}

/// A time zone by its IANA name (`Asia/Shanghai`).
pub fn parse_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("unknown time zone \"{name}\": use an IANA name like Asia/Shanghai"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_local_time_is_china_time() {
        for typed in [
            "2026-12-02 14:30",
            "2026-12-02T14:30",
            "2026-12-02T14:30:00",
            "2026-12-02T14:30:00+08:00",
        ] {
            assert_eq!(
                parse_local(typed).map(canonical).as_deref(),
                Some("2026-12-02T06:30:00.000Z"),
                "{typed}"
            );
        }
        assert_eq!(parse_local("12/02 14:30"), None);
        assert_eq!(
            local_input(parse_local("2026-12-02 14:30").unwrap()),
            "2026-12-02T14:30"
        );
    }
    use serde_json::json;

    #[test]
    fn offsets_become_one_comparable_form() {
        // 07:30 in Beijing on the 2nd is 23:30 UTC on the 1st: before 23:45 UTC.
        let mut v = json!({"deadline": "2026-12-02T07:30:00+08:00", "day": "2026-12-02", "n": 3,
                           "list": ["2026-12-01T23:45:00Z", "not a time"]});
        normalize(&mut v);
        assert_eq!(v["deadline"], "2026-12-01T23:30:00.000Z");
        assert_eq!(v["day"], "2026-12-02");
        assert_eq!(v["list"][1], "not a time");
        let now = v["list"][0].as_str().unwrap();
        // As written, the text comparison said "on time"; as instants it is late.
        assert!("2026-12-01T23:45:00+00:00" <= "2026-12-02T07:30:00+08:00");
        assert!(now > v["deadline"].as_str().unwrap());
    }

    #[test]
    fn zones_by_name() {
        assert_eq!(parse_zone("Asia/Shanghai").unwrap(), DEFAULT_TIME_ZONE);
        assert!(parse_zone("Mars/Olympus").unwrap_err().contains("Mars/Olympus"));
    }
}
