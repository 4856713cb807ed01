//! The runtime: read an instance, let the engine compute a [`Step`], commit the step in one
//! transaction (new state, appended events, tasks, timers), guarded by the instance's
//! revision so that of two concurrent actions on one instance exactly one wins.

use crate::db::{Backend, Store, millis};
use crate::error::{Result, StoreError};
use crate::events::{GENESIS, chain, insert};
use crate::org::{load_actor, load_holders, load_unit_path};
use crate::queries::{StoredInstance, load_instance, load_open_task};
use crate::registry::Registry;
use chrono::{DateTime, Utc};
use civicflow_engine::machine::{Action, Instance, Rules, Step, Task, Timer, TimerKind, step};
use civicflow_engine::{Actor, Clock, EngineError, Workflow};
use serde_json::Value;
use sqlx::{AnyConnection, Row};
use std::sync::Arc;

/// What an action did: the instance as it now is and the tasks it opened.
#[derive(Debug, Clone)]
pub struct Applied {
    pub instance: Instance,
    pub new_tasks: Vec<Task>,
}

impl std::ops::Deref for Applied {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.instance
    }
}

pub struct Runtime {
    pub store: Store,
    pub registry: Registry,
    pub clock: Arc<dyn Clock>,
    pub rules: Arc<dyn Rules + Send + Sync>,
}

impl Runtime {
    /// A runtime over `store` with every workflow version already published there.
    pub async fn new(store: Store, clock: Arc<dyn Clock>, rules: Arc<dyn Rules + Send + Sync>) -> Result<Self> {
        let registry = Registry::default();
        for wf in store.load_workflows().await? {
            registry.insert(Arc::new(wf));
        }
        Ok(Self {
            store,
            registry,
            clock,
            rules,
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Publish a validated workflow version and arm its schedules.
    pub async fn publish(&self, wf: Workflow) -> Result<(Arc<Workflow>, bool)> {
        let fresh = self.store.publish_workflow(&wf).await?;
        let wf = Arc::new(wf);
        self.registry.insert(wf.clone());
        let now = self.now();
        for s in &wf.def.schedules {
            if let Some(next) = wf.next_schedule_time(&s.id, now) {
                sqlx::query("INSERT INTO schedules (workflow_id, schedule_id, next_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(wf.id())
                    .bind(&s.id)
                    .bind(millis(next))
                    .execute(&self.store.pool)
                    .await?;
            }
        }
        Ok((wf, fresh))
    }

    fn workflow(&self, id: &str, version: u32) -> Result<Arc<Workflow>> {
        self.registry
            .get(id, version)
            .ok_or_else(|| StoreError::NotFound(format!("workflow {id}@{version}")))
    }

    /// Start the newest version of `workflow` in `unit` as `person`.
    pub async fn start(&self, person: &str, workflow: &str, unit: &str, data: Value) -> Result<Applied> {
        let wf = self
            .registry
            .latest(workflow)
            .ok_or_else(|| StoreError::NotFound(format!("workflow \"{workflow}\"")))?;
        let mut tx = self.store.pool.begin().await?;
        let actor = load_actor(&mut tx, person).await?;
        let unit_path = load_unit_path(&mut tx, unit).await?;
        let applied = self.start_in(&mut tx, &wf, &actor, unit, &unit_path, data).await?;
        tx.commit().await?;
        Ok(applied)
    }

    async fn start_in(
        &self,
        conn: &mut AnyConnection,
        wf: &Workflow,
        actor: &Actor,
        unit: &str,
        unit_path: &str,
        data: Value,
    ) -> Result<Applied> {
        let action = Action::Start {
            id: uuid::Uuid::now_v7().to_string(),
            unit_id: unit.to_string(),
            unit_path: unit_path.to_string(),
            data,
        };
        let now = self.now();
        let s = step(wf, None, action, actor, now, self.rules.as_ref())?;
        commit(conn, s, None, now).await
    }

    pub async fn complete(&self, person: &str, task_id: &str, form: Value) -> Result<Applied> {
        self.act(person, task_id, |task| Action::Complete { task, form }).await
    }

    pub async fn claim(&self, person: &str, task_id: &str) -> Result<Applied> {
        self.act(person, task_id, |task| Action::Claim { task }).await
    }

    async fn act(&self, person: &str, task_id: &str, action: impl FnOnce(Task) -> Action) -> Result<Applied> {
        let mut tx = self.store.pool.begin().await?;
        let actor = load_actor(&mut tx, person).await?;
        let task = load_open_task(&mut tx, task_id).await?;
        let stored = load_instance(&mut tx, &task.instance_id).await?;
        let wf = self.workflow(&stored.instance.workflow, stored.instance.workflow_version)?;
        let now = self.now();
        let s = step(
            &wf,
            Some(stored.instance.clone()),
            action(task),
            &actor,
            now,
            self.rules.as_ref(),
        )?;
        let applied = commit(&mut tx, s, Some(&stored), now).await?;
        tx.commit().await?;
        Ok(applied)
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
            match self.fire(&mut tx, timer, now).await {
                Ok(()) => {
                    tx.commit().await?;
                    fired += 1;
                }
                Err(StoreError::Engine(EngineError::Conflict(reason)))
                    if reason.contains("stale") || reason.contains("completed") =>
                {
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
        let wf = self.workflow(&stored.instance.workflow, stored.instance.workflow_version)?;
        let id = timer.id.clone();
        let s = step(
            &wf,
            Some(stored.instance.clone()),
            Action::Fire { timer },
            &Actor::system(),
            now,
            self.rules.as_ref(),
        )?;
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
            "SELECT workflow_id, schedule_id, next_at FROM schedules WHERE next_at <= $1 ORDER BY next_at LIMIT 1{lock}"
        );
        let mut started = 0;
        for _ in 0..1000 {
            let now = self.now();
            let mut tx = self.store.pool.begin().await?;
            let Some(row) = sqlx::query(&select).bind(millis(now)).fetch_optional(&mut *tx).await? else {
                break;
            };
            let workflow_id: String = row.try_get("workflow_id")?;
            let schedule_id: String = row.try_get("schedule_id")?;
            let due = crate::db::from_millis(row.try_get("next_at")?);
            let wf = self
                .registry
                .latest(&workflow_id)
                .ok_or_else(|| StoreError::NotFound(format!("workflow \"{workflow_id}\"")))?;
            let Some(schedule) = wf.def.schedules.iter().find(|s| s.id == schedule_id) else {
                sqlx::query("DELETE FROM schedules WHERE workflow_id = $1 AND schedule_id = $2")
                    .bind(&workflow_id)
                    .bind(&schedule_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                continue;
            };
            let targets = match (&schedule.for_each_role, &schedule.unit) {
                (Some(role), _) => load_holders(&mut tx, role)
                    .await?
                    .into_iter()
                    .map(|(p, u, path)| (Some(p), u, path))
                    .collect(),
                (None, Some(unit)) => vec![(None, unit.clone(), load_unit_path(&mut tx, unit).await?)],
                (None, None) => Vec::new(),
            };
            for (person, unit, path) in targets {
                let data = wf
                    .schedule_data(schedule, person.as_deref(), &unit, due)
                    .map_err(EngineError::Evaluation)?;
                self.start_in(&mut tx, &wf, &Actor::system(), &unit, &path, data)
                    .await?;
                started += 1;
            }
            let next = wf.next_schedule_time(&schedule_id, due).map(millis).unwrap_or(i64::MAX);
            sqlx::query("UPDATE schedules SET next_at = $3 WHERE workflow_id = $1 AND schedule_id = $2")
                .bind(&workflow_id)
                .bind(&schedule_id)
                .bind(next)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(started)
    }
}

/// Write one step: instance (revision-checked, with the new chain head), events, tasks,
/// timers. Few statements on purpose: each one is a round trip to the database.
async fn commit(
    conn: &mut AnyConnection,
    s: Step,
    prior: Option<&StoredInstance>,
    now: DateTime<Utc>,
) -> Result<Applied> {
    let at = millis(now);
    let mut instance = s.instance;
    let (seq, hash) = match prior {
        Some(p) => (p.last_seq, p.last_hash.clone()),
        None => (0, GENESIS.to_string()),
    };
    let (chained, last_seq, last_hash) = chain(&instance.id, seq, hash, at, &s.events)?;
    let position = serde_json::to_string(&instance.position)?;
    let data = serde_json::to_string(&instance.data)?;
    match prior {
        None => {
            instance.rev = 1;
            sqlx::query("INSERT INTO instances (id, workflow_id, workflow_version, unit_id, unit_path, status, position, data, rev, created_by, created_at, updated_at, last_seq, last_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $10, $11, $12)")
                .bind(&instance.id)
                .bind(&instance.workflow)
                .bind(i64::from(instance.workflow_version))
                .bind(&instance.unit_id)
                .bind(&instance.unit_path)
                .bind(instance.status.as_str())
                .bind(&position)
                .bind(&data)
                .bind(&instance.created_by)
                .bind(at)
                .bind(last_seq)
                .bind(&last_hash)
                .execute(&mut *conn)
                .await?;
        }
        Some(p) => {
            let done = sqlx::query("UPDATE instances SET status = $3, position = $4, data = $5, rev = rev + 1, updated_at = $6, last_seq = $7, last_hash = $8 WHERE id = $1 AND rev = $2")
                .bind(&instance.id)
                .bind(p.instance.rev)
                .bind(instance.status.as_str())
                .bind(&position)
                .bind(&data)
                .bind(at)
                .bind(last_seq)
                .bind(&last_hash)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() != 1 {
                return Err(EngineError::Conflict(format!(
                    "instance {} was changed by someone else; reload and try again",
                    instance.id
                ))
                .into());
            }
            instance.rev = p.instance.rev + 1;
        }
    }
    insert(conn, &instance.id, at, &s.events, &chained).await?;

    let actor = s.events.first().map(|e| e.actor.as_str()).unwrap_or_default();
    if let Some(task) = &s.task_completed {
        let done = sqlx::query("UPDATE tasks SET status = 'completed', completed_at = $2, completed_by = $3 WHERE id = $1 AND status = 'open'")
            .bind(task)
            .bind(at)
            .bind(actor)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() != 1 {
            return Err(EngineError::Conflict(format!("task {task} is no longer open")).into());
        }
    }
    if let Some(task) = &s.task_claimed {
        let done =
            sqlx::query("UPDATE tasks SET claimed_by = $2 WHERE id = $1 AND status = 'open' AND claimed_by IS NULL")
                .bind(task)
                .bind(actor)
                .execute(&mut *conn)
                .await?;
        if done.rows_affected() != 1 {
            return Err(EngineError::Conflict(format!("task {task} was claimed by someone else")).into());
        }
    }
    for left in &s.states_left {
        if left.cancel_tasks {
            sqlx::query("UPDATE tasks SET status = 'cancelled', completed_at = $3 WHERE instance_id = $1 AND state = $2 AND status = 'open'")
                .bind(&instance.id)
                .bind(&left.state)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        if left.drop_timers {
            sqlx::query("DELETE FROM timers WHERE instance_id = $1 AND state = $2")
                .bind(&instance.id)
                .bind(&left.state)
                .execute(&mut *conn)
                .await?;
        }
    }
    for (state, role) in &s.escalations {
        sqlx::query("UPDATE tasks SET escalated_to = $3 WHERE instance_id = $1 AND state = $2 AND status = 'open'")
            .bind(&instance.id)
            .bind(state)
            .bind(role)
            .execute(&mut *conn)
            .await?;
    }
    let mut new_tasks = s.tasks_created;
    for t in &mut new_tasks {
        let path: Option<String> = sqlx::query_scalar("INSERT INTO tasks (id, instance_id, state, form, role, person_id, unit_id, unit_path, pool, claimed_by, escalated_to, status, due_at, created_at) SELECT $1, $2, $3, $4, $5, $6, u.id, u.path, $8, NULL, NULL, 'open', $9, $10 FROM units u WHERE u.id = $7 RETURNING unit_path")
            .bind(&t.id)
            .bind(&t.instance_id)
            .bind(&t.state)
            .bind(&t.form)
            .bind(&t.role)
            .bind(&t.person)
            .bind(&t.unit_id)
            .bind(i64::from(t.pool))
            .bind(t.due_at.map(millis))
            .bind(millis(t.created_at))
            .fetch_optional(&mut *conn)
            .await?;
        t.unit_path = path.ok_or_else(|| {
            EngineError::Evaluation(format!(
                "task \"{}\" is assigned to unknown unit \"{}\"",
                t.state, t.unit_id
            ))
        })?;
    }
    for t in &s.timers_created {
        sqlx::query(
            "INSERT INTO timers (id, instance_id, state, kind, fire_at, attempts) VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(&t.id)
        .bind(&t.instance_id)
        .bind(&t.state)
        .bind(serde_json::to_string(&t.kind)?)
        .bind(millis(t.fire_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(Applied { instance, new_tasks })
}
