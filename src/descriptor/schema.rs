//! The descriptor JSON Schema: generated from the Rust types with schemars,
//! compiled once into a validator, and its errors turned into clear problems
//! (one per defect, tagged unions resolved by their discriminator).

use std::sync::LazyLock;

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::diagnostic::{Code, Pointer, Problem};
use super::model::ConnectorDescriptor;

/// Where the committed schema lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "schemas/connector-descriptor.schema.json";

/// The descriptor JSON Schema (draft-07, widely supported by editors).
pub fn generate() -> Value {
    let schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<ConnectorDescriptor>();
    schema.to_value()
}

/// The schema as committed: pretty JSON with keys sorted (whatever map type
/// serde_json was built with) and a trailing newline.
pub fn generate_pretty() -> String {
    let mut text = serde_json::to_string_pretty(&sorted(generate())).expect("a schema serializes");
    text.push('\n');
    text
}

/// The value with every object's keys in sorted order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    let schema = generate();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the generated descriptor schema is a valid JSON Schema");
    Compiled { schema, validator }
});

/// Validates a document against the descriptor schema; every structural problem at once.
pub fn validate(instance: &Value) -> Vec<Problem> {
    let compiled = &*COMPILED;
    let mut problems = Vec::new();
    for error in compiled.validator.iter_errors(instance) {
        translate(&error, instance, &compiled.schema, &mut problems);
    }
    problems.dedup();
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert((p.pointer.clone(), p.message.clone())));
    problems
}

fn pointer_of(error: &ValidationError<'_>) -> Pointer {
    Pointer::parse(error.instance_path().as_str())
}

fn translate(error: &ValidationError<'_>, root: &Value, schema: &Value, out: &mut Vec<Problem>) {
    let pointer = pointer_of(error);
    let instance = root.pointer(pointer.as_str());
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known = known_properties(schema, error.schema_path().as_str());
            for name in unexpected {
                let mut message = format!("unknown field `{name}`");
                if let Some(best) = suggest(name, known.iter().map(String::as_str)) {
                    message.push_str(&format!(", did you mean `{best}`?"));
                } else if !known.is_empty() {
                    message.push_str(&format!("; expected one of {}", quoted_list(&known)));
                }
                out.push(Problem::at_key(
                    pointer.key(name),
                    Code::UnknownField,
                    message,
                ));
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            out.push(Problem::new(
                pointer.key(name),
                Code::Schema,
                format!("missing required field `{name}`"),
            ));
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => type_name(t.as_str()).to_owned(),
                TypeKind::Multiple(ts) => {
                    let names: Vec<&str> = ts
                        .iter()
                        .map(|t| type_name(t.as_str()))
                        .filter(|n| *n != "null")
                        .collect();
                    names.join(" or ")
                }
            };
            out.push(Problem::new(
                pointer,
                Code::Schema,
                format!("expected {expected}, found {}", describe(instance)),
            ));
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            out.push(unknown_value(pointer, instance, &options));
        }
        ValidationErrorKind::Constant { expected_value } => {
            out.push(Problem::new(
                pointer,
                Code::Schema,
                format!("expected {expected_value}, found {}", describe(instance)),
            ));
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            one_of(&pointer, instance, context, root, schema, out);
        }
        ValidationErrorKind::Minimum { limit } => out.push(Problem::new(
            pointer,
            Code::Schema,
            format!("must be at least {limit}, found {}", describe(instance)),
        )),
        ValidationErrorKind::Maximum { limit } => out.push(Problem::new(
            pointer,
            Code::Schema,
            format!("must be at most {limit}, found {}", describe(instance)),
        )),
        ValidationErrorKind::MinLength { limit: 1 } => {
            out.push(Problem::new(pointer, Code::Schema, "must not be empty"))
        }
        ValidationErrorKind::Pattern { pattern } => out.push(Problem::new(
            pointer,
            Code::Schema,
            format!(
                "{} does not match the pattern `{pattern}`",
                describe(instance)
            ),
        )),
        _ => out.push(Problem::new(
            pointer,
            Code::Schema,
            error.masked().to_string(),
        )),
    }
}

/// A tagged union (`method`, `mode`, `type`) or an optional/alternative value failed
/// every branch. Pick the branch the document meant and report its errors, or say
/// the discriminator is wrong.
fn one_of(
    pointer: &Pointer,
    instance: Option<&Value>,
    branches: &[Vec<ValidationError<'static>>],
    root: &Value,
    schema: &Value,
    out: &mut Vec<Problem>,
) {
    // A branch is wrong for this value when its type does not fit, or when its
    // discriminator (a `const` on a direct child) does not match.
    let discriminator_of = |errors: &[ValidationError<'static>]| {
        errors.iter().find_map(|e| match e.kind() {
            ValidationErrorKind::Constant { expected_value } => {
                let p = pointer_of(e);
                (p.parent().as_ref() == Some(pointer)).then(|| {
                    (
                        p.tokens().last().unwrap_or_default(),
                        expected_value.clone(),
                    )
                })
            }
            _ => None,
        })
    };
    let type_mismatch = |errors: &[ValidationError<'static>]| {
        errors.iter().any(|e| {
            matches!(e.kind(), ValidationErrorKind::Type { .. }) && &pointer_of(e) == pointer
        })
    };
    // An enum written as `oneOf` of documented constants.
    let constants: Vec<String> = branches
        .iter()
        .filter_map(|b| match b.as_slice() {
            [e] if &pointer_of(e) == pointer => match e.kind() {
                ValidationErrorKind::Constant { expected_value } => {
                    expected_value.as_str().map(str::to_owned)
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    if !constants.is_empty() && constants.len() == branches.len() {
        out.push(unknown_value(pointer.clone(), instance, &constants));
        return;
    }
    let candidates: Vec<&Vec<ValidationError<'static>>> = branches
        .iter()
        .filter(|b| !type_mismatch(b) && discriminator_of(b).is_none())
        .collect();
    if let [only] = candidates.as_slice() {
        for e in only.iter() {
            translate(e, root, schema, out);
        }
        return;
    }
    if candidates.is_empty() {
        // Every branch rejected: by discriminator, if they all have one.
        let tags: Vec<(String, std::sync::Arc<Value>)> = branches
            .iter()
            .filter_map(|b| discriminator_of(b))
            .collect();
        if !tags.is_empty() && tags.len() == branches.iter().filter(|b| !type_mismatch(b)).count() {
            let field = tags[0].0.clone();
            let options: Vec<String> = tags
                .iter()
                .filter(|(f, _)| *f == field)
                .filter_map(|(_, v)| v.as_str().map(str::to_owned))
                .collect();
            let child = pointer.key(&field);
            out.push(unknown_value(
                child.clone(),
                root.pointer(child.as_str()),
                &options,
            ));
            return;
        }
        // Every branch has the wrong type.
        let mut types: Vec<&str> = Vec::new();
        for b in branches {
            for e in b {
                if let ValidationErrorKind::Type { kind } = e.kind()
                    && &pointer_of(e) == pointer
                {
                    match kind {
                        TypeKind::Single(t) => types.push(type_name(t.as_str())),
                        TypeKind::Multiple(ts) => {
                            types.extend(ts.iter().map(|t| type_name(t.as_str())))
                        }
                    }
                }
            }
        }
        types.retain(|t| *t != "null");
        types.dedup();
        if !types.is_empty() {
            out.push(Problem::new(
                pointer.clone(),
                Code::Schema,
                format!(
                    "expected {}, found {}",
                    types.join(" or "),
                    describe(instance)
                ),
            ));
            return;
        }
    }
    // Several plausible branches: report the one with the fewest errors.
    let pool: Vec<&Vec<ValidationError<'static>>> = if candidates.is_empty() {
        branches.iter().collect()
    } else {
        candidates
    };
    if let Some(best) = pool.into_iter().min_by_key(|b| b.len()) {
        for e in best {
            translate(e, root, schema, out);
        }
    }
}

fn unknown_value(pointer: Pointer, instance: Option<&Value>, options: &[String]) -> Problem {
    let found = instance
        .map(describe_value)
        .unwrap_or_else(|| "nothing".into());
    let is_missing = instance.is_none();
    let mut message = if is_missing {
        format!(
            "missing required field `{}`",
            pointer.tokens().last().unwrap_or_default()
        )
    } else {
        format!("unknown value {found}")
    };
    if let Some(Value::String(s)) = instance
        && let Some(best) = suggest(s, options.iter().map(String::as_str))
    {
        message.push_str(&format!(", did you mean `{best}`?"));
        return Problem::new(pointer, Code::Schema, message);
    }
    if !options.is_empty() {
        message.push_str(&format!("; expected one of {}", quoted_list(options)));
    }
    Problem::new(pointer, Code::Schema, message)
}

/// The property names a schema object allows, found from the failing keyword's path.
fn known_properties(schema: &Value, keyword_path: &str) -> Vec<String> {
    let parent = keyword_path
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent);
    let mut names: Vec<String> = schema
        .pointer(parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn type_name(t: &str) -> &str {
    match t {
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "boolean" => "a boolean",
        "array" => "a list",
        "object" => "an object",
        other => other,
    }
}

fn describe(instance: Option<&Value>) -> String {
    instance.map_or_else(|| "nothing".to_owned(), describe_value)
}

fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("`{}`", truncate(s, 60)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest known name, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    known
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (names are short; quadratic is fine).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(v: &Value) -> Vec<(String, String)> {
        validate(v)
            .into_iter()
            .map(|p| (p.pointer.field_path(), p.message))
            .collect()
    }

    #[test]
    fn discriminator_typos_are_named_with_a_suggestion() {
        let problems = messages(&json!({"auth": {"method": "oauht2", "config": {}}}));
        assert!(
            problems.contains(&(
                "auth.method".into(),
                "unknown value `oauht2`, did you mean `oauth2`?".into()
            )),
            "{problems:?}"
        );
    }

    #[test]
    fn errors_inside_the_chosen_branch_are_reported() {
        let problems = messages(&json!({"auth": {"method": "pat", "config": {
            "delivery": "bearer", "paramName": "", "credentialFields": [], "credentialKy": "x"}}}));
        assert!(
            problems.contains(&(
                "auth.config.credentialKy".into(),
                "unknown field `credentialKy`, did you mean `credentialKey`?".into()
            )),
            "{problems:?}"
        );
    }

    #[test]
    fn optional_structs_report_their_inner_errors() {
        let problems = messages(&json!({"ingestion": {"mode": "polling", "endpoint": "x",
            "method": "GET", "delta": {"type": "cursor", "cursorPath": "$.a"}, "rateLimitRpm": 0,
            "pagination": {"type": "cursor", "pageSize": 10, "nextPatth": "$.n"}}}));
        assert!(
            problems.contains(&(
                "ingestion.pagination.nextPatth".into(),
                "unknown field `nextPatth`, did you mean `nextPath`?".into()
            )),
            "{problems:?}"
        );
        assert!(
            problems.contains(&(
                "ingestion.rateLimitRpm".into(),
                "must be at least 1, found number `0`".into()
            )),
            "{problems:?}"
        );
    }

    #[test]
    fn wrong_types_and_missing_fields() {
        let problems = messages(
            &json!({"id": 5, "fieldMapping": {"signalTypeRules": [{"then": "x", "event": 5}]}}),
        );
        assert!(
            problems.contains(&("id".into(), "expected a string, found number `5`".into())),
            "{problems:?}"
        );
        assert!(
            problems.contains(&("name".into(), "missing required field `name`".into())),
            "{problems:?}"
        );
        assert!(
            problems.contains(&(
                "fieldMapping.signalTypeRules[0].event".into(),
                "expected a string or a list, found number `5`".into()
            )),
            "{problems:?}"
        );
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(
            suggest("nextPatth", ["nextPath", "nextParam"].into_iter()),
            Some("nextPath")
        );
        assert_eq!(suggest("zzz", ["nextPath"].into_iter()), None);
    }
}
