//! YAML → JSON with positions. Definitions are parsed with `marked-yaml` so that every
//! node keeps its line and column; the tree becomes a `serde_json::Value` (the shape the
//! JSON Schema validator and serde want) plus a map from JSON pointer to position, so any
//! later check that can name a pointer can also name a line.

use crate::diagnostic::{Diagnostic, Severity};
use marked_yaml::{LoaderOptions, Node};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// A parsed source file: its JSON value and where each node came from. A composed document
/// (a workflow with locality overlays, see [`crate::overlay`]) spans several files: each
/// node keeps the file it was written in, so a diagnostic names the overlay's own line.
#[derive(Debug, Clone)]
pub struct SourceDoc {
    /// The file read; for a composed document, the base workflow's.
    pub file: String,
    pub value: Value,
    files: Vec<String>,
    positions: HashMap<String, Pos>,
}

/// Where a node was written: an index into the document's files, line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub file: usize,
    pub line: usize,
    pub col: usize,
}

impl SourceDoc {
    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostic> {
        let options = LoaderOptions::default()
            .error_on_duplicate_keys(true)
            .prevent_coercion(true);
        let node = marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| {
            let (line, col) = load_error_position(&e);
            let what = load_error_message(&e);
            // The parser notices an unclosed bracket lines later; point at the bracket.
            let (line, col, message) = match unclosed_bracket(text, line, col) {
                Some((l, c, b)) if matches!(e, marked_yaml::LoadError::ScanError(..)) => (
                    l,
                    c,
                    format!("YAML syntax: this \"{b}\" is never closed (the parser stopped at {line}:{col}: {what})"),
                ),
                _ => (line, col, format!("YAML syntax: {what}")),
            };
            Diagnostic {
                file: file.to_string(),
                line,
                col,
                severity: Severity::Error,
                message,
            }
        })?;
        let mut positions = HashMap::new();
        let value = to_json(&node, String::new(), &mut positions);
        Ok(Self {
            file: file.to_string(),
            value,
            files: vec![file.to_string()],
            positions,
        })
    }

    /// A document assembled from parts of several files (see [`crate::overlay`]).
    pub(crate) fn assembled(files: Vec<String>, value: Value, positions: HashMap<String, Pos>) -> Self {
        Self {
            file: files.first().cloned().unwrap_or_default(),
            value,
            files,
            positions,
        }
    }

    /// Where the node at `pointer` was written, if it has a place of its own; `#key` after
    /// the pointer asks for its key's place.
    pub(crate) fn exact(&self, pointer: &str) -> Option<Pos> {
        self.positions.get(pointer).copied()
    }

    /// Position of the node at `pointer`, or of its nearest ancestor that has one.
    pub fn position(&self, pointer: &str) -> (usize, usize) {
        let pos = self.located(pointer);
        (pos.line, pos.col)
    }

    /// File name and position of the node at `pointer` (or its nearest located ancestor).
    pub fn origin(&self, pointer: &str) -> (&str, usize, usize) {
        let pos = self.located(pointer);
        (&self.files[pos.file], pos.line, pos.col)
    }

    fn located(&self, pointer: &str) -> Pos {
        let mut p = pointer.to_string();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p.truncate(i),
                None => {
                    return Pos {
                        file: 0,
                        line: 1,
                        col: 1,
                    };
                }
            }
        }
    }

    /// An error at the key of the node at `pointer` (an unknown key), else at the node.
    pub fn key_error(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        match self.positions.get(&format!("{pointer}#key")) {
            Some(&pos) => self.at(pos, Severity::Error, message),
            None => self.error(pointer, message),
        }
    }

    fn at(&self, pos: Pos, severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.files[pos.file].clone(),
            line: pos.line,
            col: pos.col,
            severity,
            message: message.into(),
        }
    }

    pub fn error(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(pointer, Severity::Error, message)
    }

    pub fn warning(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(pointer, Severity::Warning, message)
    }

    fn diagnostic(&self, pointer: &str, severity: Severity, message: impl Into<String>) -> Diagnostic {
        self.at(self.located(pointer), severity, message)
    }
}

impl SourceDoc {
    /// The document as block YAML; with `blame`, each line written in another file than the
    /// first (an overlay's part of a composed workflow) ends with `# file:line`.
    pub fn to_yaml(&self, blame: bool) -> String {
        let mut out = String::new();
        self.write_node(&self.value, "", 0, blame, &mut out);
        out
    }

    fn note(&self, pointer: &str, blame: bool) -> String {
        if !blame {
            return String::new();
        }
        let pos = self.located(pointer);
        if pos.file == 0 {
            return String::new();
        }
        format!("  # {}:{}", self.files[pos.file], pos.line)
    }

    fn write_node(&self, value: &Value, pointer: &str, indent: usize, blame: bool, out: &mut String) {
        let pad = "  ".repeat(indent);
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let child = format!("{pointer}/{}", pointer_segment(k));
                    let key = yaml_scalar(&Value::String(k.clone()));
                    match v {
                        Value::Object(m) if !m.is_empty() => {
                            out.push_str(&format!("{pad}{key}:{}\n", self.note(&child, blame)));
                            self.write_node(v, &child, indent + 1, blame, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{key}:{}\n", self.note(&child, blame)));
                            self.write_node(v, &child, indent + 1, blame, out);
                        }
                        _ => out.push_str(&format!("{pad}{key}: {}{}\n", yaml_scalar(v), self.note(&child, blame))),
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let child = format!("{pointer}/{i}");
                    match v {
                        Value::Object(m) if !m.is_empty() => {
                            // The item's first key shares the dash's line.
                            let mut inner = String::new();
                            self.write_node(v, &child, indent + 1, blame, &mut inner);
                            let body = inner.trim_start_matches(' ');
                            out.push_str(&format!("{pad}- {body}"));
                        }
                        _ => out.push_str(&format!("{pad}- {}{}\n", yaml_scalar(v), self.note(&child, blame))),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", yaml_scalar(other))),
        }
    }
}

/// A scalar as YAML: plain where it reads back as the same string, else JSON-quoted.
fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars().all(|c| c.is_alphanumeric() || "_-./@+".contains(c))
                && !s.starts_with(['-', '.', '@'])
                && s.parse::<f64>().is_err()
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
                );
            if plain {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// Escape one JSON pointer segment (RFC 6901).
pub fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn to_json(node: &Node, pointer: String, positions: &mut HashMap<String, Pos>) -> Value {
    let pos = |m: &marked_yaml::Marker| Pos {
        file: 0,
        line: m.line(),
        col: m.column(),
    };
    if let Some(start) = node.span().start() {
        positions.insert(pointer.clone(), pos(start));
    }
    match node {
        Node::Scalar(s) => scalar(s),
        Node::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, format!("{pointer}/{i}"), positions))
                .collect(),
        ),
        Node::Mapping(map) => {
            let mut out = Map::new();
            for (key, value) in map.iter() {
                let child = format!("{pointer}/{}", pointer_segment(key.as_str()));
                let v = to_json(value, child.clone(), positions);
                // A key with an empty value has no span of its own: point at the key. The key's
                // own place is kept too, for "unknown key" errors.
                if let Some(start) = key.span().start() {
                    positions.insert(format!("{child}#key"), pos(start));
                    positions.entry(child).or_insert(pos(start));
                }
                out.insert(key.as_str().to_string(), v);
            }
            Value::Object(out)
        }
    }
}

/// YAML 1.2 core schema for plain scalars; quoted scalars are always strings.
fn scalar(s: &marked_yaml::types::MarkedScalarNode) -> Value {
    if !s.may_coerce() {
        return Value::String(s.as_str().to_string());
    }
    match s.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(i) = s.as_i64() {
        return Value::Number(i.into());
    }
    if let Some(n) = s.as_f64().filter(|f| f.is_finite()).and_then(Number::from_f64) {
        // Only plain decimal notation: "1e3" stays a float, "inf"/"nan" stay strings.
        return Value::Number(n);
    }
    Value::String(s.as_str().to_string())
}

/// The flow bracket (`[` or `{`) still open where the parser gave up at `line:col`, if any:
/// a syntax error is usually caused there, lines before the parser noticed.
fn unclosed_bracket(text: &str, line: usize, col: usize) -> Option<(usize, usize, char)> {
    let mut open: Vec<(usize, usize, char)> = Vec::new();
    let mut quote: Option<char> = None;
    for (l, row) in text.lines().enumerate().map(|(i, r)| (i + 1, r)) {
        let mut prev = ' ';
        for (c, ch) in row.chars().enumerate().map(|(i, ch)| (i + 1, ch)) {
            if (l, c) >= (line, col) {
                return open.pop();
            }
            match quote {
                Some(q) if ch == q => quote = None,
                Some(_) => {}
                None => match ch {
                    '\'' | '"' => quote = Some(ch),
                    '#' if prev.is_whitespace() => break,
                    '[' | '{' => open.push((l, c, ch)),
                    ']' | '}' => {
                        open.pop();
                    }
                    _ => {}
                },
            }
            prev = ch;
        }
    }
    open.pop()
}

fn load_error_position(e: &marked_yaml::LoadError) -> (usize, usize) {
    use marked_yaml::LoadError::*;
    let m = match e {
        TopLevelMustBeMapping(m)
        | TopLevelMustBeSequence(m)
        | UnexpectedAnchor(m)
        | MappingKeyMustBeScalar(m)
        | UnexpectedTag(m)
        | ScanError(m, _) => Some(*m),
        DuplicateKey(inner) => inner.key.span().start().copied(),
    };
    m.map(|m| (m.line(), m.column())).unwrap_or((1, 1))
}

fn load_error_message(e: &marked_yaml::LoadError) -> String {
    use marked_yaml::LoadError::*;
    match e {
        TopLevelMustBeMapping(_) | TopLevelMustBeSequence(_) => "the top level must be a mapping (key: value)".into(),
        DuplicateKey(inner) => format!("duplicate key \"{}\"", inner.key.as_str()),
        UnexpectedAnchor(_) => "anchors and aliases are not supported".into(),
        UnexpectedTag(_) => "explicit tags are not supported".into(),
        MappingKeyMustBeScalar(_) => "mapping keys must be plain strings".into(),
        ScanError(_, se) => se.info().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_types() {
        let doc = SourceDoc::parse("t.yaml", "a: 1\nb:\n  - x\n  - 'true'\n  - true\nc: 1.5\n").unwrap();
        assert_eq!(doc.value["a"], 1);
        assert_eq!(doc.value["b"][1], "true");
        assert_eq!(doc.value["b"][2], true);
        assert_eq!(doc.value["c"], 1.5);
        assert_eq!(doc.position("/b/1"), (4, 5));
        assert_eq!(doc.position("/b/1/nothing"), (4, 5));
    }

    #[test]
    fn syntax_error_is_located() {
        let err = SourceDoc::parse("t.yaml", "a: 1\nb: [1, 2\n").unwrap_err();
        assert_eq!(err.file, "t.yaml");
        assert!(err.line >= 2, "{err}");
    }

    #[test]
    fn an_unclosed_bracket_is_reported_where_it_opened() {
        let text = "a: 1\nb: {x: 1, y: \"[not a bracket]\" # {nor this\nc: 3\nd: 4\n";
        let err = SourceDoc::parse("t.yaml", text).unwrap_err();
        assert_eq!((err.line, err.col), (2, 4), "{err}");
        assert!(
            err.message.contains("never closed") && err.message.contains("stopped at"),
            "{err}"
        );
    }

    #[test]
    fn yaml_output_reads_back_the_same() {
        let text = "a: 1\nb:\n  - x\n  - {k: 'true', l: [1, 2], m: {}}\nc: \"x: y\"\nd: 果园 社区\n";
        let doc = SourceDoc::parse("t.yaml", text).unwrap();
        let again = SourceDoc::parse("u.yaml", &doc.to_yaml(true)).unwrap();
        assert_eq!(doc.value, again.value, "{}", doc.to_yaml(true));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = SourceDoc::parse("t.yaml", "a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err}");
    }
}
