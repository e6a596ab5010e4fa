//! Compiled JSONPath (RFC 9535) expressions. Parsed once at load time with
//! `jsonpath-rust`; singular paths (names and indexes only, the common case) are
//! evaluated by a direct walk instead of the general query engine.

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

/// A parsed JSONPath expression.
#[derive(Debug, Clone)]
pub struct CompiledPath {
    source: String,
    query: JpQuery,
    /// The steps of a singular path (`$.a.b[0]`), if it is one.
    steps: Option<Vec<Step>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
}

impl CompiledPath {
    /// Parses a JSONPath expression; the error says what is wrong, on one line.
    pub fn parse(source: &str) -> Result<CompiledPath, String> {
        if !source.starts_with('$') {
            return Err(format!(
                "invalid JSONPath `{source}`: a path starts with `$` (e.g. `$.{}`)",
                source.trim_start_matches(['.', '@'])
            ));
        }
        let query = parse_json_path(source).map_err(|e| {
            format!(
                "invalid JSONPath `{source}`: {}",
                describe_error(&e.to_string())
            )
        })?;
        let steps = query
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Selector(Selector::Name(name)) => Some(Step::Key(name.clone())),
                Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
                _ => None,
            })
            .collect();
        Ok(CompiledPath {
            source: source.to_owned(),
            query,
            steps,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the path selects at most one value (RFC 9535 singular query).
    pub fn is_singular(&self) -> bool {
        self.steps.is_some()
    }

    /// Every value the path selects, in document order.
    pub fn select<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        match &self.steps {
            Some(steps) => walk(steps, value).into_iter().collect(),
            None => js_path_process(&self.query, value)
                .map(|refs| refs.into_iter().map(|r| r.val).collect())
                .unwrap_or_default(),
        }
    }

    /// The first value the path selects.
    pub fn first<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        match &self.steps {
            Some(steps) => walk(steps, value),
            None => self.select(value).into_iter().next(),
        }
    }
}

fn walk<'a>(steps: &[Step], mut value: &'a Value) -> Option<&'a Value> {
    for step in steps {
        value = match (step, value) {
            (Step::Key(k), Value::Object(map)) => map.get(k)?,
            (Step::Index(i), Value::Array(items)) => {
                let index = if *i < 0 {
                    items.len().checked_sub(i.unsigned_abs() as usize)?
                } else {
                    usize::try_from(*i).ok()?
                };
                items.get(index)?
            }
            _ => return None,
        };
    }
    Some(value)
}

/// Pest's multi-line report reduced to its message and column.
fn describe_error(report: &str) -> String {
    let message = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("= "))
        .unwrap_or_else(|| report.lines().next().unwrap_or(report))
        .trim()
        .to_owned();
    let column = report
        .split_once("--> ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|pos| pos.split(':').nth(1))
        .map(str::to_owned);
    match column {
        Some(c) => format!("{message} (at character {c})"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn singular_paths_walk_directly() {
        let v = json!({"a": {"b": [10, 20, 30]}, "x y": 1});
        let p = CompiledPath::parse("$.a.b[-1]").unwrap();
        assert!(p.is_singular());
        assert_eq!(p.first(&v), Some(&json!(30)));
        assert_eq!(
            CompiledPath::parse("$['x y']").unwrap().first(&v),
            Some(&json!(1))
        );
        assert_eq!(CompiledPath::parse("$").unwrap().first(&v), Some(&v));
        assert_eq!(CompiledPath::parse("$.a.c").unwrap().first(&v), None);
        assert_eq!(CompiledPath::parse("$.a.b[7]").unwrap().first(&v), None);
        assert_eq!(CompiledPath::parse("$.a.b[-4]").unwrap().first(&v), None);
    }

    #[test]
    fn general_paths_use_the_query_engine() {
        let v = json!({"labels": [{"name": "bug"}, {"name": "p1"}], "n": [{"x": 1}, {"x": 5}]});
        let p = CompiledPath::parse("$.labels[*].name").unwrap();
        assert!(!p.is_singular());
        assert_eq!(p.select(&v), vec![&json!("bug"), &json!("p1")]);
        let f = CompiledPath::parse("$.n[?@.x > 2].x").unwrap();
        assert_eq!(f.select(&v), vec![&json!(5)]);
        assert_eq!(CompiledPath::parse("$..name").unwrap().select(&v).len(), 2);
    }

    #[test]
    fn invalid_paths_are_one_line_errors() {
        let e = CompiledPath::parse("$.a[").unwrap_err();
        assert_eq!(
            e,
            "invalid JSONPath `$.a[`: expected selector (at character 5)"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = CompiledPath::parse("a.b").unwrap_err();
        assert!(e.contains("starts with `$`"), "{e}");
    }
}
