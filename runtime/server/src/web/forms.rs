//! Generated forms: a task's JSON Schema (plus optional `ui` hints) becomes fields for the
//! HTML templates, and a posted form becomes the JSON the schema validates.
//!
//! Field names are JSON pointers (`/photos`, `/members/0/name`), so an error the validator
//! reports at a pointer lands beside the field it concerns.
//!
//! `ui` hints, all optional (their shape is `fieldUi` in the workflow schema): `order: [name...]`,
//! and under `fields.<name>`: `widget` (`textarea`, `radio`, `file`, `lines`, `stars`), `help`, `title`
//! and `placeholder` (text or `{zh-CN, en}`), `options.<value>` (a choice's label),
//! `show_if: {field, equals}`, and `order`/`fields` again for an object or under `items` for
//! a group's rows.

use crate::i18n::text;
use civicflow_engine::FormProblem;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// When a field shows: another field equals a value, or is filled in at all.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShowIf {
    pub field: String,
    pub equals: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Field {
    /// The posted name: the field's JSON pointer.
    pub name: String,
    /// The HTML id (`f` + the pointer with `-` for `/`).
    pub id: String,
    pub label: String,
    pub help: Option<String>,
    pub placeholder: Option<String>,
    /// text, textarea, number, date, email, select, radio (also yes/no), multiselect, file,
    /// lines, group (repeatable rows) or object (one nested fieldset).
    pub widget: &'static str,
    pub required: bool,
    pub options: Vec<Choice>,
    /// HTML attributes mirroring the schema (minlength, maxlength, min, max, step, pattern).
    pub attrs: Vec<(&'static str, String)>,
    pub value: String,
    /// Files already uploaded (`sha256:...`), kept across a failed submission.
    pub files: Vec<String>,
    pub error: Option<String>,
    pub show_if: Option<ShowIf>,
    /// For groups and objects: the rows of child fields.
    pub rows: Vec<Vec<Field>>,
    /// For groups: an empty row whose names hold `__i__` for the script to number.
    pub template: Vec<Field>,
    pub max_rows: Option<u64>,
}

/// One entry of the error summary at the top of a form.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryItem {
    pub id: String,
    pub label: String,
    pub message: String,
}

/// What a posted form said, before validation.
#[derive(Debug, Default)]
pub struct Posted {
    /// Text parts by name, in the order they came.
    pub values: Vec<(String, String)>,
    /// Uploaded file references by field name.
    pub files: BTreeMap<String, Vec<String>>,
    /// Problems found while reading (not a number, an upload refused), by pointer.
    pub problems: BTreeMap<String, String>,
}

impl Posted {
    /// Remove and return a part that is not a form field (`_unit`, `_key`).
    pub fn take(&mut self, name: &str) -> Option<String> {
        let i = self.values.iter().position(|(n, _)| n == name)?;
        Some(self.values.remove(i).1)
    }
}

impl Posted {
    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.values
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.all(name).next()
    }
}

/// A hint's text in `lang`, falling back to zh-CN.
fn localized(v: &Value, lang: &str) -> Option<String> {
    localized_only(v, lang).or_else(|| {
        v.get(crate::i18n::DEFAULT_LOCALE)
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

/// A hint's text in `lang` only (a plain string counts for every language), so the schema's
/// own text can come next.
fn localized_only(v: &Value, lang: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => other.get(lang).and_then(Value::as_str).map(str::to_string),
    }
}

fn html_id(pointer: &str) -> String {
    format!("f{}", pointer.replace('/', "-"))
}

/// The values a `oneOf: [{const}]` or `enum` schema allows.
fn choice_values(schema: &Value) -> Option<Vec<Value>> {
    if let Some(one_of) = schema.get("oneOf").and_then(Value::as_array) {
        return one_of.iter().map(|o| o.get("const").cloned()).collect();
    }
    schema.get("enum").and_then(Value::as_array).cloned()
}

/// The choices with their labels: the field's `ui.options.<value>` in the reader's language,
/// else the `oneOf` entry's `title` (zh-CN), else the value itself.
fn choices(schema: &Value, hints: &Value, lang: &str) -> Option<Vec<(Value, String)>> {
    let title = |c: &Value| {
        let one_of = schema.get("oneOf").and_then(Value::as_array)?;
        let entry = one_of.iter().find(|o| o.get("const") == Some(c))?;
        entry.get("title").and_then(Value::as_str).map(str::to_string)
    };
    let values = choice_values(schema)?;
    let labelled = values.into_iter().map(|c| {
        let label = hints
            .get("options")
            .and_then(|o| o.get(scalar_text(&c)))
            .and_then(|t| localized_only(t, lang))
            .or_else(|| title(&c))
            .unwrap_or_else(|| scalar_text(&c));
        (c, label)
    });
    Some(labelled.collect())
}

/// The schema and hints with choices a rule gave for this instance: each such field becomes
/// a choice among them (`oneOf`), labelled per language through `ui.options`.
pub fn with_choices(
    schema: &Value,
    ui: &Value,
    choices: &BTreeMap<String, Vec<civicflow_engine::definition::Choice>>,
) -> (Value, Value) {
    let (mut schema, mut ui) = (
        schema.clone(),
        if ui.is_object() {
            ui.clone()
        } else {
            Value::Object(Map::new())
        },
    );
    for (field, list) in choices {
        let Some(prop) = schema
            .pointer_mut(&format!("/properties/{field}"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let one_of: Vec<Value> = list
            .iter()
            .map(|c| {
                let title = c.title.get(civicflow_engine::definition::DEFAULT_LANG).cloned();
                serde_json::json!({"const": c.value, "title": title.unwrap_or_else(|| scalar_text(&c.value))})
            })
            .collect();
        prop.remove("enum");
        prop.insert("oneOf".into(), Value::Array(one_of));
        let options: Map<String, Value> = list
            .iter()
            .map(|c| {
                (
                    scalar_text(&c.value),
                    serde_json::to_value(&c.title).unwrap_or_default(),
                )
            })
            .collect();
        let hints = ui
            .as_object_mut()
            .expect("made an object")
            .entry("fields")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(hints) = hints.as_object_mut() {
            let entry = hints.entry(field.clone()).or_insert_with(|| Value::Object(Map::new()));
            if let Some(entry) = entry.as_object_mut() {
                entry.insert("options".into(), Value::Object(options));
            }
        }
    }
    (schema, ui)
}

pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn is_file_ref(schema: &Value) -> bool {
    schema
        .get("pattern")
        .and_then(Value::as_str)
        .is_some_and(|p| p.starts_with("^sha256:"))
}

fn type_of(schema: &Value) -> &str {
    schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(if choice_values(schema).is_some() {
            "string"
        } else {
            "object"
        })
}

/// Fields whose `required` depends on another field: `if/then` (also inside `allOf`) and
/// `dependentRequired`.
fn conditions(schema: &Value) -> BTreeMap<String, ShowIf> {
    let mut out = BTreeMap::new();
    let mut branches = vec![schema];
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        branches.extend(all);
    }
    for s in branches {
        let (Some(cond), Some(then)) = (s.get("if"), s.get("then")) else {
            continue;
        };
        let Some((field, value)) = cond
            .get("properties")
            .and_then(Value::as_object)
            .filter(|p| p.len() == 1)
            .and_then(|p| p.iter().next())
            .and_then(|(k, v)| Some((k, v.get("const")?)))
        else {
            continue;
        };
        for name in then.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(name) = name.as_str() {
                out.insert(
                    name.to_string(),
                    ShowIf {
                        field: field.clone(),
                        equals: Some(scalar_text(value)),
                    },
                );
            }
        }
    }
    if let Some(deps) = schema.get("dependentRequired").and_then(Value::as_object) {
        for (field, names) in deps {
            for name in names.as_array().into_iter().flatten().filter_map(Value::as_str) {
                out.insert(
                    name.to_string(),
                    ShowIf {
                        field: field.clone(),
                        equals: None,
                    },
                );
            }
        }
    }
    out
}

/// Build the fields of an object schema at `prefix` with `data` filled in.
pub fn fields(schema: &Value, ui: &Value, data: &Value, prefix: &str, lang: &str) -> Vec<Field> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let conditional = conditions(schema);
    let mut names: Vec<&String> = props.keys().collect();
    if let Some(order) = ui.get("order").and_then(Value::as_array) {
        let rank = |n: &str| order.iter().position(|o| o.as_str() == Some(n)).unwrap_or(usize::MAX);
        names.sort_by_key(|n| rank(n));
    }
    names
        .into_iter()
        .map(|name| {
            let hints = ui.get("fields").and_then(|f| f.get(name)).unwrap_or(&Value::Null);
            let mut show_if = conditional.get(name.as_str()).cloned();
            if let Some(s) = hints.get("show_if") {
                show_if = s.get("field").and_then(Value::as_str).map(|f| ShowIf {
                    field: f.to_string(),
                    equals: s.get("equals").map(scalar_text),
                });
            }
            let show_if = show_if.map(|s| ShowIf {
                field: format!("{prefix}/{}", s.field),
                ..s
            });
            let required = required.contains(&name.as_str()) || show_if.is_some();
            field(
                &props[name],
                hints,
                data.get(name),
                &format!("{prefix}/{name}"),
                name,
                required,
                show_if,
                lang,
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn field(
    schema: &Value,
    hints: &Value,
    value: Option<&Value>,
    pointer: &str,
    name: &str,
    required: bool,
    show_if: Option<ShowIf>,
    lang: &str,
) -> Field {
    let label = hints
        .get("title")
        .and_then(|t| localized(t, lang))
        .or_else(|| schema.get("title").and_then(|t| localized(t, lang)))
        .unwrap_or_else(|| name.to_string());
    let help = hints
        .get("help")
        .and_then(|t| localized(t, lang))
        .or_else(|| schema.get("description").and_then(|t| localized(t, lang)));
    let widget_hint = hints.get("widget").and_then(Value::as_str);
    let mut f = Field {
        name: pointer.to_string(),
        id: html_id(pointer),
        label,
        help,
        placeholder: hints.get("placeholder").and_then(|t| localized(t, lang)),
        widget: "text",
        required,
        options: Vec::new(),
        attrs: Vec::new(),
        value: value.map(scalar_text).unwrap_or_default(),
        files: Vec::new(),
        error: None,
        show_if,
        rows: Vec::new(),
        template: Vec::new(),
        max_rows: None,
    };
    let num = |k: &str| schema.get(k).filter(|v| v.is_number()).map(|v| v.to_string());
    match type_of(schema) {
        // Yes or no, either answerable: `required` means "must be answered", never "must
        // be yes" (a required checkbox could only be ticked, so "not solved" was unreachable).
        "boolean" => {
            f.widget = "radio";
            f.options = [(true, "form-yes"), (false, "form-no")]
                .into_iter()
                .map(|(b, label)| Choice {
                    selected: value == Some(&Value::Bool(b)),
                    value: b.to_string(),
                    label: crate::i18n::text(lang, label, &[]),
                })
                .collect();
        }
        // A score as stars: `widget: stars` on an integer with a minimum and a maximum (1–5).
        "integer" if widget_hint == Some("stars") && num("minimum").is_some() && num("maximum").is_some() => {
            let bound = |k: &str| schema.get(k).and_then(Value::as_i64).unwrap_or_default();
            f.widget = "stars";
            f.options = (bound("minimum")..=bound("maximum"))
                .rev()
                .map(|n| Choice {
                    selected: value.and_then(Value::as_i64) == Some(n),
                    value: n.to_string(),
                    label: crate::i18n::text(lang, "form-stars", &[("n", n.into())]),
                })
                .collect();
        }
        "integer" | "number" if choice_values(schema).is_none() => {
            f.widget = "number";
            f.attrs.extend(num("minimum").map(|v| ("min", v)));
            f.attrs.extend(num("maximum").map(|v| ("max", v)));
            let step = if type_of(schema) == "integer" { "1" } else { "any" };
            f.attrs.push(("step", step.into()));
        }
        "array" => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            f.max_rows = schema.get("maxItems").and_then(Value::as_u64);
            let list: Vec<Value> = value.and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(options) = choices(items, hints, lang) {
                f.widget = "multiselect";
                f.options = options
                    .into_iter()
                    .map(|(v, label)| Choice {
                        selected: list.contains(&v),
                        value: scalar_text(&v),
                        label,
                    })
                    .collect();
            } else if is_file_ref(items) || widget_hint == Some("file") {
                f.widget = "file";
                f.files = list.iter().filter_map(Value::as_str).map(str::to_string).collect();
            } else if type_of(items) == "object" {
                f.widget = "group";
                let item_ui = hints.get("items").unwrap_or(&Value::Null);
                f.rows = list
                    .iter()
                    .enumerate()
                    .map(|(i, row)| fields(items, item_ui, row, &format!("{pointer}/{i}"), lang))
                    .collect();
                if f.rows.is_empty() && required {
                    f.rows
                        .push(fields(items, item_ui, &Value::Null, &format!("{pointer}/0"), lang));
                }
                f.template = fields(items, item_ui, &Value::Null, &format!("{pointer}/__i__"), lang);
            } else {
                f.widget = "lines";
                f.value = list.iter().map(scalar_text).collect::<Vec<_>>().join("\n");
            }
        }
        "object" => {
            f.widget = "object";
            f.rows = vec![fields(schema, hints, value.unwrap_or(&Value::Null), pointer, lang)];
        }
        _ => {
            if let Some(options) = choices(schema, hints, lang) {
                f.widget = if widget_hint == Some("radio") {
                    "radio"
                } else {
                    "select"
                };
                f.options = options
                    .into_iter()
                    .map(|(v, label)| Choice {
                        selected: value == Some(&v),
                        value: scalar_text(&v),
                        label,
                    })
                    .collect();
            } else if is_file_ref(schema) || widget_hint == Some("file") {
                f.widget = "file";
                f.files = value.and_then(Value::as_str).map(str::to_string).into_iter().collect();
                f.max_rows = Some(1);
            } else {
                let long = schema.get("maxLength").and_then(Value::as_u64).is_some_and(|m| m > 200);
                f.widget = match (widget_hint, schema.get("format").and_then(Value::as_str)) {
                    (Some("textarea"), _) => "textarea",
                    (_, Some("date")) => "date",
                    // A native date and time picker in China time; the stored value is an instant.
                    (_, Some("date-time")) => {
                        if let Some(t) = value
                            .and_then(Value::as_str)
                            .and_then(civicflow_engine::time::parse_instant)
                        {
                            f.value = civicflow_engine::time::local_input(t);
                        }
                        "datetime-local"
                    }
                    (_, Some("email")) => "email",
                    _ if long => "textarea",
                    _ => "text",
                };
                f.attrs.extend(num("minLength").map(|v| ("minlength", v)));
                f.attrs.extend(num("maxLength").map(|v| ("maxlength", v)));
                if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                    f.attrs.push(("pattern", p.to_string()));
                }
            }
        }
    }
    f
}

/// Read a posted form into JSON shaped by `schema`. Empty inputs are left out, so a
/// missing required field is reported as missing.
pub fn read(schema: &Value, posted: &mut Posted, prefix: &str) -> Value {
    let mut out = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Value::Object(out);
    };
    for (name, prop) in props {
        let pointer = format!("{prefix}/{name}");
        if let Some(v) = read_one(prop, posted, &pointer) {
            out.insert(name.clone(), v);
        }
    }
    Value::Object(out)
}

fn read_one(schema: &Value, posted: &mut Posted, pointer: &str) -> Option<Value> {
    // A choice is posted as its value's text; read it back as the typed value.
    let by_text = |values: &[Value], raw: &str| {
        values
            .iter()
            .find(|v| scalar_text(v) == raw)
            .cloned()
            .unwrap_or_else(|| Value::String(raw.to_string()))
    };
    match type_of(schema) {
        // Unanswered stays absent, so a required yes/no is reported as not answered.
        "boolean" => match posted.first(pointer)? {
            "true" | "on" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            other => Some(Value::String(other.to_string())),
        },
        "array" => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            let list: Vec<Value> = if let Some(values) = choice_values(items) {
                posted.all(pointer).map(|raw| by_text(&values, raw)).collect()
            } else if is_file_ref(items) {
                let mut refs: Vec<String> = posted.all(pointer).map(str::to_string).collect();
                refs.extend(posted.files.get(pointer).cloned().unwrap_or_default());
                refs.dedup();
                refs.into_iter().map(Value::String).collect()
            } else if type_of(items) == "object" {
                let mut indexes: Vec<usize> = posted
                    .values
                    .iter()
                    .filter_map(|(n, _)| {
                        n.strip_prefix(pointer)?
                            .strip_prefix('/')?
                            .split('/')
                            .next()?
                            .parse()
                            .ok()
                    })
                    .collect();
                indexes.sort_unstable();
                indexes.dedup();
                indexes
                    .into_iter()
                    .map(|i| read(items, posted, &format!("{pointer}/{i}")))
                    .filter(|row| {
                        row.as_object()
                            .is_some_and(|m| m.values().any(|v| v != &Value::Bool(false)))
                    })
                    .collect()
            } else {
                posted
                    .first(pointer)
                    .unwrap_or("")
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| Value::String(l.to_string()))
                    .collect()
            };
            (!list.is_empty()).then_some(Value::Array(list))
        }
        "object" if schema.get("properties").is_some() => {
            let v = read(schema, posted, pointer);
            v.as_object().is_some_and(|m| !m.is_empty()).then_some(v)
        }
        kind => {
            let raw = posted.first(pointer)?.trim().to_string();
            if raw.is_empty() {
                return None;
            }
            if let Some(values) = choice_values(schema) {
                return Some(by_text(&values, &raw));
            }
            if is_file_ref(schema) {
                return Some(Value::String(raw));
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && let Some(t) = civicflow_engine::time::parse_local(&raw)
            {
                return Some(Value::String(civicflow_engine::time::canonical(t)));
            }
            match kind {
                "integer" => raw.parse::<i64>().ok().map(Value::from).or_else(|| {
                    posted.problems.insert(pointer.to_string(), "err-number".into());
                    Some(Value::String(raw))
                }),
                "number" => raw
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .or_else(|| {
                        posted.problems.insert(pointer.to_string(), "err-number".into());
                        Some(Value::String(raw))
                    }),
                _ => Some(Value::String(raw)),
            }
        }
    }
}

/// The message for one validator problem, in `lang`.
pub fn problem_text(p: &FormProblem, lang: &str) -> String {
    let limit = scalar_text(&p.limit);
    // A format has its own words where one is written (`err-format-date-time`: an example).
    if p.keyword == "format" {
        let id = format!("err-format-{limit}");
        let message = text(lang, &id, &[]);
        if message != id {
            return message;
        }
    }
    let id = format!("err-{}", p.keyword);
    let message = text(lang, &id, &[("limit", limit.into())]);
    if message == id {
        text(lang, "err-other", &[])
    } else {
        message
    }
}

/// Put each message (by pointer) beside the nearest field that holds it, and list them all
/// for the summary, in the order the fields appear.
pub fn attach_errors(fields: &mut [Field], errors: &BTreeMap<String, String>) -> Vec<SummaryItem> {
    let mut summary = Vec::new();
    let mut placed = std::collections::BTreeSet::new();
    attach(fields, errors, &mut summary, &mut placed);
    for (pointer, message) in errors {
        if !placed.contains(pointer) {
            summary.push(SummaryItem {
                id: String::new(),
                label: String::new(),
                message: message.clone(),
            });
        }
    }
    summary
}

fn attach(
    fields: &mut [Field],
    errors: &BTreeMap<String, String>,
    summary: &mut Vec<SummaryItem>,
    placed: &mut std::collections::BTreeSet<String>,
) {
    for f in fields {
        for row in &mut f.rows {
            attach(row, errors, summary, placed);
        }
        let mine: Vec<(&String, &String)> = errors
            .iter()
            .filter(|(p, _)| {
                !placed.contains(*p) && (*p == &f.name || p.strip_prefix(&f.name).is_some_and(|r| r.starts_with('/')))
            })
            .collect();
        if let Some((_, message)) = mine.first() {
            f.error = Some((*message).clone());
            summary.push(SummaryItem {
                id: f.id.clone(),
                label: f.label.clone(),
                message: (*message).clone(),
            });
        }
        placed.extend(mine.into_iter().map(|(p, _)| p.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["category", "score"],
            "properties": {
                "category": {"title": "类别", "oneOf": [{"const": "road", "title": "道路"}, {"const": "water", "title": "供水"}]},
                "score": {"type": "integer", "title": "评分", "minimum": 1, "maximum": 5},
                "reason": {"type": "string", "maxLength": 500},
                "ok": {"type": "boolean"},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
                "photos": {"type": "array", "items": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}},
                "members": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}},
                "when": {"type": "string", "format": "date"},
                "at": {"type": "string", "format": "date-time"}
            },
            "if": {"properties": {"category": {"const": "water"}}},
            "then": {"required": ["reason"]},
            "dependentRequired": {"when": ["tags"]}
        })
    }

    #[test]
    fn widgets_attributes_and_conditions_follow_the_schema() {
        let f = fields(
            &schema(),
            &json!({"order": ["score"]}),
            &json!({"score": 4, "at": "2026-12-02T06:30:00.000Z"}),
            "",
            "zh-CN",
        );
        let by = |n: &str| f.iter().find(|f| f.name == n).unwrap();
        assert_eq!(f[0].name, "/score", "ui.order puts score first");
        assert_eq!(by("/category").widget, "select");
        assert_eq!(by("/category").options[1].label, "供水");
        assert_eq!(by("/score").widget, "number");
        assert_eq!(by("/score").value, "4");
        assert!(by("/score").attrs.contains(&("max", "5".into())));
        assert_eq!(by("/reason").widget, "textarea");
        assert_eq!(
            by("/reason").show_if,
            Some(ShowIf {
                field: "/category".into(),
                equals: Some("water".into())
            })
        );
        assert_eq!(
            by("/tags").show_if,
            Some(ShowIf {
                field: "/when".into(),
                equals: None
            })
        );
        assert_eq!(by("/ok").widget, "radio");
        let answers: Vec<&str> = by("/ok").options.iter().map(|o| o.value.as_str()).collect();
        assert_eq!(answers, ["true", "false"], "yes and no");
        assert_eq!(by("/tags").widget, "multiselect");
        assert_eq!(by("/photos").widget, "file");
        assert_eq!(by("/members").widget, "group");
        assert_eq!(by("/members").template[0].name, "/members/__i__/name");
        assert_eq!(by("/when").widget, "date");
        assert_eq!(by("/at").widget, "datetime-local");
        assert_eq!(by("/at").value, "2026-12-02T14:30", "an instant shown in China time");
    }

    #[test]
    fn choice_labels_follow_the_readers_language() {
        let ui = json!({"fields": {
            "category": {"options": {"water": {"en": "Water"}}},
            "tags": {"options": {"a": "A (all languages)"}}
        }});
        let labels = |lang: &str, name: &str| -> Vec<String> {
            let f = fields(&schema(), &ui, &Value::Null, "", lang);
            let field = f.into_iter().find(|f| f.name == name).unwrap();
            field.options.into_iter().map(|o| o.label).collect()
        };
        // An option without an English label keeps the schema's title rather than nothing.
        assert_eq!(labels("en", "/category"), ["道路", "Water"]);
        assert_eq!(labels("zh-CN", "/category"), ["道路", "供水"]);
        assert_eq!(labels("zh-CN", "/tags"), ["A (all languages)", "b"]);
    }

    #[test]
    fn a_posted_form_reads_back_into_typed_json() {
        let mut posted = Posted {
            values: [
                ("/category", "water"),
                ("/score", "x5"),
                ("/reason", "  "),
                ("/ok", "false"),
                ("/at", "2026-12-02T14:30"),
                ("/tags", "a"),
                ("/tags", "b"),
                ("/photos", "sha256:aa"),
                ("/members/0/name", "王"),
                ("/members/0/age", "40"),
                ("/members/3/name", "李"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            ..Default::default()
        };
        posted.files.insert("/photos".into(), vec!["sha256:bb".into()]);
        let v = read(&schema(), &mut posted, "");
        assert_eq!(
            v,
            json!({"category": "water", "score": "x5", "ok": false, "at": "2026-12-02T06:30:00.000Z", "tags": ["a", "b"],
                   "photos": ["sha256:aa", "sha256:bb"], "members": [{"name": "王", "age": 40}, {"name": "李"}]})
        );
        assert_eq!(posted.problems.get("/score").map(String::as_str), Some("err-number"));
    }

    #[test]
    fn errors_land_beside_their_fields_and_in_the_summary() {
        let mut f = fields(&schema(), &Value::Null, &json!({"members": [{"name": "x"}]}), "", "en");
        let errors: BTreeMap<String, String> = [
            ("/score".to_string(), "required".to_string()),
            ("/members/0/age".to_string(), "number".to_string()),
            ("".to_string(), "whole form".to_string()),
        ]
        .into();
        let summary = attach_errors(&mut f, &errors);
        assert_eq!(summary.len(), 3);
        let members = f.iter().find(|f| f.name == "/members").unwrap();
        assert_eq!(members.rows[0][1].error.as_deref(), Some("number"));
        assert_eq!(summary.last().unwrap().message, "whole form");
    }
}
