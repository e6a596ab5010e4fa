//! YAML and JSON load into the same types: every shipped descriptor, written
//! back out as JSON (and as YAML-compatible JSON text), loads to an equal value.

use std::path::PathBuf;

use poblysh_connectors::descriptor::load::{load_file, load_str};
use poblysh_connectors::descriptor::source::Format;

#[test]
fn yaml_and_json_load_into_the_same_descriptor() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(root.join("descriptors"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        let from_yaml = load_file(&root.join(format!("descriptors/{name}.yaml")))
            .unwrap_or_else(|d| panic!("{name}: {d:#?}"));
        let json = serde_json::to_string_pretty(&from_yaml.descriptor).unwrap();
        let from_json =
            load_str("<json>", &json, Format::Json).unwrap_or_else(|d| panic!("{name}: {d:#?}"));
        assert_eq!(from_yaml.descriptor, from_json.descriptor, "{name}");
        // JSON text is also YAML 1.2: the YAML reader gives the same result.
        let from_json_as_yaml = load_str("<json as yaml>", &json, Format::Yaml)
            .unwrap_or_else(|d| panic!("{name}: {d:#?}"));
        assert_eq!(from_yaml.descriptor, from_json_as_yaml.descriptor, "{name}");
    }
}
