//! One application error. Every store and engine error is classified here once (its HTTP
//! status, its stable code, whether the failure is ours) and each renderer says it its own
//! way: the JSON API (`IntoResponse`), a page in the reader's language (`page`) and
//! GeoReport's error list (`geo_report`). A failure on our side (the database, corrupt
//! data, a bug) is logged once with an error id that the answer shows instead of internals;
//! it is never answered as "not found" or as a sign-in.

use crate::i18n::{self, text};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use civicflow_engine::EngineError;
use civicflow_store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    /// Stable, for programs: `forbidden`, `invalid_form`, `not_found`, `internal`...
    pub code: &'static str,
    /// The detail in English, for whoever looks after the system.
    pub message: String,
    /// JSON pointer of each offending field → the engine's message (an `err-…` id or text
    /// already worded), put in the reader's language when rendered.
    pub fields: BTreeMap<String, String>,
    /// Located problems of a definition or overlay.
    pub diagnostics: Vec<DiagnosticBody>,
    /// Set for a failure on our side; the log has it beside the cause.
    pub error_id: Option<String>,
}

/// When a client turned away as busy may try again.
pub const RETRY_AFTER_SECONDS: &str = "5";

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: BTreeMap::new(),
            diagnostics: Vec::new(),
            error_id: None,
        }
    }

    pub fn with_field(mut self, pointer: &str, message: impl Into<String>) -> Self {
        self.fields.insert(pointer.to_string(), message.into());
        self
    }

    /// A failure on our side: logged in full under a new error id, answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let error_id = uuid::Uuid::now_v7().to_string();
        tracing::error!(%error_id, error = %cause, "request failed");
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the server could not complete the request (error {error_id})"),
        );
        e.error_id = Some(error_id);
        e
    }

    /// A body or query the server would not read: over its route's limit or not its shape.
    pub fn unreadable(status: StatusCode, code: &'static str, why: String) -> Self {
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            code
        };
        Self::new(status, code, why)
    }

    /// The answer as a page in `lang`. A page outside the reader's scope answers as one
    /// that does not exist, so guessing ids learns nothing.
    pub fn page(self, lang: &str) -> Response {
        let (status, message) = match self.status {
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => (StatusCode::NOT_FOUND, text(lang, "page-not-found", &[])),
            StatusCode::PAYLOAD_TOO_LARGE => (self.status, text(lang, "page-too-large", &[])),
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (self.status, text(lang, "page-unreadable", &[]))
            }
            StatusCode::INTERNAL_SERVER_ERROR => {
                let id = self.error_id.clone().unwrap_or_default();
                (self.status, text(lang, "page-failed", &[("id", id.into())]))
            }
            status => (
                status,
                text(lang, "err-refused", &[("reason", self.reason(lang).into())]),
            ),
        };
        with_retry_after(self.status, crate::web::Page::saying(status, lang, message))
    }

    /// What happened, for a person, in `lang`: the message of the error's code, else of its
    /// first field, else a general one.
    pub fn reason(&self, lang: &str) -> String {
        let id = format!("err-{}", self.code);
        if i18n::has_message(lang, &id) {
            return text(lang, &id, &[]);
        }
        match self.fields.values().next() {
            Some(field) => i18n::field_message(lang, field),
            None => text(lang, "err-invalid", &[]),
        }
    }

    /// The answer in GeoReport's shape, a list of `{code, description}`. GeoReport says a
    /// request it cannot take is a 400, so a refused action (409, 422 here) is one.
    pub fn geo_report(self) -> Response {
        let status = match self.status {
            StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            status => status,
        };
        let description = if self.fields.is_empty() {
            self.message.clone()
        } else {
            let each = self
                .fields
                .iter()
                .map(|(at, m)| format!("{}: {}", at.trim_start_matches('/'), i18n::field_message("en", m)));
            each.collect::<Vec<_>>().join("; ")
        };
        let body = Json(serde_json::json!([{"code": status.as_u16(), "description": description}]));
        with_retry_after(status, (status, body).into_response())
    }
}

/// A busy answer says when to try again.
fn with_retry_after(status: StatusCode, mut response: Response) -> Response {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    response
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        use StatusCode as S;
        let status = match &e {
            StoreError::NotFound(_) => S::NOT_FOUND,
            StoreError::Invalid(_) | StoreError::Refused(..) => S::UNPROCESSABLE_ENTITY,
            StoreError::Engine(EngineError::Forbidden(_)) => S::FORBIDDEN,
            StoreError::Engine(
                EngineError::Conflict(_) | EngineError::Gone(_) | EngineError::Duplicate(_) | EngineError::Full(_),
            )
            | StoreError::KeyAnswered => S::CONFLICT,
            StoreError::Engine(_) => S::UNPROCESSABLE_ENTITY,
            StoreError::Busy(_) => S::SERVICE_UNAVAILABLE,
            StoreError::Db(_) | StoreError::Corrupt(_) => return AppError::internal(e),
        };
        if let StoreError::Engine(EngineError::Rule { .. } | EngineError::Evaluation(_)) = &e {
            // The person is told a rule failed; the detail is for whoever looks after it.
            tracing::info!(code = e.code(), error = %e, "action refused");
        }
        match e {
            StoreError::Refused(message, diagnostics) => {
                let mut err = AppError::new(status, "invalid", message);
                err.diagnostics = diagnostics.iter().map(DiagnosticBody::from).collect();
                err
            }
            StoreError::Engine(EngineError::InvalidForm(ref fields)) => {
                let mut err = AppError::new(status, e.code(), e.to_string());
                err.fields = fields.iter().map(|(p, m)| (p.clone(), m.clone())).collect();
                err
            }
            e => AppError::new(status, e.code(), e.to_string()),
        }
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        StoreError::Engine(e).into()
    }
}

/// The JSON API's answer: `{"error": {code, message, fields, diagnostics}}`.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let fields = self
            .fields
            .into_iter()
            .map(|(p, m)| (p, i18n::field_message("en", &m)))
            .collect();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                fields,
                diagnostics: self.diagnostics,
            },
        };
        with_retry_after(self.status, (self.status, Json(body)).into_response())
    }
}

/// Every error answer of the JSON API.
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
