//! `POST /api/signals/{workflow}/{signal}`: where a payment provider (or any system a
//! workflow declares under `signals`) sends its signed notices. No bearer token: the
//! HMAC-SHA256 signature of the raw body, in `X-Civicflow-Signature`, is the credential.
//! Every accepted notice is answered 200 (also a repeat, so the provider stops retrying).

use crate::AppState;
use crate::api::ApiBytes;
use crate::error::{AppError, ErrorBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

pub const SIGNATURE_HEADER: &str = "x-civicflow-signature";

/// A signed notice from another system (a payment provider).
#[utoipa::path(post, path = "/api/signals/{workflow}/{signal}", tag = "signals",
    params(("workflow" = String, Path), ("signal" = String, Path),
        ("X-Civicflow-Signature" = String, Header, description = "hex HMAC-SHA256 of the raw body")),
    request_body(content = Object, description = "The notice as the sender signed it"),
    responses((status = 200, body = Object, description = "`{outcome: applied | duplicate | ignored}`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    Path((workflow, signal)): Path<(String, String)>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Json<Value>, AppError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "unsigned",
                "the X-Civicflow-Signature header is missing",
            )
        })?;
    let outcome = state.runtime.signal(&workflow, &signal, &body, signature).await?;
    Ok(Json(json!({"outcome": outcome.as_str()})))
}
