//! The committed JSON Schema equals the one generated from the Rust types, and
//! the reference documentation names every field of it.

use std::collections::BTreeSet;

use poblysh_connectors::descriptor::schema::{SCHEMA_PATH, generate, generate_pretty};
use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schema_is_current() {
    let committed = std::fs::read_to_string(root().join(SCHEMA_PATH))
        .expect("schemas/connector-descriptor.schema.json is committed");
    assert!(
        committed == generate_pretty(),
        "{SCHEMA_PATH} is stale: run `cargo run -- schema --write` and commit it"
    );
}

#[test]
fn schema_is_a_valid_draft_07_schema() {
    let schema = generate();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::draft7::meta::validate(&schema).expect("the schema is valid draft-07");
}

/// Every property of every schema object, by definition name.
fn properties(schema: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![schema];
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    names.extend(props.keys().cloned());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

#[test]
fn reference_documents_every_field() {
    let doc = std::fs::read_to_string(root().join("docs/descriptor-reference.md"))
        .expect("docs/descriptor-reference.md exists");
    let missing: Vec<String> = properties(&generate())
        .into_iter()
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/descriptor-reference.md does not mention: {missing:?}"
    );
}
