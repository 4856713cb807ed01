//! Row mapping and the read side: instances, tasks, events.

use crate::db::{Store, from_millis};
use crate::error::{Result, StoreError};
use civicflow_engine::Actor;
use civicflow_engine::machine::{Instance, Position, Status, Task};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// An instance as stored, with the head of its event chain.
pub(crate) struct StoredInstance {
    pub instance: Instance,
    pub last_seq: i64,
    pub last_hash: String,
}

const INSTANCE_COLUMNS: &str = "id, workflow_id, workflow_version, unit_id, unit_path, status, position, data, rev, created_by, created_at, last_seq, last_hash";
const TASK_COLUMNS: &str = "id, instance_id, state, form, role, person_id, unit_id, unit_path, pool, claimed_by, escalated_to, status, due_at, created_at";

fn instance_from(r: &AnyRow) -> Result<StoredInstance> {
    let status: String = r.try_get("status")?;
    let position: String = r.try_get("position")?;
    let data: String = r.try_get("data")?;
    let version: i64 = r.try_get("workflow_version")?;
    Ok(StoredInstance {
        instance: Instance {
            id: r.try_get("id")?,
            workflow: r.try_get("workflow_id")?,
            workflow_version: u32::try_from(version).map_err(|_| StoreError::Corrupt("workflow version".into()))?,
            unit_id: r.try_get("unit_id")?,
            unit_path: r.try_get("unit_path")?,
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("instance status \"{status}\"")))?,
            position: serde_json::from_str::<Position>(&position)?,
            data: serde_json::from_str(&data)?,
            rev: r.try_get("rev")?,
            created_by: r.try_get("created_by")?,
            created_at: from_millis(r.try_get("created_at")?),
        },
        last_seq: r.try_get("last_seq")?,
        last_hash: r.try_get("last_hash")?,
    })
}

fn task_from(r: &AnyRow) -> Result<(Task, String)> {
    let pool: i64 = r.try_get("pool")?;
    let due: Option<i64> = r.try_get("due_at")?;
    Ok((
        Task {
            id: r.try_get("id")?,
            instance_id: r.try_get("instance_id")?,
            state: r.try_get("state")?,
            form: r.try_get("form")?,
            role: r.try_get("role")?,
            person: r.try_get("person_id")?,
            unit_id: r.try_get("unit_id")?,
            unit_path: r.try_get("unit_path")?,
            pool: pool != 0,
            claimed_by: r.try_get("claimed_by")?,
            escalated_to: r.try_get("escalated_to")?,
            due_at: due.map(from_millis),
            created_at: from_millis(r.try_get("created_at")?),
        },
        r.try_get("status")?,
    ))
}

pub(crate) async fn load_instance(conn: &mut AnyConnection, id: &str) -> Result<StoredInstance> {
    let row = sqlx::query(&format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
    instance_from(&row)
}

/// An open task, or `NotFound`/`Conflict` saying why it cannot be acted on.
pub(crate) async fn load_open_task(conn: &mut AnyConnection, id: &str) -> Result<Task> {
    let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("task {id}")))?;
    let (task, status) = task_from(&row)?;
    if status != "open" {
        return Err(civicflow_engine::EngineError::Conflict(format!("task {id} is already {status}")).into());
    }
    Ok(task)
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: Task,
    pub status: String,
    pub workflow: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub kind: String,
    pub payload: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub workflow: String,
    pub workflow_version: u32,
    pub unit_id: String,
    pub status: String,
    pub states: Vec<String>,
    pub data: Value,
    pub rev: i64,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<&Instance> for InstanceView {
    fn from(i: &Instance) -> Self {
        Self {
            id: i.id.clone(),
            workflow: i.workflow.clone(),
            workflow_version: i.workflow_version,
            unit_id: i.unit_id.clone(),
            status: i.status.as_str().to_string(),
            states: i.position.tokens.clone(),
            data: i.data.clone(),
            rev: i.rev,
            created_by: i.created_by.clone(),
            created_at: i.created_at,
        }
    }
}

impl Store {
    pub async fn instance(&self, id: &str) -> Result<Instance> {
        let mut conn = self.pool.acquire().await?;
        Ok(load_instance(&mut conn, id).await?.instance)
    }

    pub async fn events(&self, instance_id: &str) -> Result<Vec<EventRow>> {
        let rows = sqlx::query("SELECT seq, at, actor, kind, payload FROM events WHERE instance_id = $1 ORDER BY seq")
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(EventRow {
                    seq: r.try_get("seq")?,
                    at: from_millis(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    payload: serde_json::from_str(&payload)?,
                })
            })
            .collect()
    }

    /// Tasks of one instance, every status, oldest first.
    pub async fn instance_tasks(&self, instance_id: &str) -> Result<Vec<TaskView>> {
        let rows = sqlx::query(&format!("SELECT t.{}, i.workflow_id FROM tasks t JOIN instances i ON i.id = t.instance_id WHERE t.instance_id = $1 ORDER BY t.created_at, t.id", TASK_COLUMNS.replace(", ", ", t.")))
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_view).collect()
    }

    /// Open tasks this person may act on (assigned, claimed, by role in scope, or a pool
    /// they may claim), overdue first then by due time.
    pub async fn tasks_for(&self, actor: &Actor) -> Result<Vec<TaskView>> {
        let mut roots: Vec<&str> = actor.roles.iter().map(|g| g.unit_path.as_str()).collect();
        roots.sort_unstable();
        roots.dedup();
        // A grant below another grant adds nothing: its subtree is already covered.
        let covered: Vec<&str> = roots
            .iter()
            .copied()
            .filter(|p| !roots.iter().any(|q| q != p && p.starts_with(q)))
            .collect();
        let columns = TASK_COLUMNS.replace(", ", ", t.");
        let mut out: Vec<TaskView> = Vec::new();
        for root in covered {
            let rows = sqlx::query(&format!("SELECT t.{columns}, i.workflow_id FROM tasks t JOIN instances i ON i.id = t.instance_id WHERE t.status = 'open' AND t.unit_path LIKE $1"))
                .bind(format!("{root}%"))
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                out.push(task_view(r)?);
            }
        }
        let rows = sqlx::query(&format!("SELECT t.{columns}, i.workflow_id FROM tasks t JOIN instances i ON i.id = t.instance_id WHERE t.status = 'open' AND (t.person_id = $1 OR t.claimed_by = $1)"))
            .bind(&actor.person)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            out.push(task_view(r)?);
        }
        out.retain(|t| actor.may_act_on(&t.task));
        out.sort_by(|a, b| {
            (a.task.due_at.is_none(), a.task.due_at, &a.task.id).cmp(&(
                b.task.due_at.is_none(),
                b.task.due_at,
                &b.task.id,
            ))
        });
        out.dedup_by(|a, b| a.task.id == b.task.id);
        Ok(out)
    }
}

fn task_view(r: &AnyRow) -> Result<TaskView> {
    let (task, status) = task_from(r)?;
    Ok(TaskView {
        task,
        status,
        workflow: r.try_get("workflow_id")?,
    })
}
