//! Evaluates compiled conditions against an item. A singular path tests its one
//! value; any other path tests the list of values it selects, where a test holds
//! when it holds for any element (`contains` then means "has an equal element").

use serde_json::Value;

use crate::descriptor::compile::{CompiledCondition, CompiledPath, Test};

/// What a condition's path selected.
enum Selected<'a> {
    One(Option<&'a Value>),
    Many(Vec<&'a Value>),
}

fn select<'a>(path: &CompiledPath, item: &'a Value) -> Selected<'a> {
    if path.is_singular() {
        Selected::One(path.first(item))
    } else {
        Selected::Many(path.select(item))
    }
}

impl CompiledCondition {
    /// Whether the item meets the condition.
    pub fn holds(&self, item: &Value) -> bool {
        evaluate(&self.test, &select(&self.path, item))
    }
}

/// Tests a header value (handshakes): present and passing the test.
pub fn header_holds(test: &Test, value: Option<&str>) -> bool {
    let value = value.map(|s| Value::String(s.to_owned()));
    evaluate(test, &Selected::One(value.as_ref()))
}

fn evaluate(test: &Test, selected: &Selected<'_>) -> bool {
    match test {
        Test::Exists => exists(selected),
        Test::NotExists => !exists(selected),
        Test::Equals(v) => any(selected, |a| loose_eq(a, v)),
        Test::NotEquals(v) => !any(selected, |a| loose_eq(a, v)),
        Test::In(values) => any(selected, |a| values.iter().any(|v| loose_eq(a, v))),
        Test::Matches(re) => any(selected, |a| a.as_str().is_some_and(|s| re.is_match(s))),
        Test::Contains(v) => match selected {
            Selected::One(Some(Value::String(s))) => {
                v.as_str().is_some_and(|needle| s.contains(needle))
            }
            Selected::One(Some(Value::Array(items))) => items.iter().any(|e| loose_eq(e, v)),
            Selected::One(_) => false,
            Selected::Many(values) => values.iter().any(|e| loose_eq(e, v)),
        },
    }
}

fn exists(selected: &Selected<'_>) -> bool {
    match selected {
        Selected::One(v) => v.is_some_and(|v| !v.is_null()),
        Selected::Many(values) => values.iter().any(|v| !v.is_null()),
    }
}

fn any(selected: &Selected<'_>, test: impl Fn(&Value) -> bool) -> bool {
    match selected {
        Selected::One(v) => v.is_some_and(&test),
        Selected::Many(values) => values.iter().any(|v| test(v)),
    }
}

/// Equality across JSON types the way descriptor authors expect: numbers by
/// value (`1` equals `1.0`), and a string equals a number or boolean with the
/// same text (`"true"` equals `true`, `"3"` equals `3`).
pub fn loose_eq(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_f64() == b.as_f64(),
        },
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.trim().parse::<f64>().ok() == n.as_f64()
        }
        (Value::String(s), Value::Bool(b)) | (Value::Bool(b), Value::String(s)) => {
            s.trim() == if *b { "true" } else { "false" }
        }
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(when: &str, test: Test) -> CompiledCondition {
        CompiledCondition {
            path: CompiledPath::parse(when).unwrap(),
            test,
        }
    }

    #[test]
    fn every_operator_on_single_values() {
        let item = json!({"state": "closed", "merged": true, "n": 3, "title": "Fix: crash on start",
            "labels": ["bug", "p1"], "none": null});
        let re = |p: &str| Test::Matches(regex::Regex::new(p).unwrap());
        let cases: Vec<(&str, Test, bool)> = vec![
            ("$.state", Test::Equals(json!("closed")), true),
            ("$.state", Test::Equals(json!("open")), false),
            ("$.merged", Test::Equals(json!("true")), true),
            ("$.merged", Test::Equals(json!(true)), true),
            ("$.n", Test::Equals(json!(3.0)), true),
            ("$.n", Test::Equals(json!("3")), true),
            ("$.missing", Test::Equals(json!(null)), false),
            ("$.state", Test::NotEquals(json!("open")), true),
            ("$.missing", Test::NotEquals(json!("open")), true),
            ("$.title", Test::Contains(json!("crash")), true),
            ("$.title", Test::Contains(json!("boom")), false),
            ("$.labels", Test::Contains(json!("p1")), true),
            ("$.labels", Test::Contains(json!("p")), false),
            ("$.n", Test::Contains(json!("3")), false),
            ("$.state", Test::Exists, true),
            ("$.none", Test::Exists, false),
            ("$.missing", Test::Exists, false),
            ("$.none", Test::NotExists, true),
            ("$.state", Test::NotExists, false),
            ("$.title", re("^Fix:"), true),
            ("$.title", re("^Feat:"), false),
            ("$.n", re("3"), false),
            (
                "$.state",
                Test::In(vec![json!("open"), json!("closed")]),
                true,
            ),
            ("$.n", Test::In(vec![json!(1), json!(2)]), false),
        ];
        for (when, test, expected) in cases {
            let name = format!("{when} {test:?}");
            assert_eq!(condition(when, test).holds(&item), expected, "{name}");
        }
    }

    #[test]
    fn multi_value_paths_hold_when_any_element_does() {
        let item = json!({"labels": [{"name": "bug"}, {"name": "critical-path"}], "empty": []});
        let names = "$.labels[*].name";
        assert!(condition(names, Test::Contains(json!("bug"))).holds(&item));
        assert!(!condition(names, Test::Contains(json!("critical"))).holds(&item));
        assert!(condition(names, Test::Equals(json!("critical-path"))).holds(&item));
        assert!(condition(names, Test::In(vec![json!("security"), json!("bug")])).holds(&item));
        assert!(condition(names, Test::Exists).holds(&item));
        assert!(!condition("$.empty[*]", Test::Exists).holds(&item));
        assert!(condition("$.empty[*]", Test::NotExists).holds(&item));
        assert!(!condition(names, Test::NotEquals(json!("bug"))).holds(&item));
    }

    #[test]
    fn headers() {
        assert!(header_holds(&Test::Equals(json!("sync")), Some("sync")));
        assert!(!header_holds(&Test::Equals(json!("sync")), None));
        assert!(header_holds(&Test::NotExists, None));
        assert!(header_holds(&Test::Contains(json!("yn")), Some("sync")));
    }
}
