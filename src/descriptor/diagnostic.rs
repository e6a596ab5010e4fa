//! Diagnostics: problems found in a descriptor, located by JSON pointer and then
//! by file position, with text (`file:line:col: path: message`) and JSON renderers.

use std::fmt;

use serde::Serialize;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub col: usize,
}

impl Position {
    /// The start of a file.
    pub const START: Position = Position { line: 1, col: 1 };
}

/// What kind of problem a diagnostic reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The file could not be read.
    Io,
    /// The file is not valid JSON or YAML.
    Syntax,
    /// The document does not match the descriptor schema.
    Schema,
    /// A key the schema does not know.
    UnknownField,
    /// An invalid JSONPath expression.
    JsonPath,
    /// An invalid template, or one using a variable that does not exist.
    Template,
    /// An invalid regular expression.
    Regex,
    /// An invalid or unusable URL.
    Url,
    /// Two descriptors with the same id.
    DuplicateId,
    /// Any other semantic problem (a cross-field check).
    Invalid,
}

impl Code {
    /// The code as written in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "io",
            Code::Syntax => "syntax",
            Code::Schema => "schema",
            Code::UnknownField => "unknown_field",
            Code::JsonPath => "jsonpath",
            Code::Template => "template",
            Code::Regex => "regex",
            Code::Url => "url",
            Code::DuplicateId => "duplicate_id",
            Code::Invalid => "invalid",
        }
    }
}

/// A JSON pointer (RFC 6901) into a descriptor document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pointer(String);

impl Pointer {
    /// The document root.
    pub fn root() -> Self {
        Pointer(String::new())
    }

    /// Parses an RFC 6901 pointer string (`""` or `/a/b`).
    pub fn parse(s: &str) -> Self {
        Pointer(s.to_owned())
    }

    /// This pointer extended by an object key.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut s = String::with_capacity(self.0.len() + key.len() + 1);
        s.push_str(&self.0);
        s.push('/');
        for c in key.chars() {
            match c {
                '~' => s.push_str("~0"),
                '/' => s.push_str("~1"),
                c => s.push(c),
            }
        }
        Pointer(s)
    }

    /// This pointer extended by an array index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        Pointer(format!("{}/{index}", self.0))
    }

    /// The pointer string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent pointer, or `None` at the root.
    pub fn parent(&self) -> Option<Pointer> {
        self.0.rfind('/').map(|i| Pointer(self.0[..i].to_owned()))
    }

    /// The unescaped reference tokens.
    pub fn tokens(&self) -> impl Iterator<Item = String> + '_ {
        self.0
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
    }

    /// The field path shown to people: `ingestion.pagination.nextPath`,
    /// `fieldMapping.signalTypeRules[2].value`, `ingestion.headers["X.Y"]`.
    pub fn field_path(&self) -> String {
        let mut out = String::new();
        for token in self.tokens() {
            if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
                out.push('[');
                out.push_str(&token);
                out.push(']');
            } else if !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '$'))
            {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&token);
            } else {
                out.push_str("[\"");
                out.push_str(&token.replace('\\', "\\\\").replace('"', "\\\""));
                out.push_str("\"]");
            }
        }
        out
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which part of a member a problem is about: the value (most problems) or the key
/// (an unknown or duplicate key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The member's value.
    Value,
    /// The member's key.
    Key,
}

/// A problem in a descriptor document, located by pointer (not yet by position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the document.
    pub pointer: Pointer,
    /// Whether the key or the value is at fault.
    pub target: Target,
    /// What kind of problem.
    pub code: Code,
    /// What is wrong, for people.
    pub message: String,
}

impl Problem {
    /// A problem with the value at `pointer`.
    pub fn new(pointer: Pointer, code: Code, message: impl Into<String>) -> Self {
        Problem {
            pointer,
            target: Target::Value,
            code,
            message: message.into(),
        }
    }

    /// A problem with the key at `pointer`.
    pub fn at_key(pointer: Pointer, code: Code, message: impl Into<String>) -> Self {
        Problem {
            pointer,
            target: Target::Key,
            code,
            message: message.into(),
        }
    }
}

/// A problem located in a file: what `check` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as given on the command line (or a label such as `<request body>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The field path (`ingestion.pagination.nextPath`); empty for the whole document.
    pub path: String,
    /// The RFC 6901 JSON pointer of the field.
    pub pointer: String,
    /// What kind of problem.
    pub code: Code,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// Builds a diagnostic from a problem located at `position` in `file`.
    pub fn new(file: &str, position: Position, problem: Problem) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line: position.line,
            col: position.col,
            path: problem.pointer.field_path(),
            pointer: problem.pointer.as_str().to_owned(),
            code: problem.code,
            message: problem.message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_read_like_code() {
        let p = Pointer::root()
            .key("fieldMapping")
            .key("signalTypeRules")
            .index(2)
            .key("value");
        assert_eq!(p.as_str(), "/fieldMapping/signalTypeRules/2/value");
        assert_eq!(p.field_path(), "fieldMapping.signalTypeRules[2].value");
        let h = Pointer::root().key("headers").key("X.Api/Key");
        assert_eq!(h.as_str(), "/headers/X.Api~1Key");
        assert_eq!(h.field_path(), "headers[\"X.Api/Key\"]");
        assert_eq!(Pointer::root().field_path(), "");
        assert_eq!(h.parent().unwrap().as_str(), "/headers");
    }

    #[test]
    fn diagnostic_renders_compiler_style() {
        let d = Diagnostic::new(
            "descriptors/x.yaml",
            Position { line: 3, col: 7 },
            Problem::new(Pointer::root().key("id"), Code::Invalid, "bad id"),
        );
        assert_eq!(d.to_string(), "descriptors/x.yaml:3:7: id: bad id");
    }
}
