//! Reads a descriptor file's text (JSON or YAML) into a `serde_json::Value` plus a
//! `SourceMap` from JSON pointers to line/column, so every later problem can be
//! reported at its place in the file. Duplicate keys are errors in both formats.

use std::collections::HashMap;
use std::path::Path;

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

use super::diagnostic::{Pointer, Position, Target};

/// Deepest nesting accepted (as serde_json's default recursion limit).
const MAX_DEPTH: usize = 128;
/// Most nodes a document may expand to (bounds YAML alias expansion).
pub const MAX_NODES: usize = 1_000_000;
/// Most bytes of keys and scalars a document may expand to (bounds YAML alias
/// expansion: a large string behind many aliases), four times the file limit.
pub const MAX_EXPANDED_BYTES: usize = 4 << 20;

/// What a node expands to: nodes, and bytes of keys and scalars.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

impl Size {
    const ONE: Size = Size { nodes: 1, bytes: 0 };

    fn leaf(bytes: usize) -> Size {
        Size { nodes: 1, bytes }
    }
}

impl std::ops::AddAssign for Size {
    fn add_assign(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// The two descriptor file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`
    Json,
    /// `.yaml` / `.yml`
    Yaml,
}

impl Format {
    /// The format of a descriptor file, from its extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// A syntax error: the text is not a well-formed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where.
    pub position: Position,
    /// What is wrong.
    pub message: String,
}

/// Where a document's nodes are: pointer → key and value positions.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    nodes: HashMap<Pointer, NodePosition>,
}

#[derive(Debug, Clone, Copy)]
struct NodePosition {
    key: Option<Position>,
    value: Position,
}

impl SourceMap {
    fn record(&mut self, pointer: Pointer, key: Option<Position>, value: Position) {
        self.nodes.insert(pointer, NodePosition { key, value });
    }

    /// The position of the key or value at `pointer`; for a node that is not in the
    /// text (a missing field, a node expanded from an alias), its nearest ancestor's.
    pub fn locate(&self, pointer: &Pointer, target: Target) -> Position {
        if let Some(node) = self.nodes.get(pointer) {
            return match (target, node.key) {
                (Target::Key, Some(key)) => key,
                _ => node.value,
            };
        }
        let mut current = pointer.parent();
        while let Some(p) = current {
            if let Some(node) = self.nodes.get(&p) {
                return node.value;
            }
            current = p.parent();
        }
        Position::START
    }
}

/// A parsed document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document as JSON.
    pub value: Value,
    /// Where its nodes are.
    pub map: SourceMap,
}

/// Parses `text` in the given format.
pub fn parse(text: &str, format: Format) -> Result<Document, SyntaxError> {
    match format {
        Format::Json => parse_json(text),
        Format::Yaml => parse_yaml(text),
    }
}

// ---------------------------------------------------------------- JSON

fn parse_json(text: &str) -> Result<Document, SyntaxError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SyntaxError {
        position: Position {
            line: e.line().max(1),
            col: e.column().max(1),
        },
        message: format!("invalid JSON: {}", strip_serde_position(&e.to_string())),
    })?;
    let map = locate_json(text)?;
    Ok(Document { value, map })
}

/// serde_json appends " at line L column C", which the diagnostic already shows.
fn strip_serde_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}

enum JsonFrame {
    Object {
        pointer: Pointer,
        key: Option<(String, Position)>,
        after_colon: bool,
        seen: HashMap<String, Position>,
    },
    Array {
        pointer: Pointer,
        index: usize,
    },
}

/// Records the position of every key and value of a JSON text serde_json has
/// already accepted, and rejects duplicate keys (which serde_json lets through).
fn locate_json(text: &str) -> Result<SourceMap, SyntaxError> {
    let mut map = SourceMap::default();
    let mut stack: Vec<JsonFrame> = Vec::new();
    let mut chars = text.char_indices().peekable();
    let (mut line, mut col) = (1usize, 1usize);
    let advance = |c: char, line: &mut usize, col: &mut usize| {
        if c == '\n' {
            *line += 1;
            *col = 1;
        } else {
            *col += 1;
        }
    };
    while let Some((i, c)) = chars.next() {
        let here = Position { line, col };
        advance(c, &mut line, &mut col);
        if c.is_whitespace() {
            continue;
        }
        // A key string of an object?
        if c == '"'
            && let Some(JsonFrame::Object {
                key: key @ None,
                seen,
                ..
            }) = stack.last_mut()
        {
            let end = skip_string(&mut chars, &mut line, &mut col);
            let name: String = serde_json::from_str(&text[i..end]).unwrap_or_default();
            if let Some(first) = seen.get(&name) {
                return Err(SyntaxError {
                    position: here,
                    message: format!(
                        "duplicate key `{name}` (first defined at line {})",
                        first.line
                    ),
                });
            }
            seen.insert(name.clone(), here);
            *key = Some((name, here));
            continue;
        }
        match c {
            ':' => {
                if let Some(JsonFrame::Object { after_colon, .. }) = stack.last_mut() {
                    *after_colon = true;
                }
                continue;
            }
            ',' => {
                match stack.last_mut() {
                    Some(JsonFrame::Array { index, .. }) => *index += 1,
                    Some(JsonFrame::Object {
                        key, after_colon, ..
                    }) => {
                        *key = None;
                        *after_colon = false;
                    }
                    None => {}
                }
                continue;
            }
            '}' | ']' => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        // The start of a value.
        let (pointer, key_pos) = match stack.last() {
            None => (Pointer::root(), None),
            Some(JsonFrame::Array { pointer, index }) => (pointer.index(*index), None),
            Some(JsonFrame::Object { pointer, key, .. }) => match key {
                Some((name, pos)) => (pointer.key(name), Some(*pos)),
                None => (pointer.key(""), None),
            },
        };
        map.record(pointer.clone(), key_pos, here);
        match c {
            '{' => stack.push(JsonFrame::Object {
                pointer,
                key: None,
                after_colon: false,
                seen: HashMap::new(),
            }),
            '[' => stack.push(JsonFrame::Array { pointer, index: 0 }),
            '"' => {
                skip_string(&mut chars, &mut line, &mut col);
            }
            _ => {
                // A number or literal: runs until a delimiter.
                while let Some(&(_, n)) = chars.peek() {
                    if n.is_whitespace() || matches!(n, ',' | '}' | ']') {
                        break;
                    }
                    advance(n, &mut line, &mut col);
                    chars.next();
                }
            }
        }
    }
    Ok(map)
}

/// Skips the rest of a string whose opening quote was consumed; returns the byte
/// index just past the closing quote.
fn skip_string(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    line: &mut usize,
    col: &mut usize,
) -> usize {
    let mut escaped = false;
    for (i, c) in chars.by_ref() {
        *col += 1;
        if c == '\n' {
            *line += 1;
            *col = 1;
        }
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return i + 1;
        }
    }
    usize::MAX
}

// ---------------------------------------------------------------- YAML

fn parse_yaml(text: &str) -> Result<Document, SyntaxError> {
    let mut builder = YamlBuilder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            position: Position {
                line: e.marker().line().max(1),
                col: e.marker().col() + 1,
            },
            message: format!("invalid YAML: {}", e.info()),
        })?;
        builder.event(event, span)?;
    }
    match builder.root {
        Some(value) => Ok(Document {
            value,
            map: builder.map,
        }),
        None => Err(SyntaxError {
            position: Position::START,
            message: "the file is empty: expected a descriptor document".into(),
        }),
    }
}

#[derive(Default)]
struct YamlBuilder {
    stack: Vec<YamlFrame>,
    root: Option<Value>,
    map: SourceMap,
    anchors: HashMap<usize, Anchored>,
    documents: usize,
    size: Size,
}

/// An anchored node, kept for its aliases.
struct Anchored {
    value: Value,
    depth: usize,
    size: Size,
}

enum YamlFrame {
    Sequence {
        pointer: Pointer,
        anchor: usize,
        items: Vec<Value>,
        depth: usize,
        size: Size,
    },
    Mapping {
        pointer: Pointer,
        anchor: usize,
        map: Map<String, Value>,
        key: Option<(String, Position)>,
        seen: HashMap<String, Position>,
        depth: usize,
        size: Size,
    },
}

fn position(span: Span) -> Position {
    Position {
        line: span.start.line().max(1),
        col: span.start.col() + 1,
    }
}

impl YamlBuilder {
    fn error(pos: Position, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            position: pos,
            message: message.into(),
        }
    }

    fn awaiting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(YamlFrame::Mapping { key: None, .. })
        )
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        let pos = position(span);
        let is_map = matches!(event, Event::MappingStart(..));
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Self::error(
                        pos,
                        "a descriptor file holds one YAML document; found a second one",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if self.awaiting_key() {
                    self.count(
                        Size {
                            nodes: 0,
                            bytes: text.len(),
                        },
                        pos,
                    )?;
                    self.set_key(text.into_owned(), pos)?;
                } else {
                    let bytes = text.len();
                    let value = scalar_value(text.as_ref(), style, tag.as_deref(), pos)?;
                    self.add(value, pos, anchor, 1, Size::leaf(bytes))?;
                }
            }
            Event::Alias(id) => {
                let Some(anchored) = self.anchors.get(&id) else {
                    return Err(Self::error(pos, "alias to an unknown anchor"));
                };
                if self.awaiting_key() {
                    match &anchored.value {
                        Value::String(s) => {
                            let s = s.clone();
                            self.count(Size::leaf(s.len()), pos)?;
                            self.set_key(s, pos)?;
                        }
                        _ => return Err(Self::error(pos, "mapping keys must be strings")),
                    }
                } else {
                    let (depth, size) = (anchored.depth, anchored.size);
                    // Counted before the (possibly large) value is copied.
                    self.count(size, pos)?;
                    let value = self.anchors[&id].value.clone();
                    self.place(value, pos, 0, depth, size)?;
                }
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), is_map, pos)?;
                if self.awaiting_key() {
                    return Err(Self::error(pos, "mapping keys must be strings"));
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(Self::error(
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let (pointer, key_pos) = self.child_pointer();
                self.map.record(pointer.clone(), key_pos, pos);
                self.stack.push(if is_map {
                    YamlFrame::Mapping {
                        pointer,
                        anchor,
                        map: Map::new(),
                        key: None,
                        seen: HashMap::new(),
                        depth: 1,
                        size: Size::ONE,
                    }
                } else {
                    YamlFrame::Sequence {
                        pointer,
                        anchor,
                        items: Vec::new(),
                        depth: 1,
                        size: Size::ONE,
                    }
                });
                self.count(Size::ONE, pos)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, depth, size) = match self.stack.pop() {
                    Some(YamlFrame::Sequence {
                        anchor,
                        items,
                        depth,
                        size,
                        ..
                    }) => (Value::Array(items), anchor, depth, size),
                    Some(YamlFrame::Mapping {
                        anchor,
                        map,
                        depth,
                        size,
                        ..
                    }) => (Value::Object(map), anchor, depth, size),
                    None => return Ok(()),
                };
                self.attach(value, anchor, depth, size);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn set_key(&mut self, name: String, pos: Position) -> Result<(), SyntaxError> {
        if let Some(YamlFrame::Mapping {
            key, seen, size, ..
        }) = self.stack.last_mut()
        {
            // A key is copied with every alias of its mapping.
            size.bytes = size.bytes.saturating_add(name.len());
            if let Some(first) = seen.get(&name) {
                return Err(Self::error(
                    pos,
                    format!(
                        "duplicate key `{name}` (first defined at line {})",
                        first.line
                    ),
                ));
            }
            seen.insert(name.clone(), pos);
            *key = Some((name, pos));
        }
        Ok(())
    }

    /// The pointer of the next child of the innermost collection, and its key position.
    fn child_pointer(&self) -> (Pointer, Option<Position>) {
        match self.stack.last() {
            None => (Pointer::root(), None),
            Some(YamlFrame::Sequence { pointer, items, .. }) => (pointer.index(items.len()), None),
            Some(YamlFrame::Mapping { pointer, key, .. }) => match key {
                Some((name, pos)) => (pointer.key(name), Some(*pos)),
                None => (pointer.key(""), None),
            },
        }
    }

    /// Counts what the document expands to; refuses it past the bounds.
    fn count(&mut self, size: Size, pos: Position) -> Result<(), SyntaxError> {
        self.size += size;
        if self.size.nodes > MAX_NODES {
            return Err(Self::error(
                pos,
                format!("the document expands to more than {MAX_NODES} nodes"),
            ));
        }
        if self.size.bytes > MAX_EXPANDED_BYTES {
            return Err(Self::error(
                pos,
                format!(
                    "the document expands to more than {} MiB of keys and values (YAML aliases are expanded)",
                    MAX_EXPANDED_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    /// Adds a complete leaf at the current place.
    fn add(
        &mut self,
        value: Value,
        pos: Position,
        anchor: usize,
        depth: usize,
        size: Size,
    ) -> Result<(), SyntaxError> {
        self.count(size, pos)?;
        self.place(value, pos, anchor, depth, size)
    }

    /// Puts a counted node at the current place.
    fn place(
        &mut self,
        value: Value,
        pos: Position,
        anchor: usize,
        depth: usize,
        size: Size,
    ) -> Result<(), SyntaxError> {
        if self.stack.len() + depth > MAX_DEPTH {
            return Err(Self::error(
                pos,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        let (pointer, key_pos) = self.child_pointer();
        self.map.record(pointer, key_pos, pos);
        self.attach(value, anchor, depth, size);
        Ok(())
    }

    /// Puts a finished node into its parent (or makes it the root).
    fn attach(&mut self, value: Value, anchor: usize, depth: usize, size: Size) {
        if anchor != 0 {
            self.anchors.insert(
                anchor,
                Anchored {
                    value: value.clone(),
                    depth,
                    size,
                },
            );
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(YamlFrame::Sequence {
                items,
                depth: d,
                size: n,
                ..
            }) => {
                items.push(value);
                *d = (*d).max(depth + 1);
                *n += size;
            }
            Some(YamlFrame::Mapping {
                map,
                key,
                depth: d,
                size: n,
                ..
            }) => {
                if let Some((name, _)) = key.take() {
                    map.insert(name, value);
                }
                *d = (*d).max(depth + 1);
                *n += size;
            }
        }
    }
}

fn check_collection_tag(tag: Option<&Tag>, is_map: bool, pos: Position) -> Result<(), SyntaxError> {
    let Some(tag) = tag else { return Ok(()) };
    let expected = if is_map { "map" } else { "seq" };
    if tag.is_yaml_core_schema() && tag.suffix == expected {
        return Ok(());
    }
    Err(YamlBuilder::error(
        pos,
        format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
    ))
}

/// Resolves a scalar by the YAML 1.2 core schema (quoted scalars are strings).
fn scalar_value(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    pos: Position,
) -> Result<Value, SyntaxError> {
    if let Some(tag) = tag
        && !tag.is_yaml_core_schema()
    {
        return Err(YamlBuilder::error(
            pos,
            format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
        ));
    }
    let tag = tag.map(|t| std::borrow::Cow::Owned(t.clone()));
    let scalar = Scalar::parse_from_cow_and_metadata(text.into(), style, tag.as_ref())
        .ok_or_else(|| YamlBuilder::error(pos, format!("`{text}` does not match its tag")))?;
    Ok(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(b),
        Scalar::Integer(i) => Value::Number(i.into()),
        Scalar::FloatingPoint(f) => {
            Value::Number(Number::from_f64(f.0).ok_or_else(|| {
                YamlBuilder::error(pos, format!("`{text}` is not a finite number"))
            })?)
        }
        Scalar::String(s) => Value::String(s.into_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(doc: &Document, pointer: &str, target: Target) -> (usize, usize) {
        let p = doc.map.locate(&Pointer::parse(pointer), target);
        (p.line, p.col)
    }

    #[test]
    fn yaml_values_and_positions() {
        let text = "id: github\nauth:\n  method: pat\nlist:\n  - a\n  - {x: 1, y: 2.5}\nq: \"007\"\nn: ~\n";
        let doc = parse(text, Format::Yaml).unwrap();
        assert_eq!(
            doc.value,
            json!({"id": "github", "auth": {"method": "pat"}, "list": ["a", {"x": 1, "y": 2.5}], "q": "007", "n": null})
        );
        assert_eq!(at(&doc, "/id", Target::Value), (1, 5));
        assert_eq!(at(&doc, "/id", Target::Key), (1, 1));
        assert_eq!(at(&doc, "/auth/method", Target::Value), (3, 11));
        assert_eq!(at(&doc, "/list/1/y", Target::Value), (6, 15));
        // Missing nodes fall back to their nearest ancestor.
        assert_eq!(at(&doc, "/auth/config/x", Target::Value), (3, 3));
    }

    #[test]
    fn aliases_of_large_values_are_bounded_by_expanded_size() {
        // A 64 KB string behind 8,192 aliases would expand to 512 MiB.
        let mut text = format!("big: &s \"{}\"\nlist:\n", "x".repeat(64 * 1024));
        for _ in 0..8192 {
            text.push_str("  - *s\n");
        }
        let e = parse(&text, Format::Yaml).unwrap_err();
        assert!(
            e.message.contains("expands to more than 4 MiB"),
            "{}",
            e.message
        );
        // Far below the bound, aliases work.
        let doc = parse("a: &s hello\nb: *s\n", Format::Yaml).unwrap();
        assert_eq!(doc.value, json!({"a": "hello", "b": "hello"}));
    }

    #[test]
    fn yaml_core_schema_not_yaml_1_1() {
        let doc = parse("a: yes\nb: on\nc: true\nd: 0x10\ne: '1'\n", Format::Yaml).unwrap();
        assert_eq!(
            doc.value,
            json!({"a": "yes", "b": "on", "c": true, "d": 16, "e": "1"})
        );
    }

    #[test]
    fn yaml_rejects_duplicates_tags_and_second_documents() {
        let e = parse("a: 1\nb: 2\na: 3\n", Format::Yaml).unwrap_err();
        assert_eq!(e.position, Position { line: 3, col: 1 });
        assert!(e.message.contains("duplicate key `a`"), "{}", e.message);
        let e = parse("a: !foo 1\n", Format::Yaml).unwrap_err();
        assert!(e.message.contains("unsupported YAML tag"), "{}", e.message);
        let e = parse("a: 1\n---\nb: 2\n", Format::Yaml).unwrap_err();
        assert!(e.message.contains("one YAML document"), "{}", e.message);
        let e = parse("a: [1, 2\n", Format::Yaml).unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
        assert!(parse("", Format::Yaml).is_err());
        assert!(parse("{[1]: 2}", Format::Yaml).is_err());
    }

    #[test]
    fn yaml_aliases_expand_within_budget() {
        let doc = parse("a: &x [1, 2]\nb: *x\n", Format::Yaml).unwrap();
        assert_eq!(doc.value, json!({"a": [1, 2], "b": [1, 2]}));
        // Billion laughs: each level doubles; stopped by the node budget.
        let mut text = String::from("l0: &l0 [x, x]\n");
        for i in 1..40 {
            text.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}]\n", p = i - 1));
        }
        let e = parse(&text, Format::Yaml).unwrap_err();
        assert!(e.message.contains("nodes"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(parse(&deep, Format::Yaml).is_err());
        assert!(parse(&deep, Format::Json).is_err());
    }

    #[test]
    fn json_values_positions_and_duplicates() {
        let text = "{\n  \"id\": \"x\",\n  \"a\": [1, {\"b\\\"c\": true}],\n  \"s\": \"q\\\"{\"\n}";
        let doc = parse(text, Format::Json).unwrap();
        assert_eq!(
            doc.value,
            json!({"id": "x", "a": [1, {"b\"c": true}], "s": "q\"{"})
        );
        assert_eq!(at(&doc, "/id", Target::Key), (2, 3));
        assert_eq!(at(&doc, "/id", Target::Value), (2, 9));
        assert_eq!(at(&doc, "/a/1", Target::Value), (3, 12));
        assert_eq!(at(&doc, "/a/1/b\"c", Target::Value), (3, 21));
        assert_eq!(at(&doc, "/s", Target::Value), (4, 8));
        let e = parse("{\"a\": 1,\n \"a\": 2}", Format::Json).unwrap_err();
        assert_eq!(e.position, Position { line: 2, col: 2 });
        let e = parse("{\"a\": 1,}", Format::Json).unwrap_err();
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
        assert_eq!(e.position.line, 1);
    }
}
