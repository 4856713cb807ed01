//! `GET /metrics` in the Prometheus text format, and the middleware that counts requests.
//! The store counts transitions and timer lag, the plugin host counts plugin calls; all
//! through the `metrics` facade into one process-wide Prometheus recorder.

use crate::AppState;
use axum::Extension;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// The recorder, installed on first use (a process has one).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the Prometheus recorder is installed once")
    })
}

/// Count each request by method, route pattern (not the raw path: ids would explode the
/// label set) and status, with its latency.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("civicflow_http_requests_total", &labels).increment(1);
    metrics::histogram!("civicflow_http_request_seconds", &labels[..2]).record(started.elapsed().as_secs_f64());
    response
}

/// The figures, for a client on this machine or one presenting the metrics token; to anyone
/// else the route does not exist (they show traffic by route and the plugins in use).
pub async fn render(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let local = connect.is_some_and(|c| c.0.0.ip().is_loopback());
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared as digests, so the time taken says nothing about the token's bytes.
    let token = matches!((&state.metrics_token, presented), (Some(want), Some(got)) if Sha256::digest(want) == Sha256::digest(got));
    if local || token {
        handle().render().into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// `CIVICFLOW_METRICS_TOKEN`, if set: at least 16 characters.
pub fn token_from_env() -> Result<Option<String>, String> {
    match std::env::var("CIVICFLOW_METRICS_TOKEN").ok().filter(|t| !t.is_empty()) {
        Some(t) if t.chars().count() < 16 => {
            Err("CIVICFLOW_METRICS_TOKEN: give a token of at least 16 characters".into())
        }
        token => Ok(token),
    }
}
