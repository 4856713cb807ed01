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
use crate::org::{load_actor_at, load_holders, load_unit_path};
use crate::queries::{StoredInstance, load_action, load_instance};
use crate::registry::Registry;
use crate::writes::{Write, execute_combined, execute_each, plan_addressed};
use chrono::{DateTime, Utc};
use civicflow_engine::machine::{Action, Instance, NewEvent, Rules, Step, Surroundings, Task, Timer, TimerKind, step};
use civicflow_engine::places::Places as _;
use civicflow_engine::{Actor, Clock, EngineError, Workflow};
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
enum Op {
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

type Job = (Op, oneshot::Sender<Result<Applied>>);

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
        self.submit(Op::Start {
            person: person.into(),
            workflow: workflow.into(),
            unit: unit.into(),
            data,
        })
        .await
    }

    pub async fn complete(&self, person: &str, task_id: &str, form: Value) -> Result<Applied> {
        self.submit(Op::Complete {
            person: person.into(),
            task: task_id.into(),
            form,
        })
        .await
    }

    pub async fn claim(&self, person: &str, task_id: &str) -> Result<Applied> {
        self.submit(Op::Claim {
            person: person.into(),
            task: task_id.into(),
        })
        .await
    }

    /// Take back `person`'s entry in the collect state of `task_id`.
    pub async fn withdraw(&self, person: &str, task_id: &str) -> Result<Applied> {
        self.submit(Op::Withdraw {
            person: person.into(),
            task: task_id.into(),
        })
        .await
    }

    async fn submit(&self, op: Op) -> Result<Applied> {
        let result = match &self.writer {
            None => self.shared.run_alone(&op).await,
            Some(writer) => {
                let (reply, answer) = oneshot::channel();
                let closed = || StoreError::Invalid("the runtime is shutting down".into());
                writer.send((op.clone(), reply)).map_err(|_| closed())?;
                answer.await.map_err(|_| closed())?
            }
        };
        if let (
            Err(StoreError::Engine(failure @ EngineError::Rule { .. })),
            Op::Complete { person, task, .. } | Op::Claim { person, task } | Op::Withdraw { person, task },
        ) = (&result, &op)
        {
            let instance: Option<String> = sqlx::query_scalar("SELECT instance_id FROM tasks WHERE id = $1")
                .bind(task)
                .fetch_optional(&self.store.pool)
                .await?;
            if let Some(instance) = instance {
                self.record_rule_failure(&instance, person, failure).await?;
            }
        }
        match &result {
            Ok(_) => count_transition("action", "applied"),
            Err(StoreError::Engine(e)) => count_transition("action", e.code()),
            Err(_) => count_transition("action", "error"),
        }
        result
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
        let mut conn = self.store.pool.acquire().await?;
        let (actor, task, stored) = load_action(&mut conn, task_id, person, false).await?;
        let Some(form) = task.form.as_deref() else {
            return Ok(Default::default());
        };
        let wf = self.registry.for_instance(&stored.instance)?;
        Ok(self.step_at(self.now(), |at| {
            civicflow_engine::machine::task_choices(&wf, stored.instance, form, &actor, at)
        })?)
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

    /// Read what `op` needs and compute its step; writes nothing.
    async fn prepare(&self, conn: &mut AnyConnection, op: &Op, now: DateTime<Utc>) -> Result<(Vec<Write>, Applied)> {
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
                let s = self.start_step(&wf, &actor, unit, &unit_path, data.clone())?;
                plan_addressed(conn, s, None, now).await
            }
            Op::Complete { person, task, .. } | Op::Claim { person, task } | Op::Withdraw { person, task } => {
                // On PostgreSQL the read locks the task and instance rows: twenty ballots cast
                // at once queue instead of racing to the instance's revision.
                let lock = self.store.backend == Backend::Postgres;
                let (actor, task, stored) = load_action(conn, task, person, lock).await?;
                let wf = self.registry.for_instance(&stored.instance)?;
                if let Op::Complete { form, .. } = op {
                    let unit_path = &stored.instance.unit_path;
                    crate::references::check(conn, &wf, task.form.as_deref(), form, unit_path).await?;
                }
                let action = match op {
                    Op::Complete { form, .. } => Action::Complete {
                        form: self.without_code(&wf, &task, form.clone(), now)?,
                        task,
                    },
                    Op::Withdraw { .. } => Action::Withdraw { task },
                    _ => Action::Claim { task },
                };
                let s = self.step_at(now, |at| step(&wf, Some(stored.instance.clone()), action, &actor, at))?;
                plan_addressed(conn, s, Some(&stored), now).await
            }
        }
    }

    fn start_step(&self, wf: &Workflow, actor: &Actor, unit: &str, unit_path: &str, data: Value) -> Result<Step> {
        let action = Action::Start {
            id: uuid::Uuid::now_v7().to_string(),
            unit_id: unit.to_string(),
            unit_path: unit_path.to_string(),
            data,
        };
        Ok(self.step_at(self.now(), |at| step(wf, None, action, actor, at))?)
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
            kind: "rule_failed".into(),
            actor: actor.into(),
            payload: json!({"rule": hook, "plugin": plugin, "error": message}),
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

    /// One action in its own transaction.
    async fn run_alone(&self, op: &Op) -> Result<Applied> {
        let mut tx = self.store.pool.begin().await?;
        let now = self.now();
        let (writes, applied) = self.prepare(&mut tx, op, now).await?;
        let applied = write(&mut tx, &writes, applied, self.fast_writes(), now).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Several actions in one transaction. An action refused while preparing changes nothing
    /// and just gets its error; a failed write spoils the batch, which then runs one by one.
    async fn run_batch(&self, jobs: Vec<Job>) {
        if jobs.len() > 1 {
            let attempt = async {
                let mut tx = self.store.pool.begin().await?;
                let mut results = Vec::with_capacity(jobs.len());
                for (op, _) in &jobs {
                    let now = self.now();
                    match self.prepare(&mut tx, op, now).await {
                        Ok((writes, applied)) => results.push(Ok(write(&mut tx, &writes, applied, true, now).await?)),
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
        for (op, reply) in jobs {
            let _ = reply.send(self.run_alone(&op).await);
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
            match self.fire(&mut tx, timer, now).await {
                Ok(()) => {
                    tx.commit().await?;
                    fired += 1;
                    metrics::histogram!("civicflow_timer_lag_seconds").record(lag);
                    count_transition("timer", "applied");
                }
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

    async fn fire(&self, conn: &mut AnyConnection, timer: Timer, now: DateTime<Utc>) -> Result<()> {
        let stored = load_instance(conn, &timer.instance_id).await?;
        let wf = self.registry.for_instance(&stored.instance)?;
        let id = timer.id.clone();
        let s = self.step_at(now, |at| {
            step(
                &wf,
                Some(stored.instance.clone()),
                Action::Fire { timer },
                &Actor::system(),
                at,
            )
        })?;
        sqlx::query("DELETE FROM timers WHERE id = $1")
            .bind(&id)
            .execute(&mut *conn)
            .await?;
        commit(conn, s, Some(&stored), now).await?;
        Ok(())
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
            let targets_started = targets.len();
            for (person, unit, path) in targets {
                let ledger = person["id"].as_str().and_then(|p| ledgers.get(p)).unwrap_or(&none);
                let data = wf
                    .schedule_data(schedule, &person, &unit, due, ledger, &places.calendar(&path))
                    .map_err(EngineError::Evaluation)?;
                let s = self.start_step(wf, &Actor::system(), &unit, &path, data)?;
                commit(&mut tx, s, None, now).await?;
                started += 1;
            }
            let next = wf.next_schedule_time(&schedule_id, due).map(millis).unwrap_or(i64::MAX);
            sqlx::query(
                "UPDATE schedule_runs SET next_at = $3 WHERE workflow_id = $1 AND schedule_id = $2 AND region = $4",
            )
            .bind(&workflow_id)
            .bind(&schedule_id)
            .bind(next)
            .bind(&region)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            metrics::counter!("civicflow_transitions_total", "source" => "schedule", "outcome" => "applied")
                .increment(targets_started as u64);
        }
        Ok(started)
    }
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
