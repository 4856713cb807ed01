//! The server: HTTP (axum) and the scheduler loop that fires timers and schedules. The only
//! crate that knows HTTP.

pub mod admin;
pub mod api;
mod attachment_api;
pub mod body_limits;
mod calendar_api;
pub mod demo;
pub mod error;
pub mod i18n;
pub mod listen;
mod metrics_api;
pub mod open311;
pub mod outbox;
mod plugin_api;
pub mod plugins;
pub mod scheduler;
pub mod signal_api;
mod uploads;
pub mod web;
pub mod work_api;
pub mod workflow_api;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use civicflow_engine::SystemClock;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_store::{Runtime, Store};
use std::path::PathBuf;
use std::sync::Arc;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

pub struct ServeOptions {
    pub listen: String,
    pub db: String,
    pub demo: bool,
    pub workflows: PathBuf,
    /// Shipped plugin packages (with `--demo`).
    pub plugins: PathBuf,
    /// Where compiled plugin modules are cached.
    pub plugin_cache: PathBuf,
    /// Session cookies without `Secure`, for a plain-HTTP intranet (browsers drop `Secure`
    /// cookies over HTTP except on localhost).
    pub insecure_cookies: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] civicflow_store::StoreError),
    #[error("{0}")]
    Config(String),
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
    /// One-time sign-in codes go to the server log (demo mode; a deployment without an SMS
    /// gateway leaves them off).
    pub log_sign_in_codes: bool,
    /// Session cookies carry `Secure` (off only for a plain-HTTP intranet).
    pub secure_cookies: bool,
    /// `CIVICFLOW_METRICS_TOKEN`: the bearer token that opens `/metrics` to a scraper on
    /// another host (loopback clients need none).
    pub metrics_token: Option<String>,
}

impl AppState {
    /// Reload plugins and bindings now (after this server changed them).
    pub async fn stamp_changed(&self) {
        if let Err(e) = plugins::sync(&self.runtime.store, &self.rules, "").await {
            tracing::error!(error = %e, "reloading plugins failed");
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "civicflow", description = "Workflows for party-building and grid governance: start instances, act on tasks, read timelines, upload rule plugins."),
    modifiers(&BearerAuth),
    tags((name = "work", description = "Instances and tasks"), (name = "workflows"), (name = "plugins"), (name = "calendars"), (name = "signals"))
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the handlers refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The routes and, generated from the same handlers, the OpenAPI 3.1 document.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (schemas, paths, upload) = routes!(plugin_api::upload);
    let upload = (
        schemas,
        paths,
        upload.layer(DefaultBodyLimit::max(body_limits::PLUGIN_PACKAGE)),
    );
    let (schemas_a, paths_a, attachments) = routes!(attachment_api::upload);
    let attachments = (
        schemas_a,
        paths_a,
        attachments.layer(DefaultBodyLimit::max(body_limits::ATTACHMENT)),
    );
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(workflow_api::list))
        .routes(routes!(workflow_api::detail))
        .routes(routes!(workflow_api::publish))
        .routes(routes!(workflow_api::list_overlays))
        .routes(routes!(workflow_api::set_live))
        .routes(routes!(work_api::start))
        .routes(routes!(work_api::instance))
        .routes(routes!(work_api::tasks))
        .routes(routes!(work_api::complete))
        .routes(routes!(work_api::claim))
        .routes(routes!(work_api::withdraw))
        .routes(routes!(work_api::code))
        .routes(attachments)
        .routes(upload)
        .routes(routes!(plugin_api::bind))
        .routes(routes!(calendar_api::upload))
        .routes(routes!(signal_api::receive))
        .routes(routes!(attachment_api::download))
        .split_for_parts()
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

pub fn router(state: AppState) -> Router {
    let (routes, doc) = api();
    let doc = Arc::new(doc);
    metrics_api::handle();
    routes
        .merge(web::routes())
        .merge(open311::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .route("/metrics", get(metrics_api::render))
        .route_layer(axum::middleware::from_fn(metrics_api::count_requests))
        // Routes that say nothing of their own read a JSON-sized body at most.
        .layer(DefaultBodyLimit::max(body_limits::JSON))
        .layer(axum::middleware::from_fn(contain_panics))
        .with_state(state)
}

/// A handler that panics answers 500 with an error id, which the log has beside the panic,
/// and the server goes on serving (the panic is caught before it reaches the connection).
pub async fn contain_panics(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::FutureExt;
    // A `Uri` clone shares its bytes: nothing is built for a request that does not panic.
    let uri = request.uri().clone();
    match std::panic::AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let route = uri.path();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let e = error::AppError::internal(format!("the handler of {route} panicked: {what}"));
            if route.starts_with("/api/") {
                e.into_response()
            } else if route.starts_with("/open311/") {
                e.geo_report()
            } else {
                e.page(i18n::DEFAULT_LOCALE)
            }
        }
    }
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
        log_sign_in_codes: opts.demo,
        secure_cookies: !opts.insecure_cookies,
        metrics_token: metrics_api::token_from_env().map_err(ServeError::Config)?,
    };
    let webhook = outbox::Webhook::from_env().map_err(ServeError::Config)?;
    let outbox = webhook.map(|hook| tokio::spawn(outbox::run(runtime.store.clone(), hook, stop_rx.clone())));
    let scheduler = tokio::spawn(scheduler::run(runtime, rules, stamp, stop_rx));
    tracing::info!(listen = %opts.listen, db = %redact(&opts.db), "civicflow ready");
    let served = listen::serve(listener, router(state), listen::HEADER_READ_TIMEOUT, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    if let Some(outbox) = outbox {
        let _ = outbox.await;
    }
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
