//! Reading the values Google connectors take from a connection's config and
//! from Google's answers: text, lists, `backfillDays`, 64-bit numbers sent as
//! strings, ids as path segments.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value;

use crate::connector::ConnectorError;

/// Days a first sync or a full resync reaches back without `backfillDays`.
pub const DEFAULT_BACKFILL_DAYS: u32 = 30;
/// The most `backfillDays` may say.
const MAX_BACKFILL_DAYS: u32 = 3650;

/// What a path segment escapes: all but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An id (a message id, a calendar's address) as one path segment: escaped,
/// and never a dot segment (`.` or `..` would climb the path).
pub fn path_segment(id: &str) -> String {
    if id.bytes().all(|b| b == b'.') {
        return id.replace('.', "%2E");
    }
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// Participants kept per Signal at most (a header or an attendee list can
/// name thousands).
pub const MAX_PARTICIPANTS: usize = 64;
/// Longest summary kept, in characters.
pub const MAX_SUMMARY_CHARS: usize = 500;

/// Addresses as a Signal's participants: trimmed, lower-cased, each once, at
/// most [`MAX_PARTICIPANTS`].
pub fn participants<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for address in addresses {
        if out.len() == MAX_PARTICIPANTS {
            break;
        }
        let address = address.trim().to_ascii_lowercase();
        if !address.is_empty() && !out.contains(&address) {
            out.push(address);
        }
    }
    out
}

/// A Signal's summary: `text` trimmed and cut to [`MAX_SUMMARY_CHARS`], or
/// `fallback` when there is none.
pub fn summary(text: Option<&str>, fallback: impl FnOnce() -> String) -> String {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => t.chars().take(MAX_SUMMARY_CHARS).collect(),
        None => fallback(),
    }
}

/// A list read item by item: an item of an unexpected shape is left out
/// (and logged) instead of failing the page, so one odd change, event or
/// message cannot stall a connection for good.
pub fn lenient<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let items = Option::<Vec<Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(items
        .into_iter()
        .filter_map(|item| match serde_json::from_value(item) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "an item of an unexpected shape was skipped");
                None
            }
        })
        .collect())
}

/// A uint64/int64 Gmail sends as a string or (in docs) a number.
pub fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A non-empty text config value.
pub fn text(config: &Value, key: &str) -> Option<String> {
    config
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A list config value (a list, or one comma-separated text).
pub fn list(config: &Value, key: &str) -> Vec<String> {
    let items: Vec<String> = match config.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `backfillDays`: a whole number of days, 1 to 3650.
pub fn backfill_days(config: &Value) -> Result<u32, ConnectorError> {
    let days = match config.get("backfillDays") {
        None | Some(Value::Null) => return Ok(DEFAULT_BACKFILL_DAYS),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(DEFAULT_BACKFILL_DAYS),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    days.and_then(|d| u32::try_from(d).ok())
        .filter(|d| (1..=MAX_BACKFILL_DAYS).contains(d))
        .ok_or_else(|| ConnectorError::Other {
            message: format!(
                "`backfillDays` must be a whole number of days from 1 to {MAX_BACKFILL_DAYS}"
            ),
            retryable: false,
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn participants_are_distinct_lower_case_and_bounded() {
        assert_eq!(
            participants([" A@x.com", "a@x.com", "", "b@y.org"]),
            ["a@x.com", "b@y.org"]
        );
        let many: Vec<String> = (0..100).map(|i| format!("p{i}@x.com")).collect();
        assert_eq!(
            participants(many.iter().map(String::as_str)).len(),
            MAX_PARTICIPANTS
        );
        assert_eq!(summary(Some("  Hi "), || "none".into()), "Hi");
        assert_eq!(summary(Some(" "), || "none".into()), "none");
        assert_eq!(
            summary(Some(&"é".repeat(600)), String::new).chars().count(),
            MAX_SUMMARY_CHARS
        );
    }

    #[test]
    fn a_list_leaves_out_the_items_it_cannot_read() {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default, deserialize_with = "lenient")]
            items: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            id: String,
        }
        let page: Page =
            serde_json::from_value(json!({"items": [{"id": "a"}, {"id": 7}, {}, {"id": "b"}]}))
                .unwrap();
        let ids: Vec<String> = page.items.into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["a", "b"]);
        let page: Page = serde_json::from_value(json!({"items": null})).unwrap();
        assert!(page.items.is_empty());
    }

    #[test]
    fn config_values_are_read_leniently_and_bounded() {
        let config = json!({"pressDomains": ["@Press.Example", " wire.example "], "labelIds": "INBOX, IMPORTANT", "backfillDays": "7"});
        assert_eq!(
            list(&config, "pressDomains"),
            ["@Press.Example", "wire.example"]
        );
        assert_eq!(list(&config, "labelIds"), ["INBOX", "IMPORTANT"]);
        assert_eq!(text(&json!({"topic": "  "}), "topic"), None);
        assert_eq!(backfill_days(&config).unwrap(), 7);
        assert_eq!(backfill_days(&json!({})).unwrap(), DEFAULT_BACKFILL_DAYS);
        for bad in [json!(0), json!("x"), json!(-3), json!(4000), json!(true)] {
            assert!(
                backfill_days(&json!({"backfillDays": bad})).is_err(),
                "{bad}"
            );
        }
        assert_eq!(number(&json!("1431990098200")), Some(1_431_990_098_200));
        assert_eq!(number(&json!(1234567890)), Some(1_234_567_890));
        assert_eq!(path_segment("19dda3e3a25601ee"), "19dda3e3a25601ee");
        assert_eq!(path_segment("../x"), "..%2Fx");
        assert_eq!(path_segment(".."), "%2E%2E");
        assert_eq!(path_segment("."), "%2E");
        assert_eq!(path_segment("me@example.com"), "me%40example.com");
    }
}
