//! Loading a workflow: YAML syntax, then the JSON Schema, then meaning. Every problem found
//! is reported, each at the node it concerns, so an author fixes a file in one pass.

use crate::definition::{
    Definition, EscalationTarget, Notify, Recipients, StateKind, Transition, ValueExpr, Workflow, parse_cron,
};
use crate::diagnostic::{Diagnostic, suggest};
use crate::duration::Span;
use crate::expr::{Expr, check_template};
use crate::yaml::{SourceDoc, pointer_segment};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::LazyLock;

pub const WORKFLOW_SCHEMA: &str = include_str!("../../../schemas/workflow.schema.json");

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(WORKFLOW_SCHEMA).expect("workflow schema is JSON");
    jsonschema::validator_for(&schema).expect("workflow schema is valid")
});

/// The result of loading one file: the workflow if it has no errors, and every diagnostic.
pub struct Loaded {
    pub workflow: Option<Workflow>,
    pub diagnostics: Vec<Diagnostic>,
}

pub fn load(file: &str, text: &str) -> Loaded {
    match SourceDoc::parse(file, text) {
        Ok(doc) => check(&doc, text, hex::encode(Sha256::digest(text.as_bytes())), Vec::new()),
        Err(d) => Loaded {
            workflow: None,
            diagnostics: vec![d],
        },
    }
}

/// The base workflow (its file name and text) with `overlays` composed onto it in order,
/// checked as a whole: each diagnostic names the file and line the offending part was
/// written in, the overlay's where an overlay wrote it.
pub fn load_composed(file: &str, text: &str, overlays: &[&crate::overlay::Overlay]) -> Loaded {
    if overlays.is_empty() {
        return load(file, text);
    }
    let base = match SourceDoc::parse(file, text) {
        Ok(doc) => doc,
        Err(d) => {
            return Loaded {
                workflow: None,
                diagnostics: vec![d],
            };
        }
    };
    let (doc, refused) = crate::overlay::compose_all(&base, overlays);
    let mut hash = Sha256::new();
    hash.update(text.as_bytes());
    for o in overlays {
        hash.update(o.sha256.as_bytes());
    }
    let pins = overlays.iter().map(|o| o.pin()).collect();
    let mut loaded = check(&doc, text, hex::encode(hash.finalize()), pins);
    if !refused.is_empty() {
        loaded.workflow = None;
        loaded.diagnostics.extend(refused);
        let Loaded { diagnostics, .. } = finish(None, loaded.diagnostics);
        loaded.diagnostics = diagnostics;
    }
    loaded
}

fn check(doc: &SourceDoc, text: &str, sha256: String, overlays: Vec<crate::overlay::OverlayPin>) -> Loaded {
    let schema_errors: Vec<_> = SCHEMA.iter_errors(&doc.value).collect();
    let mut diags: Vec<Diagnostic> = schema_errors.iter().flat_map(|e| schema_diagnostics(doc, e)).collect();
    // The meaning is checked too, on the file without the parts the schema refused, so an
    // author sees every problem at once rather than one kind per run.
    let def: Definition = match serde_json::from_value(without_schema_errors(&doc.value, &schema_errors)) {
        Ok(def) => def,
        Err(_) if !diags.is_empty() => return finish(None, diags),
        Err(e) => return finish(None, vec![doc.error("", format!("definition: {e}"))]),
    };
    let mut c = Checker {
        doc,
        def: &def,
        diags: Vec::new(),
        exprs: HashMap::new(),
        forms: HashMap::new(),
        spans: HashMap::new(),
        crons: HashMap::new(),
    };
    c.check();
    let Checker {
        diags: mut found,
        exprs,
        forms,
        spans,
        crons,
        ..
    } = c;
    diags.append(&mut found);
    let has_errors = diags.iter().any(Diagnostic::is_error);
    let workflow = (!has_errors).then(|| Workflow {
        sha256,
        file: doc.file.clone(),
        source: text.to_string(),
        overlays,
        exprs,
        forms,
        spans,
        crons,
        def,
    });
    finish(workflow, diags)
}

/// `value` with what each schema error concerns removed: the unknown keys of an object, or
/// the node that has the wrong shape (array items from the last, so indices stay right).
fn without_schema_errors(value: &Value, errors: &[jsonschema::ValidationError]) -> Value {
    use jsonschema::error::ValidationErrorKind as K;
    let mut cut: Vec<String> = Vec::new();
    for e in errors {
        let at = e.instance_path().to_string();
        match e.kind() {
            K::AdditionalProperties { unexpected } => {
                cut.extend(unexpected.iter().map(|k| format!("{at}/{}", pointer_segment(k))));
            }
            _ if !at.is_empty() => cut.push(at),
            _ => {}
        }
    }
    // Deepest and highest-numbered first, so removing one item does not move another.
    let key = |p: &String| -> Vec<(usize, String)> {
        p.split('/')
            .map(|seg| (seg.parse().unwrap_or(usize::MAX), seg.to_string()))
            .collect()
    };
    cut.sort_by_key(|p| std::cmp::Reverse(key(p)));
    cut.dedup();
    let mut out = value.clone();
    for pointer in cut {
        let Some((parent, last)) = pointer.rsplit_once('/') else {
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        match out.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.remove(&last);
            }
            Some(Value::Array(items)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < items.len()
                {
                    items.remove(i);
                }
            }
            _ => {}
        }
    }
    out
}

fn finish(workflow: Option<Workflow>, mut diagnostics: Vec<Diagnostic>) -> Loaded {
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    diagnostics.dedup();
    Loaded { workflow, diagnostics }
}

/// A schema error as diagnostics; an unknown key is reported at the key itself, one each,
/// with what is allowed there.
pub fn schema_diagnostics(doc: &SourceDoc, e: &jsonschema::ValidationError) -> Vec<Diagnostic> {
    use jsonschema::error::ValidationErrorKind as K;
    let at = e.instance_path().to_string();
    match e.kind() {
        K::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|k| {
                doc.key_error(
                    &format!("{at}/{}", pointer_segment(k)),
                    format!("unknown key \"{k}\" here"),
                )
            })
            .collect(),
        _ => vec![doc.error(&at, schema_message(e))],
    }
}

fn schema_message(e: &jsonschema::ValidationError) -> String {
    let path = e.instance_path().to_string();
    let at = if path.is_empty() {
        "top level".to_string()
    } else {
        path.trim_start_matches('/').replace('/', ".")
    };
    format!("{at}: {e}")
}

struct Checker<'a> {
    doc: &'a SourceDoc,
    def: &'a Definition,
    diags: Vec<Diagnostic>,
    exprs: HashMap<String, Expr>,
    forms: HashMap<String, jsonschema::Validator>,
    spans: HashMap<String, Span>,
    crons: HashMap<String, (cron::Schedule, chrono_tz::Tz)>,
}

impl Checker<'_> {
    fn error(&mut self, pointer: &str, message: String) {
        self.diags.push(self.doc.error(pointer, message));
    }

    fn check(&mut self) {
        let def = self.def;
        self.check_forms();
        for (i, role) in def.start.roles.iter().enumerate() {
            self.role(&format!("/start/roles/{i}"), role);
        }
        if let Some(form) = &def.start.form {
            self.form_ref("/start/form", form);
        }
        self.state_ref("/start/to", &def.start.to);
        self.statistics();
        let templates = def
            .templates
            .iter()
            .map(|(name, t)| (format!("/templates/{}", pointer_segment(name)), t));
        for (at, template) in templates.chain(def.summary.iter().map(|t| ("/summary".to_string(), t))) {
            for (lang, text) in template {
                if let Err(e) = check_template(text) {
                    self.error(
                        &format!("{at}/{}", pointer_segment(lang)),
                        format!("template syntax: {e}"),
                    );
                }
            }
        }
        for (name, rule) in &def.rules {
            self.expr(&format!("/rules/{}/default", pointer_segment(name)), &rule.default);
        }
        for (name, state) in &def.states {
            let at = format!("/states/{}", pointer_segment(name));
            self.check_state(&at, name, state);
        }
        for (i, s) in def.schedules.iter().enumerate() {
            let at = format!("/schedules/{i}");
            let zone = match s.time_zone.as_deref().map(crate::time::parse_zone) {
                None => crate::time::DEFAULT_TIME_ZONE,
                Some(Ok(z)) => z,
                Some(Err(e)) => {
                    self.error(&format!("{at}/time_zone"), e);
                    crate::time::DEFAULT_TIME_ZONE
                }
            };
            match parse_cron(&s.cron) {
                Ok(sched) => {
                    self.crons.insert(s.id.clone(), (sched, zone));
                }
                Err(e) => self.error(&format!("{at}/cron"), e),
            }
            if let Some(role) = &s.for_each_role {
                self.role(&format!("{at}/for_each_role"), role);
            }
            if s.for_each_role.is_none() == s.unit.is_none() {
                self.error(&at, "a schedule needs exactly one of for_each_role or unit".into());
            }
            for (k, v) in &s.data {
                self.expr(&format!("{at}/data/{}", pointer_segment(k)), v);
            }
        }
        self.signal_handlers("/on", &def.on);
        self.check_reachability();
        self.check_joins();
    }

    /// Every way into a join must be one of the branches it waits for: an arrival from
    /// elsewhere would be dropped, leaving the instance running with no state at all.
    fn check_joins(&mut self) {
        let def = self.def;
        let is_join = |s: &str| def.states.get(s).is_some_and(|st| st.kind == StateKind::Join);
        if is_join(&def.start.to) {
            let message = format!(
                "the first state \"{}\" is a join, which waits for branches that never started",
                def.start.to
            );
            self.error("/start/to", message);
        }
        for (signal, transitions) in &def.on {
            for (i, t) in transitions.iter().enumerate() {
                for target in t.to.states().iter().filter(|t| is_join(t)) {
                    let message = format!(
                        "signal \"{signal}\" may arrive from any state, so it cannot go to the join \"{target}\""
                    );
                    self.error(&format!("/on/{}/{i}/to", pointer_segment(signal)), message);
                }
            }
        }
        for (name, state) in &def.states {
            let at = format!("/states/{}", pointer_segment(name));
            let at = at.as_str();
            let ways = state
                .transitions
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("{at}/transitions/{i}/to"), &t.to))
                .chain(
                    state
                        .timers
                        .iter()
                        .enumerate()
                        .filter_map(|(i, t)| Some((format!("{at}/timers/{i}/to"), t.to.as_ref()?))),
                )
                .chain(state.on.iter().flat_map(|(sig, ts)| {
                    ts.iter()
                        .enumerate()
                        .map(move |(i, t)| (format!("{at}/on/{}/{i}/to", pointer_segment(sig)), &t.to))
                }));
            let mut wrong = Vec::new();
            for (pointer, to) in ways {
                for target in to.states() {
                    let join = &def.states.get(target.as_str());
                    if let Some(j) = join.filter(|j| j.kind == StateKind::Join)
                        && !j.from.contains(name)
                    {
                        wrong.push((pointer.clone(), format!(
                            "\"{name}\" goes to the join \"{target}\", which waits only for {:?}; add \"{name}\" to its `from` or route this branch elsewhere",
                            j.from
                        )));
                    }
                }
            }
            for (pointer, message) in wrong {
                self.error(&pointer, message);
            }
        }
    }

    fn check_forms(&mut self) {
        for (name, form) in &self.def.forms {
            let at = format!("/forms/{}/schema", pointer_segment(name));
            // `format` (date-time, email...) is checked, not just noted: a deadline a form
            // accepts must be a time the engine can arm a timer on.
            match jsonschema::options().should_validate_formats(true).build(&form.schema) {
                Ok(v) => {
                    self.forms.insert(name.clone(), v);
                }
                Err(e) => {
                    let inner = format!("{at}{}", e.instance_path());
                    self.error(&inner, format!("form \"{name}\" is not a valid JSON Schema: {e}"));
                }
            }
            if let Some(ui) = &form.ui {
                self.check_ui(&format!("/forms/{}/ui", pointer_segment(name)), &form.schema, ui);
            }
            for (field, spec) in &form.choices {
                let at = format!("/forms/{}/choices/{}", pointer_segment(name), pointer_segment(field));
                if form
                    .schema
                    .pointer(&format!("/properties/{}", pointer_segment(field)))
                    .is_none()
                {
                    self.error(&at, format!("no field \"{field}\" in this form's schema"));
                }
                if self.def.start.form.as_deref() == Some(name.as_str()) {
                    self.error(
                        &at,
                        "choices are read from the instance, which the start form does not have yet".into(),
                    );
                }
                self.value_expr(&at, spec);
            }
        }
    }

    /// Hints must name fields the schema has: a misspelt name would be silently ignored and
    /// the form would render without the author noticing.
    fn check_ui(&mut self, at: &str, schema: &Value, ui: &Value) {
        let props = schema.get("properties").and_then(Value::as_object);
        let names: Vec<&str> = props
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let unknown = |this: &mut Self, pointer: String, field: &str| {
            let message = format!(
                "no field \"{field}\" in this form's schema{}",
                suggest(field, names.iter().copied())
            );
            this.error(&pointer, message);
        };
        for (i, field) in ui
            .get("order")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(field) = field.as_str().filter(|f| !names.contains(f)) {
                unknown(self, format!("{at}/order/{i}"), field);
            }
        }
        for (field, hints) in ui.get("fields").and_then(Value::as_object).into_iter().flatten() {
            let here = format!("{at}/fields/{}", pointer_segment(field));
            let Some(sub) = props.and_then(|p| p.get(field)) else {
                unknown(self, here, field);
                continue;
            };
            if let Some(other) = hints.pointer("/show_if/field").and_then(Value::as_str)
                && !names.contains(&other)
            {
                unknown(self, format!("{here}/show_if/field"), other);
            }
            // A unit or person picker lists the holders of a role of this workflow.
            if matches!(hints.get("widget").and_then(Value::as_str), Some("unit" | "person")) {
                match hints.get("role").and_then(Value::as_str) {
                    Some(role) => self.role(&format!("{here}/role"), role),
                    None => self.error(
                        &format!("{here}/widget"),
                        "a unit or person picker needs `role`: whose holders it lists".into(),
                    ),
                }
            }
            // An object field carries its own order and fields; a group's rows theirs under `items`.
            self.check_ui(&here, sub, hints);
            if let Some(items) = hints.get("items") {
                self.check_ui(
                    &format!("{here}/items"),
                    sub.get("items").unwrap_or(&Value::Null),
                    items,
                );
            }
        }
    }

    fn check_state(&mut self, at: &str, name: &str, state: &crate::definition::State) {
        for (k, v) in &state.set {
            self.value_expr(&format!("{at}/set/{}", pointer_segment(k)), v);
        }
        if let Some(n) = &state.notify {
            self.notify(&format!("{at}/notify"), n);
        }
        match state.kind {
            StateKind::Task | StateKind::Collect => {
                match &state.assign {
                    None => self.error(
                        at,
                        format!("task state \"{name}\" needs `assign` (a role, a person or a pool)"),
                    ),
                    Some(a) => {
                        match &a.role {
                            Some(crate::definition::RoleSpec::Name(role)) => {
                                self.role(&format!("{at}/assign/role"), role)
                            }
                            Some(crate::definition::RoleSpec::Rule { rule }) => {
                                self.rule_ref(&format!("{at}/assign/role"), rule)
                            }
                            None => {}
                        }
                        if let Some(p) = &a.person {
                            self.expr(&format!("{at}/assign/person"), p);
                        }
                        if let Some(u) = &a.unit {
                            self.value_expr(&format!("{at}/assign/unit"), u);
                            if a.level.is_some() {
                                self.error(
                                    &format!("{at}/assign/level"),
                                    "give the task's unit either by `level` or by `unit`, not both".into(),
                                );
                            }
                        }
                        if a.role.is_none() && a.person.is_none() {
                            self.error(&format!("{at}/assign"), "assign needs a role or a person".into());
                        }
                        if a.below && a.role.is_none() {
                            self.error(
                                &format!("{at}/assign/below"),
                                "`below` opens the task to a role's holders below the unit; it needs `role`".into(),
                            );
                        }
                        if a.pool && a.role.is_none() {
                            self.error(
                                &format!("{at}/assign/pool"),
                                "a pool task needs the role that may claim it".into(),
                            );
                        }
                    }
                }
                if let Some(form) = &state.form {
                    self.form_ref(&format!("{at}/form"), form);
                }
                if let Some(due) = &state.due {
                    self.time_spec(&format!("{at}/due"), due, false);
                }
                for (i, e) in state.escalate.iter().enumerate() {
                    let eat = format!("{at}/escalate/{i}");
                    match &e.after {
                        Some(after) => self.time_spec(&format!("{eat}/after"), after, state.due.is_some()),
                        None if state.due.is_none() => self.error(
                            &eat,
                            "an escalation without `after` fires at the state's limit, but the state has no `due`"
                                .into(),
                        ),
                        None => {}
                    }
                    if let Some(w) = &e.when {
                        self.expr(&format!("{eat}/when"), w);
                    }
                    match &e.to {
                        EscalationTarget::Role(role) | EscalationTarget::At { role, .. } => {
                            self.role(&format!("{eat}/to"), role)
                        }
                        EscalationTarget::Rule { rule } => self.rule_ref(&format!("{eat}/to"), rule),
                    }
                    if let Some(n) = &e.notify {
                        self.notify(&format!("{at}/escalate/{i}/notify"), n);
                    }
                }
            }
            StateKind::Join => {
                if state.from.len() < 2 {
                    self.error(at, format!("join state \"{name}\" needs at least two states in `from`"));
                }
                for (i, s) in state.from.iter().enumerate() {
                    self.state_ref(&format!("{at}/from/{i}"), s);
                }
            }
            StateKind::End => {
                if !state.transitions.is_empty() || !state.timers.is_empty() {
                    self.error(at, format!("end state \"{name}\" cannot have transitions or timers"));
                }
            }
            StateKind::Auto | StateKind::Wait => {}
        }
        if !matches!(state.kind, StateKind::Task | StateKind::Collect) {
            for key in ["form", "assign", "due", "escalate"] {
                if self.doc.value["states"][name].get(key).is_some() {
                    self.error(
                        &format!("{at}/{key}"),
                        format!("`{key}` only applies to task and collect states"),
                    );
                }
            }
        }
        self.check_collect(at, name, state);
        if let Some(code) = &state.code {
            if !matches!(state.kind, StateKind::Task | StateKind::Collect) {
                self.error(
                    &format!("{at}/code"),
                    "`code` only applies to task and collect states".into(),
                );
            }
            self.duration(&format!("{at}/code/valid_for"), &code.valid_for);
            self.role(&format!("{at}/code/shown_by"), &code.shown_by);
        }
        if state.kind != StateKind::End
            && state.transitions.is_empty()
            && state.timers.is_empty()
            && state.on.is_empty()
        {
            self.error(
                at,
                format!("state \"{name}\" is not an end state but has no way out (no transitions and no timers)"),
            );
        }
        if matches!(state.kind, StateKind::Auto | StateKind::Join) && state.transitions.is_empty() {
            self.error(
                at,
                format!("{:?} state \"{name}\" needs transitions", state.kind).to_lowercase(),
            );
        }
        let last_is_guarded = state.transitions.last().is_some_and(|t| t.when.is_some());
        if state.kind == StateKind::Auto && last_is_guarded {
            let message = format!(
                "automatic state \"{name}\" has no fallback transition without `when`; the instance fails if no guard matches"
            );
            self.diags.push(self.doc.warning(&format!("{at}/transitions"), message));
        }
        for (i, t) in state.transitions.iter().enumerate() {
            self.transition(&format!("{at}/transitions/{i}"), t);
        }
        for (i, t) in state.timers.iter().enumerate() {
            let tat = format!("{at}/timers/{i}");
            match (&t.after, &t.at) {
                (Some(d), None) => self.time_spec(&format!("{tat}/after"), d, state.due.is_some()),
                (None, Some(ValueExpr::Expr(e))) => self.expr(&format!("{tat}/at"), e),
                (None, Some(rule)) => self.value_expr(&format!("{tat}/at"), rule),
                _ => self.error(
                    &tat,
                    "a timer needs exactly one of `after` (a duration) or `at` (a deadline expression)".into(),
                ),
            }
            if let Some(w) = &t.when {
                self.expr(&format!("{tat}/when"), w);
            }
            match &t.to {
                Some(to) => self.target(&format!("{tat}/to"), to.states()),
                None if t.notify.is_none() && t.set.is_empty() => self.error(
                    &tat,
                    "a timer needs `to`, or `notify` or `set` to act on while the instance stays".into(),
                ),
                None => {}
            }
            for (k, v) in &t.set {
                self.value_expr(&format!("{tat}/set/{}", pointer_segment(k)), v);
            }
            if let Some(n) = &t.notify {
                self.notify(&format!("{tat}/notify"), n);
            }
            self.credits(&tat, &t.credit);
            self.register(&tat, t.register.as_ref());
        }
        self.signal_handlers(&format!("{at}/on"), &state.on);
    }

    fn signal_handlers(&mut self, at: &str, on: &BTreeMap<String, Vec<Transition>>) {
        for (signal, transitions) in on {
            let sat = format!("{at}/{}", pointer_segment(signal));
            if !self.def.signals.contains_key(signal) {
                let known: Vec<&str> = self.def.signals.keys().map(String::as_str).collect();
                self.error(&sat, format!("undefined signal \"{signal}\"; declared: {known:?}"));
            }
            for (i, t) in transitions.iter().enumerate() {
                self.transition(&format!("{sat}/{i}"), t);
            }
        }
    }

    fn transition(&mut self, at: &str, t: &Transition) {
        self.target(&format!("{at}/to"), t.to.states());
        if let Some(w) = &t.when {
            self.value_expr(&format!("{at}/when"), w);
        }
        for (k, v) in &t.set {
            self.value_expr(&format!("{at}/set/{}", pointer_segment(k)), v);
        }
        if let Some(n) = &t.notify {
            self.notify(&format!("{at}/notify"), n);
        }
        self.credits(at, &t.credit);
        self.register(at, t.register.as_ref());
    }

    fn register(&mut self, at: &str, register: Option<&crate::definition::RegisterWrite>) {
        let Some(r) = register else { return };
        self.expr(&format!("{at}/register/person"), &r.person);
        for (k, v) in &r.set {
            self.value_expr(&format!("{at}/register/set/{}", pointer_segment(k)), v);
        }
    }

    fn credits(&mut self, at: &str, credits: &[crate::definition::Credit]) {
        for (i, c) in credits.iter().enumerate() {
            self.expr(&format!("{at}/credit/{i}/to"), &c.to);
            self.value_expr(&format!("{at}/credit/{i}/amount"), &c.amount);
        }
    }

    fn check_collect(&mut self, at: &str, name: &str, state: &crate::definition::State) {
        let Some(c) = &state.collect else {
            if state.kind == StateKind::Collect {
                self.error(
                    at,
                    format!("collect state \"{name}\" needs `collect` (at least `into` and `key`)"),
                );
            }
            return;
        };
        if state.kind != StateKind::Collect {
            self.error(
                &format!("{at}/collect"),
                "`collect` only applies to collect states".into(),
            );
            return;
        }
        if state.form.is_none() {
            self.error(
                at,
                format!("collect state \"{name}\" needs the `form` each entry fills in"),
            );
        }
        self.expr(&format!("{at}/collect/key"), &c.key);
        if let Some(allow) = &c.allow {
            self.expr(&format!("{at}/collect/allow"), allow);
        }
        if let Some(capacity) = &c.capacity {
            self.expr(&format!("{at}/collect/capacity"), capacity);
        }
        if let Some(room) = &c.waitlist_capacity {
            self.expr(&format!("{at}/collect/waitlist_capacity"), room);
            if c.waitlist.is_none() {
                self.error(
                    &format!("{at}/collect/waitlist_capacity"),
                    "`waitlist_capacity` needs a `waitlist`".into(),
                );
            }
        }
        if c.waitlist.is_some() && c.capacity.is_none() {
            self.error(
                &format!("{at}/collect/waitlist"),
                "a waiting list needs a `capacity` to overflow".into(),
            );
        }
        // Transitions are tried after every entry: one without a guard would close the
        // state on the first entry, which is never what an author means.
        for (i, t) in state.transitions.iter().enumerate() {
            if t.when.is_none() {
                self.error(
                    &format!("{at}/transitions/{i}"),
                    "a collect state's transitions are tried after each entry and need `when`; close it with a timer or a guard".into(),
                );
            }
        }
    }

    fn check_reachability(&mut self) {
        let def = self.def;
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([def.start.to.as_str()]);
        queue.extend(
            def.on
                .values()
                .flatten()
                .flat_map(|t| t.to.states())
                .map(String::as_str),
        );
        while let Some(s) = queue.pop_front() {
            if !seen.insert(s) {
                continue;
            }
            let Some(state) = def.states.get(s) else { continue };
            let targets = state
                .transitions
                .iter()
                .chain(state.on.values().flatten())
                .map(|t| &t.to)
                .chain(state.timers.iter().filter_map(|t| t.to.as_ref()));
            for t in targets {
                queue.extend(t.states().iter().map(String::as_str));
            }
        }
        for name in def.states.keys() {
            if !seen.contains(name.as_str()) {
                self.error(
                    &format!("/states/{}", pointer_segment(name)),
                    format!(
                        "state \"{name}\" is unreachable from the start state \"{}\"",
                        def.start.to
                    ),
                );
            }
        }
    }

    fn target(&mut self, at: &str, states: &[String]) {
        if states.len() == 1 {
            self.state_ref(at, &states[0]);
        } else {
            for (i, s) in states.iter().enumerate() {
                self.state_ref(&format!("{at}/{i}"), s);
            }
        }
    }

    fn state_ref(&mut self, at: &str, name: &str) {
        if !self.def.states.contains_key(name) {
            let hint = suggest(name, self.def.states.keys().map(String::as_str));
            self.error(at, format!("unknown state \"{name}\"{hint}"));
        }
    }

    fn role(&mut self, at: &str, name: &str) {
        if !self.def.roles.contains_key(name) {
            let hint = suggest(name, self.def.roles.keys().map(String::as_str));
            self.error(at, format!("undefined role \"{name}\"{hint}"));
        }
    }

    /// The dashboards' category is a field of the start form (every instance has it from
    /// the start); the rating may be set by any step, so only its name is checked.
    fn statistics(&mut self) {
        let Some(field) = &self.def.statistics.category else {
            return;
        };
        let form = self.def.start.form.as_deref().and_then(|f| self.def.forms.get(f));
        let fields: Vec<&str> = form
            .and_then(|f| f.schema.get("properties"))
            .and_then(|p| p.as_object())
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if !fields.contains(&field.as_str()) {
            let hint = suggest(field, fields.iter().copied());
            self.error(
                "/statistics/category",
                format!("the category \"{field}\" is not a field of the start form{hint}"),
            );
        }
    }

    fn form_ref(&mut self, at: &str, name: &str) {
        if !self.def.forms.contains_key(name) {
            let hint = suggest(name, self.def.forms.keys().map(String::as_str));
            self.error(at, format!("unknown form \"{name}\"{hint}"));
        }
    }

    fn notify(&mut self, at: &str, n: &Notify) {
        self.template_ref(&format!("{at}/template"), &n.template);
        let at = format!("{at}/to");
        match &n.to {
            Recipients::Role { role, .. } => self.role(&at, role),
            Recipients::Rule { rule } => self.rule_ref(&at, rule),
            // A bare word names a role (a misspelt one is an error, not a variable); anything
            // else is an expression giving people.
            Recipients::Written(w) if is_word(w) => self.role(&at, w),
            Recipients::Written(w) => self.expr(&at, w),
        }
    }

    fn template_ref(&mut self, at: &str, name: &str) {
        if !self.def.templates.contains_key(name) {
            let hint = suggest(name, self.def.templates.keys().map(String::as_str));
            self.error(at, format!("unknown template \"{name}\"{hint}"));
        }
    }

    fn duration(&mut self, at: &str, text: &str) {
        match Span::parse(text) {
            Ok(span) => {
                self.spans.insert(text.to_string(), span);
            }
            Err(e) => self.error(at, e.0),
        }
    }

    /// A time: a constant duration, `Nx` (a multiple of the state's limit), an expression,
    /// or a rule. Text that starts with a digit is meant as a duration and must be one.
    fn time_spec(&mut self, at: &str, spec: &ValueExpr, state_has_due: bool) {
        let ValueExpr::Expr(text) = spec else {
            return self.value_expr(at, spec);
        };
        if crate::duration::limit_multiple(text).is_some() {
            if !state_has_due {
                self.error(
                    at,
                    format!("\"{text}\" is a multiple of the state's limit, but the state has no `due`"),
                );
            }
        } else if text.starts_with(|c: char| c.is_ascii_digit()) || Span::parse(text).is_ok() {
            self.duration(at, text);
        } else {
            self.expr(at, text);
        }
    }

    fn rule_ref(&mut self, at: &str, rule: &str) {
        if !self.def.rules.contains_key(rule) {
            let hint = suggest(rule, self.def.rules.keys().map(String::as_str));
            self.error(&format!("{at}/rule"), format!("unknown rule hook \"{rule}\"{hint}"));
        }
    }

    fn expr(&mut self, at: &str, source: &str) {
        if self.exprs.contains_key(source) {
            return;
        }
        match Expr::compile(source) {
            Ok(e) => {
                self.exprs.insert(source.to_string(), e);
            }
            Err(e) => self.error(at, format!("expression `{source}` does not compile: {e}")),
        }
    }

    fn value_expr(&mut self, at: &str, v: &ValueExpr) {
        match v {
            ValueExpr::Expr(source) => self.expr(at, source),
            ValueExpr::Rule { rule } => self.rule_ref(at, rule),
        }
    }
}

fn is_word(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "id: t\nversion: 1\ntitle: {zh-CN: t}\nroles: {r: {title: {zh-CN: r}}}\nstart: {roles: [r], to: fork}\n";

    fn errors(states: &str) -> Vec<String> {
        let text = format!("{BASE}states:\n{states}");
        load("t.yaml", &text)
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_dashboards_category_is_a_field_of_the_start_form() {
        let with = |category: &str| {
            format!(
                "id: t\nversion: 1\ntitle: {{zh-CN: t}}\nroles: {{r: {{title: {{zh-CN: r}}}}}}\n\
                 start: {{roles: [r], form: f, to: done}}\n\
                 forms: {{f: {{schema: {{type: object, properties: {{kind: {{type: string}}}}}}}}}}\n\
                 statistics: {{category: {category}, rating: score}}\nstates: {{done: {{type: end}}}}\n"
            )
        };
        assert!(load("t.yaml", &with("kind")).diagnostics.iter().all(|d| !d.is_error()));
        let wrong: Vec<String> = load("t.yaml", &with("knid"))
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(
            wrong[0].starts_with("t.yaml:7:") && wrong[0].contains("\"knid\" is not a field of the start form"),
            "{wrong:?}"
        );
        assert!(wrong[0].contains("kind"), "suggests the field: {wrong:?}");
    }

    #[test]
    fn a_schema_error_does_not_hide_an_undefined_role() {
        let e = errors(
            "  fork: {type: task, assign: {role: nobody}, colour: red, transitions: [{to: done}]}\n  done: {type: end}\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter()
                .any(|d| d.starts_with("t.yaml:7:") && d.contains("unknown key \"colour\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|d| d.starts_with("t.yaml:7:") && d.contains("undefined role \"nobody\"")),
            "{e:?}"
        );
    }

    #[test]
    fn a_branch_a_join_does_not_wait_for_is_refused() {
        let e = errors(
            "  fork: {type: auto, transitions: [{to: [a, b, c]}]}\n  a: {type: auto, transitions: [{to: j}]}\n  b: {type: auto, transitions: [{to: j}]}\n  c: {type: auto, transitions: [{to: j}]}\n  j: {type: join, from: [a, b], transitions: [{to: done}]}\n  done: {type: end}\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.yaml:10:") && e[0].contains("\"c\" goes to the join \"j\""),
            "{e:?}"
        );
    }

    #[test]
    fn a_notification_names_a_role_or_an_expression_giving_people() {
        let text = |to: &str| {
            format!(
                "{BASE}templates: {{hi: {{zh-CN: 你好}}}}\nstates:\n  fork: {{type: auto, transitions: [{{to: done, notify: {{template: hi, to: {to}}}}}]}}\n  done: {{type: end}}\n"
            )
        };
        let errors_for = |to: &str| -> Vec<String> {
            load("t.yaml", &text(to))
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(ToString::to_string)
                .collect()
        };
        for fine in [
            "r",
            "\"data.member\"",
            "\"instance.created_by\"",
            "{role: r, below: true}",
            "{role: r, level: street}",
        ] {
            assert!(errors_for(fine).is_empty(), "{fine}: {:?}", errors_for(fine));
        }
        let misspelt = errors_for("rr");
        assert!(
            misspelt.len() == 1 && misspelt[0].contains("undefined role \"rr\""),
            "{misspelt:?}"
        );
        let broken = errors_for("\"((( not an expression\"");
        assert!(
            broken.len() == 1 && broken[0].contains("does not compile"),
            "{broken:?}"
        );
        let no_role = errors_for("{role: nobody}");
        assert!(
            no_role.len() == 1 && no_role[0].contains("undefined role \"nobody\""),
            "{no_role:?}"
        );
    }
}
