//! `docs/signals.md` is the one signal vocabulary: every kind a shipped
//! descriptor declares is defined there with the providers that emit it, and
//! every seed name maps to a kind that exists (or says it has none yet).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use poblysh_connectors::descriptor::load::load_paths;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cells of the table rows under `## {section}`.
fn table(doc: &str, section: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(&format!("## {section}\n"))
        .unwrap_or_else(|| panic!("docs/signals.md has no `## {section}`"));
    doc[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

fn code(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

#[test]
fn every_declared_kind_is_defined_with_the_providers_that_emit_it() {
    let report = load_paths(&[root().join("descriptors")]);
    assert!(report.is_ok(), "{:#?}", report.diagnostics);
    let mut emitted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for loaded in &report.loaded {
        let d = &loaded.compiled.descriptor;
        assert!(
            !d.signals.is_empty(),
            "{} declares no `signals`: its rules' kinds would go unchecked",
            d.id
        );
        for kind in &d.signals {
            emitted
                .entry(kind.clone())
                .or_default()
                .insert(d.id.clone());
        }
    }
    let doc = std::fs::read_to_string(root().join("docs/signals.md")).unwrap();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in table(&doc, "Kinds") {
        let kind = code(&row[0]).unwrap_or_else(|| panic!("not a `kind`: {row:?}"));
        assert!(!row[1].is_empty(), "`{kind}` has no meaning");
        let providers = row[2].split(',').map(|p| p.trim().to_owned()).collect();
        assert!(
            documented.insert(kind.to_owned(), providers).is_none(),
            "`{kind}` is defined twice"
        );
    }
    for (kind, providers) in &emitted {
        assert_eq!(
            documented.get(kind),
            Some(providers),
            "docs/signals.md: `{kind}` is emitted by {providers:?}"
        );
    }
    let stale: Vec<&String> = documented
        .keys()
        .filter(|k| !emitted.contains_key(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/signals.md defines kinds no descriptor emits: {stale:?}"
    );

    for row in table(&doc, "Seed names") {
        let seed = code(&row[0]).unwrap_or_else(|| panic!("not a `seed name`: {row:?}"));
        match code(&row[2]) {
            Some(kind) => assert!(
                emitted.contains_key(kind),
                "seed name `{seed}` maps to `{kind}`, which nothing emits"
            ),
            None => assert_eq!(row[2], "*not yet*", "seed name `{seed}`: {row:?}"),
        }
    }
}
