//! Locality overlays: a unit's changes to a shared workflow, written in the workflow's own
//! shape (`schemas/overlay.schema.json`, docs/overlays.md), and their composition onto the
//! base along the organisation tree.
//!
//! Composition works on positioned trees, not text: every node keeps the file, line and
//! column it was written at, so the composed document is validated with the workflow's
//! own checks and each diagnostic names the overlay line that caused it.
//!
//! Merging rules, in one place:
//! - mappings merge key by key; `{hide: true}` removes an entry (a state, a field, a rule);
//! - lists of transitions, escalations, timers, schedules, credits and `oneOf`/`anyOf`
//!   choices are matched item by item on a stable key (`id`, else the transition's target,
//!   the escalation's role, the timer's target, the credit's account, the choice's `const`);
//!   an unmatched item is added (where `insert_before:`/`insert_after:` says), `hide: true`
//!   removes one;
//! - other lists are replaced, or edited with `{add: [...], remove: [...], insert_before|insert_after}`;
//! - value positions (`to`, `due`, `after`, `at`, `when`, a `set` entry...) are replaced whole.

use crate::definition::{DEFAULT_LANG, Localized};
use crate::diagnostic::{Diagnostic, Severity, suggest};
use crate::yaml::{Pos, SourceDoc, pointer_segment};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::LazyLock;

pub const OVERLAY_SCHEMA: &str = include_str!("../../../schemas/overlay.schema.json");

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(OVERLAY_SCHEMA).expect("overlay schema is JSON");
    jsonschema::validator_for(&schema).expect("overlay schema is valid")
});

/// Keys of an overlay that describe it rather than change the workflow.
const META: [&str; 4] = ["extends", "unit", "version", "about"];

/// One overlay version an instance runs with: the unit it belongs to and its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OverlayPin {
    pub unit: String,
    pub version: u32,
}

impl std::fmt::Display for OverlayPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.unit, self.version)
    }
}

/// A parsed overlay file: what it extends, where it applies and its changes.
#[derive(Debug, Clone)]
pub struct Overlay {
    pub workflow: String,
    pub unit: String,
    pub version: u32,
    /// What the change is, for the people who see it listed.
    pub about: Option<Localized>,
    pub source: String,
    pub sha256: String,
    doc: SourceDoc,
}

impl Overlay {
    /// Read an overlay: YAML syntax and the overlay schema (what its changes mean is checked
    /// when it is composed onto its base).
    pub fn load(file: &str, text: &str) -> Result<Overlay, Vec<Diagnostic>> {
        let doc = SourceDoc::parse(file, text).map_err(|d| vec![d])?;
        let diags: Vec<Diagnostic> = SCHEMA
            .iter_errors(&doc.value)
            .flat_map(|e| crate::validate::schema_diagnostics(&doc, &e))
            .collect();
        if !diags.is_empty() {
            return Err(diags);
        }
        let text_of = |k: &str| doc.value[k].as_str().unwrap_or_default().to_string();
        Ok(Overlay {
            workflow: text_of("extends"),
            unit: text_of("unit"),
            version: doc.value["version"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            about: serde_json::from_value(doc.value["about"].clone()).ok(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            source: text.to_string(),
            doc,
        })
    }

    pub fn file(&self) -> &str {
        &self.doc.file
    }

    pub fn pin(&self) -> OverlayPin {
        OverlayPin {
            unit: self.unit.clone(),
            version: self.version,
        }
    }

    /// A diagnostic at the node at `pointer` of the overlay file.
    pub fn error(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        self.doc.error(pointer, message)
    }

    /// Literal unit ids the overlay writes (its `available_in` and schedules' `unit`), each
    /// with its JSON pointer: an overlay may only name units of its own subtree.
    pub fn named_units(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut at = |pointer: String, v: &Value| {
            if let Some(u) = v.as_str() {
                out.push((u.to_string(), pointer));
            }
        };
        if let Some(list) = self.doc.value["available_in"].as_array() {
            for (i, v) in list.iter().enumerate() {
                at(format!("/available_in/{i}"), v);
            }
        }
        if let Some(Value::Object(edit)) = self.doc.value.get("available_in") {
            for (i, v) in edit
                .get("add")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                at(format!("/available_in/add/{i}"), v);
            }
        }
        for (i, s) in self.doc.value["schedules"].as_array().into_iter().flatten().enumerate() {
            at(format!("/schedules/{i}/unit"), &s["unit"]);
        }
        out
    }
}

/// The base document with each overlay applied in order (root first). Errors are those of
/// applying (an item to hide that is not there, a part that must stay); what the result
/// means is checked afterwards by [`crate::validate::load_composed`].
pub fn compose(base: &SourceDoc, overlays: &[&Overlay]) -> Result<SourceDoc, Vec<Diagnostic>> {
    let (doc, diags) = compose_all(base, overlays);
    if diags.is_empty() { Ok(doc) } else { Err(diags) }
}

/// As [`compose`], applying whatever does apply: with the errors, the document without the
/// changes that were refused, so its meaning can be checked too and an author sees every
/// problem of every layer at once.
pub(crate) fn compose_all(base: &SourceDoc, overlays: &[&Overlay]) -> (SourceDoc, Vec<Diagnostic>) {
    let mut files = vec![base.file.clone()];
    let mut tree = Node::from_doc(base, 0);
    let mut c = Composer {
        files: Vec::new(),
        diags: Vec::new(),
        hidden_states: Vec::new(),
        hidden_fields: Vec::new(),
    };
    for overlay in overlays {
        let index = files.len();
        files.push(overlay.doc.file.clone());
        let change = Node::from_doc(&overlay.doc, index);
        let Body::Map(entries) = change.body else {
            continue;
        };
        let entries: Vec<(String, Node)> = entries
            .into_iter()
            .filter(|(k, _)| !META.contains(&k.as_str()))
            .collect();
        c.files.clone_from(&files);
        c.merge_map(&mut tree, entries, &mut Vec::new());
    }
    c.files.clone_from(&files);
    c.forget_hidden_fields(&mut tree);
    c.check_hidden_states(&tree);
    c.diags
        .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    let mut positions = HashMap::new();
    let value = tree.into_value(String::new(), &mut positions);
    (SourceDoc::assembled(files, value, positions), c.diags)
}

/// A positioned node of a document being composed.
#[derive(Debug, Clone)]
struct Node {
    at: Option<Pos>,
    key_at: Option<Pos>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Leaf(Value),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn from_doc(doc: &SourceDoc, file: usize) -> Node {
        Self::build(doc, &doc.value, String::new(), file)
    }

    fn build(doc: &SourceDoc, value: &Value, pointer: String, file: usize) -> Node {
        let pos = |p: &str| doc.exact(p).map(|p| Pos { file, ..p });
        let body = match value {
            Value::Array(items) => Body::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::build(doc, v, format!("{pointer}/{i}"), file))
                    .collect(),
            ),
            Value::Object(map) => Body::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Self::build(doc, v, format!("{pointer}/{}", pointer_segment(k)), file),
                        )
                    })
                    .collect(),
            ),
            other => Body::Leaf(other.clone()),
        };
        Node {
            at: pos(&pointer),
            key_at: pos(&format!("{pointer}#key")),
            body,
        }
    }

    fn into_value(self, pointer: String, positions: &mut HashMap<String, Pos>) -> Value {
        if let Some(at) = self.at {
            positions.insert(pointer.clone(), at);
        }
        if let Some(at) = self.key_at {
            positions.insert(format!("{pointer}#key"), at);
        }
        match self.body {
            Body::Leaf(v) => v,
            Body::List(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| n.into_value(format!("{pointer}/{i}"), positions))
                    .collect(),
            ),
            Body::Map(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(k, n)| {
                        let child = format!("{pointer}/{}", pointer_segment(&k));
                        let v = n.into_value(child, positions);
                        (k, v)
                    })
                    .collect::<Map<String, Value>>(),
            ),
        }
    }

    /// The node's value without positions (to read a key or compare items).
    fn value(&self) -> Value {
        self.clone().into_value(String::new(), &mut HashMap::new())
    }

    fn get(&self, key: &str) -> Option<&Node> {
        match &self.body {
            Body::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.body {
            Body::Map(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<String> {
        match &self.get(key)?.body {
            Body::Leaf(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// `{hide: true}`: the change removes what it is written over.
    fn is_hide(&self) -> bool {
        matches!(&self.body, Body::Map(e) if e.len() == 1 && e[0].0 == "hide" && matches!(e[0].1.body, Body::Leaf(Value::Bool(true))))
    }

    /// `{add: [...], remove: [...], insert_before|insert_after: x}`: an edit of a plain list.
    fn is_list_edit(&self) -> bool {
        matches!(&self.body, Body::Map(e) if !e.is_empty() && e.iter().all(|(k, _)| matches!(k.as_str(), "add" | "remove" | "insert_before" | "insert_after")) && e.iter().any(|(k, _)| k == "add" || k == "remove"))
    }

    /// Take a directive key out of a list item (`hide`, `insert_before`, `insert_after`).
    fn take(&mut self, key: &str) -> Option<Node> {
        match &mut self.body {
            Body::Map(entries) => {
                let i = entries.iter().position(|(k, _)| k == key)?;
                Some(entries.remove(i).1)
            }
            _ => None,
        }
    }
}

/// How the items of a list are matched between a base and an overlay.
#[derive(Clone, Copy, PartialEq)]
enum ItemKey {
    Transition,
    Escalation,
    Timer,
    Id,
    Credit,
    Choice,
}

impl ItemKey {
    /// The list at `path` (names of the mappings above it) is matched by a key, or not.
    fn of(path: &[String], base: &[Node]) -> Option<ItemKey> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["states", _, "transitions"] | ["states", _, "on", _] | ["on", _] => Some(ItemKey::Transition),
            ["states", _, "escalate"] => Some(ItemKey::Escalation),
            ["states", _, "timers"] => Some(ItemKey::Timer),
            ["schedules"] => Some(ItemKey::Id),
            [.., "credit"] => Some(ItemKey::Credit),
            ["forms", _, "schema", .., "oneOf" | "anyOf"] if base.iter().all(|n| n.get("const").is_some()) => {
                Some(ItemKey::Choice)
            }
            _ => None,
        }
    }

    fn what(self) -> &'static str {
        match self {
            ItemKey::Transition => "transition",
            ItemKey::Escalation => "escalation",
            ItemKey::Timer => "timer",
            ItemKey::Id => "schedule",
            ItemKey::Credit => "credit",
            ItemKey::Choice => "choice",
        }
    }

    /// The item's key: its `id` if it has one, else what identifies it of its kind.
    fn key(self, item: &Node) -> Option<String> {
        if self != ItemKey::Choice
            && let Some(id) = item.text("id")
        {
            return Some(id);
        }
        let target = |n: &Node| match n.value() {
            Value::String(s) => Some(s),
            Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("+")),
            _ => None,
        };
        match self {
            ItemKey::Transition | ItemKey::Timer => target(item.get("to")?),
            ItemKey::Escalation => match item.get("to")?.value() {
                Value::String(role) => Some(role),
                Value::Object(m) => match (m.get("role"), m.get("level"), m.get("rule")) {
                    (Some(Value::String(r)), Some(Value::String(l)), _) => Some(format!("{r}@{l}")),
                    (_, _, Some(Value::String(rule))) => Some(rule.clone()),
                    _ => None,
                },
                _ => None,
            },
            ItemKey::Id => None,
            ItemKey::Credit => item.text("account"),
            ItemKey::Choice => match item.get("const")?.value() {
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            },
        }
    }
}

/// Keys whose value is replaced whole (an expression, a target, a rule reference), never
/// merged: merging `{rule: x}` into `{role: a, level: b}` would make a third thing.
fn is_value_position(path: &[String]) -> bool {
    let Some(last) = path.last().map(String::as_str) else {
        return false;
    };
    if path.first().is_some_and(|p| p == "forms") && path.get(2).is_some_and(|p| p == "schema" || p == "ui") {
        return false;
    }
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    matches!(
        last,
        "to" | "due" | "after" | "at" | "when" | "role" | "unit" | "amount" | "person" | "from" | "default" | "cron"
    ) || matches!(parent, Some("set" | "choices" | "data"))
}

/// Which named collection a top-level map is, for messages and for what a new entry needs.
fn collection(path: &[String]) -> Option<(&'static str, &'static str)> {
    match path {
        [c] => match c.as_str() {
            "states" => Some(("state", "type")),
            "forms" => Some(("form", "schema")),
            "rules" => Some(("rule", "default")),
            "templates" => Some(("template", DEFAULT_LANG)),
            "roles" => Some(("role", "title")),
            _ => None,
        },
        _ => None,
    }
}

struct Composer {
    files: Vec<String>,
    diags: Vec<Diagnostic>,
    /// States removed, with where the overlay hid each.
    hidden_states: Vec<(String, Option<Pos>)>,
    /// Form fields removed: (form, field).
    hidden_fields: Vec<(String, String)>,
}

impl Composer {
    fn error(&mut self, at: Option<Pos>, message: String) {
        let pos = at.unwrap_or(Pos {
            file: 0,
            line: 1,
            col: 1,
        });
        self.diags.push(Diagnostic {
            file: self.files.get(pos.file).cloned().unwrap_or_default(),
            line: pos.line,
            col: pos.col,
            severity: Severity::Error,
            message,
        });
    }

    fn merge_map(&mut self, base: &mut Node, changes: Vec<(String, Node)>, path: &mut Vec<String>) {
        for (key, change) in changes {
            path.push(key.clone());
            self.merge_entry(base, key, change, path);
            path.pop();
        }
    }

    fn merge_entry(&mut self, base: &mut Node, key: String, change: Node, path: &mut Vec<String>) {
        if path.first().is_some_and(|p| p == "signals") {
            let message =
                "signed callbacks (`signals`) are set up centrally with their secrets; an overlay cannot change them"
                    .to_string();
            return self.error(change.key_at.or(change.at), message);
        }
        if !matches!(base.body, Body::Map(_)) {
            base.body = Body::Map(Vec::new());
        }
        let Body::Map(entries) = &mut base.body else {
            unreachable!()
        };
        let existing = entries.iter().position(|(k, _)| *k == key);
        if change.is_hide() {
            let Some(i) = existing else {
                let what = collection(&path[..path.len() - 1]).map_or("entry", |c| c.0);
                let names: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
                let message = format!("there is no {what} \"{key}\" here to hide{}", suggest(&key, names));
                return self.error(change.at, message);
            };
            if path.len() == 2 && path[0] == "states" {
                if is_end(&entries[i].1) {
                    let message =
                        format!("\"{key}\" is an end state: reports count the instances that reach it, so it stays");
                    return self.error(change.at, message);
                }
                self.hidden_states.push((key.clone(), change.at));
            }
            if let [forms, form, schema, properties, _] = path.as_slice()
                && forms == "forms"
                && schema == "schema"
                && properties == "properties"
            {
                self.hidden_fields.push((form.clone(), key.clone()));
            }
            entries.remove(i);
            return;
        }
        let Some(i) = existing else {
            if let Some((what, needs)) = collection(&path[..path.len() - 1])
                && change.get(needs).is_none()
            {
                let names: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
                let message = format!(
                    "the workflow has no {what} \"{key}\" to change (a new {what} needs `{needs}`){}",
                    suggest(&key, names)
                );
                return self.error(change.key_at.or(change.at), message);
            }
            let added = if change.is_list_edit() {
                let mut list = Node {
                    at: change.at,
                    key_at: change.key_at,
                    body: Body::List(Vec::new()),
                };
                self.edit_list(&mut list, change);
                list
            } else {
                change
            };
            entries.push((key, added));
            return;
        };
        let target = &mut entries[i].1;
        if path.len() == 3 && path[0] == "states" && path[2] == "type" && target.value() == "end" {
            let message = format!(
                "\"{}\" is an end state: reports count the instances that reach it, so its type stays",
                path[1]
            );
            return self.error(change.at, message);
        }
        self.merge_value(target, change, path);
    }

    fn merge_value(&mut self, base: &mut Node, change: Node, path: &mut Vec<String>) {
        if is_value_position(path) {
            return replace(base, change);
        }
        match (&mut base.body, change.body) {
            (Body::Map(_), Body::Map(entries)) if !is_list_edit_entries(&entries) => {
                self.merge_map(base, entries, path)
            }
            (Body::List(items), Body::List(changes)) => match ItemKey::of(path, items) {
                Some(kind) => self.merge_items(base, kind, changes),
                None => replace(
                    base,
                    Node {
                        at: change.at,
                        key_at: change.key_at,
                        body: Body::List(changes),
                    },
                ),
            },
            (Body::List(_), body @ Body::Map(_)) => self.edit_list(
                base,
                Node {
                    at: change.at,
                    key_at: change.key_at,
                    body,
                },
            ),
            (_, body) => replace(
                base,
                Node {
                    at: change.at,
                    key_at: change.key_at,
                    body,
                },
            ),
        }
    }

    /// Items of a keyed list: matched ones merged (or hidden), new ones placed.
    fn merge_items(&mut self, base: &mut Node, kind: ItemKey, changes: Vec<Node>) {
        let Body::List(items) = &mut base.body else { return };
        for mut change in changes {
            if !matches!(change.body, Body::Map(_)) {
                self.error(
                    change.at,
                    format!("each item here changes or adds one {}: a mapping", kind.what()),
                );
                continue;
            }
            // `before:` is the natural guess; timers and escalations have an `after` of their own.
            let own_after = matches!(kind, ItemKey::Timer | ItemKey::Escalation);
            for guess in ["before", "after"].into_iter().filter(|g| *g == "before" || !own_after) {
                if let Some(n) = change.take(guess) {
                    self.error(
                        n.key_at.or(n.at),
                        format!("an item is placed with `insert_{guess}:`, not `{guess}:`"),
                    );
                }
            }
            let hide = change.take("hide");
            let before = change.take("insert_before");
            let after = change.take("insert_after");
            let key = kind.key(&change);
            let found = key
                .as_ref()
                .and_then(|k| items.iter().position(|i| kind.key(i).as_deref() == Some(k.as_str())));
            let keys = || items.iter().filter_map(|i| kind.key(i)).collect::<Vec<_>>();
            if hide.is_some_and(|h| matches!(h.body, Body::Leaf(Value::Bool(true)))) {
                match found {
                    Some(i) => {
                        items.remove(i);
                    }
                    None => {
                        let known = keys();
                        let message = format!(
                            "there is no {} \"{}\" here to hide{} (the {}s here: {})",
                            kind.what(),
                            key.unwrap_or_default(),
                            suggest("", known.iter().map(String::as_str)),
                            kind.what(),
                            known.join(", ")
                        );
                        self.error(change.at, message);
                    }
                }
                continue;
            }
            let place = match (&before, &after) {
                (Some(anchor), _) | (_, Some(anchor)) => {
                    let name = match &anchor.body {
                        Body::Leaf(Value::String(s)) => s.clone(),
                        _ => String::new(),
                    };
                    match items.iter().position(|i| kind.key(i).as_deref() == Some(name.as_str())) {
                        Some(i) => Some(if before.is_some() { i } else { i + 1 }),
                        None => {
                            let known = keys();
                            let message = format!(
                                "no {} \"{name}\" here to place this one next to{} (the {}s here: {})",
                                kind.what(),
                                suggest(&name, known.iter().map(String::as_str)),
                                kind.what(),
                                known.join(", ")
                            );
                            self.error(anchor.at, message);
                            continue;
                        }
                    }
                }
                _ => None,
            };
            match found {
                Some(i) => {
                    let Body::Map(entries) = change.body else { continue };
                    let mut item = items.remove(i);
                    self.merge_map(&mut item, entries, &mut Vec::new());
                    let at = place.map_or(i, |p| if p > i { p - 1 } else { p });
                    items.insert(at.min(items.len()), item);
                }
                None => {
                    let at = place.unwrap_or(items.len());
                    items.insert(at, change);
                }
            }
        }
    }

    /// `{add, remove, insert_before|insert_after}` on a list of plain values.
    fn edit_list(&mut self, base: &mut Node, mut edit: Node) {
        let Body::List(items) = &mut base.body else { return };
        let values = |n: Option<Node>| match n.map(|n| n.body) {
            Some(Body::List(v)) => v,
            _ => Vec::new(),
        };
        for gone in values(edit.take("remove")) {
            let v = gone.value();
            match items.iter().position(|i| i.value() == v) {
                Some(i) => {
                    items.remove(i);
                }
                None => {
                    let known: Vec<String> = items.iter().map(|i| plain(&i.value())).collect();
                    let message = format!("{} is not in this list (it has: {})", plain(&v), known.join(", "));
                    self.error(gone.at, message);
                }
            }
        }
        let anchor = edit
            .take("insert_before")
            .map(|n| (n, true))
            .or_else(|| edit.take("insert_after").map(|n| (n, false)));
        let mut at = items.len();
        if let Some((anchor, before)) = anchor {
            let v = anchor.value();
            match items.iter().position(|i| i.value() == v) {
                Some(i) => at = if before { i } else { i + 1 },
                None => {
                    let known: Vec<String> = items.iter().map(|i| plain(&i.value())).collect();
                    self.error(
                        anchor.at,
                        format!(
                            "{} is not in this list to place items next to (it has: {})",
                            plain(&v),
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        for new in values(edit.take("add")) {
            if items.iter().any(|i| i.value() == new.value()) {
                continue;
            }
            items.insert(at, new);
            at += 1;
        }
    }

    /// A hidden form field leaves its form's `required`, `ui.order` and `ui.fields` too.
    fn forget_hidden_fields(&mut self, tree: &mut Node) {
        for (form, field) in std::mem::take(&mut self.hidden_fields) {
            let Some(f) = tree.get_mut("forms").and_then(|fs| fs.get_mut(&form)) else {
                continue;
            };
            let named = Value::String(field.clone());
            if let Some(Node {
                body: Body::List(req), ..
            }) = f.get_mut("schema").and_then(|s| s.get_mut("required"))
            {
                req.retain(|n| n.value() != named);
            }
            if let Some(ui) = f.get_mut("ui") {
                if let Some(Node {
                    body: Body::List(order),
                    ..
                }) = ui.get_mut("order")
                {
                    order.retain(|n| n.value() != named);
                }
                if let Some(Node {
                    body: Body::Map(fields),
                    ..
                }) = ui.get_mut("fields")
                {
                    fields.retain(|(k, _)| *k != field);
                }
            }
        }
    }

    /// A hidden state must not be reached any more: every way into it needs rerouting, and
    /// the overlay that hid it is told where each one is.
    fn check_hidden_states(&mut self, tree: &Node) {
        if self.hidden_states.is_empty() {
            return;
        }
        let mut ways: Vec<(String, String, Option<Pos>)> = Vec::new(); // (target, where, pos)
        let mut look = |to: Option<&Node>, from: String| {
            let Some(to) = to else { return };
            let targets = match to.value() {
                Value::String(s) => vec![s],
                Value::Array(v) => v.iter().filter_map(Value::as_str).map(String::from).collect(),
                _ => Vec::new(),
            };
            for t in targets {
                ways.push((t, from.clone(), to.at));
            }
        };
        look(tree.get("start").and_then(|s| s.get("to")), "start".into());
        if let Some(Node {
            body: Body::Map(states),
            ..
        }) = tree.get("states")
        {
            for (name, state) in states {
                for list in ["transitions", "timers"] {
                    if let Some(Node {
                        body: Body::List(items),
                        ..
                    }) = state.get(list)
                    {
                        for item in items {
                            look(item.get("to"), format!("state \"{name}\""));
                        }
                    }
                }
                if let Some(Node {
                    body: Body::Map(on), ..
                }) = state.get("on")
                {
                    for (_, n) in on {
                        if let Body::List(items) = &n.body {
                            for item in items {
                                look(item.get("to"), format!("state \"{name}\""));
                            }
                        }
                    }
                }
            }
        }
        for (state, hidden_at) in std::mem::take(&mut self.hidden_states) {
            for (target, from, pos) in ways.iter().filter(|w| w.0 == state) {
                let (file, line) = pos.map_or((String::new(), 0), |p| (self.files[p.file].clone(), p.line));
                let message = format!(
                    "state \"{state}\" is hidden here, but {from} still goes to \"{target}\" ({file}:{line}); route it elsewhere in this overlay"
                );
                self.error(hidden_at, message);
            }
        }
    }
}

fn is_list_edit_entries(entries: &[(String, Node)]) -> bool {
    Node {
        at: None,
        key_at: None,
        body: Body::Map(entries.to_vec()),
    }
    .is_list_edit()
}

fn is_end(state: &Node) -> bool {
    state.get("type").is_some_and(|t| t.value() == "end")
}

/// The change takes the place of what was there; the key keeps the place it was written.
fn replace(base: &mut Node, change: Node) {
    let key_at = base.key_at;
    *base = change;
    if base.key_at.is_none() {
        base.key_at = key_at;
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
id: t
version: 1
title: {zh-CN: 测试}
roles: {a: {title: {zh-CN: 甲}}}
start: {roles: [a], form: f, to: s1}
forms:
  f:
    schema:
      type: object
      required: [x]
      properties:
        x: {type: string}
        kind:
          oneOf:
            - {const: one, title: 一}
            - {const: two, title: 二}
states:
  s1:
    type: task
    assign: {role: a}
    due: 1d
    escalate:
      - {id: first, to: a}
    transitions:
      - {to: s2, when: \"form.x == 'a'\"}
      - to: done
  s2:
    type: task
    assign: {role: a}
    transitions:
      - to: done
  done: {type: end}
";

    fn compose_texts(overlays: &[&str]) -> Result<SourceDoc, Vec<Diagnostic>> {
        let base = SourceDoc::parse("base.yaml", BASE).unwrap();
        let loaded: Vec<Overlay> = overlays
            .iter()
            .enumerate()
            .map(|(i, t)| Overlay::load(&format!("o{i}.yaml"), t).unwrap_or_else(|d| panic!("{d:?}")))
            .collect();
        let refs: Vec<&Overlay> = loaded.iter().collect();
        compose(&base, &refs)
    }

    #[test]
    fn maps_merge_keyed_lists_match_and_plain_lists_edit() {
        let doc = compose_texts(&[
            "extends: t\nunit: u\nversion: 1\nforms:\n  f:\n    schema:\n      required: {add: [n]}\n      properties:\n        n: {type: integer}\n        kind:\n          oneOf:\n            - {const: two, hide: true}\n            - {const: three, title: 三, insert_before: one}\nstates:\n  s1:\n    due: 2d\n    transitions:\n      - {to: s3, when: \"form.x == 'b'\", insert_before: done}\n  s3: {type: task, assign: {role: a}, transitions: [{to: done}]}\n",
        ])
        .unwrap();
        let v = &doc.value;
        assert_eq!(v["forms"]["f"]["schema"]["required"], serde_json::json!(["x", "n"]));
        let kinds: Vec<&str> = v["forms"]["f"]["schema"]["properties"]["kind"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["const"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["three", "one"]);
        assert_eq!(v["states"]["s1"]["due"], "2d");
        let targets: Vec<&str> = v["states"]["s1"]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["to"].as_str().unwrap())
            .collect();
        assert_eq!(targets, ["s2", "s3", "done"]);
        // Each part is located where it was written.
        assert_eq!(doc.origin("/states/s1/due").0, "o0.yaml");
        assert_eq!(doc.origin("/states/s1/assign").0, "base.yaml");
        assert_eq!(doc.origin("/states/s1/transitions/1/to").0, "o0.yaml");
        assert_eq!(doc.origin("/states/s1/transitions/2/to").0, "base.yaml");
    }

    #[test]
    fn an_escalations_own_after_is_a_field_not_a_place() {
        let doc = compose_texts(&[
            "extends: t\nunit: u\nversion: 1\nstates:\n  s1:\n    escalate:\n      - {id: first, after: 12h}\n",
        ])
        .unwrap();
        assert_eq!(
            doc.value["states"]["s1"]["escalate"],
            serde_json::json!([{"id": "first", "to": "a", "after": "12h"}])
        );
    }

    #[test]
    fn overlays_layer_in_order() {
        let doc = compose_texts(&[
            "extends: t\nunit: d\nversion: 1\nstates:\n  s1: {due: 2d}\n",
            "extends: t\nunit: s\nversion: 3\nstates:\n  s1: {due: 4h}\n",
        ])
        .unwrap();
        assert_eq!(doc.value["states"]["s1"]["due"], "4h");
        assert_eq!(doc.origin("/states/s1/due"), ("o1.yaml", 5, 13));
    }

    #[test]
    fn what_cannot_apply_is_refused_at_the_overlay_line() {
        let errors = compose_texts(&[
            "extends: t\nunit: u\nversion: 1\nstates:\n  done: {hide: true}\n  s9: {due: 2d}\n  s1:\n    escalate:\n      - {id: second, hide: true}\n",
        ])
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text[0].starts_with("o0.yaml:5:9: error: \"done\" is an end state"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("o0.yaml:6:3: error: the workflow has no state \"s9\""),
            "{text:?}"
        );
        assert!(
            text[2].contains("o0.yaml:9:") && text[2].contains("no escalation \"second\""),
            "{text:?}"
        );
    }

    #[test]
    fn a_hidden_state_still_reached_is_named_with_every_way_in() {
        let errors = compose_texts(&["extends: t\nunit: u\nversion: 1\nstates:\n  s2: {hide: true}\n"]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].to_string().starts_with(
                "o0.yaml:5:7: error: state \"s2\" is hidden here, but state \"s1\" still goes to \"s2\" (base.yaml:"
            ),
            "{}",
            errors[0]
        );
        let rerouted = compose_texts(&[
            "extends: t\nunit: u\nversion: 1\nstates:\n  s2: {hide: true}\n  s1:\n    transitions:\n      - {to: s2, hide: true}\n",
        ])
        .unwrap();
        assert!(rerouted.value["states"].get("s2").is_none());
    }

    #[test]
    fn a_hidden_field_leaves_required_and_ui() {
        let doc = compose_texts(&[
            "extends: t\nunit: u\nversion: 1\nforms:\n  f:\n    schema:\n      properties:\n        x: {hide: true}\n",
        ])
        .unwrap();
        assert_eq!(doc.value["forms"]["f"]["schema"]["required"], serde_json::json!([]));
    }

    #[test]
    fn the_composed_workflow_is_checked_whole_and_errors_point_into_the_overlay() {
        let overlay = Overlay::load(
            "street.overlay.yaml",
            "extends: t\nunit: u\nversion: 1\nstates:\n  s1:\n    due: \"1 +\"\n    transitions:\n      - {to: nowhere, insert_before: done}\n    colour: red\n",
        )
        .unwrap();
        let loaded = crate::validate::load_composed("base.yaml", BASE, &[&overlay]);
        assert!(loaded.workflow.is_none());
        let text: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        assert!(text.iter().all(|d| d.starts_with("street.overlay.yaml:")), "{text:?}");
        assert!(
            text.iter().any(|d| d.starts_with("street.overlay.yaml:6:10:")),
            "the bad limit: {text:?}"
        );
        assert!(
            text.iter()
                .any(|d| d.starts_with("street.overlay.yaml:8:14:") && d.contains("nowhere")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|d| d.starts_with("street.overlay.yaml:9:5:") && d.contains("colour")),
            "{text:?}"
        );
        let fine = Overlay::load("o.yaml", "extends: t\nunit: u\nversion: 2\nstates: {s1: {due: 2d}}\n").unwrap();
        let wf = crate::validate::load_composed("base.yaml", BASE, &[&fine])
            .workflow
            .unwrap();
        assert_eq!(
            wf.overlays,
            vec![OverlayPin {
                unit: "u".into(),
                version: 2
            }]
        );
        assert_ne!(
            wf.sha256,
            crate::validate::load("base.yaml", BASE).workflow.unwrap().sha256
        );
    }

    #[test]
    fn the_overlay_schema_refuses_unknown_sections_at_the_key() {
        let errors = Overlay::load("o.yaml", "extends: t\nunit: u\nversion: 1\nsates: {}\n").unwrap_err();
        assert_eq!((errors[0].line, errors[0].col), (4, 1), "{errors:?}");
        assert!(errors[0].message.contains("sates"), "{errors:?}");
    }
}
