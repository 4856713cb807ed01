//! `POST /api/plugins` and `POST /api/bindings`: a locality admin uploads and binds rule
//! plugins. Both need the `plugin_admin` role over the unit concerned (the plugin's author
//! unit, or the unit the binding is made at).

use crate::AppState;
use crate::api::{ApiJson, Caller};
use crate::error::{AppError, ErrorBody};
use crate::plugins::{self, Package, PublishError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use civicflow_engine::Actor;
use civicflow_plugin_host::{Binding, Manifest};
use serde::Deserialize;
use serde_json::{Value, json};

pub const PLUGIN_ADMIN: &str = "plugin_admin";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The text of `plugin.yaml`.
    pub manifest: String,
    pub wasm_base64: String,
    /// Base64 ed25519 signature of the module bytes.
    #[serde(default)]
    pub signature: Option<String>,
}

/// A locality's own rules (plugins, bindings, calendars) are managed by `plugin_admin` over
/// the unit concerned.
pub(crate) async fn require_admin(state: &AppState, actor: &Actor, unit: &str, doing: &str) -> Result<(), AppError> {
    let path = state.runtime.store.unit_path(unit).await?;
    if actor.has_role_over(PLUGIN_ADMIN, &path) {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{doing} for unit \"{unit}\" needs the {PLUGIN_ADMIN} role there or above"),
        ))
    }
}

fn publish_error(e: PublishError) -> AppError {
    match e {
        PublishError::Manifest(diags) => {
            let text = diags
                .iter()
                .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
                .collect::<Vec<_>>()
                .join("\n");
            AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "manifest", "plugin.yaml is not valid")
                .with_field("/manifest", text)
        }
        PublishError::Plugin(p) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, p.code(), p.to_string())
            .with_field("/wasm_base64", p.to_string()),
        PublishError::Store(s) => s.into(),
        PublishError::Invalid(m) => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
        PublishError::Read(what, e) => AppError::new(StatusCode::BAD_REQUEST, "invalid", format!("{what}: {e}")),
    }
}

/// Publish a plugin version (`plugin_admin` over its author unit).
#[utoipa::path(post, path = "/api/plugins", tag = "plugins", request_body = Upload,
    responses((status = 201, body = Object, description = "Published"), (status = 200, body = Object, description = "The same bytes were published before"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<Upload>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let manifest =
        Manifest::parse("plugin.yaml", &body.manifest).map_err(|d| publish_error(PublishError::Manifest(d)))?;
    require_admin(&state, &actor, &manifest.author_unit, "managing plugins").await?;
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(body.wasm_base64.trim())
        .map_err(|e| {
            AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "the module is not base64")
                .with_field("/wasm_base64", e.to_string())
        })?;
    let package = Package {
        manifest,
        wasm,
        signature: body.signature,
    };
    let fresh = plugins::publish(&state.runtime.store, &state.rules, &package, &actor.person)
        .await
        .map_err(publish_error)?;
    let m = &package.manifest;
    let status = if fresh { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(json!({"id": m.id, "version": m.version, "hooks": m.hooks, "published": fresh})),
    ))
}

/// Bind a hook of a workflow at a unit to a published plugin version (`plugin_admin` there).
#[utoipa::path(post, path = "/api/bindings", tag = "plugins",
    request_body(content = Object, description = "`{unit_id, workflow, hook, plugin, version, limits?}`"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn bind(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(binding): ApiJson<Binding>,
) -> Result<Json<Value>, AppError> {
    require_admin(&state, &actor, &binding.unit_id, "managing plugins").await?;
    plugins::bind(&state.runtime.store, &state.runtime.registry, &binding, &actor.person)
        .await
        .map_err(publish_error)?;
    // This server answers with the new binding at once; others pick it up on their next tick.
    state.stamp_changed().await;
    Ok(Json(
        json!({"bound": binding.plugin_ref(), "unit": binding.unit_id, "workflow": binding.workflow, "hook": binding.hook}),
    ))
}
