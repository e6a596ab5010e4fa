//! Validates the credentials and config a client gives for a connection against
//! the descriptor's `credentialFields` and `configFields`.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::descriptor::model::{CredentialField, FieldType};

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// `credentials.token`, `config.repos`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn error(prefix: &str, key: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: format!("{prefix}.{key}"),
        message: message.into(),
    }
}

fn unknown_keys(
    prefix: &str,
    fields: &[CredentialField],
    given: &Map<String, Value>,
) -> Vec<FieldError> {
    let known: Vec<&str> = fields.iter().map(|f| f.key.as_str()).collect();
    given
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| {
            let expected = if known.is_empty() {
                format!("this provider takes no {prefix}")
            } else {
                format!("expected one of {}", known.join(", "))
            };
            error(prefix, k, format!("unknown field; {expected}"))
        })
        .collect()
}

/// What text fields may not hold: storage (PostgreSQL) refuses NUL.
const NUL: &str = "must not contain NUL characters";

/// A connection's label: trimmed, empty means none; NUL refused.
pub fn label(given: Option<String>) -> Result<Option<String>, Vec<FieldError>> {
    match given {
        Some(n) if n.contains('\0') => Err(vec![error("connection", "name", NUL)]),
        given => Ok(given.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty())),
    }
}

fn is_absolute_http(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

/// Why `value` is not one of a `select` field's options (`None`: it is, or the
/// field is no `select`).
fn not_an_option(f: &CredentialField, value: &str) -> Option<String> {
    if f.field_type != FieldType::Select || f.options.iter().any(|o| o.value == value) {
        return None;
    }
    let values: Vec<&str> = f.options.iter().map(|o| o.value.as_str()).collect();
    Some(format!("must be one of {}", values.join(", ")))
}

/// The credentials as secrets, or every problem.
pub fn credentials(
    fields: &[CredentialField],
    given: &Map<String, Value>,
) -> Result<BTreeMap<String, SecretString>, Vec<FieldError>> {
    let prefix = "credentials";
    let mut errors = unknown_keys(prefix, fields, given);
    let mut out = BTreeMap::new();
    let given_value = |key: &str| {
        given
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    for f in fields {
        let needed = f.required && !f.required_unless.as_deref().is_some_and(given_value);
        let missing = match &f.required_unless {
            Some(other) => format!("required (or give `{prefix}.{other}`)"),
            None => "required".into(),
        };
        match given.get(&f.key) {
            None | Some(Value::Null) => {
                if needed {
                    errors.push(error(prefix, &f.key, missing));
                }
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                if needed {
                    errors.push(error(prefix, &f.key, missing));
                }
            }
            Some(Value::String(s)) => {
                if f.field_type == FieldType::Url && !is_absolute_http(s) {
                    errors.push(error(prefix, &f.key, "must be an absolute http(s) URL"));
                } else if let Some(message) = not_an_option(f, s) {
                    errors.push(error(prefix, &f.key, message));
                } else {
                    out.insert(f.key.clone(), SecretString::from(s.clone()));
                }
            }
            Some(_) => errors.push(error(prefix, &f.key, "must be a string")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The config as a JSON object (lists normalised to arrays), or every problem.
pub fn config(
    fields: &[CredentialField],
    given: &Map<String, Value>,
) -> Result<Value, Vec<FieldError>> {
    let prefix = "config";
    let mut errors = unknown_keys(prefix, fields, given);
    let mut out = Map::new();
    for f in fields {
        let value = match given.get(&f.key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        };
        if let Some(Value::String(s)) = value
            && s.contains('\0')
        {
            errors.push(error(prefix, &f.key, NUL));
            continue;
        }
        let normalised = match (f.field_type, value) {
            (_, None) => None,
            (FieldType::List, Some(Value::Array(items))) => {
                if items
                    .iter()
                    .any(|i| i.as_str().is_some_and(|s| s.contains('\0')))
                {
                    errors.push(error(prefix, &f.key, NUL));
                    continue;
                }
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|i| i.as_str().map(|s| s.trim().to_owned()))
                    .collect();
                match strings {
                    Some(list) => Some(
                        list.into_iter()
                            .filter(|s| !s.is_empty())
                            .collect::<Vec<_>>(),
                    ),
                    None => {
                        errors.push(error(prefix, &f.key, "must be a list of strings"));
                        continue;
                    }
                }
                .map(|l| Value::Array(l.into_iter().map(Value::String).collect()))
            }
            (FieldType::List, Some(Value::String(s))) => Some(Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_owned()))
                    .collect(),
            )),
            (FieldType::List, Some(_)) => {
                errors.push(error(prefix, &f.key, "must be a list of strings"));
                continue;
            }
            (FieldType::Url, Some(Value::String(s))) if !s.trim().is_empty() => {
                if is_absolute_http(s.trim()) {
                    Some(Value::String(s.trim().to_owned()))
                } else {
                    errors.push(error(prefix, &f.key, "must be an absolute http(s) URL"));
                    continue;
                }
            }
            (FieldType::Select, Some(Value::String(s))) if !s.trim().is_empty() => {
                match not_an_option(f, s.trim()) {
                    None => Some(Value::String(s.trim().to_owned())),
                    Some(message) => {
                        errors.push(error(prefix, &f.key, message));
                        continue;
                    }
                }
            }
            (_, Some(Value::String(s))) if s.trim().is_empty() => None,
            (_, Some(Value::String(s))) => Some(Value::String(s.clone())),
            (_, Some(_)) => {
                errors.push(error(prefix, &f.key, "must be a string"));
                continue;
            }
        };
        let empty = match &normalised {
            None => true,
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if empty {
            if f.required {
                errors.push(error(prefix, &f.key, "required"));
            }
        } else if let Some(v) = normalised {
            out.insert(f.key.clone(), v);
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;

    fn field(key: &str, t: FieldType, required: bool) -> CredentialField {
        CredentialField {
            options: Vec::new(),
            required_unless: None,
            key: key.into(),
            label: key.into(),
            field_type: t,
            required,
            placeholder: None,
            help_text: None,
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn credentials_rules() {
        let fields = [
            field("token", FieldType::Password, true),
            field("site", FieldType::Url, false),
        ];
        let ok = credentials(&fields, &map(json!({"token": "t0k"}))).unwrap();
        assert_eq!(ok["token"].expose_secret(), "t0k");
        let errors = credentials(
            &fields,
            &map(json!({"tokn": "x", "site": "ftp://x", "token": 5})),
        )
        .unwrap_err();
        let fields_named: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields_named,
            ["credentials.tokn", "credentials.token", "credentials.site"]
        );
        let errors = credentials(&fields, &map(json!({"token": "  "}))).unwrap_err();
        assert_eq!(errors[0].message, "required");
        assert_eq!(
            label(Some("  mine ".into())).unwrap().as_deref(),
            Some("mine")
        );
        assert_eq!(label(Some(" ".into())).unwrap(), None);
        assert_eq!(label(Some("a\0b".into())).unwrap_err()[0].message, NUL);
    }

    #[test]
    fn config_rules() {
        let fields = [
            field("repos", FieldType::List, true),
            field("baseUrl", FieldType::Url, false),
            field("project", FieldType::Text, false),
        ];
        assert_eq!(
            config(
                &fields,
                &map(json!({"repos": "a/b, c/d ,", "project": "X"}))
            )
            .unwrap(),
            json!({"repos": ["a/b", "c/d"], "project": "X"})
        );
        assert_eq!(
            config(
                &fields,
                &map(json!({"repos": ["a/b"], "baseUrl": " https://ghe.example/api "}))
            )
            .unwrap(),
            json!({"repos": ["a/b"], "baseUrl": "https://ghe.example/api"})
        );
        for nul in [
            json!({"repos": ["a\0b"]}),
            json!({"repos": ["a"], "project": "x\0"}),
        ] {
            let errors = config(&fields, &map(nul)).unwrap_err();
            assert_eq!(errors[0].message, NUL);
        }
        let errors = config(
            &fields,
            &map(json!({"repos": [], "baseUrl": "nope", "project": 3, "extra": 1})),
        )
        .unwrap_err();
        let named: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (
                    "config.extra",
                    "unknown field; expected one of repos, baseUrl, project"
                ),
                ("config.repos", "required"),
                ("config.baseUrl", "must be an absolute http(s) URL"),
                ("config.project", "must be a string"),
            ]
        );
    }

    #[test]
    fn a_select_takes_only_its_options() {
        let mut region = field("region", FieldType::Select, false);
        region.options = ["com", "eu", "com.au"]
            .iter()
            .map(|v| crate::descriptor::model::FieldOption {
                value: (*v).into(),
                label: None,
            })
            .collect();
        let fields = [region];
        assert_eq!(
            config(&fields, &map(json!({"region": " eu "}))).unwrap(),
            json!({"region": "eu"})
        );
        assert_eq!(config(&fields, &map(json!({}))).unwrap(), json!({}));
        for bad in [json!("evil.example"), json!("EU"), json!(["eu"])] {
            let errors = config(&fields, &map(json!({"region": bad}))).unwrap_err();
            assert_eq!(errors[0].field, "config.region");
        }
        let errors = config(&fields, &map(json!({"region": "x"}))).unwrap_err();
        assert_eq!(errors[0].message, "must be one of com, eu, com.au");
        let errors = credentials(&fields, &map(json!({"region": "x"}))).unwrap_err();
        assert_eq!(errors[0].message, "must be one of com, eu, com.au");
        assert!(credentials(&fields, &map(json!({"region": "com"}))).is_ok());
    }
}
