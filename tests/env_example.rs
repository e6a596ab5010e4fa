//! `.env.example` lists every variable the service reads, each with its
//! default: copied as it is, it configures exactly what no configuration
//! does; and the README's table names every one of them too.

use std::collections::BTreeMap;

use poblysh_connectors::config::{Config, OpsConfig};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The variables `src/config.rs` reads (outside its tests), and the log format.
fn variables() -> Vec<String> {
    let source = read("src/config.rs");
    let code = &source[..source.find("#[cfg(test)]").unwrap()];
    let mut names: Vec<String> = code
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > "POBLYSH_".len()
                && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                && (s.starts_with("POBLYSH_") || *s == "DATABASE_URL" || *s == "API_BIND_ADDR")
                && !s.ends_with('_')
        })
        .map(str::to_owned)
        .collect();
    names.extend(["POBLYSH_LOG_FORMAT".to_owned(), "RUST_LOG".to_owned()]);
    names.sort();
    names.dedup();
    names
}

fn example() -> BTreeMap<String, String> {
    read(".env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_example_lists_every_variable_and_the_readme_too() {
    let names = variables();
    assert!(names.len() >= 30, "{names:?}");
    let example = example();
    let readme = read("README.md");
    for name in &names {
        assert!(example.contains_key(name), "`.env.example` lacks {name}");
        assert!(
            readme.contains(name.as_str()),
            "README.md does not mention {name}"
        );
    }
}

#[test]
fn the_example_as_it_is_changes_nothing() {
    let example = example();
    let vars: BTreeMap<&str, &str> = example
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let from_example = Config::from_map(&vars).unwrap();
    let defaults = Config::from_map(&BTreeMap::new()).unwrap();
    assert_eq!(from_example.ops, OpsConfig::default());
    assert_eq!(from_example.ops, defaults.ops);
    assert_eq!(from_example.database_url, defaults.database_url);
    assert_eq!(from_example.bind, defaults.bind);
    assert_eq!(from_example.descriptors_dir, defaults.descriptors_dir);
    assert_eq!(from_example.google, defaults.google);
    assert_eq!(
        (
            from_example.job_concurrency,
            from_example.tenant_job_concurrency,
            from_example.webhook_rate_limit,
            from_example.shutdown_seconds
        ),
        (
            defaults.job_concurrency,
            defaults.tenant_job_concurrency,
            defaults.webhook_rate_limit,
            defaults.shutdown_seconds
        ),
    );
    assert_eq!(
        (
            from_example.production,
            from_example.allow_private_networks,
            from_example.public_url.clone(),
            from_example.crypto_key.is_some()
        ),
        (false, false, None, false),
    );
    assert!(from_example.operator_tokens.is_empty());
    assert_eq!(from_example.provider_secret("slack", "CLIENT_ID"), None);
}
