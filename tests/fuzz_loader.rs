//! Property test: random mutations of valid descriptors never make the loader
//! panic; every input yields `Ok` or diagnostics.

use std::path::PathBuf;

use poblysh_connectors::descriptor::load::load_str;
use poblysh_connectors::descriptor::source::Format;
use proptest::prelude::*;

/// Fragments that tend to reach interesting code paths when spliced in.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "-",
    "\"",
    "'",
    "\n",
    "\n  ",
    "\t",
    "$",
    "$..",
    "[*]",
    "{{",
    "}}",
    "{{#if x}}",
    "{{/if}}",
    "{{> p}}",
    "&a ",
    "*a",
    "!!int ",
    "!foo ",
    "~",
    "null",
    "true",
    "1e999",
    "-0",
    "0x1F",
    "\\u0000",
    "---\n",
    "...",
    "? ",
    "| ",
    "> ",
    "#",
    "%",
    "@",
    "é",
    "🦀",
    "type: cursor",
    "method: oauth2",
    "operator: in",
    "value: [a]",
    "mode: webhook",
    "verification: token",
    "(?<",
    "[[",
    "{{config.x}}",
    "{{pageToken}}",
];

fn seeds() -> Vec<(String, Format)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["descriptors", "tests/seed-shape"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            if let Some(format) = Format::from_path(&f) {
                out.push((std::fs::read_to_string(&f).unwrap(), format));
            }
        }
    }
    assert!(out.len() >= 10);
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Replace { at: usize, byte: u8 },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    prop_oneof![
        (pos, 1usize..24).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (pos, 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (pos, any::<u8>()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
        pos.prop_map(|line| Mutation::DuplicateLine { line }),
        (pos, pos).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        pos.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Delete { at, len } => {
                let start = at % n;
                let end = (start + len).min(bytes.len());
                if start < end {
                    bytes.drain(start..end);
                }
            }
            Mutation::Insert { at, token } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, TOKENS[token].bytes());
            }
            Mutation::Replace { at, byte } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            Mutation::DuplicateLine { line } | Mutation::SwapLines { a: line, .. }
                if bytes.is_empty() =>
            {
                let _ = line;
            }
            Mutation::DuplicateLine { line } => {
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let i = line % lines.len();
                let copy = lines[i].clone();
                lines.insert(i, copy);
                bytes = lines.join(&b'\n');
            }
            Mutation::SwapLines { a, b } => {
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
                let (i, j) = (a % lines.len(), b % lines.len());
                lines.swap(i, j);
                bytes = lines.join(&b'\n');
            }
            Mutation::Truncate { at } => {
                let at = at % n;
                bytes.truncate(at);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_descriptors_never_panic(
        seed in any::<usize>(),
        mutations in prop::collection::vec(mutation(), 1..6),
        as_other_format in any::<bool>(),
    ) {
        let seeds = seeds();
        let (text, format) = &seeds[seed % seeds.len()];
        let mutated = apply(text, &mutations);
        let format = match (format, as_other_format) {
            (f, false) => *f,
            (Format::Json, true) => Format::Yaml,
            (Format::Yaml, true) => Format::Json,
        };
        // Ok or Err are both fine; a panic fails the test.
        let result = load_str("<mutated>", &mutated, format);
        if let Err(diagnostics) = result {
            prop_assert!(!diagnostics.is_empty());
            for d in diagnostics {
                prop_assert!(d.line >= 1 && d.col >= 1);
            }
        }
    }
}
