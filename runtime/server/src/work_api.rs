//! The end users' JSON API: start an instance, my tasks, claim, complete, withdraw, an
//! instance with its timeline, check-in codes, workflows with their forms.
//!
//! Scope: an instance is visible to its starter, to anyone who may act on one of its tasks,
//! and to holders of a role the workflow gives work to, over the instance's unit (a grid
//! worker sees the grid's tickets; a resident only their own). Anything else answers 404,
//! the same as an id that does not exist, so ids cannot be probed.

use crate::AppState;
use crate::api::{ApiJson, ApiQuery, Caller};
use crate::error::{AppError, ErrorBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use civicflow_engine::{Actor, Instance};
use civicflow_store::idempotency::Once;
use civicflow_store::{Applied, Cursor, MAX_PAGE, Op, StoreError, TaskQuery, TaskView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Tasks per page of `GET /api/tasks` when the caller does not say.
const DEFAULT_PAGE: usize = 100;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstanceOut {
    pub id: String,
    pub workflow: String,
    pub workflow_version: u32,
    /// The locality overlays it runs with (`{unit, version}`, root first), pinned at its start.
    #[schema(value_type = Vec<Object>)]
    pub overlays: Vec<civicflow_engine::overlay::OverlayPin>,
    pub unit_id: String,
    /// `running` or `completed`.
    pub status: String,
    /// The states the instance is in.
    pub states: Vec<String>,
    #[schema(value_type = Object)]
    pub data: Value,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl From<&Instance> for InstanceOut {
    fn from(i: &Instance) -> Self {
        Self {
            id: i.id.clone(),
            workflow: i.workflow.clone(),
            workflow_version: i.workflow_version,
            overlays: i.overlays.clone(),
            unit_id: i.unit_id.clone(),
            status: i.status.as_str().into(),
            states: i.position.tokens.clone(),
            data: i.data.clone(),
            created_by: i.created_by.clone(),
            created_at: i.created_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskOut {
    pub id: String,
    pub instance_id: String,
    pub workflow: String,
    pub state: String,
    /// The form to fill in, see `GET /api/workflows/{id}`.
    pub form: Option<String>,
    pub role: Option<String>,
    pub person: Option<String>,
    pub unit_id: String,
    /// Open for anyone with the role to claim.
    pub pool: bool,
    pub claimed_by: Option<String>,
    /// `open`, `completed` or `cancelled`.
    pub status: String,
    pub due_at: Option<DateTime<Utc>>,
}

impl From<&TaskView> for TaskOut {
    fn from(v: &TaskView) -> Self {
        let t = &v.task;
        Self {
            id: t.id.clone(),
            instance_id: t.instance_id.clone(),
            workflow: v.workflow.clone(),
            state: t.state.clone(),
            form: t.form.clone(),
            role: t.role.clone(),
            person: t.person.clone(),
            unit_id: t.unit_id.clone(),
            pool: t.pool,
            claimed_by: t.claimed_by.clone(),
            status: v.status.as_str().into(),
            due_at: t.due_at,
        }
    }
}

/// What an action did: the instance as it now is and the tasks it opened.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppliedOut {
    pub instance: InstanceOut,
    pub new_tasks: Vec<String>,
}

impl From<&Applied> for AppliedOut {
    fn from(a: &Applied) -> Self {
        Self {
            instance: (&a.instance).into(),
            new_tasks: a.new_tasks.iter().map(|t| t.id.clone()).collect(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventOut {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstanceDetail {
    pub instance: InstanceOut,
    pub tasks: Vec<TaskOut>,
    /// The event log, oldest first.
    pub timeline: Vec<EventOut>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    pub workflow: String,
    /// The unit the instance belongs to (e.g. the reporter's grid).
    pub unit: String,
    /// The start form's data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The task's form data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckInCode {
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

fn not_found(what: &str) -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
}

/// A store's "not found" in the same words as something outside the caller's scope, so a
/// guessed id learns nothing; any other error as itself.
fn or_not_found<T>(found: Result<T, StoreError>, what: &str) -> Result<T, AppError> {
    found.map_err(|e| match e {
        StoreError::NotFound(_) => not_found(what),
        e => e.into(),
    })
}

/// Whether `actor` may see `instance` (see the module comment): the store's scope filter,
/// asked of one instance.
pub(crate) async fn visible(state: &AppState, actor: &Actor, instance: &Instance) -> Result<bool, StoreError> {
    state
        .runtime
        .store
        .may_read(&state.runtime.scope(actor), &instance.id)
        .await
}

/// The instance of a task the caller may see, else 404.
async fn visible_task(state: &AppState, actor: &Actor, task: &str) -> Result<(), AppError> {
    let instance_id = or_not_found(state.runtime.store.task_instance(task).await, "task")?;
    let instance = state.runtime.store.instance(&instance_id).await?;
    if visible(state, actor, &instance).await? {
        Ok(())
    } else {
        Err(not_found("task"))
    }
}

/// Start an instance. With an `Idempotency-Key` header, a repeat gets the first answer.
#[utoipa::path(post, path = "/api/instances", tag = "work",
    request_body = StartRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key chosen by the client")),
    responses(
        (status = 201, body = AppliedOut, description = "Started"),
        (status = 200, body = AppliedOut, description = "The first answer for this Idempotency-Key"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    Caller(actor): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<StartRequest>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let op = Op::Start {
        person: actor.person,
        workflow: req.workflow,
        unit: req.unit,
        data: req.data,
    };
    act_once(&state, &headers, StatusCode::CREATED, op).await
}

/// The request's `Idempotency-Key`; one that is not visible ASCII is kept as "" for the
/// store's check to refuse.
pub fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(IDEMPOTENCY_HEADER).map(|v| v.to_str().unwrap_or(""))
}

/// Apply `op` once per Idempotency-Key: `ran` for the first time, 200 with the first
/// answer for a repeat.
async fn act_once(
    state: &AppState,
    headers: &HeaderMap,
    ran: StatusCode,
    op: Op,
) -> Result<(StatusCode, Json<Value>), AppError> {
    fn answer(applied: &Applied) -> Value {
        serde_json::to_value(AppliedOut::from(applied)).expect("serializes")
    }
    Ok(match state.runtime.once(idempotency_key(headers), answer, op).await? {
        Once::Ran(body) => (ran, Json(body)),
        Once::Repeated(body) => (StatusCode::OK, Json(body)),
    })
}

/// An instance with its open and closed tasks and its timeline.
#[utoipa::path(get, path = "/api/instances/{id}", tag = "work",
    params(("id" = String, Path)),
    responses((status = 200, body = InstanceDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn instance(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<InstanceDetail>, AppError> {
    let store = &state.runtime.store;
    let instance = or_not_found(store.instance(&id).await, "instance")?;
    if !visible(&state, &actor, &instance).await? {
        return Err(not_found("instance"));
    }
    let tasks = store.instance_tasks(&id).await?;
    let timeline = store
        .events(&id)
        .await?
        .into_iter()
        .map(|e| EventOut {
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            kind: e.kind,
            payload: e.payload,
        })
        .collect();
    Ok(Json(InstanceDetail {
        instance: (&instance).into(),
        tasks: tasks.iter().map(TaskOut::from).collect(),
        timeline,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TaskFilter {
    /// Only this workflow's tasks.
    pub workflow: Option<String>,
    /// Only tasks of this unit.
    pub unit: Option<String>,
    /// Tasks per page, 1 to 500 (default 100).
    pub limit: Option<usize>,
    /// Where the previous page ended: its `next_cursor`.
    pub cursor: Option<String>,
}

/// Open tasks I may act on (assigned to me, to my roles in my units, or open to claim),
/// overdue first, then soonest due.
#[utoipa::path(get, path = "/api/tasks", tag = "work",
    params(TaskFilter),
    responses((status = 200, body = TaskList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn tasks(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(filter): ApiQuery<TaskFilter>,
) -> Result<Json<TaskList>, AppError> {
    let after = match filter.cursor.as_deref() {
        None => None,
        Some(c) => Some(Cursor::parse(c).ok_or_else(|| {
            AppError::new(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "cursor is not one a previous page gave",
            )
        })?),
    };
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            format!("limit must be from 1 to {MAX_PAGE}"),
        ));
    }
    let query = TaskQuery {
        workflow: filter.workflow.as_deref(),
        unit: filter.unit.as_deref(),
        after,
        limit,
    };
    let page = state
        .runtime
        .store
        .tasks_page(&state.runtime.scope(&actor), &query)
        .await?;
    Ok(Json(TaskList {
        tasks: page.tasks.iter().map(TaskOut::from).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// Complete a task with its form data (or, in a collect state, add my entry).
#[utoipa::path(post, path = "/api/tasks/{id}/complete", tag = "work",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key chosen by the client")), request_body = CompleteRequest,
    responses((status = 200, body = AppliedOut), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    visible_task(&state, &actor, &id).await?;
    let op = Op::Complete {
        person: actor.person,
        task: id,
        form: req.data,
    };
    act_once(&state, &headers, StatusCode::OK, op).await
}

/// Claim a task open to claim (a pool task).
#[utoipa::path(post, path = "/api/tasks/{id}/claim", tag = "work",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key chosen by the client")),
    responses((status = 200, body = AppliedOut), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn claim(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), AppError> {
    visible_task(&state, &actor, &id).await?;
    let op = Op::Claim {
        person: actor.person,
        task: id,
    };
    act_once(&state, &headers, StatusCode::OK, op).await
}

/// Withdraw my entry from a collect state (a sign-up); the first waiting moves up.
#[utoipa::path(post, path = "/api/tasks/{id}/withdraw", tag = "work",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Repeat-safe key chosen by the client")),
    responses((status = 200, body = AppliedOut), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), AppError> {
    visible_task(&state, &actor, &id).await?;
    let op = Op::Withdraw {
        person: actor.person,
        task: id,
    };
    act_once(&state, &headers, StatusCode::OK, op).await
}

/// A check-in code for an organiser's screen (shown as a QR code), valid for minutes.
#[utoipa::path(post, path = "/api/instances/{id}/codes/{state}", tag = "work",
    params(("id" = String, Path), ("state" = String, Path)),
    responses((status = 200, body = CheckInCode), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn code(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((id, code_state)): Path<(String, String)>,
) -> Result<Json<CheckInCode>, AppError> {
    let instance = or_not_found(state.runtime.store.instance(&id).await, "instance")?;
    if !visible(&state, &actor, &instance).await? {
        return Err(not_found("instance"));
    }
    let (code, expires_at) = state.runtime.check_in_code(&actor.person, &id, &code_state).await?;
    Ok(Json(CheckInCode { code, expires_at }))
}
