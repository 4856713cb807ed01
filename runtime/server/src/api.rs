//! The JSON API's shared parts: the caller from `Authorization: Bearer <token>`, and bodies
//! and queries whose refusals answer as the API's errors (`crate::error`).

use crate::AppState;
use crate::error::AppError;
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use civicflow_engine::Actor;
use civicflow_store::StoreError;

/// The person behind the request's bearer token.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            AppError::new(
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
            .map_err(|e| match e {
                StoreError::NotFound(_) => unauthorized(),
                e => e.into(),
            })?;
        Ok(Caller(state.runtime.store.actor(&person).await?))
    }
}

/// A JSON body whose parse errors answer in the API's error shape, not plain text.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|r| AppError::unreadable(r.status(), "invalid_body", r.body_text()))
    }
}

/// A raw body (a file, a signed webhook) refused in the API's error shape.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|r| AppError::unreadable(r.status(), "invalid_body", r.body_text()))
    }
}

/// Query parameters whose parse errors answer in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| AppError::unreadable(r.status(), "invalid_query", r.body_text()))
    }
}
