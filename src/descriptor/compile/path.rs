//! Compiled JSONPath (RFC 9535) expressions. Parsed once at load time with
//! `jsonpath-rust`. Paths made only of name, index and wildcard selectors (the
//! common case: `$.a.b[0]`, `$.labels[*].name`, `$['user','assignee'].login`) are
//! evaluated by a direct walk; filters, slices and descendant segments use the
//! general query engine.

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

/// Deepest nesting of brackets and parentheses (filters within filters) a path
/// may have: the parser recurses over them.
pub const MAX_PATH_DEPTH: usize = 16;
/// Descendant segments (`..`) a path may have: each one walks the whole
/// document below it, so a second one multiplies the work (`$..*..*`).
pub const MAX_DESCENDANTS: usize = 1;

/// Bounds a path's nesting and descendant segments before it is parsed, by a
/// scan that skips quoted names.
fn check_shape(source: &str) -> Result<(), String> {
    let (mut depth, mut deepest, mut descendants) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut chars = source.chars().peekable();
    let mut previous_dot = false;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            match c {
                '\\' => {
                    chars.next();
                }
                c if c == q => quote = None,
                _ => {}
            }
            previous_dot = false;
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' | '(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ']' | ')' => depth = depth.saturating_sub(1),
            '.' if previous_dot => {
                descendants += 1;
                previous_dot = false;
                continue;
            }
            _ => {}
        }
        previous_dot = c == '.';
    }
    if deepest > MAX_PATH_DEPTH {
        return Err(format!(
            "invalid JSONPath `{source}`: brackets and filters nest {deepest} deep, at most {MAX_PATH_DEPTH}"
        ));
    }
    if descendants > MAX_DESCENDANTS {
        return Err(format!(
            "invalid JSONPath `{source}`: at most {MAX_DESCENDANTS} descendant segment (`..`) per path, found {descendants} (each walks everything below it)"
        ));
    }
    Ok(())
}

/// A parsed JSONPath expression.
#[derive(Debug, Clone)]
pub struct CompiledPath {
    source: String,
    query: JpQuery,
    /// The steps, when every segment uses only the selectors the walk handles.
    steps: Option<Vec<Step>>,
    /// Whether the path selects at most one value (names and indexes only).
    singular: bool,
}

/// One segment of a walkable path: its selectors, applied in order to each node.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    Union(Vec<Sel>),
}

#[derive(Debug, Clone, PartialEq)]
enum Sel {
    Key(String),
    Index(i64),
    Wildcard,
}

/// How a walkable path descends, for projections (`projection.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Descent {
    /// Into these object members.
    Keys(Vec<String>),
    /// Into array elements (indexes): the same projection applies to each.
    Elements,
    /// Into every element of an array or member of an object (`[*]`).
    Wildcard,
    /// Into what only the query engine can walk: everything below is needed.
    Everything,
}

impl Sel {
    fn from(selector: &Selector) -> Option<Sel> {
        match selector {
            Selector::Name(name) => Some(Sel::Key(name.clone())),
            Selector::Index(i) => Some(Sel::Index(*i)),
            Selector::Wildcard => Some(Sel::Wildcard),
            _ => None,
        }
    }
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
        check_shape(source)?;
        let query = parse_json_path(source).map_err(|e| {
            format!(
                "invalid JSONPath `{source}`: {}",
                describe_error(&e.to_string())
            )
        })?;
        let steps: Option<Vec<Step>> = query
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Selector(Selector::Name(name)) => Some(Step::Key(name.clone())),
                Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
                Segment::Selector(other) => Sel::from(other).map(|s| Step::Union(vec![s])),
                Segment::Selectors(selectors) => selectors
                    .iter()
                    .map(Sel::from)
                    .collect::<Option<Vec<Sel>>>()
                    .map(Step::Union),
                Segment::Descendant(_) => None,
            })
            .collect();
        let singular = steps
            .as_ref()
            .is_some_and(|s| s.iter().all(|step| !matches!(step, Step::Union(_))));
        Ok(CompiledPath {
            source: source.to_owned(),
            query,
            steps,
            singular,
        })
    }

    /// How the path descends, or `None` when only the query engine can
    /// evaluate it (filters, slices, descendants): then the whole document is needed.
    pub(crate) fn descent(&self) -> Option<Vec<Descent>> {
        let steps = self.steps.as_ref()?;
        Some(
            steps
                .iter()
                .map(|step| match step {
                    Step::Key(k) => Descent::Keys(vec![k.clone()]),
                    Step::Index(_) => Descent::Elements,
                    Step::Union(sels) => {
                        let keys: Vec<String> = sels
                            .iter()
                            .filter_map(|s| match s {
                                Sel::Key(k) => Some(k.clone()),
                                _ => None,
                            })
                            .collect();
                        if sels.iter().all(|s| matches!(s, Sel::Index(_))) {
                            Descent::Elements
                        } else if sels.iter().all(|s| matches!(s, Sel::Wildcard)) {
                            Descent::Wildcard
                        } else if keys.len() == sels.len() {
                            Descent::Keys(keys)
                        } else {
                            Descent::Everything
                        }
                    }
                })
                .collect(),
        )
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the path selects at most one value (RFC 9535 singular query).
    pub fn is_singular(&self) -> bool {
        self.singular
    }

    /// Every value the path selects, in document order.
    pub fn select<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        match &self.steps {
            Some(steps) if self.singular => walk(steps, value).into_iter().collect(),
            Some(steps) => walk_all(steps, value),
            None => js_path_process(&self.query, value)
                .map(|refs| refs.into_iter().map(|r| r.val).collect())
                .unwrap_or_default(),
        }
    }

    /// The first value the path selects.
    pub fn first<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        match &self.steps {
            Some(steps) if self.singular => walk(steps, value),
            _ => self.select(value).into_iter().next(),
        }
    }
}

fn index(items: &[Value], i: i64) -> Option<&Value> {
    let i = if i < 0 {
        items.len().checked_sub(i.unsigned_abs() as usize)?
    } else {
        usize::try_from(i).ok()?
    };
    items.get(i)
}

/// Walks a singular path.
fn walk<'a>(steps: &[Step], mut value: &'a Value) -> Option<&'a Value> {
    for step in steps {
        value = match (step, value) {
            (Step::Key(k), Value::Object(map)) => map.get(k)?,
            (Step::Index(i), Value::Array(items)) => index(items, *i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Walks a path with unions and wildcards, node list by node list (RFC 9535 §2.1.2).
fn walk_all<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut nodes = vec![root];
    let mut next = Vec::new();
    for step in steps {
        for node in nodes.drain(..) {
            match step {
                Step::Key(k) => next.extend(node.as_object().and_then(|m| m.get(k))),
                Step::Index(i) => next.extend(node.as_array().and_then(|a| index(a, *i))),
                Step::Union(selectors) => {
                    for sel in selectors {
                        match (sel, node) {
                            (Sel::Key(k), Value::Object(map)) => next.extend(map.get(k)),
                            (Sel::Index(i), Value::Array(items)) => next.extend(index(items, *i)),
                            (Sel::Wildcard, Value::Object(map)) => next.extend(map.values()),
                            (Sel::Wildcard, Value::Array(items)) => next.extend(items.iter()),
                            _ => {}
                        }
                    }
                }
            }
        }
        std::mem::swap(&mut nodes, &mut next);
        if nodes.is_empty() {
            break;
        }
    }
    nodes
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
    fn nesting_and_repeated_descendants_are_refused() {
        let e = CompiledPath::parse("$..*..*..*").unwrap_err();
        assert!(e.contains("at most 1 descendant segment"), "{e}");
        let deep = format!("${}", "[?@".repeat(40) + &"]".repeat(40));
        let e = CompiledPath::parse(&deep).unwrap_err();
        assert!(e.contains("nest 40 deep"), "{e}");
        // One descendant segment, quoted dots and brackets inside names are fine.
        assert!(CompiledPath::parse("$..[?@.type == 'user'].name").is_ok());
        assert!(CompiledPath::parse("$['a..b']['[[[[[[[[[[[[[[[[[[']").is_ok());
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

    /// The direct walk selects exactly what the query engine selects.
    #[test]
    fn walk_agrees_with_the_query_engine() {
        let v = json!({
            "a": {"b": [1, {"c": 2}, [3]], "d": null},
            "labels": [{"name": "bug"}, {"name": "p1"}, {"x": 1}],
            "user": {"login": "u"}, "assignee": {"login": "a"}, "merged_by": null,
            "m": {"z": 1, "a": 2}
        });
        for path in [
            "$",
            "$.a",
            "$.a.b[1].c",
            "$.a.b[-1][0]",
            "$.a.d",
            "$.nope",
            "$.a.b[9]",
            "$.labels[*].name",
            "$.labels[*]",
            "$.labels.*",
            "$['user','assignee'].login",
            "$['user','merged_by','nope'].login",
            "$.m.*",
            "$[*]",
            "$.a.b[0,2]",
            "$.a.b[*][*]",
            "$.labels[0,0].name",
            "$.user[*]",
            "$.a.b[1]['c','d']",
        ] {
            let compiled = CompiledPath::parse(path).unwrap();
            assert!(compiled.steps.is_some(), "{path} should be walkable");
            let engine: Vec<&Value> = js_path_process(&compiled.query, &v)
                .unwrap()
                .into_iter()
                .map(|r| r.val)
                .collect();
            assert_eq!(compiled.select(&v), engine, "{path}");
        }
        for path in ["$..name", "$.labels[?@.name]", "$.a.b[0:2]"] {
            assert!(CompiledPath::parse(path).unwrap().steps.is_none(), "{path}");
        }
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
