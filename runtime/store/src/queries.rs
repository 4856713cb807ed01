//! Row mapping and the read side: instances, tasks, events.

use crate::db::{Store, from_millis};
use crate::error::{Result, StoreError};
use crate::lists::Cursor;
use crate::org::{ACTOR_FROM, ACTOR_JOIN, actor_from};
use chrono::{DateTime, Utc};
use civicflow_engine::Actor;
use civicflow_engine::machine::{Instance, Position, Status, Task, TaskStatus};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

/// An instance as stored, with the head of its event chain.
#[derive(Debug, Clone)]
pub(crate) struct StoredInstance {
    pub instance: Instance,
    pub last_seq: i64,
    pub last_hash: String,
}

pub(crate) const INSTANCE_COLUMNS: &str = "id, workflow_id, workflow_version, overlays, unit_id, unit_path, status, position, data, rev, created_by, created_at, last_seq, last_hash, number";
pub(crate) const TASK_COLUMNS: &str = "id, instance_id, state, form, role, person_id, unit_id, unit_path, pool, below, claimed_by, escalated_to, escalated_path, status, due_at, created_at";

pub(crate) fn instance_from(r: &AnyRow) -> Result<StoredInstance> {
    let status: String = r.try_get("status")?;
    let position: String = r.try_get("position")?;
    let data: String = r.try_get("data")?;
    let version: i64 = r.try_get("workflow_version")?;
    Ok(StoredInstance {
        instance: Instance {
            id: r.try_get("id")?,
            workflow: r.try_get("workflow_id")?,
            workflow_version: u32::try_from(version).map_err(|_| StoreError::Corrupt("workflow version".into()))?,
            overlays: serde_json::from_str(&r.try_get::<String, _>("overlays")?)?,
            unit_id: r.try_get("unit_id")?,
            unit_path: r.try_get("unit_path")?,
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("instance status \"{status}\"")))?,
            position: serde_json::from_str::<Position>(&position)?,
            data: serde_json::from_str(&data)?,
            rev: r.try_get("rev")?,
            created_by: r.try_get("created_by")?,
            created_at: from_millis(r.try_get("created_at")?),
            number: r.try_get("number")?,
        },
        last_seq: r.try_get("last_seq")?,
        last_hash: r.try_get("last_hash")?,
    })
}

fn task_from(r: &AnyRow) -> Result<(Task, TaskStatus)> {
    task_from_prefixed(r, "")
}

/// A task from columns named `{prefix}id`, `{prefix}state`, ... (prefixed in joins).
fn task_from_prefixed(r: &AnyRow, prefix: &str) -> Result<(Task, TaskStatus)> {
    let col = |name: &str| format!("{prefix}{name}");
    let pool: i64 = r.try_get(col("pool").as_str())?;
    let below: i64 = r.try_get(col("below").as_str())?;
    let due: Option<i64> = r.try_get(col("due_at").as_str())?;
    let status: String = r.try_get(col("status").as_str())?;
    let status = status
        .parse::<TaskStatus>()
        .map_err(|_| StoreError::Corrupt(format!("task status \"{status}\"")))?;
    Ok((
        Task {
            id: r.try_get(col("id").as_str())?,
            instance_id: r.try_get(col("instance_id").as_str())?,
            state: r.try_get(col("state").as_str())?,
            form: r.try_get(col("form").as_str())?,
            role: r.try_get(col("role").as_str())?,
            person: r.try_get(col("person_id").as_str())?,
            unit_id: r.try_get(col("unit_id").as_str())?,
            unit_path: r.try_get(col("unit_path").as_str())?,
            pool: pool != 0,
            below: below != 0,
            claimed_by: r.try_get(col("claimed_by").as_str())?,
            escalated_to: r.try_get(col("escalated_to").as_str())?,
            escalated_path: r.try_get(col("escalated_path").as_str())?,
            due_at: due.map(from_millis),
            created_at: from_millis(r.try_get(col("created_at").as_str())?),
        },
        status,
    ))
}

/// The acting person, an open task and its instance, in one round trip: one row per role
/// the person holds (or one row with no role). `lock` (PostgreSQL) also takes the instance
/// and task rows for the transaction, so actions on one instance queue instead of racing
/// (and a waiting action then reads them as the winner left them).
pub(crate) async fn load_action(
    conn: &mut AnyConnection,
    task_id: &str,
    person: &str,
    lock: bool,
) -> Result<(Actor, Task, StoredInstance)> {
    let task_columns: Vec<String> = TASK_COLUMNS.split(", ").map(|c| format!("t.{c} AS t_{c}")).collect();
    let instance_columns = INSTANCE_COLUMNS.replace(", ", ", i.");
    let sql = format!(
        "SELECT {}, i.{instance_columns}, {ACTOR_JOIN} FROM tasks t JOIN instances i ON i.id = t.instance_id \
         LEFT JOIN people p ON p.id = $2 {ACTOR_FROM} WHERE t.id = $1{}",
        task_columns.join(", "),
        if lock { " FOR UPDATE OF t, i" } else { "" }
    );
    let rows = sqlx::query(&sql).bind(task_id).bind(person).fetch_all(conn).await?;
    let first = rows
        .first()
        .ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))?;
    let actor = actor_from(&rows, person)?;
    let (task, status) = task_from_prefixed(first, "t_")?;
    use civicflow_engine::EngineError::{Conflict, Gone};
    match status {
        TaskStatus::Open => {}
        // Its step ended without it (a voting window closed, a timer moved on).
        TaskStatus::Cancelled => return Err(Gone(format!("task {task_id} is closed: its step has ended")).into()),
        TaskStatus::Completed => return Err(Conflict(format!("task {task_id} is already completed")).into()),
    }
    Ok((actor, task, instance_from(first)?))
}

pub(crate) async fn load_instance(conn: &mut AnyConnection, id: &str) -> Result<StoredInstance> {
    let row = sqlx::query(&format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
    instance_from(&row)
}

/// Ids bound per `IN (...)` query: well under every backend's limit on parameters.
pub(crate) const IN_CHUNK: usize = 200;

/// `$1, $2, ... $n` for an `IN (...)` list.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: Task,
    pub status: TaskStatus,
    pub workflow: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub kind: String,
    pub payload: Value,
    /// The stored kind and payload read as an event; `None` for one this version does not
    /// know (a newer server's), which is still listed, by its kind.
    #[serde(skip)]
    pub event: Option<civicflow_engine::Event>,
}

impl EventRow {
    pub(crate) fn read(r: &sqlx::any::AnyRow) -> Result<Self> {
        let kind: String = r.try_get("kind")?;
        let payload: Value = serde_json::from_str(&r.try_get::<String, _>("payload")?)?;
        Ok(EventRow {
            seq: r.try_get("seq")?,
            at: from_millis(r.try_get("at")?),
            actor: r.try_get("actor")?,
            event: civicflow_engine::Event::read(&kind, &payload),
            kind,
            payload,
        })
    }
}

impl Store {
    /// Several instances by id (those that exist), for lists.
    pub async fn instances(&self, ids: &[&str]) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.reader).await? {
                out.push(instance_from(&r)?.instance);
            }
        }
        Ok(out)
    }

    pub async fn instance(&self, id: &str) -> Result<Instance> {
        let mut conn = self.reader.acquire().await?;
        Ok(load_instance(&mut conn, id).await?.instance)
    }

    /// Instances of a workflow, oldest first, at most `limit`.
    pub async fn instances_of(&self, workflow: &str, limit: i64) -> Result<Vec<Instance>> {
        let rows = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow_id = $1 ORDER BY created_at, id LIMIT $2"
        ))
        .bind(workflow)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| Ok(instance_from(r)?.instance)).collect()
    }

    /// When each instance last changed (its newest event), by id.
    pub async fn last_event_times(&self, ids: &[&str]) -> Result<HashMap<String, DateTime<Utc>>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT instance_id, MAX(at) FROM events WHERE instance_id IN ({}) GROUP BY instance_id",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, i64)>(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for (id, at) in q.fetch_all(&self.reader).await? {
                out.insert(id, from_millis(at));
            }
        }
        Ok(out)
    }

    /// Instances a person started, newest first: `limit` of them after `before` (the
    /// previous page's last), on the `(created_by, created_at)` index.
    pub async fn instances_started_by(
        &self,
        person: &str,
        before: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<Instance>> {
        let (at, id) = Cursor::below(before);
        let rows = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE created_by = $1 \
             AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(person)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|r| Ok(instance_from(r)?.instance)).collect()
    }

    /// Display names of units and people (`name`, `name_en`) by id, for pages.
    pub async fn names(&self, units: &[&str], people: &[&str]) -> Result<HashMap<String, (String, Option<String>)>> {
        let mut out = HashMap::new();
        for (table, ids, en) in [("units", units, "name_en"), ("people", people, "NULL")] {
            for chunk in ids.chunks(IN_CHUNK) {
                if chunk.is_empty() {
                    continue;
                }
                let sql = format!(
                    "SELECT id, name, {en} FROM {table} WHERE id IN ({})",
                    placeholders(chunk.len())
                );
                let mut q = sqlx::query_as::<_, (String, String, Option<String>)>(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                for (id, name, name_en) in q.fetch_all(&self.reader).await? {
                    out.insert(id, (name, name_en));
                }
            }
        }
        Ok(out)
    }

    pub async fn events(&self, instance_id: &str) -> Result<Vec<EventRow>> {
        let rows = sqlx::query("SELECT seq, at, actor, kind, payload FROM events WHERE instance_id = $1 ORDER BY seq")
            .bind(instance_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(EventRow::read).collect()
    }

    /// What a person did (tasks completed, entries made or withdrawn), newest first: their
    /// latest action on each instance, at most `limit`, after `after` (a previous page's
    /// last action: its time and instance). Walks the person's actions on the `(actor, at)`
    /// index; each is kept only if no later action of theirs is on the same instance (read
    /// through that instance's events), so every instance appears once across pages.
    pub async fn actions_of(
        &self,
        person: &str,
        after: Option<&crate::Cursor>,
        limit: i64,
    ) -> Result<Vec<(String, EventRow)>> {
        const ACTIONS: &str = "('task_completed', 'entry_submitted', 'entry_waitlisted', 'entry_withdrawn')";
        let (at, instance) = Cursor::below(after);
        let rows = sqlx::query(&format!(
            "SELECT e.instance_id, e.seq, e.at, e.actor, e.kind, e.payload FROM events e \
             WHERE e.actor = $1 AND e.kind IN {ACTIONS} AND (e.at, e.instance_id) < ($2, $3) \
             AND NOT EXISTS (SELECT 1 FROM events l \
             WHERE l.instance_id = e.instance_id AND l.actor = e.actor AND l.kind IN {ACTIONS} \
             AND (l.at > e.at OR (l.at = e.at AND l.seq > e.seq))) \
             ORDER BY e.at DESC, e.instance_id DESC LIMIT $4"
        ))
        .bind(person)
        .bind(at)
        .bind(instance)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("instance_id")?, EventRow::read(r)?)))
            .collect()
    }

    /// Tasks of one instance, every status, oldest first.
    pub async fn instance_tasks(&self, instance_id: &str) -> Result<Vec<TaskView>> {
        let rows = sqlx::query(&format!("SELECT t.{}, i.workflow_id FROM tasks t JOIN instances i ON i.id = t.instance_id WHERE t.instance_id = $1 ORDER BY t.created_at, t.id", TASK_COLUMNS.replace(", ", ", t.")))
            .bind(instance_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(task_view).collect()
    }
}

pub(crate) fn task_view(r: &AnyRow) -> Result<TaskView> {
    let (task, status) = task_from(r)?;
    Ok(TaskView {
        task,
        status,
        workflow: r.try_get("workflow_id")?,
    })
}
