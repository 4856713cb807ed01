//! The workflow definition as authors write it (YAML, see `schemas/workflow.schema.json`),
//! and [`Workflow`], a definition that passed validation with its expressions, form
//! validators and durations compiled once.

use crate::duration::Span;
use crate::expr::Expr;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Text in several languages; `zh-CN` is required and is the fallback.
pub type Localized = BTreeMap<String, String>;

pub const DEFAULT_LANG: &str = "zh-CN";

pub fn localize<'a>(text: &'a Localized, lang: &str) -> &'a str {
    text.get(lang)
        .or_else(|| text.get(DEFAULT_LANG))
        .map(String::as_str)
        .unwrap_or("")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Definition {
    pub id: String,
    pub version: u32,
    pub title: Localized,
    #[serde(default)]
    pub description: Option<Localized>,
    /// The word for one instance in lists and numbers: 事件 in `事件 2026-000123`.
    #[serde(default)]
    pub noun: Option<Localized>,
    /// A template giving the one line lists show for an instance (over `data`).
    #[serde(default)]
    pub summary: Option<Localized>,
    /// Units in whose subtrees it may be started and is offered; empty: everywhere.
    #[serde(default)]
    pub available_in: Vec<String>,
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    pub start: Start,
    #[serde(default)]
    pub forms: BTreeMap<String, Form>,
    pub states: BTreeMap<String, State>,
    #[serde(default)]
    pub rules: BTreeMap<String, Rule>,
    #[serde(default)]
    pub templates: BTreeMap<String, Localized>,
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    #[serde(default)]
    pub signals: BTreeMap<String, SignalDef>,
    /// Transitions taken when a signal arrives wherever the instance is (unless its current
    /// state has its own `on` for it), by signal name.
    #[serde(default)]
    pub on: BTreeMap<String, Vec<Transition>>,
    /// Lets Open311 GeoReport v2 clients (civic reporting apps) start this workflow.
    #[serde(default)]
    pub open311: Option<Open311>,
    /// What the dashboards count beyond every workflow's figures.
    #[serde(default)]
    pub statistics: Statistics,
}

/// The data fields the dashboards read: `category` groups instances (the high-frequency
/// issues; a start form field, shown by its choices' labels), `rating` is averaged (a
/// number some step sets, e.g. satisfaction).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statistics {
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub rating: Option<String>,
}

/// How Open311 requests map onto the start form: the services are the choices of one
/// field, and request parameters fill others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Open311 {
    /// The start form field whose `oneOf` choices are the services (code = `const`).
    pub service_field: String,
    /// Open311 parameter (`description`, `address_string`, ...) → start form field.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// A signed callback from another system (a payment provider): which instance it is for,
/// its own id for deduplication, and the shared secret it is signed with (HMAC-SHA256 of
/// the raw body). The secret itself is configuration, never part of the workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalDef {
    #[serde(default)]
    pub title: Option<Localized>,
    /// Name of the secret (an environment variable of the server).
    pub secret: String,
    /// JSON pointer to the instance id in the callback body, e.g. `/out_trade_no`.
    pub instance: String,
    /// JSON pointer to the callback's own id; a second callback with the same id is
    /// acknowledged and changes nothing.
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Role {
    pub title: Localized,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Start {
    /// Roles allowed to start an instance in their subtree.
    pub roles: Vec<String>,
    #[serde(default)]
    pub form: Option<String>,
    /// The first state.
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Form {
    #[serde(default)]
    pub title: Option<Localized>,
    pub schema: Value,
    #[serde(default)]
    pub ui: Option<Value>,
    /// Field → an expression or rule giving its choices for this instance, as a list of
    /// values or of `{value, title}` (title a text or `{zh-CN, en}`); null keeps the
    /// schema's own. Task forms only: the choices are read from the instance.
    #[serde(default)]
    pub choices: BTreeMap<String, ValueExpr>,
}

/// One choice a rule offers for a field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub value: Value,
    /// By language; empty when the rule gave a bare value.
    pub title: Localized,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// Waits for a person to complete a task.
    Task,
    /// Decides at once by its transitions' guards.
    Auto,
    /// Waits for a timer.
    Wait,
    /// Waits until every state in `from` has arrived (parallel branches).
    Join,
    /// Takes many entries, one per key (ballots, sign-ups, check-ins), until a guard of
    /// its transitions holds or a timer closes it.
    Collect,
    End,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(rename = "type")]
    pub kind: StateKind,
    #[serde(default)]
    pub title: Option<Localized>,
    /// Values computed on entering the state.
    #[serde(default)]
    pub set: BTreeMap<String, ValueExpr>,
    #[serde(default)]
    pub notify: Option<Notify>,
    #[serde(default)]
    pub form: Option<String>,
    #[serde(default)]
    pub assign: Option<Assign>,
    /// The time limit, fixed when the state is entered: a duration (`3d`, `5wd`), an
    /// expression giving a duration, an RFC 3339 time or null (no limit), or a rule hook.
    #[serde(default)]
    pub due: Option<ValueExpr>,
    #[serde(default)]
    pub escalate: Vec<Escalation>,
    #[serde(default)]
    pub transitions: Vec<Transition>,
    #[serde(default)]
    pub timers: Vec<Timer>,
    #[serde(default)]
    pub from: Vec<String>,
    /// For `collect` states: where entries go and which are accepted.
    #[serde(default)]
    pub collect: Option<Collect>,
    /// The form must carry a code shown on site (a QR code), see [`CheckCode`].
    #[serde(default)]
    pub code: Option<CheckCode>,
    /// Transitions taken when a signal arrives while the instance is here, by signal name;
    /// guards see the callback body as `signal`.
    #[serde(default)]
    pub on: BTreeMap<String, Vec<Transition>>,
}

/// Proof of presence: holders of `shown_by` display a code (as a QR code) that the server
/// signed for this instance and state and that expires after `valid_for`; whoever completes
/// the task must send it as the form's `code`. A screenshot sent elsewhere stops working
/// when it expires, and a code for one activity does not work for another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckCode {
    pub valid_for: String,
    pub shown_by: String,
}

/// How a `collect` state takes entries: each completion of its task by an eligible person
/// appends the form, with its key, who and when, to the list at `into`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Collect {
    /// Data path of the list of accepted entries.
    pub into: String,
    /// Expression naming what an entry is for (a household, a person); one entry per key.
    pub key: String,
    /// Guard that must hold for the actor to submit for that key.
    #[serde(default)]
    pub allow: Option<String>,
    /// Expression giving how many entries `into` takes.
    #[serde(default)]
    pub capacity: Option<String>,
    /// Data path of a waiting list for entries beyond capacity; without it they are refused.
    #[serde(default)]
    pub waitlist: Option<String>,
    /// Expression giving how many may wait; beyond it entries are refused.
    #[serde(default)]
    pub waitlist_capacity: Option<String>,
    /// Whether a person may withdraw their entry while the state is open; the first on the
    /// waiting list then moves up.
    #[serde(default)]
    pub withdraw: bool,
}

/// A value is an expression, or a rule hook answered by an expression or a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ValueExpr {
    Expr(String),
    Rule { rule: String },
}

/// One target or several (a fork into parallel branches).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Target {
    One(String),
    Many(Vec<String>),
}

impl Target {
    pub fn states(&self) -> &[String] {
        match self {
            Target::One(s) => std::slice::from_ref(s),
            Target::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transition {
    /// A stable name an overlay addresses it by (default: its target).
    #[serde(default)]
    pub id: Option<String>,
    pub to: Target,
    #[serde(default)]
    pub when: Option<ValueExpr>,
    #[serde(default)]
    pub set: BTreeMap<String, ValueExpr>,
    #[serde(default)]
    pub label: Option<Localized>,
    #[serde(default)]
    pub notify: Option<Notify>,
    #[serde(default)]
    pub credit: Vec<Credit>,
    #[serde(default)]
    pub register: Option<RegisterWrite>,
}

/// Write attributes of a person's register entry (the member register), so later instances
/// read them as `person.attributes.<name>` (a hardship exemption's end, say). A value that
/// comes out null leaves the attribute as it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterWrite {
    /// Expression giving the person's id.
    pub person: String,
    pub set: BTreeMap<String, ValueExpr>,
}

/// Credit people's ledger accounts when a transition is taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credit {
    pub account: String,
    /// Expression giving a person id or a list of them.
    pub to: String,
    /// Expression or rule giving the amount (negative to debit).
    pub amount: ValueExpr,
}

/// A role by name, or a rule hook answering one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RoleSpec {
    Name(String),
    Rule { rule: String },
}

impl RoleSpec {
    pub fn name(&self) -> Option<&str> {
        match self {
            RoleSpec::Name(n) => Some(n),
            RoleSpec::Rule { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timer {
    /// A stable name an overlay addresses it by (default: its target).
    #[serde(default)]
    pub id: Option<String>,
    /// When, counted from entering the state: a duration, a multiple of the state's limit
    /// (`2x`), an expression or a rule giving either (null: the timer is off).
    #[serde(default)]
    pub after: Option<ValueExpr>,
    /// An expression or rule giving an RFC 3339 deadline (null: off).
    #[serde(default)]
    pub at: Option<ValueExpr>,
    /// Guard evaluated on entering the state; when false the timer is not armed.
    #[serde(default)]
    pub when: Option<String>,
    /// Where to go; without it the timer only notifies (or sets) and the instance stays.
    #[serde(default)]
    pub to: Option<Target>,
    #[serde(default)]
    pub set: BTreeMap<String, ValueExpr>,
    #[serde(default)]
    pub notify: Option<Notify>,
    #[serde(default)]
    pub credit: Vec<Credit>,
    #[serde(default)]
    pub register: Option<RegisterWrite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Escalation {
    /// A stable name an overlay addresses it by (default: its role).
    #[serde(default)]
    pub id: Option<String>,
    /// As a timer's `after`; without it, at the state's time limit (`due`).
    #[serde(default)]
    pub after: Option<ValueExpr>,
    /// Guard evaluated on entering the state; when false this step is not armed.
    #[serde(default)]
    pub when: Option<String>,
    /// Who may act on the task from then on, besides its assignee.
    pub to: EscalationTarget,
    #[serde(default)]
    pub notify: Option<Notify>,
}

/// Whom an escalation reaches: a role over the task's unit, a role at the ancestor of the
/// instance's unit of a given level (the street's command centre, wherever the task is), or
/// what a rule answers (a role, `{role, level}`, or null for nobody).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EscalationTarget {
    Role(String),
    At { role: String, level: String },
    Rule { rule: String },
}

impl EscalationTarget {
    pub fn role(&self) -> Option<&str> {
        match self {
            EscalationTarget::Role(r) | EscalationTarget::At { role: r, .. } => Some(r),
            EscalationTarget::Rule { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assign {
    /// A role of the workflow, or a rule naming one (a locality decides who does the step).
    #[serde(default)]
    pub role: Option<RoleSpec>,
    /// Expression giving a person id (e.g. the reporter rates the result).
    #[serde(default)]
    pub person: Option<String>,
    /// Expression or rule giving the unit id the task belongs to; default: the instance's unit.
    #[serde(default)]
    pub unit: Option<ValueExpr>,
    /// The task belongs to the ancestor of the instance's unit of this level (`street`,
    /// `district`): the street's command centre, wherever in the street it was reported.
    #[serde(default)]
    pub level: Option<String>,
    /// Open for any eligible person to claim.
    #[serde(default)]
    pub pool: bool,
    /// Holders of `role` in the task's unit or any unit below it may act, not only those
    /// holding it there or above: every owner of a compound votes, wherever their grid.
    #[serde(default)]
    pub below: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notify {
    pub template: String,
    pub to: Recipients,
}

/// Who a notification is for; resolved to people when it fires, and the event records them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Recipients {
    /// Holders of `role` at the nearest unit at or above the instance's unit that has any
    /// (`level`: at the instance's ancestor of that level; `below`: everywhere in the
    /// instance unit's subtree, e.g. every owner of a compound).
    Role {
        role: String,
        #[serde(default)]
        level: Option<String>,
        #[serde(default)]
        below: bool,
    },
    /// A rule answering a person id or a list of them.
    Rule { rule: String },
    /// A role of the workflow (as `{role}`), else an expression giving person ids.
    Written(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub description: Option<Localized>,
    /// Expression used when no plugin is bound for the instance's unit.
    pub default: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    pub id: String,
    /// Cron: 5 fields (minute hour day month weekday) or 6 with seconds first.
    pub cron: String,
    #[serde(default)]
    pub title: Option<Localized>,
    /// Start one instance per person holding this role, in that role's unit.
    #[serde(default)]
    pub for_each_role: Option<String>,
    /// Otherwise start one instance in this unit.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// IANA zone the cron fields are read in; default Asia/Shanghai (`0 0 1 * *` is midnight
    /// of the 1st in Beijing, not 08:00).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// A validated definition, ready to run.
pub struct Workflow {
    pub def: Definition,
    /// The file the base definition was read from, and its text (overlays are kept apart).
    pub file: String,
    pub source: String,
    /// Of the base text alone, or of the base and every overlay composed onto it.
    pub sha256: String,
    /// The locality overlays composed onto the base, root first; empty for the base itself.
    pub overlays: Vec<crate::overlay::OverlayPin>,
    pub(crate) exprs: HashMap<String, Expr>,
    pub(crate) forms: HashMap<String, jsonschema::Validator>,
    pub(crate) spans: HashMap<String, Span>,
    pub(crate) crons: HashMap<String, (cron::Schedule, chrono_tz::Tz)>,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workflow({}@{})", self.def.id, self.def.version)
    }
}

impl Workflow {
    pub fn id(&self) -> &str {
        &self.def.id
    }

    pub fn version(&self) -> u32 {
        self.def.version
    }

    /// Whether it may be started at (and is offered to) the unit at `unit_path`.
    pub fn available_at(&self, unit_path: &str) -> bool {
        self.def.available_in.is_empty()
            || self
                .def
                .available_in
                .iter()
                .any(|u| unit_path.contains(&format!("/{u}/")))
    }

    pub fn state(&self, name: &str) -> Option<&State> {
        self.def.states.get(name)
    }

    /// The places of a collect state over an instance's data, for people to see: (places,
    /// waiting-list places), each `None` when unlimited or not readable from the data alone.
    pub fn places(&self, state: &str, data: &Value) -> (Option<u64>, Option<u64>) {
        let Some(c) = self.state(state).and_then(|s| s.collect.as_ref()) else {
            return (None, None);
        };
        let ctx = crate::expr::context(&serde_json::json!({ "data": data }));
        let count = |src: &Option<String>| {
            src.as_deref()
                .and_then(|src| self.expr(src).eval(&ctx).ok())
                .and_then(|v| v.as_u64())
        };
        (count(&c.capacity), count(&c.waitlist_capacity))
    }

    pub(crate) fn expr(&self, source: &str) -> &Expr {
        self.exprs.get(source).expect("expression compiled at load")
    }

    pub(crate) fn span(&self, text: &str) -> Span {
        self.spans[text]
    }

    /// A duration written as a constant, if `text` is one.
    pub(crate) fn constant_span(&self, text: &str) -> Option<Span> {
        self.spans.get(text).copied()
    }

    /// Next firing of schedule `id` strictly after `after`.
    pub fn next_schedule_time(
        &self,
        id: &str,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let (cron, zone) = self.crons.get(id)?;
        Some(
            cron.after(&after.with_timezone(zone))
                .next()?
                .with_timezone(&chrono::Utc),
        )
    }

    /// Roles the workflow gives work to (task and collect assignees, escalation roles): the
    /// staff of a process, who may read its instances in their units. A role that only
    /// starts instances (a resident reporting) reads only what it started or acts on.
    pub fn working_roles(&self) -> std::collections::BTreeSet<&str> {
        let states = self.def.states.values();
        let assigned = states.clone().filter_map(|s| s.assign.as_ref()?.role.as_ref()?.name());
        let escalated = states.flat_map(|s| s.escalate.iter().filter_map(|e| e.to.role()));
        assigned.chain(escalated).collect()
    }

    /// `(state, level)` for every level of the tree the workflow names (`assign.level`,
    /// escalation `to: {level}`): the org must have units of each, which only the store knows.
    pub fn levels(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        for (name, s) in &self.def.states {
            if let Some(level) = s.assign.as_ref().and_then(|a| a.level.as_deref()) {
                out.push((name.as_str(), level));
            }
            for e in &s.escalate {
                if let EscalationTarget::At { level, .. } = &e.to {
                    out.push((name.as_str(), level.as_str()));
                }
            }
        }
        out
    }

    /// Until when a check-in code for `state` signed at `now` works, if the state takes codes.
    pub fn code_expiry(
        &self,
        state: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let code = self.state(state)?.code.as_ref()?;
        self.span(&code.valid_for).after(now, None).ok()
    }

    /// The firing of schedule `id` before `at`, if it has one.
    pub fn previous_schedule_time(
        &self,
        id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let (cron, zone) = self.crons.get(id)?;
        Some(
            cron.after(&at.with_timezone(zone))
                .next_back()?
                .with_timezone(&chrono::Utc),
        )
    }

    /// Top-level fields of `data` that `form` does not declare, when it declares its fields
    /// and does not say `additionalProperties`: what a person starts an instance with may
    /// not pre-fill the fields later steps write (a reporter's own `satisfaction`).
    pub fn undeclared_fields(&self, form: &str, data: &Value) -> Vec<(String, String)> {
        let Some(schema) = self.def.forms.get(form).map(|f| &f.schema) else {
            return Vec::new();
        };
        let (Some(declared), Some(given)) = (schema.get("properties").and_then(Value::as_object), data.as_object())
        else {
            return Vec::new();
        };
        if schema.get("additionalProperties").is_some() {
            return Vec::new();
        }
        given
            .keys()
            .filter(|k| !declared.contains_key(*k))
            .map(|k| {
                let pointer = format!("/{}", crate::yaml::pointer_segment(k));
                (pointer, format!("\"{k}\" is not a field of form \"{form}\""))
            })
            .collect()
    }

    /// Check form data against the named form: `(json pointer, message)` per problem.
    pub fn check_form(&self, form: &str, data: &Value) -> Vec<(String, String)> {
        self.form_problems(form, data)
            .into_iter()
            .map(|p| (p.pointer, p.message))
            .collect()
    }

    /// What is wrong with `data` for `form`, each problem pinned to the field it concerns (a
    /// missing required field to the field itself, not its parent object) with the JSON
    /// Schema keyword and limit, so pages can say it in the reader's language.
    pub fn form_problems(&self, form: &str, data: &Value) -> Vec<FormProblem> {
        let Some(validator) = self.forms.get(form) else {
            return vec![FormProblem {
                pointer: String::new(),
                keyword: "form".into(),
                limit: Value::Null,
                message: format!("unknown form \"{form}\""),
            }];
        };
        validator
            .iter_errors(data)
            .map(|e| {
                use jsonschema::error::ValidationErrorKind as K;
                let mut pointer = e.instance_path().to_string();
                let limit = match e.kind() {
                    K::Required { property } => {
                        if let Some(name) = property.as_str() {
                            pointer = format!("{pointer}/{}", crate::yaml::pointer_segment(name));
                        }
                        Value::Null
                    }
                    K::MinLength { limit } | K::MaxLength { limit } | K::MinItems { limit } | K::MaxItems { limit } => {
                        Value::from(*limit)
                    }
                    K::Minimum { limit }
                    | K::Maximum { limit }
                    | K::ExclusiveMinimum { limit }
                    | K::ExclusiveMaximum { limit } => limit.clone(),
                    K::Format { format } => Value::from(format.as_str()),
                    K::Pattern { pattern } => Value::from(pattern.as_str()),
                    _ => Value::Null,
                };
                FormProblem {
                    pointer,
                    keyword: e.kind().keyword().to_string(),
                    limit,
                    message: e.to_string(),
                }
            })
            .collect()
    }
}

/// One reason a form's data is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct FormProblem {
    /// JSON pointer of the field (`/photos/0`); empty for the form as a whole.
    pub pointer: String,
    /// The JSON Schema keyword that failed (`required`, `maxLength`, ...).
    pub keyword: String,
    /// The keyword's limit where it has one (a length, a bound, a format's name).
    pub limit: Value,
    /// In English, for logs and the API.
    pub message: String,
}

/// Accept 5-field cron (as crontab writes it) by adding a seconds field.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {text}")
    } else {
        text.to_string()
    };
    full.parse::<cron::Schedule>()
        .map_err(|e| format!("bad cron expression \"{text}\": {e}"))
}

impl Workflow {
    /// Start data for one firing of a schedule: its `data` expressions evaluated over
    /// `person` (`id`, `attributes`), `unit`, `scheduled_at`, `scheduled_on` and `ledger` (the person's
    /// account totals since the schedule's previous firing), with the unit's calendar.
    pub fn schedule_data(
        &self,
        schedule: &Schedule,
        person: &Value,
        unit: &str,
        at: chrono::DateTime<chrono::Utc>,
        ledger: &Value,
        calendar: &std::sync::Arc<crate::calendar::Calendar>,
    ) -> Result<Value, String> {
        let zone = self
            .crons
            .get(&schedule.id)
            .map_or(crate::time::DEFAULT_TIME_ZONE, |(_, z)| *z);
        let json = serde_json::json!({
            "person": person,
            "unit": {"id": unit},
            "scheduled_at": crate::time::canonical(at),
            // The local day of the firing in the schedule's zone: `scheduled_on[:7]` is the month.
            "scheduled_on": at.with_timezone(&zone).date_naive().to_string(),
            "ledger": ledger,
        });
        let ctx = crate::expr::context_with_calendar(&json, calendar);
        let mut out = serde_json::Map::new();
        for (k, src) in &schedule.data {
            out.insert(k.clone(), self.expr(src).eval(&ctx)?);
        }
        Ok(Value::Object(out))
    }
}
