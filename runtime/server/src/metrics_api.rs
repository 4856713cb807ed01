//! `GET /metrics` in the Prometheus text format, and the middleware that counts requests.
//! The store counts transitions and timer lag, the plugin host counts plugin calls; all
//! through the `metrics` facade into one process-wide Prometheus recorder.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
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

pub async fn render() -> String {
    handle().render()
}
