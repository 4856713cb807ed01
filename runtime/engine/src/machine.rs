//! The state machine: `step(workflow, instance, action, actor, now, rules)` returns what
//! must be stored (new instance state, events, tasks, timers) or an error that changes
//! nothing. It performs no IO and never reads the clock; the caller commits a [`Step`] in
//! one transaction.

use crate::calendar::Calendar;
use crate::definition::{
    Choice, Collect, Credit, EscalationTarget, Notify, Recipients, RegisterWrite, RoleSpec, State, StateKind, Target,
    Transition, ValueExpr, Workflow, localize,
};
use crate::duration::{Span, limit_multiple};
use crate::event::Event;
use crate::expr::{context_with_calendar, render};
use crate::org::{RoleGrant, within};
use crate::places::Places;
use crate::time::{canonical, normalize, parse_instant};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Automatic steps allowed in one action, so a loop of `auto` states cannot spin forever.
const MAX_AUTOMATIC_STEPS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Completed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Status::Running),
            "completed" => Some(Status::Completed),
            _ => None,
        }
    }
}

/// Where a task is: open until someone completes it, or cancelled when its step ended
/// without it (a voting window closed, a timer moved the instance on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum TaskStatus {
    Open,
    Completed,
    Cancelled,
}

impl TaskStatus {
    /// As stored and as the API says it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where an instance is: its active states, join arrivals and pinned rule versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub tokens: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub joins: BTreeMap<String, Vec<String>>,
    /// Rule hook → the plugin version that first answered it for this instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
    /// State → the time limit fixed when it was last entered; expressions read it as
    /// `due.<state>` (the on-time measure follows the same limit as the escalation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub due: BTreeMap<String, DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub workflow: String,
    pub workflow_version: u32,
    /// The locality overlays it started with, root first: it runs with them to its end.
    pub overlays: Vec<crate::overlay::OverlayPin>,
    pub unit_id: String,
    pub unit_path: String,
    pub status: Status,
    pub position: Position,
    pub data: Value,
    /// Optimistic concurrency: the revision this copy was read at.
    pub rev: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Its number within its workflow and year (China time), given when it is stored.
    pub number: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub instance_id: String,
    pub state: String,
    pub form: Option<String>,
    pub role: Option<String>,
    pub person: Option<String>,
    pub unit_id: String,
    /// Filled in by the store from `unit_id`.
    pub unit_path: String,
    pub pool: bool,
    /// Holders of the role below the task's unit may act too.
    pub below: bool,
    pub claimed_by: Option<String>,
    pub escalated_to: Option<String>,
    /// The unit over which `escalated_to` may act; none: the task's own unit.
    pub escalated_path: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "index", rename_all = "lowercase")]
pub enum TimerKind {
    /// `timers[index]` of the state: a transition.
    Transition(usize),
    /// `escalate[index]` of the state.
    Escalation(usize),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    pub id: String,
    pub instance_id: String,
    pub state: String,
    pub kind: TimerKind,
    pub fire_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub person: String,
    pub roles: Vec<RoleGrant>,
    /// The engine itself (schedules, timers): passes every scope check.
    pub system: bool,
}

impl Actor {
    pub fn system() -> Self {
        Self {
            person: "system".into(),
            roles: Vec::new(),
            system: true,
        }
    }

    pub fn has_role_over(&self, role: &str, unit_path: &str) -> bool {
        self.roles
            .iter()
            .any(|g| g.role == role && within(unit_path, &g.unit_path))
    }

    pub fn may_act_on(&self, task: &Task) -> bool {
        if self.system {
            return true;
        }
        // Once overdue, the escalation role may act on any task, a personal one included.
        let escalated_ok = task
            .escalated_to
            .as_deref()
            .is_some_and(|r| self.has_role_over(r, task.escalated_path.as_deref().unwrap_or(&task.unit_path)));
        if escalated_ok {
            return true;
        }
        if let Some(p) = &task.person {
            return *p == self.person;
        }
        if let Some(c) = &task.claimed_by {
            return *c == self.person;
        }
        task.role.as_deref().is_some_and(|r| {
            self.has_role_over(r, &task.unit_path)
                || (task.below
                    && self
                        .roles
                        .iter()
                        .any(|g| g.role == r && within(&g.unit_path, &task.unit_path)))
        })
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Start {
        id: String,
        unit_id: String,
        unit_path: String,
        data: Value,
    },
    Complete {
        task: Task,
        form: Value,
    },
    Claim {
        task: Task,
    },
    /// Take back one's entry in a collect state.
    Withdraw {
        task: Task,
    },
    /// A verified callback from another system (its signature was checked by the caller).
    Signal {
        name: String,
        id: String,
        payload: Value,
    },
    Fire {
        timer: Timer,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub actor: String,
    pub event: Event,
}

/// Everything one action changes, to be committed atomically.
#[derive(Debug, Clone)]
pub struct Step {
    pub instance: Instance,
    pub events: Vec<NewEvent>,
    pub tasks_created: Vec<Task>,
    pub task_completed: Option<String>,
    pub task_claimed: Option<String>,
    /// States the instance left, with what the store must clean up after them.
    pub states_left: Vec<Left>,
    pub timers_created: Vec<Timer>,
    /// Open tasks of a state that may now also be done by a role.
    pub escalations: Vec<Escalated>,
    pub credits: Vec<LedgerEntry>,
    /// Register attributes written for people, to keep beyond this instance.
    pub register: Vec<RegisterEntry>,
    pub notices: Vec<Notice>,
}

/// A notification that fired. The store resolves its audience to people in the same
/// transaction, records them in the `notified` event at index `event`, and puts one copy in
/// each recipient's inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event: usize,
    pub template: String,
    /// The text in each language the template has.
    pub text: Map<String, Value>,
    pub audience: Audience,
}

/// Who a notice is for, as far as the engine can tell without the register.
#[derive(Debug, Clone, PartialEq)]
pub enum Audience {
    /// Person ids from an expression or rule; ids of nobody are dropped when resolved.
    People(Vec<String>),
    /// Holders of `role` at the nearest unit at or above `unit_path` that has any, or
    /// (`below`) everywhere in its subtree.
    Holders {
        role: String,
        unit_path: String,
        below: bool,
    },
}

/// Attributes written to one person's register entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterEntry {
    pub person: String,
    pub attributes: Map<String, Value>,
}

/// An escalation that fired: holders of `role` over `unit_path` (none: over the task's own
/// unit) may act on the state's open tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalated {
    pub state: String,
    pub role: String,
    pub unit_path: Option<String>,
}

/// An amount credited to a person's ledger account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub account: String,
    pub person: String,
    pub amount: f64,
}

impl Step {
    /// A step that changes nothing yet.
    fn unchanged(instance: Instance) -> Self {
        Self {
            instance,
            events: Vec::new(),
            tasks_created: Vec::new(),
            task_completed: None,
            task_claimed: None,
            states_left: Vec::new(),
            timers_created: Vec::new(),
            escalations: Vec::new(),
            credits: Vec::new(),
            register: Vec::new(),
            notices: Vec::new(),
        }
    }

    /// A step that changes nothing but appends one event (e.g. a rule that failed while
    /// the action it belonged to was refused).
    pub fn note(instance: Instance, event: NewEvent) -> Self {
        Self {
            events: vec![event],
            ..Self::unchanged(instance)
        }
    }
}

/// A state the instance left. The flags spare the store statements it does not need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub state: String,
    /// A task state left other than by completing its task (a timer, a join).
    pub cancel_tasks: bool,
    /// The state armed timers or escalations.
    pub drop_timers: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("invalid form data")]
    InvalidForm(Vec<(String, String)>),
    #[error("conflict: {0}")]
    Conflict(String),
    /// What the action refers to no longer exists in the instance (it completed, or left
    /// the state a timer belonged to).
    #[error("gone: {0}")]
    Gone(String),
    /// A collect state already holds an entry for this key (a second ballot): the key.
    #[error("duplicate: \"{0}\" already has an entry; a second one is refused")]
    Duplicate(String),
    /// A collect state is at capacity and keeps no waiting list.
    #[error("full: {0}")]
    Full(String),
    #[error("no transition applies from \"{0}\": no guard matched the data")]
    NoTransition(String),
    #[error("{0}")]
    Evaluation(String),
    #[error("rule \"{hook}\" failed{}: {message}", plugin.as_ref().map(|p| format!(" in plugin {p}")).unwrap_or_default())]
    Rule {
        hook: String,
        plugin: Option<String>,
        message: String,
    },
}

impl EngineError {
    /// A short stable code for APIs and scenario expectations.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Forbidden(_) => "forbidden",
            EngineError::InvalidForm(_) => "invalid_form",
            EngineError::Conflict(_) => "conflict",
            EngineError::Gone(_) => "gone",
            EngineError::Duplicate(_) => "duplicate",
            EngineError::Full(_) => "full",
            EngineError::NoTransition(_) => "no_transition",
            EngineError::Evaluation(_) => "evaluation",
            EngineError::Rule { .. } => "rule_failed",
        }
    }
}

/// Answers rule hooks. The default evaluates the workflow's `default` expression; the
/// plugin host answers with a bound plugin when one is bound for the instance's unit.
pub trait Rules {
    /// `pinned` is the plugin version this instance resolved before, if any.
    fn evaluate(
        &self,
        wf: &Workflow,
        instance: &Instance,
        hook: &str,
        input: &Value,
        pinned: Option<&str>,
    ) -> Result<Option<RuleAnswer>, RuleFailure>;

    /// Whose code would answer `wf`'s rule hooks for an instance at `unit_path` holding
    /// `pins`: a name for the locality (the unit a plugin is bound at), or `None` when only
    /// the workflow's own expressions would. The runtime computes a step that may call code
    /// outside any transaction, and one locality's calls queue behind each other.
    fn locality(&self, _wf: &Workflow, _unit_path: &str, _pins: &BTreeMap<String, String>) -> Option<String> {
        None
    }
}

/// Why a rule hook gave no answer; `plugin` names the plugin version that failed, if one ran.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFailure {
    pub plugin: Option<String>,
    pub message: String,
}

impl RuleFailure {
    pub fn expression(message: impl Into<String>) -> Self {
        Self {
            plugin: None,
            message: message.into(),
        }
    }
}

pub struct RuleAnswer {
    pub value: Value,
    /// `plugin-id@version` when a plugin answered; recorded and pinned.
    pub plugin: Option<String>,
}

/// No plugins: every rule hook is answered by the workflow's own default expression.
pub struct ExpressionRules;

impl Rules for ExpressionRules {
    fn evaluate(
        &self,
        _: &Workflow,
        _: &Instance,
        _: &str,
        _: &Value,
        _: Option<&str>,
    ) -> Result<Option<RuleAnswer>, RuleFailure> {
        Ok(None)
    }
}

/// What a step needs besides the definition, the instance and the action.
#[derive(Clone, Copy)]
pub struct Surroundings<'a> {
    pub now: DateTime<Utc>,
    pub rules: &'a dyn Rules,
    pub places: &'a dyn Places,
}

/// The choices rules give the fields of a task's form for this instance (see
/// [`crate::definition::Form::choices`]), to show them; completing the task enforces them.
pub fn task_choices(
    wf: &Workflow,
    instance: Instance,
    form: &str,
    actor: &Actor,
    at: Surroundings<'_>,
) -> Result<BTreeMap<String, Vec<Choice>>, EngineError> {
    Run::new(wf, instance, actor, at.now, at.rules, at.places).choices(form)
}

pub fn step(
    wf: &Workflow,
    instance: Option<Instance>,
    action: Action,
    actor: &Actor,
    at: Surroundings<'_>,
) -> Result<Step, EngineError> {
    let Surroundings { now, rules, places } = at;
    let mut run = match (&action, instance) {
        (
            Action::Start {
                id, unit_id, unit_path, ..
            },
            _,
        ) => {
            let allowed = actor.system || wf.def.start.roles.iter().any(|r| actor.has_role_over(r, unit_path));
            if !allowed {
                return Err(EngineError::Forbidden(format!(
                    "starting \"{}\" in this unit needs one of the roles {:?} here or above",
                    wf.id(),
                    wf.def.start.roles
                )));
            }
            let instance = Instance {
                id: id.clone(),
                workflow: wf.id().to_string(),
                workflow_version: wf.version(),
                overlays: wf.overlays.clone(),
                unit_id: unit_id.clone(),
                unit_path: unit_path.clone(),
                status: Status::Running,
                position: Position::default(),
                data: json!({}),
                rev: 0,
                created_by: actor.person.clone(),
                created_at: now,
                number: None,
            };
            Run::new(wf, instance, actor, now, rules, places)
        }
        (_, Some(instance)) => {
            if instance.status != Status::Running {
                return Err(EngineError::Gone(format!(
                    "instance {} has already completed",
                    instance.id
                )));
            }
            Run::new(wf, instance, actor, now, rules, places)
        }
        (_, None) => return Err(EngineError::Conflict("instance not found".into())),
    };
    match action {
        Action::Start { data, .. } => run.start(data)?,
        Action::Complete { task, form } => run.complete(task, form)?,
        Action::Claim { task } => run.claim(task)?,
        Action::Withdraw { task } => run.withdraw(task)?,
        Action::Signal { name, id, payload } => run.signal(&name, &id, payload)?,
        Action::Fire { timer } => run.fire(timer)?,
    }
    Ok(run.out)
}

struct Run<'a> {
    wf: &'a Workflow,
    actor: &'a Actor,
    now: DateTime<Utc>,
    rules: &'a dyn Rules,
    places: &'a dyn Places,
    /// The instance unit's calendar, looked up on first use.
    calendar: std::cell::OnceCell<std::sync::Arc<Calendar>>,
    form: Value,
    /// The body of the signal being handled, if any.
    signal: Value,
    automatic_steps: usize,
    out: Step,
}

impl<'a> Run<'a> {
    fn new(
        wf: &'a Workflow,
        instance: Instance,
        actor: &'a Actor,
        now: DateTime<Utc>,
        rules: &'a dyn Rules,
        places: &'a dyn Places,
    ) -> Self {
        let out = Step::unchanged(instance);
        Self {
            wf,
            actor,
            now,
            rules,
            places,
            calendar: std::cell::OnceCell::new(),
            form: Value::Null,
            signal: Value::Null,
            automatic_steps: 0,
            out,
        }
    }

    fn event(&mut self, event: Event) {
        self.out.events.push(NewEvent {
            actor: self.actor.person.clone(),
            event,
        });
    }

    fn start(&mut self, data: Value) -> Result<(), EngineError> {
        let mut data = if data.is_null() { json!({}) } else { data };
        normalize(&mut data);
        if let Some(form) = &self.wf.def.start.form {
            self.check_form(form, &data)?;
        }
        if !data.is_object() {
            return Err(EngineError::InvalidForm(vec![(
                String::new(),
                "start data must be an object".into(),
            )]));
        }
        self.out.instance.data = data.clone();
        self.event(Event::Started {
            workflow: self.wf.id().to_string(),
            version: self.wf.version(),
            unit: self.out.instance.unit_id.clone(),
            data,
        });
        self.enter_all(std::slice::from_ref(&self.wf.def.start.to), None)
    }

    fn still_open(&self, task: &Task) -> Result<(), EngineError> {
        if task.instance_id != self.out.instance.id || !self.out.instance.position.tokens.contains(&task.state) {
            return Err(EngineError::Conflict(format!("task {} is no longer open", task.id)));
        }
        Ok(())
    }

    fn permitted(&self, task: &Task) -> Result<(), EngineError> {
        if !self.actor.may_act_on(task) {
            return Err(EngineError::Forbidden(format!(
                "task {} is not assigned to you or your roles in this unit",
                task.id
            )));
        }
        Ok(())
    }

    fn claim(&mut self, task: Task) -> Result<(), EngineError> {
        self.still_open(&task)?;
        if !task.pool {
            return Err(EngineError::Conflict(format!("task {} is not open to claim", task.id)));
        }
        if task.claimed_by.is_some() {
            return Err(EngineError::Conflict(format!("task {} is already claimed", task.id)));
        }
        self.permitted(&task)?;
        self.event(Event::TaskClaimed {
            task: task.id.clone(),
            state: task.state.clone(),
        });
        self.out.task_claimed = Some(task.id);
        Ok(())
    }

    fn complete(&mut self, task: Task, form: Value) -> Result<(), EngineError> {
        self.still_open(&task)?;
        self.permitted(&task)?;
        let wf = self.wf;
        let state = wf
            .state(&task.state)
            .ok_or_else(|| EngineError::Conflict(format!("state \"{}\" not in this version", task.state)))?;
        let mut form = if form.is_null() { json!({}) } else { form };
        if let Some(name) = &state.form {
            self.check_form(name, &form)?;
            // A handler cannot write fields the step does not ask for (a reporter's rating,
            // another step's outcome); forms that want free extras say `additionalProperties`.
            let undeclared = wf.undeclared_fields(name, &form);
            if !undeclared.is_empty() {
                return Err(EngineError::InvalidForm(undeclared));
            }
        } else if form.as_object().is_some_and(|m| !m.is_empty()) {
            return Err(EngineError::InvalidForm(vec![(
                String::new(),
                format!("step \"{}\" takes no form data", task.state),
            )]));
        }
        normalize(&mut form);
        if let Some(name) = &state.form {
            self.check_choices(name, &form)?;
        }
        self.form = form.clone();
        if let Some(c) = &state.collect {
            return self.submit(&task.state, state, c, form);
        }
        let index = self
            .choose(&task.state, &state.transitions)?
            .ok_or_else(|| EngineError::NoTransition(task.state.clone()))?;
        set_path(&mut self.out.instance.data, &task.state, form.clone());
        self.event(Event::TaskCompleted {
            task: task.id.clone(),
            state: task.state.clone(),
            form,
        });
        self.out.task_completed = Some(task.id);
        let t = &state.transitions[index];
        self.take(&task.state, t)
    }

    /// An entry into a collect state: checked for its key, the actor's right to it and the
    /// capacity, appended (or put on the waiting list), then the state's guards are tried.
    fn submit(&mut self, name: &str, state: &State, c: &Collect, form: Value) -> Result<(), EngineError> {
        let ctx = self.context();
        let key = match self.wf.expr(&c.key).eval(&ctx).map_err(EngineError::Evaluation)? {
            Value::String(s) if !s.is_empty() => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(EngineError::InvalidForm(vec![(
                    String::new(),
                    format!("`{}` gave {other}: the form does not say what the entry is for", c.key),
                )]));
            }
        };
        if let Some(allow) = &c.allow
            && !self.wf.expr(allow).is_true(&ctx).map_err(EngineError::Evaluation)?
        {
            return Err(EngineError::Forbidden(format!(
                "you may not submit an entry for \"{key}\""
            )));
        }
        let lists = [Some(&c.into), c.waitlist.as_ref()];
        if lists
            .into_iter()
            .flatten()
            .any(|l| entries(&self.out.instance.data, l).iter().any(|e| e["key"] == key))
        {
            return Err(EngineError::Duplicate(key));
        }
        let count = |src: &Option<String>| -> Result<Option<u64>, EngineError> {
            src.as_deref()
                .map(|src| {
                    let v = self.wf.expr(src).eval(&ctx).map_err(EngineError::Evaluation)?;
                    v.as_u64()
                        .ok_or_else(|| EngineError::Evaluation(format!("`{src}` gave {v}, not a whole number")))
                })
                .transpose()
        };
        let (capacity, waiting_room) = (count(&c.capacity)?, count(&c.waitlist_capacity)?);
        let data = &self.out.instance.data;
        let list = match (capacity, &c.waitlist) {
            (Some(cap), _) if (entries(data, &c.into).len() as u64) < cap => c.into.clone(),
            (Some(cap), None) => return Err(EngineError::Full(format!("all {cap} places are taken"))),
            (Some(cap), Some(waitlist)) => {
                if waiting_room.is_some_and(|room| entries(data, waitlist).len() as u64 >= room) {
                    return Err(EngineError::Full(format!(
                        "all {cap} places and the waiting list are taken"
                    )));
                }
                waitlist.clone()
            }
            (None, _) => c.into.clone(),
        };
        let mut entry = match form {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        entry.insert("key".into(), json!(key));
        entry.insert("submitted_by".into(), json!(self.actor.person));
        entry.insert("submitted_at".into(), json!(canonical(self.now)));
        entries_mut(&mut self.out.instance.data, &list).push(Value::Object(entry));
        let (state_name, list) = (name.to_string(), list.to_string());
        self.event(if list == c.into {
            Event::EntrySubmitted {
                state: state_name,
                key,
                list,
            }
        } else {
            Event::EntryWaitlisted {
                state: state_name,
                key,
                list,
            }
        });
        self.close_if_done(name, state)
    }

    /// Take back the actor's own entry; the first on the waiting list moves up.
    fn withdraw(&mut self, task: Task) -> Result<(), EngineError> {
        self.still_open(&task)?;
        let wf = self.wf;
        let state = wf
            .state(&task.state)
            .ok_or_else(|| EngineError::Conflict(format!("state \"{}\" not in this version", task.state)))?;
        let Some(c) = state.collect.as_ref().filter(|c| c.withdraw) else {
            return Err(EngineError::Forbidden(format!(
                "entries in \"{}\" cannot be withdrawn",
                task.state
            )));
        };
        let me = &self.actor.person;
        let data = &mut self.out.instance.data;
        let mut removed = None;
        for list in [Some(&c.into), c.waitlist.as_ref()].into_iter().flatten() {
            let items = entries_mut(data, list);
            if let Some(i) = items.iter().position(|e| e["submitted_by"] == *me) {
                removed = Some((list.clone(), items.remove(i)));
                break;
            }
        }
        let Some((list, entry)) = removed else {
            return Err(EngineError::Gone(format!("you have no entry in \"{}\"", task.state)));
        };
        let promoted = match &c.waitlist {
            Some(waitlist) if list == c.into && !entries(data, waitlist).is_empty() => {
                let first = entries_mut(data, waitlist).remove(0);
                entries_mut(data, &c.into).push(first.clone());
                Some(first["key"].as_str().unwrap_or_default().to_string())
            }
            _ => None,
        };
        self.event(Event::EntryWithdrawn {
            state: task.state.clone(),
            key: entry["key"].as_str().unwrap_or_default().to_string(),
            list: list.to_string(),
        });
        if let Some(key) = promoted {
            self.event(Event::EntryPromoted {
                state: task.state.clone(),
                key,
            });
        }
        Ok(())
    }

    /// A signal moves the instance from the first active state whose `on` transitions for
    /// it have a guard that holds, else by the workflow's own `on` (wherever it is: every
    /// active state is left). Nothing waiting for it is `Gone`: the caller records the
    /// signal as ignored (a payment for an item already paid is kept for refund, not counted).
    fn signal(&mut self, name: &str, id: &str, mut payload: Value) -> Result<(), EngineError> {
        normalize(&mut payload);
        self.signal = payload;
        let wf = self.wf;
        for token in self.out.instance.position.tokens.clone() {
            let Some(transitions) = wf.state(&token).and_then(|s| s.on.get(name)) else {
                continue;
            };
            if let Some(i) = self.choose(&token, transitions)? {
                self.event(Event::SignalReceived {
                    signal: name.to_string(),
                    id: id.to_string(),
                    state: Some(token.clone()),
                });
                let t = &transitions[i];
                return self.take(&token, t);
            }
        }
        let here = self.out.instance.position.tokens.clone();
        if let (Some(first), Some(transitions)) = (here.first(), wf.def.on.get(name))
            && let Some(i) = self.choose(first, transitions)?
        {
            self.event(Event::SignalReceived {
                signal: name.to_string(),
                id: id.to_string(),
                state: None,
            });
            for other in &here[1..] {
                self.leave(other);
            }
            self.out.instance.position.joins.clear();
            let t = &transitions[i];
            return self.take(first, t);
        }
        Err(EngineError::Gone(format!(
            "nothing in instance {} waits for signal \"{name}\" with this content now",
            self.out.instance.id
        )))
    }

    /// After an entry: leave the collect state by the first transition whose guard holds.
    fn close_if_done(&mut self, name: &str, state: &State) -> Result<(), EngineError> {
        if let Some(i) = self.choose(name, &state.transitions)? {
            let t = &state.transitions[i];
            return self.take(name, t);
        }
        Ok(())
    }

    fn fire(&mut self, timer: Timer) -> Result<(), EngineError> {
        if !self.out.instance.position.tokens.contains(&timer.state) {
            return Err(EngineError::Gone(format!(
                "timer {} belongs to a state the instance has left",
                timer.id
            )));
        }
        let wf = self.wf;
        let state = wf
            .state(&timer.state)
            .ok_or_else(|| EngineError::Conflict("timer state not in this version".into()))?;
        match timer.kind {
            TimerKind::Transition(i) => {
                let t = state
                    .timers
                    .get(i)
                    .ok_or_else(|| EngineError::Conflict("timer not in this version".into()))?;
                self.event(Event::TimerFired {
                    state: timer.state.clone(),
                    timer: i,
                    due: timer.fire_at,
                });
                match &t.to {
                    Some(to) => self.follow(
                        &timer.state,
                        to,
                        &t.set,
                        t.notify.as_ref(),
                        &t.credit,
                        t.register.as_ref(),
                    ),
                    // A reminder: act, and stay.
                    None => {
                        self.apply_set(&t.set)?;
                        self.credit(&t.credit)?;
                        self.write_register(t.register.as_ref())?;
                        t.notify.as_ref().map_or(Ok(()), |n| self.notify(n))
                    }
                }
            }
            TimerKind::Escalation(i) => {
                let e = state
                    .escalate
                    .get(i)
                    .ok_or_else(|| EngineError::Conflict("escalation not in this version".into()))?;
                let Some((role, unit)) = self.escalation_target(&e.to)? else {
                    // A rule answered "nobody" for this instance.
                    return Ok(());
                };
                let unit_id = unit.as_ref().map(|u| u.id.clone());
                self.event(Event::Escalated {
                    state: timer.state.clone(),
                    to: role.clone(),
                    unit: unit_id.clone(),
                });
                self.out.escalations.push(Escalated {
                    state: timer.state.clone(),
                    role,
                    unit_path: unit.map(|u| u.path),
                });
                if let Some(n) = &e.notify {
                    self.notify(n)?;
                }
                Ok(())
            }
        }
    }

    fn check_form(&self, form: &str, data: &Value) -> Result<(), EngineError> {
        let problems = self.wf.check_form(form, data);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::InvalidForm(problems))
        }
    }

    /// The expression context: what guards, computed values and templates can see.
    fn context_json(&self) -> Value {
        let i = &self.out.instance;
        json!({
            "data": i.data,
            "form": self.form,
            "signal": self.signal,
            "actor": {"id": self.actor.person, "roles": self.actor.roles.iter().map(|g| &g.role).collect::<Vec<_>>()},
            "unit": {"id": i.unit_id, "path": i.unit_path},
            "instance": {"id": i.id, "created_by": i.created_by, "created_at": canonical(i.created_at)},
            "due": i.position.due.iter().map(|(s, t)| (s.clone(), Value::String(canonical(*t)))).collect::<Map<_, _>>(),
            "now": canonical(self.now),
        })
    }

    fn calendar(&self) -> &std::sync::Arc<Calendar> {
        self.calendar
            .get_or_init(|| self.places.calendar(&self.out.instance.unit_path))
    }

    /// The expression context with the unit's calendar, for guards and templates.
    fn context(&self) -> minijinja::Value {
        self.context_over(&self.context_json())
    }

    fn context_over(&self, json: &Value) -> minijinja::Value {
        context_with_calendar(json, self.calendar())
    }

    /// The unit of `level` above the instance's unit (itself included).
    fn ancestor(&self, level: &str) -> Result<crate::places::UnitRef, EngineError> {
        let i = &self.out.instance;
        self.places.ancestor_at(&i.unit_path, level).ok_or_else(|| {
            EngineError::Evaluation(format!(
                "unit \"{}\" has no unit of level \"{level}\" above it",
                i.unit_id
            ))
        })
    }

    /// Who an escalation reaches; `None` when a rule answers null.
    fn escalation_target(
        &mut self,
        to: &EscalationTarget,
    ) -> Result<Option<(String, Option<crate::places::UnitRef>)>, EngineError> {
        let (role, level) = match to {
            EscalationTarget::Role(role) => (role.clone(), None),
            EscalationTarget::At { role, level } => (role.clone(), Some(level.clone())),
            EscalationTarget::Rule { rule } => {
                let answer = self.value(&ValueExpr::Rule { rule: rule.clone() }, &self.context_json())?;
                match answer {
                    Value::Null => return Ok(None),
                    Value::String(role) => (role, None),
                    Value::Object(m) if m.get("role").is_some_and(Value::is_string) => (
                        m["role"].as_str().unwrap_or_default().to_string(),
                        m.get("level").and_then(Value::as_str).map(str::to_string),
                    ),
                    other => {
                        return Err(EngineError::Evaluation(format!(
                            "rule \"{rule}\" gave {other}: an escalation needs a role, {{role, level}} or null"
                        )));
                    }
                }
            }
        };
        if !self.wf.def.roles.contains_key(&role) {
            return Err(EngineError::Evaluation(format!(
                "an escalation to the role \"{role}\", which the workflow does not have"
            )));
        }
        let unit = level.map(|l| self.ancestor(&l)).transpose()?;
        Ok(Some((role, unit)))
    }

    /// When a time given as a duration, a multiple of the state's limit (`2x`), an
    /// expression or a rule falls, counted from now; `None`: it is switched off (null).
    fn time_of(&mut self, spec: &ValueExpr, limit: Option<&Limit>, what: &str) -> Result<Option<Limit>, EngineError> {
        let span = |s: Span, this: &Self| {
            s.after(this.now, Some(this.calendar()))
                .map(|at| Limit { at, span: Some(s) })
                .map_err(|e| EngineError::Evaluation(format!("{what}: {e}")))
        };
        // A constant was parsed when the workflow was loaded.
        if let ValueExpr::Expr(text) = spec
            && let Some(s) = self.wf.constant_span(text)
        {
            return span(s, self).map(Some);
        }
        let answer = match spec {
            ValueExpr::Expr(text) if limit_multiple(text).is_some() => Value::String(text.clone()),
            other => self.value(other, &self.context_json())?,
        };
        let text = match answer {
            Value::Null => return Ok(None),
            Value::String(s) => s,
            other => {
                return Err(EngineError::Evaluation(format!(
                    "{what} gave {other}: expected a duration (3d, 5wd), a multiple of the limit (2x), an RFC 3339 time or null"
                )));
            }
        };
        if let Some(n) = limit_multiple(&text) {
            return match limit {
                Some(Limit { span: Some(s), .. }) => span(s.times(n), self).map(Some),
                Some(Limit { at, span: None }) => Ok(Some(Limit {
                    at: self.now + (*at - self.now) * n as i32,
                    span: None,
                })),
                None => Err(EngineError::Evaluation(format!(
                    "{what} is \"{text}\", a multiple of the state's limit, but the state has no `due`"
                ))),
            };
        }
        if let Ok(s) = Span::parse(&text) {
            return span(s, self).map(Some);
        }
        if let Some(at) = parse_instant(&text) {
            return Ok(Some(Limit { at, span: None }));
        }
        Err(EngineError::Evaluation(format!(
            "{what} gave \"{text}\": expected a duration (3d, 5wd), a multiple of the limit (2x), an RFC 3339 time or null"
        )))
    }

    /// Each field's choices from its rule, for the instance as it is; the evaluations are not
    /// logged (showing a form records nothing).
    fn choices(&mut self, form: &str) -> Result<BTreeMap<String, Vec<Choice>>, EngineError> {
        let mut out = BTreeMap::new();
        let Some(def) = self.wf.def.forms.get(form) else {
            return Ok(out);
        };
        let logged = self.out.events.len();
        for (field, spec) in &def.choices {
            let items = match self.value(spec, &self.context_json())? {
                Value::Null => continue,
                Value::Array(items) => items,
                other => {
                    return Err(EngineError::Evaluation(format!(
                        "the choices of \"{field}\" gave {other}, expected a list"
                    )));
                }
            };
            let choice = |item: Value| match item {
                Value::Object(mut m) if m.contains_key("value") => {
                    let title = match m.remove("title") {
                        Some(Value::String(t)) => [(crate::definition::DEFAULT_LANG.to_string(), t)].into(),
                        Some(Value::Object(t)) => t
                            .into_iter()
                            .filter_map(|(lang, v)| Some((lang, v.as_str()?.to_string())))
                            .collect(),
                        _ => Default::default(),
                    };
                    Choice {
                        value: m.remove("value").unwrap_or_default(),
                        title,
                    }
                }
                value => Choice {
                    value,
                    title: Default::default(),
                },
            };
            out.insert(field.clone(), items.into_iter().map(choice).collect());
        }
        self.out.events.truncate(logged);
        Ok(out)
    }

    /// A submitted value must be one of its field's choices.
    fn check_choices(&mut self, form: &str, data: &Value) -> Result<(), EngineError> {
        let mut problems = Vec::new();
        for (field, choices) in self.choices(form)? {
            if let Some(v) = data.get(&field).filter(|v| !v.is_null())
                && !choices.iter().any(|c| c.value == *v)
            {
                problems.push((format!("/{field}"), format!("{v} is not one of the choices")));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::InvalidForm(problems))
        }
    }

    /// An id a rule answers (a unit, a person).
    fn id_from(&mut self, v: &ValueExpr, what: &str) -> Result<String, EngineError> {
        match self.value(v, &self.context_json())? {
            Value::String(s) if !s.is_empty() => Ok(s),
            other => Err(EngineError::Evaluation(format!("{what} gave {other}, expected an id"))),
        }
    }

    /// A role a rule answers: it must be one of the workflow's roles.
    fn role_from_rule(&mut self, rule: &str) -> Result<String, EngineError> {
        let role = self.id_from(&ValueExpr::Rule { rule: rule.to_string() }, &format!("rule \"{rule}\""))?;
        if !self.wf.def.roles.contains_key(&role) {
            let known: Vec<&str> = self.wf.def.roles.keys().map(String::as_str).collect();
            return Err(EngineError::Evaluation(format!(
                "rule \"{rule}\" gave the role \"{role}\", which the workflow does not have ({})",
                known.join(", ")
            )));
        }
        Ok(role)
    }

    /// A timer's or escalation's `when:` guard (none: always).
    fn armed(&self, when: Option<&String>) -> Result<bool, EngineError> {
        match when {
            None => Ok(true),
            Some(src) => self
                .wf
                .expr(src)
                .is_true(&self.context())
                .map_err(EngineError::Evaluation),
        }
    }

    fn value(&mut self, v: &ValueExpr, ctx_json: &Value) -> Result<Value, EngineError> {
        match v {
            ValueExpr::Expr(src) => self
                .wf
                .expr(src)
                .eval(&self.context_over(ctx_json))
                .map_err(EngineError::Evaluation),
            ValueExpr::Rule { rule } => {
                let pinned = self.out.instance.position.pins.get(rule).cloned();
                let failed = |f: RuleFailure| EngineError::Rule {
                    hook: rule.clone(),
                    plugin: f.plugin,
                    message: f.message,
                };
                let answered = self
                    .rules
                    .evaluate(self.wf, &self.out.instance, rule, ctx_json, pinned.as_deref())
                    .map_err(failed)?;
                // No plugin decided: the workflow's default, in the same context as any
                // expression here (the unit's calendar included).
                let answer = match answered {
                    Some(a) => a,
                    None => {
                        let default = &self.wf.def.rules[rule].default;
                        let value = self
                            .wf
                            .expr(default)
                            .eval(&self.context_over(ctx_json))
                            .map_err(|m| failed(RuleFailure::expression(m)))?;
                        RuleAnswer { value, plugin: None }
                    }
                };
                let by = answer.plugin.clone().unwrap_or_else(|| "expression".into());
                if let Some(p) = answer.plugin {
                    self.out.instance.position.pins.entry(rule.clone()).or_insert(p);
                }
                let mut value = answer.value;
                normalize(&mut value);
                self.event(Event::RuleEvaluated {
                    rule: rule.clone(),
                    by,
                    value: value.clone(),
                });
                Ok(value)
            }
        }
    }

    /// Index of the first transition whose guard holds.
    fn choose(
        &mut self,
        _from: &str,
        transitions: &[crate::definition::Transition],
    ) -> Result<Option<usize>, EngineError> {
        let ctx = self.context_json();
        for (i, t) in transitions.iter().enumerate() {
            let ok = match &t.when {
                None => true,
                Some(ValueExpr::Expr(src)) => self
                    .wf
                    .expr(src)
                    .is_true(&self.context_over(&ctx))
                    .map_err(EngineError::Evaluation)?,
                Some(rule) => truthy(&self.value(rule, &ctx)?),
            };
            if ok {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn apply_set(&mut self, set: &BTreeMap<String, ValueExpr>) -> Result<(), EngineError> {
        if set.is_empty() {
            return Ok(());
        }
        let ctx = self.context_json();
        for (path, v) in set {
            let mut value = self.value(v, &ctx)?;
            normalize(&mut value);
            set_path(&mut self.out.instance.data, path, value);
        }
        Ok(())
    }

    /// Points (or any amount) into people's ledger accounts, e.g. volunteer points that a
    /// yearly schedule later turns into stars.
    fn credit(&mut self, credits: &[Credit]) -> Result<(), EngineError> {
        if credits.is_empty() {
            return Ok(());
        }
        let json = self.context_json();
        let ctx = self.context_over(&json);
        for c in credits {
            let amount = match self.value(&c.amount, &json)? {
                Value::Number(n) => n.as_f64().unwrap_or_default(),
                other => {
                    return Err(EngineError::Evaluation(format!(
                        "credit amount gave {other}, not a number"
                    )));
                }
            };
            let people = match self.wf.expr(&c.to).eval(&ctx).map_err(EngineError::Evaluation)? {
                Value::String(p) => vec![p],
                Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                other => {
                    return Err(EngineError::Evaluation(format!(
                        "credit `to: {}` gave {other}, expected a person id or a list of them",
                        c.to
                    )));
                }
            };
            for person in people {
                self.event(Event::Credited {
                    account: c.account.clone(),
                    person: person.clone(),
                    amount,
                });
                self.out.credits.push(LedgerEntry {
                    account: c.account.clone(),
                    person,
                    amount,
                });
            }
        }
        Ok(())
    }

    fn notify(&mut self, n: &Notify) -> Result<(), EngineError> {
        let template = &self.wf.def.templates[&n.template];
        let ctx = self.context();
        let mut text = Map::new();
        for (lang, src) in template {
            let rendered =
                render(src, &ctx).map_err(|e| EngineError::Evaluation(format!("template \"{}\": {e}", n.template)))?;
            text.insert(lang.clone(), Value::String(rendered));
        }
        let audience = self.audience(&n.to)?;
        self.out.notices.push(Notice {
            event: self.out.events.len(),
            template: n.template.clone(),
            text: text.clone(),
            audience,
        });
        self.event(Event::Notified {
            template: n.template.clone(),
            to: json!(n.to),
            text,
            recipients: None,
        });
        Ok(())
    }

    fn audience(&mut self, to: &Recipients) -> Result<Audience, EngineError> {
        let here = || self.out.instance.unit_path.clone();
        let holders = |role: &str, unit_path: String, below: bool| Audience::Holders {
            role: role.to_string(),
            unit_path,
            below,
        };
        let people = |value: Value, written: &str| {
            match value {
                Value::Null => Ok(Vec::new()),
                Value::String(id) => Ok(vec![id]),
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(id) => Ok(id),
                        other => Err(other),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|other| format!("{other}")),
                other => Err(format!("{other}")),
            }
            .map(Audience::People)
            .map_err(|got| {
                EngineError::Evaluation(format!(
                    "notification recipients `{written}` gave {got}: expected a person id or a list of them"
                ))
            })
        };
        match to {
            Recipients::Written(role) if self.wf.def.roles.contains_key(role) => Ok(holders(role, here(), false)),
            Recipients::Role { role, level, below } => {
                let path = match level {
                    Some(level) => self.ancestor(level)?.path,
                    None => here(),
                };
                Ok(holders(role, path, *below))
            }
            Recipients::Written(expr) => {
                let v = self.value(&ValueExpr::Expr(expr.clone()), &self.context_json())?;
                people(v, expr)
            }
            Recipients::Rule { rule } => {
                let v = self.value(&ValueExpr::Rule { rule: rule.clone() }, &self.context_json())?;
                people(v, rule)
            }
        }
    }

    fn leave(&mut self, state: &str) {
        let tokens = &mut self.out.instance.position.tokens;
        if let Some(i) = tokens.iter().position(|t| t == state) {
            tokens.remove(i);
        }
        let def = self.wf.state(state);
        let completed_here = self.out.task_completed.is_some() && self.out.states_left.is_empty();
        self.out.states_left.push(Left {
            state: state.to_string(),
            cancel_tasks: def.is_some_and(|d| match d.kind {
                StateKind::Task => !completed_here,
                // Its task stays open for every entry and is closed with the state.
                StateKind::Collect => true,
                _ => false,
            }),
            drop_timers: def.is_some_and(|d| !d.timers.is_empty() || !d.escalate.is_empty()),
        });
    }

    /// Take a transition out of `from`.
    fn take(&mut self, from: &str, t: &Transition) -> Result<(), EngineError> {
        self.follow(from, &t.to, &t.set, t.notify.as_ref(), &t.credit, t.register.as_ref())
    }

    fn follow(
        &mut self,
        from: &str,
        to: &Target,
        set: &BTreeMap<String, ValueExpr>,
        notify: Option<&Notify>,
        credit: &[Credit],
        register: Option<&RegisterWrite>,
    ) -> Result<(), EngineError> {
        self.leave(from);
        self.apply_set(set)?;
        self.credit(credit)?;
        self.write_register(register)?;
        if let Some(n) = notify {
            self.notify(n)?;
        }
        self.event(Event::Transitioned {
            from: from.to_string(),
            to: to.states().to_vec(),
        });
        self.enter_all(to.states(), Some(from))
    }

    /// A person's register attributes, kept for later instances and audited here.
    fn write_register(&mut self, register: Option<&RegisterWrite>) -> Result<(), EngineError> {
        let Some(r) = register else { return Ok(()) };
        let ctx = self.context_json();
        let person = match self
            .wf
            .expr(&r.person)
            .eval(&self.context_over(&ctx))
            .map_err(EngineError::Evaluation)?
        {
            Value::String(p) if !p.is_empty() => p,
            other => {
                return Err(EngineError::Evaluation(format!(
                    "register `person: {}` gave {other}, expected a person id",
                    r.person
                )));
            }
        };
        let mut attributes = Map::new();
        for (name, v) in &r.set {
            let mut value = self.value(v, &ctx)?;
            normalize(&mut value);
            if !value.is_null() {
                attributes.insert(name.clone(), value);
            }
        }
        if attributes.is_empty() {
            return Ok(());
        }
        self.event(Event::RegisterUpdated {
            person: person.clone(),
            set: attributes.clone(),
        });
        self.out.register.push(RegisterEntry { person, attributes });
        Ok(())
    }

    fn enter_all(&mut self, targets: &[String], from: Option<&str>) -> Result<(), EngineError> {
        for target in targets {
            self.enter(target, from)?;
        }
        if self
            .out
            .instance
            .position
            .tokens
            .iter()
            .all(|t| self.wf.state(t).is_some_and(|s| s.kind == StateKind::End))
        {
            self.out.instance.status = Status::Completed;
            let end = self.out.instance.position.tokens.clone();
            self.event(Event::Completed { end });
        }
        Ok(())
    }

    fn enter(&mut self, name: &str, from: Option<&str>) -> Result<(), EngineError> {
        self.automatic_steps += 1;
        if self.automatic_steps > MAX_AUTOMATIC_STEPS {
            return Err(EngineError::Evaluation(format!(
                "more than {MAX_AUTOMATIC_STEPS} automatic steps in one action: a loop of automatic states?"
            )));
        }
        let wf = self.wf;
        let state = wf
            .state(name)
            .ok_or_else(|| EngineError::Evaluation(format!("unknown state \"{name}\"")))?;
        if state.kind == StateKind::Join {
            // Validation refuses such a definition; a stored older one must still not lose
            // the branch and leave the instance with nothing active.
            if let Some(f) = from.filter(|f| !state.from.iter().any(|s| s == f)) {
                return Err(EngineError::Evaluation(format!(
                    "\"{f}\" arrived at the join \"{name}\", which waits only for {:?}",
                    state.from
                )));
            }
            let arrived = self.out.instance.position.joins.entry(name.to_string()).or_default();
            if let Some(f) = from
                && !arrived.iter().any(|a| a == f)
            {
                arrived.push(f.to_string());
            }
            let complete = state.from.iter().all(|f| arrived.contains(f));
            if !complete {
                let arrived = arrived.clone();
                self.event(Event::JoinWaiting {
                    state: name.to_string(),
                    arrived,
                });
                return Ok(());
            }
            self.out.instance.position.joins.remove(name);
        }
        self.out.instance.position.tokens.push(name.to_string());
        self.event(Event::Entered {
            state: name.to_string(),
        });
        self.apply_set(&state.set)?;
        if let Some(n) = &state.notify {
            self.notify(n)?;
        }
        // The limit is fixed on entry, so the on-time measure (`due.<state>`), the task's
        // due time and the escalations all follow the same value.
        let limit = match &state.due {
            Some(spec) => self.time_of(spec, None, &format!("`due` of \"{name}\""))?,
            None => None,
        };
        match &limit {
            Some(l) => self.out.instance.position.due.insert(name.to_string(), l.at),
            None => self.out.instance.position.due.remove(name),
        };
        for (i, t) in state.timers.iter().enumerate() {
            if !self.armed(t.when.as_ref())? {
                continue;
            }
            let what = format!("timer {i} of \"{name}\"");
            let Some(spec) = t.after.as_ref().or(t.at.as_ref()) else {
                continue;
            };
            if let Some(at) = self.time_of(spec, limit.as_ref(), &what)? {
                self.timer(name, TimerKind::Transition(i), at.at);
            }
        }
        if matches!(state.kind, StateKind::Task | StateKind::Collect) {
            for (i, e) in state.escalate.iter().enumerate() {
                if !self.armed(e.when.as_ref())? {
                    continue;
                }
                let at = match &e.after {
                    Some(spec) => self.time_of(spec, limit.as_ref(), &format!("escalation {i} of \"{name}\""))?,
                    None => limit.clone(),
                };
                if let Some(at) = at {
                    self.timer(name, TimerKind::Escalation(i), at.at);
                }
            }
        }
        let due_at = limit.map(|l| l.at);
        match state.kind {
            StateKind::Task => self.create_task(name, due_at)?,
            StateKind::Collect => {
                // The lists exist from the start, so guards and templates can count them.
                let c = state
                    .collect
                    .as_ref()
                    .expect("validated: collect states have `collect`");
                for list in [Some(&c.into), c.waitlist.as_ref()].into_iter().flatten() {
                    entries_mut(&mut self.out.instance.data, list);
                }
                self.create_task(name, due_at)?
            }
            StateKind::Auto | StateKind::Join => {
                let index = self
                    .choose(name, &state.transitions)?
                    .ok_or_else(|| EngineError::NoTransition(name.to_string()))?;
                let t = &state.transitions[index];
                self.take(name, t)?;
            }
            StateKind::Wait | StateKind::End => {}
        }
        Ok(())
    }

    fn timer(&mut self, state: &str, kind: TimerKind, fire_at: DateTime<Utc>) {
        let id = uuid::Uuid::now_v7().to_string();
        let instance_id = self.out.instance.id.clone();
        self.out.timers_created.push(Timer {
            id,
            instance_id,
            state: state.to_string(),
            kind,
            fire_at,
        });
    }

    fn create_task(&mut self, name: &str, due_at: Option<DateTime<Utc>>) -> Result<(), EngineError> {
        let wf = self.wf;
        let state = &wf.def.states[name];
        let assign = state.assign.as_ref().expect("validated: task states have assign");
        let ctx = self.context();
        let eval_id = |src: &str| -> Result<String, EngineError> {
            let v = wf.expr(src).eval(&ctx).map_err(EngineError::Evaluation)?;
            match v {
                Value::String(s) if !s.is_empty() => Ok(s),
                other => Err(EngineError::Evaluation(format!("`{src}` gave {other}, expected an id"))),
            }
        };
        let person = assign.person.as_deref().map(eval_id).transpose()?;
        let role = match &assign.role {
            None => None,
            Some(RoleSpec::Name(r)) => Some(r.clone()),
            Some(RoleSpec::Rule { rule }) => Some(self.role_from_rule(rule)?),
        };
        let unit = match &assign.unit {
            None => None,
            Some(ValueExpr::Expr(src)) => Some(eval_id(src)?),
            Some(rule) => Some(self.id_from(rule, "the task's unit")?),
        };
        let i = &self.out.instance;
        let (unit_id, unit_path) = match (&assign.level, unit) {
            (Some(level), _) => {
                let u = self.ancestor(level)?;
                (u.id, u.path)
            }
            (None, Some(id)) => {
                // The store fills in the path of another unit.
                let path = if id == i.unit_id {
                    i.unit_path.clone()
                } else {
                    String::new()
                };
                (id, path)
            }
            (None, None) => (i.unit_id.clone(), i.unit_path.clone()),
        };
        let task = Task {
            id: uuid::Uuid::now_v7().to_string(),
            instance_id: self.out.instance.id.clone(),
            state: name.to_string(),
            form: state.form.clone(),
            role,
            person,
            unit_path,
            unit_id,
            pool: assign.pool,
            below: assign.below,
            claimed_by: None,
            escalated_to: None,
            escalated_path: None,
            due_at,
            created_at: self.now,
        };
        let title = state
            .title
            .as_ref()
            .map(|t| localize(t, "zh-CN").to_string())
            .unwrap_or_else(|| name.to_string());
        self.event(Event::TaskCreated {
            task: task.id.clone(),
            state: name.to_string(),
            title,
            role: task.role.clone(),
            person: task.person.clone(),
            unit: task.unit_id.clone(),
            due: task.due_at,
        });
        self.out.tasks_created.push(task);
        Ok(())
    }
}

/// A state's time limit as fixed on entry: when it falls, and the span it was given as (for
/// multiples like `2x`), unless it was given as a time.
#[derive(Debug, Clone)]
struct Limit {
    at: DateTime<Utc>,
    span: Option<Span>,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The list at a data path (empty when absent).
fn entries<'v>(data: &'v Value, path: &str) -> &'v [Value] {
    path.split('.')
        .try_fold(data, |v, part| v.get(part))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The list at a data path, created when absent.
fn entries_mut<'v>(data: &'v mut Value, path: &str) -> &'v mut Vec<Value> {
    let present = path
        .split('.')
        .try_fold(&*data, |v, p| v.get(p))
        .is_some_and(Value::is_array);
    if !present {
        set_path(data, path, json!([]));
    }
    let mut cur = data;
    for part in path.split('.') {
        cur = cur.get_mut(part).expect("made above");
    }
    cur.as_array_mut().expect("made above")
}

/// Set `a.b.c` in an object, creating objects on the way.
fn set_path(data: &mut Value, path: &str, value: Value) {
    let mut cur = data;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let obj = cur.as_object_mut().expect("just made an object");
        if parts.peek().is_none() {
            obj.insert(part.to_string(), value);
            return;
        }
        cur = obj.entry(part.to_string()).or_insert_with(|| json!({}));
    }
}
