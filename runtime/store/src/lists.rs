//! The lists that grow with a city, each filtered by a person's [`Scope`] in SQL and paged:
//! open tasks (keyset by due time), their counts by workflow and unit, instances in a time
//! window (Open311) or by id, and the single-instance read check. Each list's SQL is built
//! in one place, [`Store::list_sql`], which is also what [`Store::query_plan`] explains, so
//! the tests check the plans of the queries that run.

use crate::db::{Backend, Store, millis};
use crate::error::Result;
use crate::queries::{IN_CHUNK, INSTANCE_COLUMNS, TASK_COLUMNS, TaskView, instance_from, task_view};
use crate::scope::{Args, Scope};
use crate::writes::{Arg, bind};
use chrono::{DateTime, Utc};
use civicflow_engine::machine::{Instance, Task};
use sqlx::Row;

/// The most rows one page of a list may ask for.
pub const MAX_PAGE: usize = 500;

/// Tasks without a deadline sort after every deadline.
const NO_DEADLINE: i64 = i64::MAX;

/// A task's sort key, exactly as the task indexes hold it (migration 12), so that SQLite
/// and PostgreSQL read each branch of a list in this order.
const DUE_KEY: &str = "COALESCE(o.due_at, 9223372036854775807)";

/// What a task list asks for: filters, where the previous page ended, and how many.
#[derive(Debug, Clone)]
pub struct TaskQuery<'a> {
    pub workflow: Option<&'a str>,
    pub unit: Option<&'a str>,
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// Where a page of a list ended: its last row's sort key (a task's due time, an instance's
/// start, in ms) and id. Written as `KEY.ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    due: i64,
    id: String,
}

impl Cursor {
    fn after(task: &Task) -> Self {
        Self {
            due: task.due_at.map(millis).unwrap_or(NO_DEADLINE),
            id: task.id.clone(),
        }
    }

    /// After an instance in a newest-first list of instances.
    pub fn after_instance(i: &Instance) -> Self {
        Self {
            due: millis(i.created_at),
            id: i.id.clone(),
        }
    }

    /// After a row of a newest-first list keyed by a time (an action, a notification).
    pub fn after_event(at: DateTime<Utc>, id: &str) -> Self {
        Self {
            due: millis(at),
            id: id.to_string(),
        }
    }

    /// The key and id a newest-first page starts below: this cursor's, or with none, the end
    /// of time (every row's `(key, id)` is below `(i64::MAX, "")`), so one SQL serves both.
    pub(crate) fn below(cursor: Option<&Cursor>) -> (i64, String) {
        cursor.map_or((i64::MAX, String::new()), |c| (c.due, c.id.clone()))
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

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.due, self.id)
    }
}

/// A page of tasks and, when there are more, where the next page starts.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    pub next: Option<Cursor>,
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

/// One of the scoped lists, with what it asks for.
#[derive(Debug, Clone)]
pub enum List<'a> {
    Tasks(&'a TaskQuery<'a>),
    TaskCounts,
    Window(&'a InstanceWindow<'a>),
    /// At most [`IN_CHUNK`] ids.
    ById(&'a [&'a str]),
    MayRead(&'a str),
}

impl Store {
    /// The SQL and arguments of `list` for `scope`; `None` when it cannot have any row.
    fn list_sql(&self, scope: &Scope, list: &List) -> Option<(String, Args)> {
        let mut args = Args::default();
        let sql = match list {
            List::Tasks(query) => {
                // Every branch filtered and read in (due time, id) order from its index, the
                // branches merged, the page cut; then only the page's rows are read.
                let mut filters = String::new();
                if let Some(w) = query.workflow {
                    filters.push_str(&format!(" AND o.workflow_id = {}", args.text(w)));
                }
                if let Some(u) = query.unit {
                    filters.push_str(&format!(" AND o.unit_id = {}", args.text(u)));
                }
                if let Some(c) = &query.after {
                    let (due, id) = (args.push(Arg::Int(c.due)), args.text(&c.id));
                    filters.push_str(&format!(" AND ({DUE_KEY}, o.id) > ({due}, {id})"));
                }
                let arms = open_tasks(scope, &mut args, &format!("o.id, {DUE_KEY} AS k"), &filters);
                let limit = args.push(Arg::Int(page_size(query) as i64 + 1));
                format!(
                    "SELECT t.{}, t.workflow_id FROM ({arms} ORDER BY k, id LIMIT {limit}) p \
                     CROSS JOIN tasks t WHERE t.id = p.id ORDER BY p.k, p.id",
                    TASK_COLUMNS.replace(", ", ", t.")
                )
            }
            List::TaskCounts => {
                let arms = open_tasks(scope, &mut args, "o.id, o.workflow_id AS w, o.unit_id AS u", "");
                format!("SELECT a.w, a.u, COUNT(*) FROM ({arms}) a GROUP BY a.w, a.u")
            }
            List::Window(window) => {
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
                    return None;
                }
                let from = args.push(Arg::Int(millis(window.from)));
                let to = args.push(Arg::Int(millis(window.to)));
                let status = match window.closed {
                    Some(true) => " AND i.status = 'completed'",
                    Some(false) => " AND i.status <> 'completed'",
                    None => "",
                };
                let visible = scope.instance_condition("i", &mut args);
                let limit = args.push(Arg::Int(window.limit));
                let offset = args.push(Arg::Int(window.offset));
                format!(
                    "SELECT i.{} FROM instances i WHERE ({}) AND i.created_at >= {from} AND i.created_at < {to}{status} \
                     AND {visible} ORDER BY i.created_at DESC, i.id DESC LIMIT {limit} OFFSET {offset}",
                    INSTANCE_COLUMNS.replace(", ", ", i."),
                    kinds.join(" OR ")
                )
            }
            List::ById(ids) => {
                let listed = ids.iter().map(|id| args.text(id)).collect::<Vec<_>>().join(", ");
                let visible = scope.instance_condition("i", &mut args);
                format!(
                    "SELECT i.{} FROM instances i WHERE i.id IN ({listed}) AND {visible}",
                    INSTANCE_COLUMNS.replace(", ", ", i.")
                )
            }
            List::MayRead(id) => {
                let id = args.text(id);
                let visible = scope.instance_condition("i", &mut args);
                format!("SELECT 1 FROM instances i WHERE i.id = {id} AND {visible}")
            }
        };
        Some((sql, args))
    }

    async fn list_rows(&self, scope: &Scope, list: &List<'_>) -> Result<Vec<sqlx::any::AnyRow>> {
        match self.list_sql(scope, list) {
            None => Ok(Vec::new()),
            Some((sql, args)) => Ok(bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?),
        }
    }

    /// How the database would answer `list`, one line per step of the plan (`EXPLAIN QUERY
    /// PLAN` on SQLite; `EXPLAIN` on PostgreSQL with sequential scans discouraged, so that a
    /// tiny test table still shows which index the query can use).
    pub async fn query_plan(&self, scope: &Scope, list: &List<'_>) -> Result<Vec<String>> {
        let Some((sql, args)) = self.list_sql(scope, list) else {
            return Ok(Vec::new());
        };
        let mut conn = self.reader.acquire().await?;
        match self.backend {
            Backend::Sqlite => {
                let rows = bind(sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}")), &args.list)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter().map(|r| Ok(r.try_get::<String, _>(3)?)).collect()
            }
            Backend::Postgres => {
                sqlx::query("SET enable_seqscan = off").execute(&mut *conn).await?;
                let rows = bind(sqlx::query(&format!("EXPLAIN {sql}")), &args.list)
                    .fetch_all(&mut *conn)
                    .await;
                sqlx::query("SET enable_seqscan = on").execute(&mut *conn).await?;
                rows?.iter().map(|r| Ok(r.try_get::<String, _>(0)?)).collect()
            }
        }
    }

    /// One page of the open tasks `scope` may act on (assigned, claimed, by role over the
    /// task's unit, open to claim, or escalated to them), overdue first then by due time,
    /// tasks without a deadline last. Each branch of the scope reads its own index of open
    /// tasks in that order (a branch over a range of units sorts its index entries), the
    /// branches are merged up to the page's end, and only the page's rows are read from the
    /// table, whatever else is open.
    pub async fn tasks_page(&self, scope: &Scope, query: &TaskQuery<'_>) -> Result<TaskPage> {
        let rows = self.list_rows(scope, &List::Tasks(query)).await?;
        let mut tasks = rows.iter().map(task_view).collect::<Result<Vec<_>>>()?;
        let want = page_size(query);
        let next = (tasks.len() > want).then(|| {
            tasks.truncate(want);
            Cursor::after(&tasks[want - 1].task)
        });
        Ok(TaskPage { tasks, next })
    }

    /// How many open tasks `scope` may act on, by workflow and unit (the list's filters).
    pub async fn task_counts(&self, scope: &Scope) -> Result<Vec<(String, String, i64)>> {
        let rows = self.list_rows(scope, &List::TaskCounts).await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Instances `scope` may read, started in `[window.from, window.to)`, newest first: one
    /// page of `window.limit` after skipping `window.offset`, every filter applied in SQL.
    pub async fn instances_in_window(&self, scope: &Scope, window: &InstanceWindow<'_>) -> Result<Vec<Instance>> {
        let rows = self.list_rows(scope, &List::Window(window)).await?;
        rows.iter().map(|r| Ok(instance_from(r)?.instance)).collect()
    }

    /// Those of `ids` that `scope` may read.
    pub async fn readable_instances(&self, scope: &Scope, ids: &[&str]) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            for r in self.list_rows(scope, &List::ById(chunk)).await? {
                out.push(instance_from(&r)?.instance);
            }
        }
        Ok(out)
    }

    /// Whether `scope` may read instance `id` (the single-object form of every list's filter).
    pub async fn may_read(&self, scope: &Scope, id: &str) -> Result<bool> {
        Ok(!self.list_rows(scope, &List::MayRead(id)).await?.is_empty())
    }

    /// The text at top-level key `field` of a JSON column, in this backend's dialect.
    pub(crate) fn json_text(&self, column: &str, field: &str, args: &mut Args) -> String {
        match self.backend {
            Backend::Sqlite => format!("json_extract({column}, {})", args.text(&format!("$.\"{field}\""))),
            Backend::Postgres => format!("(CAST({column} AS jsonb) ->> {})", args.text(field)),
        }
    }
}

fn page_size(query: &TaskQuery) -> usize {
    query.limit.clamp(1, MAX_PAGE)
}

/// The open tasks `scope` may act on: one `SELECT {columns}` per way of reaching a task,
/// each answered by its own index of open tasks (which holds the due key, id, workflow and
/// unit), with `filters` on the alias `o`, joined by `UNION`.
fn open_tasks(scope: &Scope, args: &mut Args, columns: &str, filters: &str) -> String {
    scope
        .task_branches("o", args)
        .into_iter()
        .map(|c| format!("SELECT {columns} FROM tasks o WHERE o.status = 'open' AND {c}{filters}"))
        .collect::<Vec<_>>()
        .join(" UNION ")
}
