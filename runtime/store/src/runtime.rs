//! The runtime: read an instance, let the engine compute a [`Step`], commit the step in one
//! transaction (new state, appended events, tasks, timers), guarded by the instance's
//! revision so that of two concurrent actions on one instance exactly one wins.
//!
//! On SQLite, people's actions go through one writer task that group-commits whatever is
//! waiting into one transaction: one fsync covers the batch. A batch whose write fails rolls
//! back whole and each of its actions runs again alone, so a bad action never takes good
//! ones with it and nothing is half-applied.

use crate::codes::{CodeError, CodeKey};
use crate::db::{Backend, Store, millis};
use crate::error::{Result, StoreError};
use crate::idempotency::Keyed;
use crate::org::{load_actor_at, load_holders, load_unit_path};
use crate::queries::{StoredInstance, load_action, load_instance};
use crate::registry::Registry;
use crate::writes::{Write, execute_combined, execute_each, plan_addressed};
use chrono::{DateTime, Utc};
use civicflow_engine::machine::{Action, Instance, NewEvent, Rules, Step, Surroundings, Task, Timer, TimerKind, step};
use civicflow_engine::places::Places as _;
use civicflow_engine::{Actor, Clock, EngineError, Event, Workflow};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Actions waiting for the writer, at most this many per transaction.
const MAX_BATCH: usize = 64;

/// What an action did: the instance as it now is and the tasks it opened.
#[derive(Debug, Clone)]
pub struct Applied {
    pub instance: Instance,
    pub new_tasks: Vec<Task>,
    /// A new instance whose number is taken as the last write of its transaction.
    pub(crate) unnumbered: bool,
}

impl std::ops::Deref for Applied {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.instance
    }
}

/// A person's action, as data, so it can wait in the writer's queue.
#[derive(Debug, Clone)]
pub enum Op {
    Start {
        person: String,
        workflow: String,
        unit: String,
        data: Value,
    },
    Complete {
        person: String,
        task: String,
        form: Value,
    },
    Claim {
        person: String,
        task: String,
    },
    Withdraw {
        person: String,
        task: String,
    },
}

impl Op {
    /// Who acts.
    pub fn person(&self) -> &str {
        match self {
            Op::Start { person, .. }
            | Op::Complete { person, .. }
            | Op::Claim { person, .. }
            | Op::Withdraw { person, .. } => person,
        }
    }
}

/// What the writer is asked: an action to read and step there, or a step computed outside
/// (it may call a locality's plugins) to commit if its instance has not changed meanwhile.
#[derive(Debug, Clone)]
enum Work {
    Act(Op, Option<Keyed>),
    Commit(Box<Decided>),
}

impl Work {
    fn keyed(&self) -> Option<&Keyed> {
        match self {
            Work::Act(_, keyed) => keyed.as_ref(),
            Work::Commit(d) => d.keyed.as_ref(),
        }
    }
}

/// A step computed outside every transaction, with the instance it was computed from.
#[derive(Debug, Clone)]
struct Decided {
    step: Step,
    prior: Option<StoredInstance>,
    now: DateTime<Utc>,
    keyed: Option<Keyed>,
}

/// All an action's step needs, read and owned, so it can be computed on another thread.
struct Reading {
    wf: Arc<Workflow>,
    actor: Actor,
    action: Action,
    prior: Option<StoredInstance>,
    unit_path: String,
}

/// `None`: the action's step may call plugins, so it is computed outside (see [`Work`]).
type Job = (Work, oneshot::Sender<Result<Option<Applied>>>);

/// Times an action computed outside is read and computed again because its instance
/// changed before it could commit (each round, one of the contenders wins).
pub(crate) const OUTSIDE_ATTEMPTS: usize = 8;

/// Everything an action needs; shared with the SQLite writer task.
pub struct Shared {
    pub store: Store,
    pub registry: Registry,
    pub clock: Arc<dyn Clock>,
    pub rules: Arc<dyn Rules + Send + Sync>,
    /// Unit levels and calendars, with the stamp they were read at.
    places: std::sync::RwLock<(Arc<crate::places::OrgPlaces>, String)>,
    /// The registry's change count when it was last read (see [`Shared::sync_registry`]).
    pub(crate) registry_stamp: std::sync::RwLock<i64>,
    codes: CodeKey,
    /// Plugin calls queued by locality.
    localities: crate::localities::Localities,
    /// Secrets given to this runtime (tests, the CLI); otherwise read from the environment.
    secrets: std::sync::RwLock<std::collections::HashMap<String, String>>,
}

pub struct Runtime {
    shared: Arc<Shared>,
    writer: Option<mpsc::UnboundedSender<Job>>,
}

impl std::ops::Deref for Runtime {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Runtime {
    /// A runtime over `store` with every workflow version already published there.
    pub async fn new(store: Store, clock: Arc<dyn Clock>, rules: Arc<dyn Rules + Send + Sync>) -> Result<Self> {
        let registry_stamp = store.registry_stamp().await?;
        let registry = store.registry().await?;
        let sqlite = store.backend == Backend::Sqlite;
        let codes = CodeKey::load(&store).await?;
        let places = (Arc::new(store.load_places().await?), store.places_stamp().await?);
        let shared = Arc::new(Shared {
            store,
            registry,
            clock,
            rules,
            places: std::sync::RwLock::new(places),
            registry_stamp: std::sync::RwLock::new(registry_stamp),
            codes,
            localities: Default::default(),
            secrets: Default::default(),
        });
        let writer = sqlite.then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(shared.clone(), rx));
            tx
        });
        Ok(Self { shared, writer })
    }

    /// Start the newest version of `workflow` in `unit` as `person`.
    pub async fn start(&self, person: &str, workflow: &str, unit: &str, data: Value) -> Result<Applied> {
        self.submit(
            Op::Start {
                person: person.into(),
                workflow: workflow.into(),
                unit: unit.into(),
                data,
            },
            None,
        )
        .await
    }

    pub async fn complete(&self, person: &str, task_id: &str, form: Value) -> Result<Applied> {
        self.submit(
            Op::Complete {
                person: person.into(),
                task: task_id.into(),
                form,
            },
            None,
        )
        .await
    }

    pub async fn claim(&self, person: &str, task_id: &str) -> Result<Applied> {
        self.submit(
            Op::Claim {
                person: person.into(),
                task: task_id.into(),
            },
            None,
        )
        .await
    }

    /// Take back `person`'s entry in the collect state of `task_id`.
    pub async fn withdraw(&self, person: &str, task_id: &str) -> Result<Applied> {
        self.submit(
            Op::Withdraw {
                person: person.into(),
                task: task_id.into(),
            },
            None,
        )
        .await
    }

    /// Apply `op`; with `keyed`, its answer is stored under the key in the same transaction.
    pub(crate) async fn submit(&self, op: Op, keyed: Option<Keyed>) -> Result<Applied> {
        let result = match self.send(Work::Act(op.clone(), keyed.clone())).await {
            Ok(Some(applied)) => Ok(applied),
            Ok(None) => self.act_outside(&op, keyed).await,
            Err(e) => Err(e),
        };
        if let Err(StoreError::Engine(failure @ EngineError::Rule { .. })) = &result {
            match &op {
                Op::Complete { person, task, .. } | Op::Claim { person, task } | Op::Withdraw { person, task } => {
                    let instance: Option<String> = sqlx::query_scalar("SELECT instance_id FROM tasks WHERE id = $1")
                        .bind(task)
                        .fetch_optional(&self.store.pool)
                        .await?;
                    if let Some(instance) = instance {
                        self.record_rule_failure(&instance, person, failure).await?;
                    }
                }
                Op::Start {
                    person, workflow, unit, ..
                } => {
                    self.store
                        .record_refused_start(workflow, unit, person, failure, self.now())
                        .await?
                }
            }
        }
        match &result {
            Ok(_) => count_transition("action", "applied"),
            Err(StoreError::Engine(e)) => count_transition("action", e.code()),
            Err(_) => count_transition("action", "error"),
        }
        result
    }

    /// To the writer on SQLite; on PostgreSQL in a transaction of its own.
    async fn send(&self, work: Work) -> Result<Option<Applied>> {
        match &self.writer {
            None => self.shared.run_alone(&work).await,
            Some(writer) => {
                let (reply, answer) = oneshot::channel();
                let closed = || StoreError::Invalid("the runtime is shutting down".into());
                writer.send((work, reply)).map_err(|_| closed())?;
                answer.await.map_err(|_| closed())?
            }
        }
    }

    /// An action whose step may call plugins: read it on a reader, compute it in its
    /// locality's queue, and commit it if the instance is as it was read, else again.
    async fn act_outside(&self, op: &Op, keyed: Option<Keyed>) -> Result<Applied> {
        let mut attempts = 1;
        loop {
            let decided = self.shared.decide(op, keyed.clone()).await?;
            match self.send(Work::Commit(Box::new(decided))).await {
                Err(StoreError::Engine(EngineError::Conflict(_))) if attempts < OUTSIDE_ATTEMPTS => attempts += 1,
                done => return done.map(|applied| applied.expect("a computed step is committed or refused")),
            }
        }
    }
}

async fn writer(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        shared.run_batch(jobs).await;
    }
}

impl Shared {
    /// Read unit levels and calendars again if they changed (another server, the CLI).
    pub async fn sync_places(&self) -> Result<bool> {
        let stamp = self.store.places_stamp().await?;
        if self.places.read().expect("not poisoned").1 == stamp {
            return Ok(false);
        }
        let fresh = Arc::new(self.store.load_places().await?);
        *self.places.write().expect("not poisoned") = (fresh, stamp);
        Ok(true)
    }

    /// What a step needs besides the workflow, the instance and the action.
    pub(crate) fn step_at<R>(&self, now: DateTime<Utc>, f: impl FnOnce(Surroundings<'_>) -> R) -> R {
        let places = self.places.read().expect("not poisoned").0.clone();
        f(Surroundings {
            now,
            rules: self.rules.as_ref(),
            places: places.as_ref(),
        })
    }

    /// What `actor` may see and act on, for the store's lists and checks.
    pub fn scope(&self, actor: &civicflow_engine::Actor) -> crate::Scope {
        crate::Scope::new(actor.clone(), &self.registry)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Publish a validated base version (see [`Shared::publish_base`]).
    pub async fn publish(&self, wf: Workflow) -> Result<(Arc<Workflow>, bool)> {
        self.publish_base(wf, &[], "system").await
    }

    /// Whether an organisation has been imported (units to check names against).
    pub(crate) fn places_known(&self) -> bool {
        !self.places.read().expect("not poisoned").0.levels().is_empty()
    }

    /// The choices rules give the fields of a task's form, for `person` to pick from.
    pub async fn task_choices(
        &self,
        person: &str,
        task_id: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<civicflow_engine::definition::Choice>>> {
        let (actor, task, stored) = {
            let mut conn = self.store.reader.acquire().await?;
            load_action(&mut conn, task_id, person, false).await?
        };
        let Some(form) = task.form else {
            return Ok(Default::default());
        };
        let wf = self.registry.for_instance(&stored.instance)?;
        let locality = self.locality(&wf, &stored.instance.unit_path, Some(&stored.instance));
        self.with_rules(locality, self.now(), move |at| {
            civicflow_engine::machine::task_choices(&wf, stored.instance, &form, &actor, at)
        })
        .await
    }

    /// Every level of the tree the workflow names is a level some unit has (a misspelt
    /// `level: stret` would otherwise fail only when the escalation fires). An organisation
    /// not imported yet has no levels to check against.
    pub(crate) fn check_levels(&self, wf: &Workflow) -> Result<()> {
        let places = self.places.read().expect("not poisoned").0.clone();
        let levels = places.levels();
        if levels.is_empty() {
            return Ok(());
        }
        let wrong: Vec<String> = wf
            .levels()
            .into_iter()
            .filter(|(_, l)| !levels.contains(l))
            .map(|(state, l)| {
                format!(
                    "state \"{state}\" names the level \"{l}\", which no unit has{}",
                    civicflow_engine::diagnostic::suggest(l, levels.iter().copied())
                )
            })
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = levels.into_iter().collect();
        Err(StoreError::Invalid(format!(
            "{} (the levels here: {})",
            wrong.join("; "),
            known.join(", ")
        )))
    }

    /// A check-in code for `state` of an instance, for `person` to display; with its expiry.
    pub async fn check_in_code(&self, person: &str, instance_id: &str, state: &str) -> Result<(String, DateTime<Utc>)> {
        let mut conn = self.store.pool.acquire().await?;
        let stored = load_instance(&mut conn, instance_id).await?;
        let i = &stored.instance;
        let wf = self.registry.for_instance(i)?;
        let now = self.now();
        let expires = wf
            .code_expiry(state, now)
            .ok_or_else(|| StoreError::Invalid(format!("state \"{state}\" takes no check-in code")))?;
        if !i.position.tokens.iter().any(|t| t == state) {
            return Err(EngineError::Gone(format!("instance {instance_id} is not in \"{state}\" now")).into());
        }
        let shown_by = &wf
            .state(state)
            .and_then(|s| s.code.as_ref())
            .expect("has a code rule")
            .shown_by;
        let (actor, _) = load_actor_at(&mut conn, person, &i.unit_id).await?;
        if !actor.has_role_over(shown_by, &i.unit_path) {
            return Err(
                EngineError::Forbidden(format!("showing check-in codes here needs the role \"{shown_by}\"")).into(),
            );
        }
        Ok((self.codes.sign(instance_id, state, expires), expires))
    }

    /// A form for a state that takes check-in codes, with its code verified and removed (it
    /// proves presence; it is not data to keep).
    fn without_code(&self, wf: &Workflow, task: &Task, mut form: Value, now: DateTime<Utc>) -> Result<Value> {
        if wf.state(&task.state).and_then(|s| s.code.as_ref()).is_none() {
            return Ok(form);
        }
        let code = form.as_object_mut().and_then(|m| m.remove("code"));
        let checked = match code.as_ref().and_then(Value::as_str) {
            None => Err(CodeError::Missing),
            Some(code) => self.codes.verify(code, &task.instance_id, &task.state, now),
        };
        checked.map_err(|e| EngineError::InvalidForm(vec![("/code".into(), e.message().into())]))?;
        Ok(form)
    }

    /// Give the runtime a secret (e.g. a payment provider's signing key) by name.
    pub fn provide_secret(&self, name: &str, value: &str) {
        self.secrets
            .write()
            .expect("secrets lock")
            .insert(name.into(), value.into());
    }

    /// A named secret: one provided, else the environment variable of that name.
    pub(crate) fn secret(&self, name: &str) -> Option<String> {
        let provided = self.secrets.read().expect("secrets lock").get(name).cloned();
        provided.or_else(|| std::env::var(name).ok()).filter(|s| !s.is_empty())
    }

    fn fast_writes(&self) -> bool {
        self.store.backend == Backend::Sqlite
    }

    /// Read what `work` needs and compute its step; writes nothing. `None` when the step
    /// may call plugins, which must not run here (inside the writer's transaction).
    async fn prepare(
        &self,
        conn: &mut AnyConnection,
        work: &Work,
        now: DateTime<Utc>,
    ) -> Result<Option<(Vec<Write>, Applied)>> {
        let op = match work {
            Work::Commit(d) => {
                return plan_addressed(conn, d.step.clone(), d.prior.as_ref(), now)
                    .await
                    .map(Some);
            }
            Work::Act(op, _) => op,
        };
        // On PostgreSQL the read locks the task and instance rows: twenty ballots cast at
        // once queue instead of racing to the instance's revision.
        let lock = self.store.backend == Backend::Postgres;
        let r = self.read(conn, op, now, lock).await?;
        let current = r.prior.as_ref().map(|p| &p.instance);
        if self.locality(&r.wf, &r.unit_path, current).is_some() {
            return Ok(None);
        }
        let s = self.step_at(now, |at| step(&r.wf, current.cloned(), r.action, &r.actor, at))?;
        plan_addressed(conn, s, r.prior.as_ref(), now).await.map(Some)
    }

    /// The moment a piece of work happens: a computed step keeps the time it was computed at.
    fn time_of(&self, work: &Work) -> DateTime<Utc> {
        match work {
            Work::Commit(d) => d.now,
            Work::Act(..) => self.now(),
        }
    }

    /// Whose plugins a step of `wf` at `unit_path` may call (see [`Rules::locality`]).
    pub(crate) fn locality(&self, wf: &Workflow, unit_path: &str, instance: Option<&Instance>) -> Option<String> {
        let no_pins = Default::default();
        let pins = instance.map_or(&no_pins, |i| &i.position.pins);
        self.rules.locality(wf, unit_path, pins)
    }

    /// Run `f` with what a step needs, as [`Shared::step_at`] does, where it may call
    /// `locality`'s plugins: on a blocking thread in the locality's queue. Callers hold no
    /// transaction or connection; with no plugin to run, `f` runs here at once.
    pub(crate) async fn with_rules<T: Send + 'static>(
        &self,
        locality: Option<String>,
        now: DateTime<Utc>,
        f: impl FnOnce(Surroundings<'_>) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T> {
        let Some(locality) = locality else {
            return Ok(self.step_at(now, f)?);
        };
        let rules = self.rules.clone();
        let places = self.places.read().expect("not poisoned").0.clone();
        self.localities
            .run(&locality, move || {
                f(Surroundings {
                    now,
                    rules: rules.as_ref(),
                    places: places.as_ref(),
                })
            })
            .await?
            .map_err(Into::into)
    }

    /// Read `op` on a reader connection and compute its step outside (see [`Work`]).
    async fn decide(&self, op: &Op, keyed: Option<Keyed>) -> Result<Decided> {
        let now = self.now();
        let r = {
            let mut conn = self.store.reader.acquire().await?;
            self.read(&mut conn, op, now, false).await?
        };
        let current = r.prior.as_ref().map(|p| p.instance.clone());
        let locality = self.locality(&r.wf, &r.unit_path, current.as_ref());
        let Reading { wf, actor, action, .. } = r;
        let step = self
            .with_rules(locality, now, move |at| step(&wf, current, action, &actor, at))
            .await?;
        Ok(Decided {
            step,
            prior: r.prior,
            now,
            keyed,
        })
    }

    /// Everything `op` needs for its step, checked: who acts, on what, with what data.
    async fn read(&self, conn: &mut AnyConnection, op: &Op, now: DateTime<Utc>, lock: bool) -> Result<Reading> {
        match op {
            Op::Start {
                person,
                workflow,
                unit,
                data,
            } => {
                let (actor, unit_path) = load_actor_at(conn, person, unit).await?;
                let wf = self
                    .registry
                    .resolve(workflow, &unit_path)?
                    .ok_or_else(|| StoreError::NotFound(format!("workflow \"{workflow}\"")))?;
                if !wf.available_at(&unit_path) {
                    return Err(EngineError::Forbidden(format!("\"{workflow}\" is not offered at this unit")).into());
                }
                if let Some(form) = &wf.def.start.form {
                    let undeclared = wf.undeclared_fields(form, data);
                    if !undeclared.is_empty() {
                        return Err(EngineError::InvalidForm(undeclared).into());
                    }
                }
                crate::references::check(conn, &wf, wf.def.start.form.as_deref(), data, &unit_path).await?;
                let action = start_action(unit, &unit_path, data.clone());
                Ok(Reading {
                    wf,
                    actor,
                    action,
                    prior: None,
                    unit_path,
                })
            }
            Op::Complete { person, task, .. } | Op::Claim { person, task } | Op::Withdraw { person, task } => {
                let (actor, task, stored) = load_action(conn, task, person, lock).await?;
                let wf = self.registry.for_instance(&stored.instance)?;
                let unit_path = stored.instance.unit_path.clone();
                if let Op::Complete { form, .. } = op {
                    crate::references::check(conn, &wf, task.form.as_deref(), form, &unit_path).await?;
                }
                let action = match op {
                    Op::Complete { form, .. } => Action::Complete {
                        form: self.without_code(&wf, &task, form.clone(), now)?,
                        task,
                    },
                    Op::Withdraw { .. } => Action::Withdraw { task },
                    _ => Action::Claim { task },
                };
                Ok(Reading {
                    wf,
                    actor,
                    action,
                    prior: Some(stored),
                    unit_path,
                })
            }
        }
    }

    /// The action was refused because a rule failed; the instance's log still says so, with
    /// the plugin and its error, so the failure is visible in the instance's history.
    async fn record_rule_failure(&self, instance_id: &str, actor: &str, failure: &EngineError) -> Result<()> {
        let EngineError::Rule { hook, plugin, message } = failure else {
            return Ok(());
        };
        let mut tx = self.store.pool.begin().await?;
        let stored = load_instance(&mut tx, instance_id).await?;
        let event = NewEvent {
            actor: actor.into(),
            event: Event::RuleFailed {
                rule: hook.clone(),
                plugin: plugin.clone(),
                error: message.clone(),
            },
        };
        commit(
            &mut tx,
            Step::note(stored.instance.clone(), event),
            Some(&stored),
            self.now(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One piece of work in its own transaction.
    async fn run_alone(&self, work: &Work) -> Result<Option<Applied>> {
        let mut tx = self.store.pool.begin().await?;
        let now = self.time_of(work);
        let Some((writes, applied)) = self.prepare(&mut tx, work, now).await? else {
            return Ok(None);
        };
        let applied = write(&mut tx, &writes, applied, self.fast_writes(), now).await?;
        if let Some(keyed) = work.keyed() {
            keyed.remember(&mut tx, &applied, now).await?;
        }
        tx.commit().await?;
        Ok(Some(applied))
    }

    /// Several actions in one transaction. An action refused while preparing changes nothing
    /// and just gets its error; a failed write spoils the batch, which then runs one by one.
    async fn run_batch(&self, jobs: Vec<Job>) {
        if jobs.len() > 1 {
            let attempt = async {
                let mut tx = self.store.pool.begin().await?;
                let mut results = Vec::with_capacity(jobs.len());
                for (work, _) in &jobs {
                    let now = self.time_of(work);
                    match self.prepare(&mut tx, work, now).await {
                        Ok(Some((writes, applied))) => {
                            let applied = write(&mut tx, &writes, applied, true, now).await?;
                            if let Some(keyed) = work.keyed() {
                                keyed.remember(&mut tx, &applied, now).await?;
                            }
                            results.push(Ok(Some(applied)))
                        }
                        Ok(None) => results.push(Ok(None)),
                        Err(refused) => results.push(Err(refused)),
                    }
                }
                tx.commit().await?;
                Ok::<_, StoreError>(results)
            };
            if let Ok(results) = attempt.await {
                for ((_, reply), result) in jobs.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
                return;
            }
        }
        for (work, reply) in jobs {
            let _ = reply.send(self.run_alone(&work).await);
        }
    }

    /// Fire up to `limit` timers that are due. Each fires in its own transaction together
    /// with the state change it causes, so it fires exactly once; on PostgreSQL the row
    /// lock (`FOR UPDATE SKIP LOCKED`) lets several servers share the work.
    pub async fn fire_due_timers(&self, limit: usize) -> Result<usize> {
        let lock = if self.store.backend == Backend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let select = format!(
            "SELECT id, instance_id, state, kind, fire_at, attempts FROM timers WHERE fire_at <= $1 ORDER BY fire_at, id LIMIT 1{lock}"
        );
        let mut fired = 0;
        while fired < limit {
            let now = self.now();
            let mut tx = self.store.pool.begin().await?;
            let Some(row) = sqlx::query(&select).bind(millis(now)).fetch_optional(&mut *tx).await? else {
                break;
            };
            let id: String = row.try_get("id")?;
            let attempts: i64 = row.try_get("attempts")?;
            let kind: String = row.try_get("kind")?;
            let timer = Timer {
                id: id.clone(),
                instance_id: row.try_get("instance_id")?,
                state: row.try_get("state")?,
                kind: serde_json::from_str::<TimerKind>(&kind)?,
                fire_at: crate::db::from_millis(row.try_get("fire_at")?),
            };
            let timer_instance = timer.instance_id.clone();
            let lag = (now - timer.fire_at).num_milliseconds().max(0) as f64 / 1000.0;
            let mut outcome = self.fire(&mut tx, timer, attempts, now).await;
            if let Ok(Fired::Outside(pending)) = outcome {
                // Its step may call plugins: computed with no transaction open, then committed
                // only if the timer and its instance are still as they were read.
                tx.rollback().await?;
                let Pending {
                    locality,
                    wf,
                    stored,
                    fire,
                } = *pending;
                let instance = stored.instance.clone();
                let computed = self
                    .with_rules(Some(locality), now, move |at| {
                        step(&wf, Some(instance), fire, &Actor::system(), at)
                    })
                    .await;
                tx = self.store.pool.begin().await?;
                outcome = match computed {
                    Ok(s) => self.commit_fired(&mut tx, &id, attempts, s, &stored, now).await,
                    Err(e) => Err(e),
                };
            }
            match outcome {
                Ok(Fired::Done) => {
                    tx.commit().await?;
                    fired += 1;
                    metrics::histogram!("civicflow_timer_lag_seconds").record(lag);
                    count_transition("timer", "applied");
                }
                // Another server fired or put off this timer meanwhile.
                Ok(Fired::Raced | Fired::Outside(_)) => tx.rollback().await?,
                Err(StoreError::Engine(EngineError::Gone(_))) => {
                    // The state it belonged to is gone: the timer has nothing left to do.
                    sqlx::query("DELETE FROM timers WHERE id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                Err(StoreError::Engine(EngineError::Conflict(_))) => {
                    // Someone changed the instance meanwhile; the timer is still due next tick.
                    tx.rollback().await?;
                    break;
                }
                Err(e) => {
                    tx.rollback().await?;
                    if let (StoreError::Engine(failure @ EngineError::Rule { .. }), 0) = (&e, attempts) {
                        self.record_rule_failure(&timer_instance, "system", failure).await?;
                    }
                    let backoff = chrono::Duration::seconds(30 * (attempts + 1).min(120));
                    tracing::warn!(timer = %id, error = %e, "timer failed; retrying later");
                    sqlx::query("UPDATE timers SET attempts = attempts + 1, fire_at = $2 WHERE id = $1")
                        .bind(&id)
                        .bind(millis(now + backoff))
                        .execute(&self.store.pool)
                        .await?;
                }
            }
        }
        Ok(fired)
    }

    /// Fire `timer` in `conn`'s transaction, unless its step may call plugins: then the
    /// step to compute outside it.
    async fn fire(&self, conn: &mut AnyConnection, timer: Timer, attempts: i64, now: DateTime<Utc>) -> Result<Fired> {
        let stored = load_instance(conn, &timer.instance_id).await?;
        let wf = self.registry.for_instance(&stored.instance)?;
        let id = timer.id.clone();
        let fire = Action::Fire { timer };
        if let Some(locality) = self.locality(&wf, &stored.instance.unit_path, Some(&stored.instance)) {
            return Ok(Fired::Outside(Box::new(Pending {
                locality,
                wf,
                stored,
                fire,
            })));
        }
        let s = self.step_at(now, |at| {
            step(&wf, Some(stored.instance.clone()), fire, &Actor::system(), at)
        })?;
        self.commit_fired(conn, &id, attempts, s, &stored, now).await
    }

    /// Delete a fired timer and commit its step: exactly once, though several servers (or a
    /// step computed outside the transaction) may have read the timer.
    async fn commit_fired(
        &self,
        conn: &mut AnyConnection,
        timer: &str,
        attempts: i64,
        s: Step,
        stored: &StoredInstance,
        now: DateTime<Utc>,
    ) -> Result<Fired> {
        let deleted = sqlx::query("DELETE FROM timers WHERE id = $1 AND attempts = $2")
            .bind(timer)
            .bind(attempts)
            .execute(&mut *conn)
            .await?;
        if deleted.rows_affected() == 0 {
            return Ok(Fired::Raced);
        }
        commit(conn, s, Some(stored), now).await?;
        Ok(Fired::Done)
    }

    /// Run schedules that are due: each firing starts its instances and moves the schedule
    /// to its next time in one transaction. Missed periods are caught up one by one, so a
    /// monthly schedule that was down over a month boundary still creates that month's items.
    pub async fn run_due_schedules(&self) -> Result<usize> {
        let lock = if self.store.backend == Backend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let select = format!(
            "SELECT workflow_id, schedule_id, region, next_at FROM schedule_runs WHERE next_at <= $1 ORDER BY next_at LIMIT 1{lock}"
        );
        let places = self.places.read().expect("not poisoned").0.clone();
        let mut started = 0;
        for _ in 0..1000 {
            let now = self.now();
            let mut tx = self.store.pool.begin().await?;
            let Some(row) = sqlx::query(&select).bind(millis(now)).fetch_optional(&mut *tx).await? else {
                break;
            };
            let workflow_id: String = row.try_get("workflow_id")?;
            let schedule_id: String = row.try_get("schedule_id")?;
            let region: String = row.try_get("region")?;
            let due = crate::db::from_millis(row.try_get("next_at")?);
            let region_path = if region.is_empty() {
                String::new()
            } else {
                load_unit_path(&mut tx, &region).await?
            };
            let wf = self.registry.resolve(&workflow_id, &region_path)?;
            let Some((wf, schedule)) = wf
                .as_ref()
                .and_then(|wf| Some((wf, wf.def.schedules.iter().find(|s| s.id == schedule_id)?)))
            else {
                sqlx::query("DELETE FROM schedule_runs WHERE workflow_id = $1 AND schedule_id = $2 AND region = $3")
                    .bind(&workflow_id)
                    .bind(&schedule_id)
                    .bind(&region)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                continue;
            };
            // Each unit belongs to the deepest region above it: a street with its own version
            // of the workflow fires its own schedule for its people, and the rest fire theirs.
            let roots = self.registry.region_roots(&workflow_id);
            let in_region = |path: &str| {
                crate::places::ids(path)
                    .rfind(|u| roots.contains(*u))
                    .unwrap_or_default()
                    == region
            };
            // `(person, unit, unit path)`; the person as expressions see it.
            let targets: Vec<(Value, String, String)> = match (&schedule.for_each_role, &schedule.unit) {
                (Some(role), _) => load_holders(&mut tx, role)
                    .await?
                    .into_iter()
                    .filter(|h| in_region(&h.path))
                    .map(|h| (json!({"id": h.person, "attributes": h.attributes}), h.unit, h.path))
                    .collect(),
                (None, Some(unit)) => {
                    let path = load_unit_path(&mut tx, unit).await?;
                    if in_region(&path) {
                        vec![(json!({"id": null}), unit.clone(), path)]
                    } else {
                        Vec::new()
                    }
                }
                (None, None) => Vec::new(),
            };
            let since = wf.previous_schedule_time(&schedule_id, due);
            let ledgers = ledger_totals(&mut tx, since, due).await?;
            let none = json!({});
            let mut starts = Vec::with_capacity(targets.len());
            for (person, unit, path) in targets {
                let ledger = person["id"].as_str().and_then(|p| ledgers.get(p)).unwrap_or(&none);
                let data = wf
                    .schedule_data(schedule, &person, &unit, due, ledger, &places.calendar(&path))
                    .map_err(EngineError::Evaluation)?;
                starts.push((start_action(&unit, &path, data), path));
            }
            let mut steps = Vec::with_capacity(starts.len());
            if starts.iter().any(|(_, path)| self.locality(wf, path, None).is_some()) {
                // Their steps may call plugins: computed with no transaction open; the
                // schedule's guarded move below makes sure they are committed once.
                tx.rollback().await?;
                for (action, path) in starts {
                    let (locality, wf) = (self.locality(wf, &path, None), wf.clone());
                    let computed = self
                        .with_rules(locality, now, move |at| step(&wf, None, action, &Actor::system(), at))
                        .await?;
                    steps.push(computed);
                }
                tx = self.store.pool.begin().await?;
            } else {
                for (action, _) in starts {
                    steps.push(self.step_at(now, |at| step(wf, None, action, &Actor::system(), at))?);
                }
            }
            let count = steps.len();
            for s in steps {
                commit(&mut tx, s, None, now).await?;
            }
            let next = wf.next_schedule_time(&schedule_id, due).map(millis).unwrap_or(i64::MAX);
            let moved = sqlx::query(
                "UPDATE schedule_runs SET next_at = $3 WHERE workflow_id = $1 AND schedule_id = $2 AND region = $4 AND next_at = $5",
            )
            .bind(&workflow_id)
            .bind(&schedule_id)
            .bind(next)
            .bind(&region)
            .bind(millis(due))
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                // Another server ran this period meanwhile.
                tx.rollback().await?;
                continue;
            }
            tx.commit().await?;
            started += count;
            metrics::counter!("civicflow_transitions_total", "source" => "schedule", "outcome" => "applied")
                .increment(count as u64);
        }
        Ok(started)
    }
}

/// Starting a new instance at `unit`.
fn start_action(unit: &str, unit_path: &str, data: Value) -> Action {
    Action::Start {
        id: uuid::Uuid::now_v7().to_string(),
        unit_id: unit.to_string(),
        unit_path: unit_path.to_string(),
        data,
    }
}

/// How firing a timer went.
enum Fired {
    Done,
    Raced,
    /// Its step may call plugins: to compute with no transaction open.
    Outside(Box<Pending>),
}

/// A timer's step to compute outside the transaction that read it.
struct Pending {
    locality: String,
    wf: Arc<Workflow>,
    stored: StoredInstance,
    fire: Action,
}

/// Steps committed (`applied`) or refused (by error code), by what caused them.
pub(crate) fn count_transition(source: &'static str, outcome: &'static str) {
    metrics::counter!("civicflow_transitions_total", "source" => source, "outcome" => outcome).increment(1);
}

/// Each person's ledger totals per account for `[since, until)`: `{person: {account: total}}`.
async fn ledger_totals(
    conn: &mut AnyConnection,
    since: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, Value>> {
    let rows = sqlx::query(
        "SELECT person_id, account, CAST(SUM(amount_milli) AS BIGINT) AS total FROM ledger WHERE at >= $1 AND at < $2 GROUP BY person_id, account",
    )
    .bind(since.map(millis).unwrap_or(i64::MIN))
    .bind(millis(until))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: std::collections::HashMap<String, Value> = Default::default();
    for r in rows {
        let total: i64 = r.try_get("total")?;
        let account: String = r.try_get("account")?;
        out.entry(r.try_get("person_id")?).or_insert_with(|| json!({}))[account] = json!(total as f64 / 1000.0);
    }
    Ok(out)
}

/// Execute a step's writes, fill in the unit paths of tasks placed in another unit, and
/// number a new instance.
async fn write(
    conn: &mut AnyConnection,
    writes: &[Write],
    mut applied: Applied,
    fast: bool,
    now: DateTime<Utc>,
) -> Result<Applied> {
    if fast {
        execute_combined(conn, writes).await?;
    } else {
        execute_each(conn, writes).await?;
    }
    for t in &mut applied.new_tasks {
        if t.unit_path.is_empty() {
            t.unit_path = load_unit_path(conn, &t.unit_id).await?;
        }
    }
    if applied.unnumbered {
        crate::writes::number(conn, &mut applied, now).await?;
    }
    Ok(applied)
}

/// The precise path for steps of the background loops (timers, schedules, signals).
pub(crate) async fn commit(
    conn: &mut AnyConnection,
    s: Step,
    prior: Option<&StoredInstance>,
    now: DateTime<Utc>,
) -> Result<Applied> {
    let (writes, applied) = plan_addressed(conn, s, prior, now).await?;
    write(conn, &writes, applied, false, now).await
}
