//! Open311 GeoReport v2 (JSON), so civic reporting apps can file reports. Any workflow with
//! an `open311:` section takes part: its services are the choices of the start form field
//! it names, and request parameters fill the fields it maps. The `api_key` is an API
//! token; a request starts in the reporter's own unit, and reading requests follows the
//! same scope as the rest of the API (someone else's grid answers 404).

use crate::AppState;
use crate::error::AppError;
use crate::work_api::visible;
use axum::extract::{Form, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use civicflow_engine::definition::localize;
use civicflow_engine::{Actor, Instance, Workflow};
use civicflow_store::idempotency::Once;
use civicflow_store::{Applied, InstanceWindow, Op, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/open311/v2/services.json", get(services))
        .route("/open311/v2/services/{file}", get(service))
        .route("/open311/v2/requests.json", get(list_requests).post(create_request))
        .route("/open311/v2/requests/{file}", get(one_request))
}

/// A refusal of this module's own (a parameter GeoReport defines), in GeoReport's shape.
fn error(status: StatusCode, description: impl Into<String>) -> Response {
    AppError::new(status, "refused", description).geo_report()
}

/// A store error as GeoReport says it; a failure on our side is logged with its error id.
fn failed(e: StoreError) -> Response {
    AppError::from(e).geo_report()
}

/// A form body whose parse errors answer in GeoReport's error shape.
struct GeoForm<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for GeoForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Form::<T>::from_request(req, state)
            .await
            .map(|Form(v)| GeoForm(v))
            .map_err(|r| error(r.status(), r.body_text()))
    }
}

/// Query parameters whose parse errors answer in GeoReport's error shape.
struct GeoQuery<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for GeoQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| GeoQuery(v))
            .map_err(|r| error(r.status(), r.body_text()))
    }
}

/// A service: one choice of a workflow's service field.
struct Service {
    wf: Arc<Workflow>,
    code: String,
    name: String,
}

/// The services the unit on `unit_path` offers: each workflow as that unit has it (a
/// community's own category is a service there, not elsewhere). `""`: the shared base.
fn services_of(state: &AppState, unit_path: &str) -> Vec<Service> {
    state
        .runtime
        .registry
        .offered_at(unit_path)
        .into_iter()
        .flat_map(|wf| services_in(&wf))
        .collect()
}

/// The services of one workflow: the choices of its service field.
fn services_in(wf: &Arc<Workflow>) -> Vec<Service> {
    let Some(cfg) = &wf.def.open311 else {
        return Vec::new();
    };
    let field = wf
        .def
        .start
        .form
        .as_ref()
        .and_then(|f| wf.def.forms.get(f))
        .and_then(|f| f.schema.pointer(&format!("/properties/{}/oneOf", cfg.service_field)))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    field
        .iter()
        .filter_map(|choice| {
            let code = choice.get("const").and_then(Value::as_str)?;
            let name = choice.get("title").and_then(Value::as_str).unwrap_or(code).to_string();
            Some(Service {
                wf: wf.clone(),
                code: code.to_string(),
                name,
            })
        })
        .collect()
}

/// Where the caller of a list belongs, if they said who they are: their unit's services.
async fn caller_unit_path(state: &AppState, headers: &HeaderMap, api_key: Option<&str>) -> Result<String, Response> {
    let has_key = api_key.is_some() || headers.contains_key(axum::http::header::AUTHORIZATION);
    if !has_key {
        return Ok(String::new());
    }
    let actor = caller(state, headers, api_key).await?;
    let (_, path) = state.runtime.store.home_unit(&actor.person).await.map_err(failed)?;
    Ok(path)
}

#[derive(Deserialize)]
struct KeyQuery {
    api_key: Option<String>,
}

async fn services(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<KeyQuery>) -> Response {
    let path = match caller_unit_path(&state, &headers, q.api_key.as_deref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let list: Vec<Value> = services_of(&state, &path)
        .iter()
        .map(|s| {
            json!({
                "service_code": s.code, "service_name": s.name,
                "description": localize(&s.wf.def.title, "zh-CN"),
                "metadata": false, "type": "realtime", "keywords": "", "group": localize(&s.wf.def.title, "zh-CN"),
            })
        })
        .collect();
    Json(list).into_response()
}

async fn service(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<KeyQuery>,
    Path(file): Path<String>,
) -> Response {
    let Some(code) = file.strip_suffix(".json") else {
        return error(StatusCode::NOT_FOUND, "only the JSON format is served");
    };
    let path = match caller_unit_path(&state, &headers, q.api_key.as_deref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !services_of(&state, &path).iter().any(|s| s.code == code) {
        return error(StatusCode::NOT_FOUND, format!("no service \"{code}\""));
    }
    // No extra attributes: a service takes the standard request fields only.
    Json(json!({"service_code": code, "attributes": []})).into_response()
}

/// The person behind `api_key` (a parameter, as GeoReport sends it) or a bearer token.
async fn caller(state: &AppState, headers: &HeaderMap, api_key: Option<&str>) -> Result<Actor, Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(key) = api_key.or(bearer) else {
        return Err(error(StatusCode::UNAUTHORIZED, "an api_key is required"));
    };
    let store = &state.runtime.store;
    let person = store.person_for_token(key.trim()).await.map_err(|e| match e {
        StoreError::NotFound(_) => error(StatusCode::UNAUTHORIZED, "the api_key is not valid"),
        e => failed(e),
    })?;
    store.actor(&person).await.map_err(failed)
}

#[derive(Deserialize)]
struct NewRequest {
    api_key: Option<String>,
    service_code: String,
    #[serde(flatten)]
    params: HashMap<String, String>,
}

async fn create_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    GeoForm(req): GeoForm<NewRequest>,
) -> Response {
    let actor = match caller(&state, &headers, req.api_key.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (home, path) = match state.runtime.store.home_unit(&actor.person).await {
        Ok(h) => h,
        Err(e) => return failed(e),
    };
    let Some(service) = services_of(&state, &path)
        .into_iter()
        .find(|s| s.code == req.service_code)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("no service \"{}\" here", req.service_code),
        );
    };
    let cfg = service
        .wf
        .def
        .open311
        .as_ref()
        .expect("services come from configured workflows");
    let mut data = Map::new();
    data.insert(cfg.service_field.clone(), Value::String(service.code.clone()));
    for (param, field) in &cfg.fields {
        if let Some(v) = req.params.get(param).filter(|v| !v.trim().is_empty()) {
            data.insert(field.clone(), Value::String(v.trim().to_string()));
        }
    }
    // A client that sends an Idempotency-Key may retry without filing twice.
    fn answer(applied: &Applied) -> Value {
        json!([{"service_request_id": applied.instance.id, "service_notice": "", "account_id": null}])
    }
    let op = Op::Start {
        person: actor.person.clone(),
        workflow: service.wf.id().to_string(),
        unit: home,
        data: Value::Object(data),
    };
    match state
        .runtime
        .once(crate::work_api::idempotency_key(&headers), answer, op)
        .await
    {
        Ok(Once::Ran(answer)) => (StatusCode::CREATED, Json(answer)).into_response(),
        Ok(Once::Repeated(answer)) => (StatusCode::OK, Json(answer)).into_response(),
        Err(e) => {
            // Say which Open311 parameter was wrong, not which form field.
            let mut e = AppError::from(e);
            e.fields = std::mem::take(&mut e.fields)
                .into_iter()
                .map(|(pointer, message)| {
                    let field = pointer.trim_start_matches('/');
                    let param = cfg.fields.iter().find(|(_, f)| *f == field).map(|(p, _)| p.as_str());
                    (param.unwrap_or(field).to_string(), message)
                })
                .collect();
            e.geo_report()
        }
    }
}

/// GeoReport's status of an instance.
fn status_of(i: &Instance) -> &'static str {
    if i.status == civicflow_engine::machine::Status::Completed {
        "closed"
    } else {
        "open"
    }
}

/// A request as GeoReport shows it; `updated` is when its last event happened.
fn describe(state: &AppState, i: &Instance, updated: Option<DateTime<Utc>>) -> Option<Value> {
    let wf = state.runtime.registry.for_instance(i).ok()?;
    let services = services_in(&wf);
    let cfg = wf.def.open311.as_ref()?;
    let field = |param: &str| {
        cfg.fields
            .iter()
            .find(|(p, _)| *p == param)
            .and_then(|(_, f)| i.data.get(f))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let code = i.data.get(&cfg.service_field).and_then(Value::as_str).unwrap_or("");
    let service_name = services
        .iter()
        .find(|s| s.wf.id() == i.workflow && s.code == code)
        .map(|s| s.name.clone());
    let notes: Vec<String> = i
        .position
        .tokens
        .iter()
        .map(|s| {
            wf.def
                .states
                .get(s)
                .and_then(|st| st.title.as_ref())
                .map(|t| localize(t, "zh-CN").to_string())
                .unwrap_or_else(|| s.clone())
        })
        .collect();
    Some(json!({
        "service_request_id": i.id,
        "status": status_of(i),
        "status_notes": notes.join("、"),
        "service_name": service_name,
        "service_code": code,
        "description": field("description"),
        "agency_responsible": i.data.get("department"),
        "service_notice": "",
        "requested_datetime": i.created_at,
        "updated_datetime": updated.unwrap_or(i.created_at),
        "expected_datetime": null,
        "address": field("address_string"),
        "address_id": null,
        "zipcode": null,
        "lat": null,
        "long": null,
        "media_url": null,
    }))
}

/// Describe instances, reading their last-change times in one query.
async fn describe_all(state: &AppState, instances: &[Instance]) -> Result<Vec<Value>, Response> {
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    let updated = state.runtime.store.last_event_times(&ids).await.map_err(failed)?;
    Ok(instances
        .iter()
        .filter_map(|i| describe(state, i, updated.get(&i.id).copied()))
        .collect())
}

#[derive(Deserialize)]
struct ListQuery {
    api_key: Option<String>,
    service_request_id: Option<String>,
    service_code: Option<String>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    status: Option<String>,
    /// Which page of `page_size` requests (from 1), newest first; an extension of GeoReport
    /// v2, whose lists are otherwise capped at 1,000.
    page: Option<i64>,
    page_size: Option<i64>,
}

/// GeoReport's limits on a list: at most 1,000 requests, from the last 90 days by default.
const MAX_REQUESTS: usize = 1000;
const DEFAULT_DAYS: i64 = 90;

/// Requests the caller may see, newest first: those named by `service_request_id` (other
/// filters then do not apply, as GeoReport says), else those reported between `start_date`
/// and `end_date`, filtered by `service_code` and `status`.
async fn list_requests(
    State(state): State<AppState>,
    headers: HeaderMap,
    GeoQuery(q): GeoQuery<ListQuery>,
) -> Response {
    let actor = match caller(&state, &headers, q.api_key.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let found = match &q.service_request_id {
        Some(ids) => requests_by_id(&state, &actor, ids).await,
        None => requests_in_window(&state, &actor, &q).await,
    };
    match found {
        Ok(found) => match describe_all(&state, &found).await {
            Ok(out) => Json(out).into_response(),
            Err(r) => r,
        },
        Err(r) => r,
    }
}

async fn requests_by_id(state: &AppState, actor: &Actor, ids: &str) -> Result<Vec<Instance>, Response> {
    let ids: Vec<&str> = ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(MAX_REQUESTS)
        .collect();
    let scope = state.runtime.scope(actor);
    let mut found = state
        .runtime
        .store
        .readable_instances(&scope, &ids)
        .await
        .map_err(failed)?;
    // Only workflows that take part in Open311 (a vote is not a service request).
    found.retain(|i| {
        state
            .runtime
            .registry
            .for_instance(i)
            .ok()
            .is_some_and(|wf| wf.def.open311.is_some())
    });
    found.sort_by_key(|i| std::cmp::Reverse(i.created_at));
    Ok(found)
}

async fn requests_in_window(state: &AppState, actor: &Actor, q: &ListQuery) -> Result<Vec<Instance>, Response> {
    let closed = match q.status.as_deref() {
        None => None,
        Some("open") => Some(false),
        Some("closed") => Some(true),
        Some(s) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("status \"{s}\" is not open or closed"),
            ));
        }
    };
    let page_size = q.page_size.unwrap_or(MAX_REQUESTS as i64);
    if !(1..=MAX_REQUESTS as i64).contains(&page_size) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("page_size must be from 1 to {MAX_REQUESTS}"),
        ));
    }
    let page = q.page.unwrap_or(1);
    if !(1..=1_000_000).contains(&page) {
        return Err(error(StatusCode::BAD_REQUEST, "page must be from 1 to 1000000"));
    }
    // The end is inclusive, to the millisecond the store keeps. Dates at the ends of what
    // chrono can hold (+262142-12-31...) are refused rather than overflowing.
    let out_of_range = || error(StatusCode::BAD_REQUEST, "start_date or end_date is out of range");
    let to = q
        .end_date
        .unwrap_or_else(|| state.runtime.now())
        .checked_add_signed(Duration::milliseconds(1))
        .ok_or_else(out_of_range)?;
    let from = match q.start_date {
        Some(from) => from,
        None => to
            .checked_sub_signed(Duration::days(DEFAULT_DAYS))
            .ok_or_else(out_of_range)?,
    };
    if from >= to {
        return Err(error(StatusCode::BAD_REQUEST, "start_date is after end_date"));
    }
    let taking_part = state.runtime.registry.all_latest();
    let workflows = taking_part
        .iter()
        .filter_map(|wf| Some((wf.id(), Some(wf.def.open311.as_ref()?.service_field.as_str()))))
        .collect();
    let window = InstanceWindow {
        workflows,
        service: q.service_code.as_deref(),
        closed,
        from,
        to,
        limit: page_size,
        offset: (page - 1) * page_size,
    };
    let scope = state.runtime.scope(actor);
    state
        .runtime
        .store
        .instances_in_window(&scope, &window)
        .await
        .map_err(failed)
}

async fn one_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
    GeoQuery(q): GeoQuery<ListQuery>,
) -> Response {
    let Some(id) = file.strip_suffix(".json") else {
        return error(StatusCode::NOT_FOUND, "only the JSON format is served");
    };
    let actor = match caller(&state, &headers, q.api_key.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let not_found = || error(StatusCode::NOT_FOUND, format!("no request \"{id}\""));
    let instance = match state.runtime.store.instance(id).await {
        Ok(i) => i,
        Err(StoreError::NotFound(_)) => return not_found(),
        Err(e) => return failed(e),
    };
    match visible(&state, &actor, &instance).await {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return failed(e),
    }
    match describe_all(&state, std::slice::from_ref(&instance)).await {
        Ok(out) if !out.is_empty() => Json(out).into_response(),
        Ok(_) => not_found(),
        Err(r) => r,
    }
}
