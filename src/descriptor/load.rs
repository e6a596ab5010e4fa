//! The one load pipeline, shared by `check`, the server and runtime registration:
//! read JSON/YAML with positions → JSON Schema → deserialize → compile (cross-field
//! checks) → across files, unique ids. Every problem becomes a located `Diagnostic`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::compile::{CompiledDescriptor, compile};
use super::diagnostic::{Code, Diagnostic, Pointer, Position, Problem, Target};
use super::model::{ConnectorDescriptor, ConnectorKind};
use super::schema;
use super::source::{self, Document, Format};

/// Largest descriptor file accepted.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A descriptor that passed every check.
#[derive(Debug)]
pub struct Loaded {
    /// Where it came from.
    pub file: String,
    /// The compiled descriptor.
    pub compiled: CompiledDescriptor,
}

/// The outcome of loading a set of files.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Descriptor files read.
    pub files: usize,
    /// Descriptors that passed every check.
    pub loaded: Vec<Loaded>,
    /// Every problem found, by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// The loader, knowing which `kind: native` connectors this build implements.
/// [`Loader::default`] checks nothing about natives (tools that only map);
/// `check`, the server and runtime registration use [`Loader::with_natives`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Loader<'a> {
    natives: Option<&'a [&'a str]>,
}

impl<'a> Loader<'a> {
    /// A loader for which a `kind: native` descriptor is valid only when its id
    /// is one of `natives`.
    pub fn with_natives(natives: &'a [&'a str]) -> Self {
        Loader {
            natives: Some(natives),
        }
    }

    /// Loads one descriptor from text. `label` names it in diagnostics.
    pub fn load_str(
        &self,
        label: &str,
        text: &str,
        format: Format,
    ) -> Result<CompiledDescriptor, Vec<Diagnostic>> {
        self.load_document(label, text, format).1
    }

    /// Loads one descriptor file.
    pub fn load_file(&self, path: &Path) -> Result<CompiledDescriptor, Vec<Diagnostic>> {
        let mut report = LoadReport::default();
        self.load_one(path, &mut report, &mut BTreeMap::new());
        match report.loaded.pop() {
            Some(l) if report.diagnostics.is_empty() => Ok(l.compiled),
            _ => Err(report.diagnostics),
        }
    }

    /// Loads every descriptor file in `paths` (files, or directories searched
    /// recursively for `.yaml`, `.yml` and `.json`), checking ids are unique across
    /// all of them. A path that is missing or holds no descriptor file is a problem.
    pub fn load_paths(&self, paths: &[PathBuf]) -> LoadReport {
        let mut report = LoadReport::default();
        let mut ids: BTreeMap<String, (String, Position)> = BTreeMap::new();
        for path in paths {
            let label = path.display().to_string();
            let files = match descriptor_files(path) {
                Ok(files) => files,
                Err(message) => {
                    report.diagnostics.push(io_diagnostic(&label, message));
                    continue;
                }
            };
            if files.is_empty() {
                report.diagnostics.push(io_diagnostic(
                    &label,
                    "no descriptor files (.yaml, .yml, .json) found".into(),
                ));
            }
            for file in files {
                self.load_one(&file, &mut report, &mut ids);
            }
        }
        report
    }

    /// [`parse_and_compile`], then the native check.
    fn load_document(
        &self,
        label: &str,
        text: &str,
        format: Format,
    ) -> (
        Option<Document>,
        Result<CompiledDescriptor, Vec<Diagnostic>>,
    ) {
        let (document, result) = parse_and_compile(label, text, format);
        let result = match (result, &document, self.natives) {
            (Ok(compiled), Some(doc), Some(natives))
                if compiled.descriptor.kind == ConnectorKind::Native
                    && !natives.contains(&compiled.id()) =>
            {
                let pointer = Pointer::root().key("kind");
                let listed = if natives.is_empty() {
                    "none".to_owned()
                } else {
                    natives.join(", ")
                };
                let problem = Problem::new(
                    pointer.clone(),
                    Code::Invalid,
                    format!(
                        "`kind: native` needs a native connector `{}` implemented in Rust (`src/connector/native/`); this build has: {listed}",
                        compiled.id()
                    ),
                );
                Err(vec![Diagnostic::new(
                    label,
                    doc.map.locate(&pointer, Target::Value),
                    problem,
                )])
            }
            (result, _, _) => result,
        };
        (document, result)
    }
}

/// Loads one descriptor from text (no native check). `label` names it in diagnostics.
pub fn load_str(
    label: &str,
    text: &str,
    format: Format,
) -> Result<CompiledDescriptor, Vec<Diagnostic>> {
    Loader::default().load_str(label, text, format)
}

/// Parses, validates and compiles; also returns the parsed document (for ids).
fn parse_and_compile(
    label: &str,
    text: &str,
    format: Format,
) -> (
    Option<Document>,
    Result<CompiledDescriptor, Vec<Diagnostic>>,
) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut document = match source::parse(text, format) {
        Ok(d) => d,
        Err(e) => {
            let d = Diagnostic::new(
                label,
                e.position,
                Problem::new(Pointer::root(), Code::Syntax, e.message),
            );
            return (None, Err(vec![d]));
        }
    };
    let locate = |problems: Vec<Problem>| -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = problems
            .into_iter()
            .map(|p| Diagnostic::new(label, document.map.locate(&p.pointer, p.target), p))
            .collect();
        out.sort_by_key(|d| (d.line, d.col));
        out
    };
    let mut problems = Vec::new();
    find_nul(&document.value, &Pointer::root(), &mut problems);
    if !problems.is_empty() {
        let diagnostics = locate(problems);
        return (Some(document), Err(diagnostics));
    }
    seed_category(&mut document.value);
    let problems = schema::validate(&document.value);
    if !problems.is_empty() {
        let diagnostics = locate(problems);
        return (Some(document), Err(diagnostics));
    }
    let mut descriptor: ConnectorDescriptor =
        match serde_path_to_error::deserialize(&document.value) {
            Ok(d) => d,
            Err(e) => {
                // The schema mirrors the types, so this is a backstop.
                let pointer = path_to_pointer(e.path());
                let problem = Problem::new(pointer, Code::Schema, e.inner().to_string());
                let diagnostics = locate(vec![problem]);
                return (Some(document), Err(diagnostics));
            }
        };
    imply_base_url_field(&mut descriptor, &document.value);
    let result = compile(&descriptor).map_err(locate);
    (Some(document), result)
}

/// Seed 004 names categories as the catalogue shows them (`Project
/// Management`, `Code & DevOps`); they are read as their snake_case values.
fn seed_category(document: &mut Value) {
    let Some(Value::String(category)) = document.get_mut("category") else {
        return;
    };
    let canonical = match category.trim().to_ascii_lowercase().as_str() {
        "project management" => "project_management",
        "communication" => "communication",
        "code & devops" | "code and devops" => "code_devops",
        "documents" => "documents",
        "email" => "email",
        "calendar" => "calendar",
        "monitoring" => "monitoring",
        "custom" => "custom",
        _ => return,
    };
    *category = canonical.to_owned();
}

/// Seed 004 makes `baseUrl` connection config: a descriptor that uses
/// `{{baseUrl}}` with neither a `baseUrl` of its own nor a `baseUrl` config
/// field gets an implied one (a required URL), as the seed means.
fn imply_base_url_field(descriptor: &mut ConnectorDescriptor, document: &Value) {
    fn uses_base_url(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains("{{baseUrl") || s.contains("{{ baseUrl"),
            Value::Array(items) => items.iter().any(uses_base_url),
            Value::Object(map) => map.values().any(uses_base_url),
            _ => false,
        }
    }
    if descriptor.base_url.is_none()
        && !descriptor.config_fields.iter().any(|f| f.key == "baseUrl")
        && uses_base_url(document)
    {
        descriptor.config_fields.push(super::model::CredentialField {
            options: Vec::new(),
            required_unless: None,
            key: "baseUrl".into(),
            label: "Base URL".into(),
            field_type: super::model::FieldType::Url,
            required: true,
            placeholder: None,
            help_text: Some(
                "The provider's API address for this connection (implied: the descriptor uses {{baseUrl}})"
                    .into(),
            ),
        });
    }
}

/// Problems for every string or key holding a NUL character (storage refuses
/// them). The document's depth is bounded by its reader.
fn find_nul(value: &Value, at: &Pointer, problems: &mut Vec<Problem>) {
    let nul = |at: Pointer| Problem::new(at, Code::Invalid, "must not contain NUL characters");
    match value {
        Value::String(s) if s.contains('\0') => problems.push(nul(at.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_nul(item, &at.index(i), problems);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                if k.contains('\0') {
                    problems.push(nul(at.clone()));
                }
                find_nul(v, &at.key(k), problems);
            }
        }
        _ => {}
    }
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> Pointer {
    use serde_path_to_error::Segment;
    let mut pointer = Pointer::root();
    for segment in path.iter() {
        pointer = match segment {
            Segment::Seq { index } => pointer.index(*index),
            Segment::Map { key } | Segment::Enum { variant: key } => pointer.key(key),
            Segment::Unknown => pointer,
        };
    }
    pointer
}

/// Loads one descriptor file (no native check).
pub fn load_file(path: &Path) -> Result<CompiledDescriptor, Vec<Diagnostic>> {
    Loader::default().load_file(path)
}

/// Loads every descriptor file in `paths` (no native check): see [`Loader::load_paths`].
pub fn load_paths(paths: &[PathBuf]) -> LoadReport {
    Loader::default().load_paths(paths)
}

fn io_diagnostic(label: &str, message: String) -> Diagnostic {
    Diagnostic::new(
        label,
        Position::START,
        Problem::new(Pointer::root(), Code::Io, message),
    )
}

impl Loader<'_> {
    fn load_one(
        &self,
        path: &Path,
        report: &mut LoadReport,
        ids: &mut BTreeMap<String, (String, Position)>,
    ) {
        let label = path.display().to_string();
        report.files += 1;
        let Some(format) = Format::from_path(path) else {
            report.diagnostics.push(io_diagnostic(
                &label,
                "not a descriptor file: expected a .yaml, .yml or .json extension".into(),
            ));
            return;
        };
        let text = match read_text(path) {
            Ok(t) => t,
            Err(message) => {
                report.diagnostics.push(io_diagnostic(&label, message));
                return;
            }
        };
        let (document, result) = self.load_document(&label, &text, format);
        // Duplicate ids are found even when a descriptor has other problems.
        if let Some(doc) = &document
            && let Some(Value::String(id)) = doc.value.get("id")
        {
            let id_pointer = Pointer::root().key("id");
            let position = doc.map.locate(&id_pointer, Target::Value);
            if let Some((first_file, first_pos)) = ids.get(id) {
                report.diagnostics.push(Diagnostic::new(
                    &label,
                    position,
                    Problem::new(
                        id_pointer,
                        Code::DuplicateId,
                        format!(
                            "duplicate connector id `{id}`: already defined at {first_file}:{}:{}",
                            first_pos.line, first_pos.col
                        ),
                    ),
                ));
                if let Err(d) = result {
                    report.diagnostics.extend(d);
                }
                return;
            }
            ids.insert(id.clone(), (label.clone(), position));
        }
        match result {
            Ok(compiled) => report.loaded.push(Loaded {
                file: label,
                compiled,
            }),
            Err(diagnostics) => report.diagnostics.extend(diagnostics),
        }
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes; descriptors are limited to {MAX_FILE_BYTES} bytes",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The descriptor files under `path`, sorted.
fn descriptor_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let p = entry.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else if Format::from_path(&p).is_some() {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::model::{ConnectorCategory, FieldType};

    fn seed(category: &str, base_url: Option<&str>) -> String {
        format!(
            "id: seedy\nname: S\ndescription: d\ncategory: {category}\nicon: i\nkind: generic\nversion: 1.0.0\n{}auth: {{method: none}}\ningestion:\n  mode: polling\n  endpoint: '{{{{baseUrl}}}}/items'\n  method: GET\n  delta: {{type: timestamp_filter, queryParam: since, format: iso8601}}\n  rateLimitRpm: 60\nfieldMapping: {{itemsPath: '$.items[*]', idPath: $.id, timestampPath: $.t, summaryTemplate: x, signalTypeRules: [], defaultType: x}}\nhealthCheck: {{endpoint: '{{{{baseUrl}}}}/h', method: GET, expectStatus: 200, timeoutMs: 10}}\n",
            base_url
                .map(|u| format!("baseUrl: {u}\n"))
                .unwrap_or_default()
        )
    }

    #[test]
    fn seed_display_categories_and_implied_base_url_load() {
        for (written, category) in [
            ("'Code & DevOps'", ConnectorCategory::CodeDevops),
            ("Project Management", ConnectorCategory::ProjectManagement),
            ("documents", ConnectorCategory::Documents),
        ] {
            let c = load_str("<seed>", &seed(written, None), Format::Yaml)
                .unwrap_or_else(|d| panic!("{written}: {d:#?}"));
            assert_eq!(c.descriptor.category, category);
            let implied = c
                .descriptor
                .config_fields
                .iter()
                .find(|f| f.key == "baseUrl")
                .unwrap();
            assert_eq!(
                (implied.field_type, implied.required),
                (FieldType::Url, true)
            );
        }
        // With a `baseUrl` of its own, nothing is implied.
        let c = load_str(
            "<seed>",
            &seed("custom", Some("https://api.example.com")),
            Format::Yaml,
        )
        .unwrap();
        assert!(c.descriptor.config_fields.is_empty());
        // Unknown categories are still refused.
        assert!(load_str("<seed>", &seed("Gardening", None), Format::Yaml).is_err());
    }
}
