//! Row mapping and the read side: instances, tasks, events.

use crate::db::{Store, from_millis, millis};
use crate::error::{Result, StoreError};
use crate::org::{ACTOR_FROM, ACTOR_JOIN, actor_from};
use crate::scope::{Args, Scope};
use crate::writes::{Arg, bind};
use chrono::{DateTime, Utc};
use civicflow_engine::Actor;
use civicflow_engine::machine::{Instance, Position, Status, Task};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

/// An instance as stored, with the head of its event chain.
pub(crate) struct StoredInstance {
    pub instance: Instance,
    pub last_seq: i64,
    pub last_hash: String,
}

const INSTANCE_COLUMNS: &str = "id, workflow_id, workflow_version, overlays, unit_id, unit_path, status, position, data, rev, created_by, created_at, last_seq, last_hash, number";
const TASK_COLUMNS: &str = "id, instance_id, state, form, role, person_id, unit_id, unit_path, pool, below, claimed_by, escalated_to, escalated_path, status, due_at, created_at";

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

fn task_from(r: &AnyRow) -> Result<(Task, String)> {
    task_from_prefixed(r, "")
}

/// A task from columns named `{prefix}id`, `{prefix}state`, ... (prefixed in joins).
fn task_from_prefixed(r: &AnyRow, prefix: &str) -> Result<(Task, String)> {
    let col = |name: &str| format!("{prefix}{name}");
    let pool: i64 = r.try_get(col("pool").as_str())?;
    let below: i64 = r.try_get(col("below").as_str())?;
    let due: Option<i64> = r.try_get(col("due_at").as_str())?;
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
        r.try_get(col("status").as_str())?,
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
    match status.as_str() {
        "open" => {}
        // Its step ended without it (a voting window closed, a timer moved on).
        "cancelled" => return Err(Gone(format!("task {task_id} is closed: its step has ended")).into()),
        _ => return Err(Conflict(format!("task {task_id} is already {status}")).into()),
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
const IN_CHUNK: usize = 200;

/// `$1, $2, ... $n` for an `IN (...)` list.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
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

impl Store {
    pub async fn instance(&self, id: &str) -> Result<Instance> {
        let mut conn = self.pool.acquire().await?;
        Ok(load_instance(&mut conn, id).await?.instance)
    }

    /// Instances of a workflow, oldest first, at most `limit`.
    pub async fn instances_of(&self, workflow: &str, limit: i64) -> Result<Vec<Instance>> {
        let rows = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE workflow_id = $1 ORDER BY created_at, id LIMIT $2"
        ))
        .bind(workflow)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(instance_from(r)?.instance)).collect()
    }

    /// Instances `scope` may read, started in `[window.from, window.to)`, newest first: one
    /// page of `window.limit` after skipping `window.offset`, every filter applied in SQL.
    pub async fn instances_in_window(&self, scope: &Scope, window: &InstanceWindow<'_>) -> Result<Vec<Instance>> {
        let mut args = Args::default();
        let mut kinds = Vec::new();
        for (workflow, service_field) in &window.workflows {
            let w = args.text(workflow);
            match (window.service, service_field) {
                (Some(code), Some(field)) => {
                    let value = self.json_text("i.data", field, &mut args);
                    kinds.push(format!("(i.workflow_id = {w} AND {value} = {})", args.text(code)));
                }
                (Some(_), None) => {}
                (None, _) => kinds.push(format!("i.workflow_id = {w}")),
            }
        }
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let (from, to) = (
            args.push(Arg::Int(millis(window.from))),
            args.push(Arg::Int(millis(window.to))),
        );
        let status = match window.closed {
            Some(true) => " AND i.status = 'completed'",
            Some(false) => " AND i.status <> 'completed'",
            None => "",
        };
        let visible = scope.instance_condition("i", &mut args);
        let (limit, offset) = (args.push(Arg::Int(window.limit)), args.push(Arg::Int(window.offset)));
        let columns = INSTANCE_COLUMNS.replace(", ", ", i.");
        let sql = format!(
            "SELECT i.{columns} FROM instances i WHERE ({}) AND i.created_at >= {from} AND i.created_at < {to}{status} \
             AND {visible} ORDER BY i.created_at DESC, i.id DESC LIMIT {limit} OFFSET {offset}",
            kinds.join(" OR ")
        );
        let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        rows.iter().map(|r| Ok(instance_from(r)?.instance)).collect()
    }

    /// The text at top-level key `field` of a JSON column, in this backend's dialect.
    fn json_text(&self, column: &str, field: &str, args: &mut Args) -> String {
        match self.backend {
            crate::Backend::Sqlite => format!("json_extract({column}, {})", args.text(&format!("$.\"{field}\""))),
            crate::Backend::Postgres => format!("(CAST({column} AS jsonb) ->> {})", args.text(field)),
        }
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
            for (id, at) in q.fetch_all(&self.pool).await? {
                out.insert(id, from_millis(at));
            }
        }
        Ok(out)
    }

    /// Instances a person started, newest first, at most `limit`.
    pub async fn instances_started_by(&self, person: &str, limit: i64) -> Result<Vec<Instance>> {
        let rows = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE created_by = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(person)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(instance_from(r)?.instance)).collect()
    }

    /// Several instances by id (those that exist), for lists.
    pub async fn instances(&self, ids: &[&str]) -> Result<Vec<Instance>> {
        self.instances_by_id(None, ids).await
    }

    /// Those of `ids` that `scope` may read.
    pub async fn readable_instances(&self, scope: &Scope, ids: &[&str]) -> Result<Vec<Instance>> {
        self.instances_by_id(Some(scope), ids).await
    }

    async fn instances_by_id(&self, scope: Option<&Scope>, ids: &[&str]) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let mut args = Args::default();
            let listed = chunk.iter().map(|id| args.text(id)).collect::<Vec<_>>().join(", ");
            let visible = scope.map(|s| format!(" AND {}", s.instance_condition("i", &mut args)));
            let sql = format!(
                "SELECT i.{} FROM instances i WHERE i.id IN ({listed}){}",
                INSTANCE_COLUMNS.replace(", ", ", i."),
                visible.unwrap_or_default()
            );
            for r in bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await? {
                out.push(instance_from(&r)?.instance);
            }
        }
        Ok(out)
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
                for (id, name, name_en) in q.fetch_all(&self.pool).await? {
                    out.insert(id, (name, name_en));
                }
            }
        }
        Ok(out)
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

    /// What a person did (tasks completed, entries made or withdrawn), newest first: the latest action
    /// on each of at most `limit` instances. Reads at most `4 × limit` of their events, on
    /// the `(actor, at)` index, whatever the log holds.
    pub async fn actions_of(&self, person: &str, limit: usize) -> Result<Vec<(String, EventRow)>> {
        let rows = sqlx::query(
            "SELECT instance_id, seq, at, actor, kind, payload FROM events WHERE actor = $1 AND kind IN ('task_completed', 'entry_submitted', 'entry_waitlisted', 'entry_withdrawn') ORDER BY at DESC, instance_id, seq DESC LIMIT $2",
        )
        .bind(person)
        .bind((limit * 4) as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in &rows {
            let instance: String = r.try_get("instance_id")?;
            if out.len() < limit && seen.insert(instance.clone()) {
                let payload: String = r.try_get("payload")?;
                let event = EventRow {
                    seq: r.try_get("seq")?,
                    at: from_millis(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    payload: serde_json::from_str(&payload)?,
                };
                out.push((instance, event));
            }
        }
        Ok(out)
    }

    /// Tasks of one instance, every status, oldest first.
    pub async fn instance_tasks(&self, instance_id: &str) -> Result<Vec<TaskView>> {
        let rows = sqlx::query(&format!("SELECT t.{}, i.workflow_id FROM tasks t JOIN instances i ON i.id = t.instance_id WHERE t.instance_id = $1 ORDER BY t.created_at, t.id", TASK_COLUMNS.replace(", ", ", t.")))
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_view).collect()
    }

    /// One page of the open tasks `scope` may act on (assigned, claimed, by role over the
    /// task's unit, open to claim, or escalated to them), overdue first then by due time,
    /// tasks without a deadline last. Each branch of the scope reads its own index; only the
    /// person's own tasks are sorted, whatever else is open.
    pub async fn tasks_page(&self, scope: &Scope, query: &TaskQuery<'_>) -> Result<TaskPage> {
        let mut args = Args::default();
        let ids = scope
            .task_branches("o", &mut args)
            .into_iter()
            .map(|c| format!("SELECT o.id FROM tasks o WHERE o.status = 'open' AND {c}"))
            .collect::<Vec<_>>()
            .join(" UNION ");
        let mut filters = String::new();
        if let Some(w) = query.workflow {
            filters.push_str(&format!(" AND i.workflow_id = {}", args.text(w)));
        }
        if let Some(u) = query.unit {
            filters.push_str(&format!(" AND t.unit_id = {}", args.text(u)));
        }
        if let Some(c) = &query.after {
            let (due, id) = (args.push(Arg::Int(c.due)), args.text(&c.id));
            filters.push_str(&format!(
                " AND ({DUE_KEY} > {due} OR ({DUE_KEY} = {due} AND t.id > {id}))"
            ));
        }
        let want = query.limit.clamp(1, MAX_PAGE);
        let limit = args.push(Arg::Int(want as i64 + 1));
        let sql = format!(
            "SELECT t.{}, i.workflow_id FROM tasks t JOIN instances i ON i.id = t.instance_id \
             WHERE t.id IN ({ids}){filters} ORDER BY {DUE_KEY}, t.id LIMIT {limit}",
            TASK_COLUMNS.replace(", ", ", t.")
        );
        let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        let mut tasks = rows.iter().map(task_view).collect::<Result<Vec<_>>>()?;
        let next = (tasks.len() > want).then(|| {
            tasks.truncate(want);
            TaskCursor::after(&tasks[want - 1].task)
        });
        Ok(TaskPage { tasks, next })
    }

    /// How many open tasks `scope` may act on, by workflow and unit (the list's filters).
    pub async fn task_counts(&self, scope: &Scope) -> Result<Vec<(String, String, i64)>> {
        let mut args = Args::default();
        let ids = scope
            .task_branches("o", &mut args)
            .into_iter()
            .map(|c| format!("SELECT o.id FROM tasks o WHERE o.status = 'open' AND {c}"))
            .collect::<Vec<_>>()
            .join(" UNION ");
        let sql = format!(
            "SELECT i.workflow_id, t.unit_id, COUNT(*) FROM tasks t JOIN instances i ON i.id = t.instance_id \
             WHERE t.id IN ({ids}) GROUP BY i.workflow_id, t.unit_id"
        );
        let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Whether `scope` may read instance `id` (the single-object form of every list's filter).
    pub async fn may_read(&self, scope: &Scope, id: &str) -> Result<bool> {
        let mut args = Args::default();
        let me = args.text(id);
        let condition = scope.instance_condition("i", &mut args);
        let sql = format!("SELECT 1 FROM instances i WHERE i.id = {me} AND {condition}");
        Ok(bind(sqlx::query(&sql), &args.list)
            .fetch_optional(&self.reader)
            .await?
            .is_some())
    }
}

/// Which instances a window list wants: workflows (each with the data field that holds its
/// service code), an optional service code and open/closed, a time window and a page.
#[derive(Debug, Clone)]
pub struct InstanceWindow<'a> {
    pub workflows: Vec<(&'a str, Option<&'a str>)>,
    pub service: Option<&'a str>,
    pub closed: Option<bool>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: i64,
    pub offset: i64,
}

/// The most rows one page of a list may ask for.
pub const MAX_PAGE: usize = 500;

/// Tasks without a deadline sort after every deadline.
const DUE_KEY: &str = "COALESCE(t.due_at, 9223372036854775807)";

/// What a task list asks for: filters, where the previous page ended, and how many.
#[derive(Debug, Clone)]
pub struct TaskQuery<'a> {
    pub workflow: Option<&'a str>,
    pub unit: Option<&'a str>,
    pub after: Option<TaskCursor>,
    pub limit: usize,
}

/// Where a page of tasks ended: its last task's due key and id. Written as `DUE.ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCursor {
    due: i64,
    id: String,
}

impl TaskCursor {
    fn after(task: &Task) -> Self {
        Self {
            due: task.due_at.map(millis).unwrap_or(i64::MAX),
            id: task.id.clone(),
        }
    }

    /// Read a cursor a previous page gave; `None` if it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        let (due, id) = s.split_once('.')?;
        Some(Self {
            due: due.parse().ok()?,
            id: id.to_string(),
        })
        .filter(|c| !c.id.is_empty())
    }
}

impl std::fmt::Display for TaskCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.due, self.id)
    }
}

/// A page of tasks and, when there are more, where the next page starts.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    pub next: Option<TaskCursor>,
}

fn task_view(r: &AnyRow) -> Result<TaskView> {
    let (task, status) = task_from(r)?;
    Ok(TaskView {
        task,
        status,
        workflow: r.try_get("workflow_id")?,
    })
}
