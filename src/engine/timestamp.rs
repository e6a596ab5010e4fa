//! Reads item timestamps in the formats providers use: RFC 3339, RFC 2822,
//! `YYYY-MM-DD HH:MM:SS`, ISO 8601 with a `+0000` offset, bare dates, and unix seconds,
//! milliseconds or microseconds as numbers or strings.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

/// Parses a timestamp value; `None` when it is not a recognizable instant.
pub fn parse(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                from_unix_number(i as f64)
            } else {
                n.as_f64().and_then(from_unix_number)
            }
        }
        Value::String(s) => parse_str(s.trim()),
        _ => None,
    }
}

fn parse_str(s: &str) -> Option<DateTime<Utc>> {
    if s.is_empty() {
        return None;
    }
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.bytes().filter(|b| *b == b'.').count() <= 1
        && !s[1..].contains('-')
    {
        return s.parse::<f64>().ok().and_then(from_unix_number);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(s) {
        return Some(t.to_utc());
    }
    // ISO 8601 with a numeric offset without colon (Jira: `2019-03-29T12:52:31.170+0000`).
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.to_utc());
        }
    }
    // Naive date-times are UTC.
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    // A bare date is midnight UTC (all-day calendar events).
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

/// Unix time in seconds, milliseconds or microseconds, told apart by magnitude:
/// below 1e11 are seconds (up to year 5138), below 1e14 milliseconds, below 1e17
/// microseconds.
fn from_unix_number(n: f64) -> Option<DateTime<Utc>> {
    if !n.is_finite() {
        return None;
    }
    let micros = match n.abs() {
        a if a < 1e11 => n * 1e6,
        a if a < 1e14 => n * 1e3,
        a if a < 1e17 => n,
        _ => return None,
    };
    DateTime::from_timestamp_micros(micros.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(v: Value) -> Option<String> {
        parse(&v).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }

    #[test]
    fn every_supported_format() {
        let cases = [
            (json!("2019-05-15T15:20:33Z"), "2019-05-15T15:20:33.000Z"),
            (
                json!("2024-05-17T09:27:40.077Z"),
                "2024-05-17T09:27:40.077Z",
            ),
            (
                json!("2024-05-17T11:27:40+02:00"),
                "2024-05-17T09:27:40.000Z",
            ),
            (
                json!("Wed, 15 May 2019 15:20:33 +0000"),
                "2019-05-15T15:20:33.000Z",
            ),
            (json!("2019-05-15 15:20:33"), "2019-05-15T15:20:33.000Z"),
            (json!("2019-05-15 15:20:33.250"), "2019-05-15T15:20:33.250Z"),
            (
                json!("2019-03-29T12:52:31.170+0000"),
                "2019-03-29T12:52:31.170Z",
            ),
            (json!(1557933633), "2019-05-15T15:20:33.000Z"),
            (json!("1557933633"), "2019-05-15T15:20:33.000Z"),
            (json!(1557933633250_i64), "2019-05-15T15:20:33.250Z"),
            (json!("1557933633250"), "2019-05-15T15:20:33.250Z"),
            (json!("1355517523.000005"), "2012-12-14T20:38:43.000Z"),
            (json!(1355517523.5), "2012-12-14T20:38:43.500Z"),
            (json!("1515449522000016"), "2018-01-08T22:12:02.000Z"),
            (json!(123456789), "1973-11-29T21:33:09.000Z"),
            (json!("2024-01-31"), "2024-01-31T00:00:00.000Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(ts(input.clone()).as_deref(), Some(expected), "{input}");
        }
    }

    #[test]
    fn unreadable_values_are_none_never_now() {
        for bad in [
            json!(null),
            json!(""),
            json!("yesterday"),
            json!("2019-13-45T00:00:00Z"),
            json!(true),
            json!({"t": 1}),
            json!([1]),
            json!(1e300),
            json!("1-2"),
        ] {
            assert_eq!(ts(bad.clone()), None, "{bad}");
        }
    }
}
