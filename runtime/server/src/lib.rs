//! The server: HTTP (axum) and the scheduler loop that fires timers and schedules. The only
//! crate that knows HTTP.

pub mod api;
mod demo;
mod plugin_api;
pub mod plugins;
mod scheduler;
pub mod signal_api;

use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use civicflow_engine::{SystemClock, definition::localize};
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_store::{Runtime, Store};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

pub struct ServeOptions {
    pub listen: String,
    pub db: String,
    pub demo: bool,
    pub workflows: PathBuf,
    /// Shipped plugin packages (with `--demo`).
    pub plugins: PathBuf,
    /// Where compiled plugin modules are cached.
    pub plugin_cache: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] civicflow_store::StoreError),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("demo data: {0}")]
    Demo(String),
    #[error("plugins: {0}")]
    Plugins(#[from] civicflow_plugin_host::PluginError),
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub runtime: Arc<Runtime>,
    pub rules: Arc<PluginRules>,
}

impl AppState {
    /// Reload plugins and bindings now (after this server changed them).
    pub async fn stamp_changed(&self) {
        if let Err(e) = plugins::sync(&self.runtime.store, &self.rules, "").await {
            tracing::error!(error = %e, "reloading plugins failed");
        }
    }
}

/// A module's base64 plus its manifest, with room to spare.
const UPLOAD_LIMIT: usize = civicflow_plugin_host::manifest::MAX_MODULE_BYTES * 4 / 3 + (256 << 10);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/workflows", get(list_workflows))
        .route(
            "/api/plugins",
            post(plugin_api::upload).layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route("/api/bindings", post(plugin_api::bind))
        .route("/api/signals/{workflow}/{signal}", post(signal_api::receive))
        .with_state(state)
}

async fn list_workflows(State(state): State<AppState>) -> Json<Value> {
    let items: Vec<Value> = state
        .runtime
        .registry
        .all_latest()
        .iter()
        .map(|wf| json!({"id": wf.id(), "version": wf.version(), "title": localize(&wf.def.title, "zh-CN"), "titles": wf.def.title}))
        .collect();
    Json(json!({"workflows": items}))
}

/// Connect, optionally load the demo, start the scheduler and serve until Ctrl-C.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let store = Store::connect(&opts.db, None).await?;
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(Some(&opts.plugin_cache))?)));
    let runtime = Arc::new(Runtime::new(store, Arc::new(SystemClock), rules.clone()).await?);
    if opts.demo {
        demo::load(&runtime, &rules, &opts.workflows, &opts.plugins).await?;
    }
    let stamp = plugins::sync(&runtime.store, &rules, "").await?;
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .map_err(|e| ServeError::Listen(opts.listen.clone(), e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = AppState {
        runtime: runtime.clone(),
        rules: rules.clone(),
    };
    let scheduler = tokio::spawn(scheduler::run(runtime, rules, stamp, stop_rx));
    tracing::info!(listen = %opts.listen, db = %redact(&opts.db), "civicflow ready");
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    served.map_err(|e| ServeError::Listen(opts.listen, e))
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}
