//! Projections: the parts of a webhook body or a polled page a descriptor
//! reads (event type, delivery id, routing, handshakes, signed timestamp,
//! pagination and delta paths, every mapping path and template field), built
//! at load time. Parsing a body through its projection
//! materializes only those parts and skips the rest (still checking that the
//! whole body is JSON), so a 28 KB GitHub delivery of which the mapping reads
//! a dozen fields costs a scan, not a tree of a thousand allocations. The
//! values the descriptor's paths select are the same as in a full parse.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::mapping::CompiledMapping;
use super::path::{CompiledPath, Descent};
use super::template::ItemTemplate;

/// What of a document is needed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Node {
    /// The whole value.
    All,
    /// Parts of the value: scalars are kept; an object keeps the `members`
    /// named (each through its node) and, under a wildcard, every other
    /// member through `every`; an array keeps each element through
    /// `elements` (an empty projection when no path indexes into it).
    #[default]
    None,
    /// See `None`, with something below it.
    Parts(Box<Parts>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Parts {
    members: BTreeMap<String, Node>,
    every: Node,
    elements: Node,
}

impl Node {
    fn parts(&mut self) -> Option<&mut Parts> {
        match self {
            Node::All => None,
            Node::None => {
                *self = Node::Parts(Box::default());
                self.parts()
            }
            Node::Parts(p) => Some(p),
        }
    }

    fn add(&mut self, descent: &[Descent]) {
        let Some((step, rest)) = descent.split_first() else {
            *self = Node::All;
            return;
        };
        let Some(parts) = self.parts() else {
            return;
        };
        match step {
            Descent::Everything => *self = Node::All,
            Descent::Elements => parts.elements.add(rest),
            // `[*]`: every element of an array, every member of an object
            // (those already named, and those named later, start from it).
            Descent::Wildcard => {
                parts.elements.add(rest);
                parts.every.add(rest);
                for member in parts.members.values_mut() {
                    member.add(rest);
                }
            }
            Descent::Keys(keys) => {
                for key in keys {
                    let every = &parts.every;
                    parts
                        .members
                        .entry(key.clone())
                        .or_insert_with(|| every.clone())
                        .add(rest);
                }
            }
        }
    }
}

/// The parts of a document a descriptor reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    root: Node,
}

impl Default for Projection {
    fn default() -> Self {
        Projection { root: Node::None }
    }
}

impl Projection {
    /// Everything (a full parse).
    pub fn all() -> Self {
        Projection { root: Node::All }
    }

    /// Whether the whole document is needed.
    pub fn is_all(&self) -> bool {
        self.root == Node::All
    }

    /// Adds a path evaluated on the document root.
    pub fn add_path(&mut self, path: &CompiledPath) {
        self.add_at(&[], path);
    }

    /// Adds everything a mapping reads: its items path, and every path and
    /// template field it evaluates on each item.
    pub fn add_mapping(&mut self, mapping: &CompiledMapping) {
        let Some(prefixes) = item_prefixes(mapping) else {
            self.root = Node::All;
            return;
        };
        for items in &prefixes {
            let paths = [
                Some(&mapping.id),
                mapping.external_id.as_ref(),
                Some(&mapping.timestamp),
                mapping.participants.as_ref(),
                mapping.tags.as_ref(),
                mapping.related.as_ref(),
                mapping.url.as_ref(),
            ];
            for path in paths.into_iter().flatten() {
                self.add_at(items, path);
            }
            let conditions = mapping
                .filter
                .iter()
                .chain(mapping.rules.iter().flat_map(|r| r.conditions.iter()))
                .chain(mapping.priority.iter().map(|(c, _)| c));
            for condition in conditions {
                self.add_at(items, &condition.path);
            }
            for field in &mapping.raw_fields {
                self.add_at(items, &field.path);
            }
            self.add_template(items, &mapping.summary);
        }
    }

    /// Adds a path evaluated on each item `mapping` selects.
    pub fn add_item_path(&mut self, mapping: &CompiledMapping, path: &CompiledPath) {
        match item_prefixes(mapping) {
            Some(prefixes) => {
                for items in &prefixes {
                    self.add_at(items, path);
                }
            }
            None => self.root = Node::All,
        }
    }

    fn add_at(&mut self, prefix: &[Descent], path: &CompiledPath) {
        match path.descent() {
            Some(rest) => self.root.add(&[prefix, &rest].concat()),
            None => self.root = Node::All,
        }
    }

    fn add_template(&mut self, prefix: &[Descent], template: &ItemTemplate) {
        let Some(fields) = template.fields() else {
            self.root.add(prefix);
            return;
        };
        for field in fields {
            let mut descent = prefix.to_vec();
            for segment in field {
                // `labels.[0]`, `this`, `@index`: not a plain member name.
                if segment.is_empty()
                    || segment.starts_with(['[', '@'])
                    || segment.parse::<i64>().is_ok()
                {
                    descent.push(Descent::Everything);
                    break;
                }
                descent.push(Descent::Keys(vec![segment.clone()]));
            }
            self.root.add(&descent);
        }
    }

    /// Parses `bytes` as JSON, keeping only the projected parts. Fails exactly
    /// when the bytes are not one JSON value: the whole text must be UTF-8, and
    /// skipped values are still checked as JSON while they are scanned.
    /// (`sonic-rs` was tried for the scan: its serde path was 1.6× slower here.
    /// A hand-written validating skipper finding string ends with `memchr` was
    /// too: 0.75× serde_json's own skip over the 28 KB GitHub sample, whose
    /// strings average 25 bytes, too short for `memchr` to pay.)
    pub fn parse(&self, bytes: &[u8]) -> Result<Value, ParseError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotUtf8)?;
        let mut de = serde_json::Deserializer::from_str(text);
        let value = Seed(&self.root).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// Where a mapping's items are: what its items path selects, and, when that
/// is one array, its elements (the mapper takes those as the items).
fn item_prefixes(mapping: &CompiledMapping) -> Option<[Vec<Descent>; 2]> {
    let items = mapping.items.descent()?;
    let elements = [items.as_slice(), &[Descent::Elements]].concat();
    Some([items, elements])
}

/// Why a body is not JSON.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not UTF-8 text.
    #[error("the body is not UTF-8")]
    NotUtf8,
    /// Not one JSON value.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

struct Seed<'a>(&'a Node);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Node::All => serde::Deserialize::deserialize(deserializer),
            _ => deserializer.deserialize_any(Projected(self.0)),
        }
    }
}

struct Projected<'a>(&'a Node);

/// A member name, borrowed from the input when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(v.to_owned().into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(v.into()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for Projected<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let elements = match self.0 {
            Node::Parts(parts) => &parts.elements,
            _ => &Node::None,
        };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed(elements))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Node::Parts(parts) = self.0 else {
            // Nothing below is read: the members are only checked.
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Value::Object(Map::new()));
        };
        // Sized for the members named (what is usually kept), so that the map
        // does not regrow member by member; a wildcard grows it further.
        let mut out = Map::with_capacity(parts.members.len());
        let every = (parts.every != Node::None).then_some(&parts.every);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match parts.members.get(key.as_ref()).or(every) {
                Some(node) => {
                    let value = map.next_value_seed(Seed(node))?;
                    out.insert(key.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn projection(paths: &[&str]) -> Projection {
        let mut p = Projection::default();
        for path in paths {
            p.add_path(&CompiledPath::parse(path).unwrap());
        }
        p
    }

    #[test]
    fn keeps_what_the_paths_read_and_drops_the_rest() {
        let doc = json!({
            "action": "opened",
            "pull_request": {"id": 1, "title": "t", "labels": [{"name": "bug", "id": 9}], "head": {"repo": {"big": [1, 2, 3]}}},
            "repository": {"full_name": "o/r", "owner": {"login": "o"}},
            "sender": {"login": "s"}
        });
        let p = projection(&[
            "$.action",
            "$.pull_request.id",
            "$.pull_request.labels[*].name",
            "$['repository','sender'].login",
        ]);
        let got = p.parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            got,
            json!({
                "action": "opened",
                "pull_request": {"id": 1, "labels": [{"name": "bug"}]},
                "repository": {},
                "sender": {"login": "s"}
            })
        );
        // Every projected path selects what it selects in the whole document.
        for path in [
            "$.action",
            "$.pull_request.labels[*].name",
            "$['repository','sender'].login",
            "$.pull_request.id",
        ] {
            let path = CompiledPath::parse(path).unwrap();
            assert_eq!(path.select(&got), path.select(&doc), "{}", path.source());
        }
    }

    fn small_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..9).prop_map(|n| json!(n)),
            prop_oneof![Just(-0.5), Just(1.25), Just(1e20), Just(-2.5e-7)].prop_map(|f| json!(f)),
            "[a-c]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn walkable_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let segment = prop_oneof![
            Just(".a"),
            Just(".b"),
            Just(".c"),
            Just("[*]"),
            Just("[0]"),
            Just("[1]"),
            Just("['a','c']"),
        ];
        proptest::collection::vec(segment, 0..4).prop_map(|s| format!("${}", s.concat()))
    }

    proptest::proptest! {
        /// Whatever the document and the walkable paths, each path selects
        /// the same values in the projected document as in the whole one.
        #[test]
        fn every_path_selects_the_same_in_the_projection(
            doc in small_json(),
            paths in proptest::collection::vec(walkable_path(), 1..5),
        ) {
            let compiled: Vec<CompiledPath> =
                paths.iter().map(|p| CompiledPath::parse(p).unwrap()).collect();
            let mut p = Projection::default();
            for path in &compiled {
                p.add_path(path);
            }
            let got = p.parse(doc.to_string().as_bytes()).unwrap();
            for path in &compiled {
                proptest::prop_assert_eq!(path.select(&got), path.select(&doc), "{}", path.source());
            }
        }
    }

    /// A JSON text with one byte changed (or none): mostly not JSON, in every
    /// way a byte can break it.
    fn mutated_json() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let byte = prop_oneof![
            Just(b'{'),
            Just(b'}'),
            Just(b'['),
            Just(b']'),
            Just(b'"'),
            Just(b','),
            Just(b':'),
            Just(b'\\'),
            Just(b'0'),
            Just(b'1'),
            Just(b'-'),
            Just(b'.'),
            Just(b'e'),
            Just(b'+'),
            Just(b'u'),
            Just(b't'),
            Just(b'n'),
            Just(b' '),
            Just(b'\n'),
            Just(0x01u8),
            Just(b'a'),
        ];
        (small_json(), any::<proptest::sample::Index>(), byte, 0..3u8).prop_map(
            |(doc, at, byte, how)| {
                let mut text = doc.to_string().into_bytes();
                let i = at.index(text.len() + 1);
                match how {
                    0 if i < text.len() => text[i] = byte,
                    1 => text.insert(i, byte),
                    _ if i < text.len() => {
                        text.remove(i);
                    }
                    _ => {}
                }
                String::from_utf8_lossy(&text).into_owned()
            },
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// The projected parse refuses exactly what serde_json refuses, whatever is kept.
        #[test]
        fn refuses_exactly_what_serde_json_refuses(
            text in mutated_json(),
            paths in proptest::collection::vec(walkable_path(), 0..3),
        ) {
            let compiled: Vec<CompiledPath> =
                paths.iter().map(|p| CompiledPath::parse(p).unwrap()).collect();
            let mut p = Projection::default();
            for path in &compiled {
                p.add_path(path);
            }
            let full = serde_json::from_str::<Value>(&text);
            let got = p.parse(text.as_bytes());
            proptest::prop_assert_eq!(got.is_ok(), full.is_ok(), "{:?}: {:?}", text, got);
            if let (Ok(full), Ok(got)) = (full, got) {
                for path in &compiled {
                    proptest::prop_assert_eq!(path.select(&got), path.select(&full), "{}", path.source());
                }
            }
        }
    }

    #[test]
    fn nesting_is_refused_where_serde_json_refuses_it() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for (paths, kept) in [
            (&["$.a"][..], "none"),
            (&["$[0][0]"][..], "some"),
            (&["$[*]"][..], "all"),
        ] {
            let p = projection(paths);
            for n in [1, 100, 127, 128, 200] {
                let text = nested(n);
                assert_eq!(
                    p.parse(text.as_bytes()).is_ok(),
                    serde_json::from_str::<Value>(&text).is_ok(),
                    "{n} levels, {kept} kept"
                );
            }
        }
        // Inside a skipped member, any depth is only scanned (as serde_json does).
        let deep = format!(r#"{{"a": 1, "b": {}}}"#, nested(10_000));
        assert_eq!(
            projection(&["$.a"]).parse(deep.as_bytes()).unwrap(),
            json!({"a": 1})
        );
    }

    #[test]
    fn a_github_delivery_projects_to_what_its_paths_select() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/github/webhook.pull_request.opened.json"
        ))
        .unwrap();
        let full: Value = serde_json::from_str(&text).unwrap();
        let paths = [
            "$.action",
            "$.pull_request.id",
            "$.pull_request.title",
            "$.pull_request['user','merged_by'].login",
            "$.pull_request.labels[*].name",
            "$.repository.full_name",
        ];
        let got = projection(&paths).parse(text.as_bytes()).unwrap();
        for path in paths {
            let path = CompiledPath::parse(path).unwrap();
            assert_eq!(path.select(&got), path.select(&full), "{}", path.source());
            assert!(
                !path.select(&full).is_empty(),
                "{} selects something",
                path.source()
            );
        }
    }

    #[test]
    fn wildcards_project_every_element_and_member() {
        let doc = json!({
            "items": [
                {"id": 1, "body": "long", "user": {"login": "a", "bio": "x"}, "labels": [{"name": "bug", "color": "red"}]},
                {"id": 2, "body": "long", "user": null, "labels": []},
                7
            ],
            "by_key": {"a": {"id": 3, "skip": 1}, "b": {"id": 4}, "c": {"other": true}},
            "first": [{"id": 5, "n": 1}, {"id": 6}],
            "next": "c2"
        });
        let paths = [
            "$.items[*].id",
            "$.items[*].user.login",
            "$.items[*].labels[*].name",
            "$.by_key[*].id",
            "$.by_key.c.other",
            "$.first[0].id",
            "$.next",
        ];
        let p = projection(&paths);
        assert!(!p.is_all());
        let got = p.parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            got,
            json!({
                "items": [
                    {"id": 1, "user": {"login": "a"}, "labels": [{"name": "bug"}]},
                    {"id": 2, "user": null, "labels": []},
                    7
                ],
                "by_key": {"a": {"id": 3}, "b": {"id": 4}, "c": {"other": true}},
                "first": [{"id": 5}, {"id": 6}],
                "next": "c2"
            })
        );
        for path in paths {
            let path = CompiledPath::parse(path).unwrap();
            assert_eq!(path.select(&got), path.select(&doc), "{}", path.source());
        }
        // A member named before a wildcard over its object gets the wildcard's parts too.
        let p = projection(&["$.m.a.x", "$.m[*].y"]);
        let got = p
            .parse(br#"{"m": {"a": {"x": 1, "y": 2, "z": 3}, "b": {"y": 4, "z": 5}}}"#)
            .unwrap();
        assert_eq!(got, json!({"m": {"a": {"x": 1, "y": 2}, "b": {"y": 4}}}));
    }

    #[test]
    fn general_paths_need_everything_and_bad_json_still_fails() {
        let p = projection(&["$.a", "$..name"]);
        assert!(p.is_all());
        let p = projection(&["$.a"]);
        assert!(p.parse(br#"{"a": 1, "b": [1, 2"#).is_err());
        assert!(p.parse(br#"{"a": 1} trailing"#).is_err());
        assert!(p.parse(br#"{"a": 1, "b": {"c": tru}}"#).is_err());
        assert!(
            p.parse(b"{\"a\": 1, \"b\": \"\xff\"}").is_err(),
            "invalid UTF-8 in a skipped string"
        );
        assert!(
            p.parse(br#"{"a": 1, "b": "\x"}"#).is_err(),
            "bad escape in a skipped string"
        );
        assert!(
            p.parse(br#"{"a": 1, "b": 01}"#).is_err(),
            "bad number in a skipped value"
        );
        // `$.a` selects nothing in an array.
        assert_eq!(
            p.parse(br#"[{"a": 1, "b": 2}, 3]"#).unwrap(),
            json!([{}, 3])
        );
        assert_eq!(
            p.parse(br#"{"a\u0062": 1, "a": {"x": [1.5, null, true]}}"#)
                .unwrap(),
            json!({"a": {"x": [1.5, null, true]}})
        );
    }
}
