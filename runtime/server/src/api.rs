//! The JSON API's shared parts: errors as `{"error": {code, message, fields}}` with the right
//! status (also for a body or query that does not parse), and the caller from
//! `Authorization: Bearer <token>`.

use crate::AppState;
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use civicflow_engine::{Actor, EngineError};
use civicflow_store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// JSON pointer of the offending field → what is wrong with it.
    pub fields: BTreeMap<String, String>,
    /// Located problems of a definition or overlay.
    pub diagnostics: Vec<DiagnosticBody>,
}

/// A problem in a file: where (file, line, column) and what.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiagnosticBody {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub severity: String,
    pub message: String,
}

impl From<&civicflow_engine::Diagnostic> for DiagnosticBody {
    fn from(d: &civicflow_engine::Diagnostic) -> Self {
        Self {
            file: d.file.clone(),
            line: d.line,
            col: d.col,
            severity: if d.is_error() { "error" } else { "warning" }.into(),
            message: d.message.clone(),
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: BTreeMap::new(),
            diagnostics: Vec::new(),
        }
    }

    pub fn with_field(mut self, pointer: &str, message: impl Into<String>) -> Self {
        self.fields.insert(pointer.to_string(), message.into());
        self
    }
}

/// When a client turned away as busy may try again.
pub const RETRY_AFTER_SECONDS: &str = "5";

/// Every error answer: `{"error": {code, message, fields}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `forbidden`, `invalid_form`, `not_found`, `duplicate`...
    pub code: String,
    /// For people.
    pub message: String,
    /// JSON pointer of each offending field → what is wrong with it.
    pub fields: BTreeMap<String, String>,
    /// Where a definition or overlay is wrong, one entry per problem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<DiagnosticBody>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                fields: self.fields,
                diagnostics: self.diagnostics,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Invalid(_) | StoreError::Refused(..) => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Engine(EngineError::Forbidden(_)) => StatusCode::FORBIDDEN,
            StoreError::Engine(
                EngineError::Conflict(_) | EngineError::Gone(_) | EngineError::Duplicate(_) | EngineError::Full(_),
            )
            | StoreError::KeyAnswered => StatusCode::CONFLICT,
            StoreError::Engine(_) => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Db(_) | StoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "request failed");
            return ApiError::new(status, "internal", "the server could not complete the request");
        }
        if let StoreError::Refused(message, diagnostics) = &e {
            let mut err = ApiError::new(status, e.code(), message.clone());
            err.diagnostics = diagnostics.iter().map(DiagnosticBody::from).collect();
            return err;
        }
        let mut err = ApiError::new(status, e.code(), e.to_string());
        if let StoreError::Engine(EngineError::InvalidForm(fields)) = &e {
            for (pointer, message) in fields {
                err = err.with_field(pointer, crate::i18n::field_message("en", message));
            }
        }
        err
    }
}

/// The person behind the request's bearer token.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <token>",
            )
        };
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?;
        let person = state
            .runtime
            .store
            .person_for_token(token.trim())
            .await
            .map_err(|_| unauthorized())?;
        Ok(Caller(state.runtime.store.actor(&person).await?))
    }
}

/// A body the API would not read: over its route's limit (`too_large`) or not what the
/// route takes (`invalid_body`).
fn refused_body(status: StatusCode, why: String) -> ApiError {
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "invalid_body"
    };
    ApiError::new(status, code, why)
}

/// A JSON body whose parse errors answer in the API's error shape, not plain text.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|r| refused_body(r.status(), r.body_text()))
    }
}

/// A raw body (a file, a signed webhook) refused in the API's error shape.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|r| refused_body(r.status(), r.body_text()))
    }
}

/// Query parameters whose parse errors answer in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| ApiError::new(r.status(), "invalid_query", r.body_text()))
    }
}
