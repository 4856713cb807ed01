//! Workflows as a unit has them, and locality overlays: `GET /api/workflows[?unit=]`,
//! `GET /api/workflows/{id}[?unit=]`, `POST /api/overlays`, `GET /api/overlays/{workflow}`,
//! `PUT /api/overlays/{workflow}/{unit}/live` (roll back or forward).
//!
//! An overlay is published or rolled back by `workflow_admin` over the overlay's unit (held
//! there or above): a community's admin changes the community and what is below it, never
//! its street or a neighbour.

use crate::AppState;
use crate::api::{ApiJson, ApiQuery, Caller};
use crate::error::{AppError, ErrorBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use civicflow_engine::definition::localize;
use civicflow_engine::overlay::Overlay;
use civicflow_engine::{Actor, Workflow};
use civicflow_store::StoreError;
use serde::Deserialize;
use serde_json::{Value, json};

pub const WORKFLOW_ADMIN: &str = "workflow_admin";

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UnitQuery {
    /// A unit id: the workflow as that unit has it (its overlays). Default: the caller's
    /// own unit with a bearer token, else the shared base.
    pub unit: Option<String>,
}

/// The unit path a request is about: `?unit=`, else the caller's unit, else the root ("").
async fn unit_path_of(state: &AppState, headers: &HeaderMap, unit: Option<&str>) -> Result<String, AppError> {
    let store = &state.runtime.store;
    if let Some(u) = unit {
        return Ok(store.unit_path(u).await?);
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Ok(String::new());
    };
    let person = store.person_for_token(token.trim()).await.map_err(|e| match e {
        StoreError::NotFound(_) => AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        ),
        e => e.into(),
    })?;
    Ok(store.home_unit(&person).await?.1)
}

fn composition(wf: &Workflow) -> Value {
    json!({
        "workflow": wf.id(), "version": wf.version(),
        "overlays": wf.overlays.iter().map(|p| json!({"unit": p.unit, "version": p.version})).collect::<Vec<_>>(),
    })
}

/// The workflows offered at a unit, each as that unit has it.
#[utoipa::path(get, path = "/api/workflows", tag = "workflows", params(UnitQuery),
    responses((status = 200, body = Object, description = "`{workflows: [{id, version, title, titles, overlays}]}`"),
        (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<UnitQuery>,
) -> Result<Json<Value>, AppError> {
    let path = unit_path_of(&state, &headers, q.unit.as_deref()).await?;
    let items: Vec<Value> = state
        .runtime
        .registry
        .offered_at(&path)
        .iter()
        .map(|wf| {
            json!({"id": wf.id(), "version": wf.version(), "title": localize(&wf.def.title, "zh-CN"),
                "titles": wf.def.title, "overlays": composition(wf)["overlays"]})
        })
        .collect();
    Ok(Json(json!({"workflows": items})))
}

/// One workflow as a unit has it: its composition, start roles and form, and every form's
/// JSON Schema and UI hints, so a client can build its own screens.
#[utoipa::path(get, path = "/api/workflows/{id}", tag = "workflows",
    params(("id" = String, Path), UnitQuery),
    responses((status = 200, body = Object, description = "`{id, version, composition, title, start: {roles, form}, forms: {name: {title, schema, ui}}}`"),
        (status = 404, body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<UnitQuery>,
) -> Result<Json<Value>, AppError> {
    let path = unit_path_of(&state, &headers, q.unit.as_deref()).await?;
    let wf = state
        .runtime
        .registry
        .resolve(&id, &path)?
        .filter(|wf| wf.available_at(&path))
        .ok_or_else(|| {
            AppError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("workflow \"{id}\" not found"),
            )
        })?;
    Ok(Json(json!({
        "id": wf.id(), "version": wf.version(), "composition": composition(&wf), "title": wf.def.title,
        "start": {"roles": wf.def.start.roles, "form": wf.def.start.form},
        "forms": wf.def.forms,
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverlayUpload {
    /// The overlay's YAML text (see `schemas/overlay.schema.json`).
    pub source: String,
    /// The file name diagnostics name (default `overlay.yaml`).
    #[serde(default)]
    pub file: Option<String>,
}

/// Publish a unit's overlay version and make it live there. Refused with located
/// diagnostics, and nothing stored, when it does not compose at its unit or below.
#[utoipa::path(post, path = "/api/overlays", tag = "workflows", request_body = OverlayUpload,
    responses((status = 201, body = Object, description = "`{workflow, unit, version, published}`"),
        (status = 200, body = Object, description = "this exact version was already published"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn publish(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<OverlayUpload>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let file = body.file.as_deref().unwrap_or("overlay.yaml");
    let overlay = Overlay::load(file, &body.source)
        .map_err(|d| AppError::from(StoreError::Refused("the overlay is not valid".into(), d)))?;
    let unit_path = match state.runtime.store.unit_path(&overlay.unit).await {
        Ok(p) => p,
        Err(StoreError::NotFound(_)) => {
            let d = vec![overlay.error("/unit", format!("no unit \"{}\" in the organisation", overlay.unit))];
            return Err(StoreError::Refused("the overlay names a unit that does not exist".into(), d).into());
        }
        Err(e) => return Err(e.into()),
    };
    require_workflow_admin(&actor, &overlay.unit, &unit_path)?;
    let (workflow, unit, version) = (overlay.workflow.clone(), overlay.unit.clone(), overlay.version);
    let fresh = state.runtime.publish_overlay(overlay, &actor.person).await?;
    let status = if fresh { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(json!({"workflow": workflow, "unit": unit, "version": version, "published": fresh})),
    ))
}

/// Every unit's overlay of a workflow: its versions (who published each, when, what it is
/// about), which one is live, and the units held on an earlier base version.
#[utoipa::path(get, path = "/api/overlays/{workflow}", tag = "workflows", params(("workflow" = String, Path)),
    responses((status = 200, body = Object, description = "`{workflow, overlays: [{unit, live, versions: [{version, about, published_by, published_at, sha256}]}], holds: [{unit, version, held_by, held_at}]}`"),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_overlays(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(workflow): Path<String>,
) -> Result<Json<Value>, AppError> {
    let registry = &state.runtime.registry;
    let mut units: Vec<String> = registry.live_overlays(&workflow).into_iter().map(|(u, _)| u).collect();
    units.sort();
    let overlays: Vec<Value> = units
        .iter()
        .map(|unit| {
            let versions = registry.overlay_versions(&workflow, unit);
            let live = registry
                .live_overlays(&workflow)
                .into_iter()
                .find(|(u, _)| u == unit)
                .map(|(_, v)| v);
            json!({
                "unit": unit, "live": live,
                "versions": versions.iter().map(|p| json!({
                    "version": p.overlay.version, "about": p.overlay.about, "published_by": p.by,
                    "published_at": civicflow_engine::time::canonical(p.at), "sha256": p.overlay.sha256,
                    "source": p.overlay.source,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let holds: Vec<Value> = registry
        .holds(&workflow)
        .into_iter()
        .map(|(unit, h)| {
            json!({"unit": unit, "version": h.version, "held_by": h.by, "held_at": civicflow_engine::time::canonical(h.at)})
        })
        .collect();
    Ok(Json(
        json!({"workflow": workflow, "overlays": overlays, "holds": holds}),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveVersion {
    pub version: u32,
}

/// Make a published version of a unit's overlay the live one (a rollback), after checking
/// it still composes there and below.
#[utoipa::path(put, path = "/api/overlays/{workflow}/{unit}/live", tag = "workflows", request_body = LiveVersion,
    params(("workflow" = String, Path), ("unit" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_live(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((workflow, unit)): Path<(String, String)>,
    ApiJson(body): ApiJson<LiveVersion>,
) -> Result<Json<Value>, AppError> {
    let path = state.runtime.store.unit_path(&unit).await?;
    require_workflow_admin(&actor, &unit, &path)?;
    state
        .runtime
        .set_live_overlay(&workflow, &unit, body.version, &actor.person)
        .await?;
    Ok(Json(json!({"workflow": workflow, "unit": unit, "live": body.version})))
}

fn require_workflow_admin(actor: &Actor, unit: &str, unit_path: &str) -> Result<(), AppError> {
    if actor.has_role_over(WORKFLOW_ADMIN, unit_path) {
        return Ok(());
    }
    Err(AppError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("changing the workflows of unit \"{unit}\" needs the {WORKFLOW_ADMIN} role there or above"),
    ))
}
