//! Attachments over the API: upload the bytes, get back the `sha256:<hex>` reference that
//! forms take (e.g. a ticket's `photos`). Content addressing makes a repeated upload
//! harmless, so no Idempotency-Key is needed.

use crate::AppState;
use crate::api::{ApiBytes, ApiQuery, Caller};
use crate::error::{AppError, ErrorBody};
use crate::uploads::{self, MAX_UPLOAD_BYTES, Refused};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttachmentOut {
    /// `sha256:<hex>`: put this in a form's file field.
    pub id: String,
    pub content_type: String,
    pub size: u64,
}

/// Upload a JPEG, PNG or WebP picture or a PDF (at most 10 MiB), as the raw request body.
#[utoipa::path(post, path = "/api/attachments", tag = "work",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes; the type is read from them"),
    responses((status = 201, body = AttachmentOut), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiBytes(body): ApiBytes,
) -> Result<(StatusCode, Json<AttachmentOut>), AppError> {
    let content_type = uploads::check(&body).map_err(|r| match r {
        Refused::Empty => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "empty", "the request body is empty"),
        Refused::TooLarge => AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("attachments are at most {} MiB", MAX_UPLOAD_BYTES >> 20),
        ),
        Refused::Type => AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
            format!("the bytes are not one of: {}", uploads::ALLOWED_TYPES.join(", ")),
        ),
    })?;
    let id = state
        .runtime
        .store
        .put_attachment(&body, content_type, &actor.person, state.runtime.now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AttachmentOut {
            id,
            content_type: content_type.into(),
            size: body.len() as u64,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AttachmentOf {
    /// The instance that refers to the file (needed by everyone but its uploader).
    pub instance: Option<String>,
}

/// An attachment's bytes, by its reference (`sha256:<hex>` or the bare hex), to its uploader
/// or to someone who may read `instance`, which refers to it.
#[utoipa::path(get, path = "/api/attachments/{id}", tag = "work",
    params(("id" = String, Path), AttachmentOf),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(of): ApiQuery<AttachmentOf>,
) -> Result<Response, AppError> {
    let scope = state.runtime.scope(&actor);
    let found = state
        .runtime
        .store
        .attachment_for(&id, &scope, of.instance.as_deref())
        .await?;
    let a = found.ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "not_found", "attachment not found"))?;
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        ],
        Body::from(a.content),
    )
        .into_response())
}
