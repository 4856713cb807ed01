//! What the HTTP tests share: the demo organisation in an in-memory store with the shipped
//! workflows, a token per person, and requests through the router.
#![allow(dead_code)] // each test file uses its own part

use axum::body::Body;
use axum::http::{Request, StatusCode};
use civicflow_engine::SystemClock;
use civicflow_engine::files::load_all;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_server::{AppState, router};
use civicflow_store::org_files::{read_people, read_units};
use civicflow_store::{Runtime, Store};
use http_body_util::BodyExt;

/// What a Prometheus scraper from another host presents for `/metrics`.
pub const METRICS_TOKEN: &str = "scraper-token-for-tests";
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

pub fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// An empty store: in memory, or on PostgreSQL when CI names one, in a schema of its own.
async fn test_store(prefix: &str) -> Store {
    match std::env::var("CIVICFLOW_TEST_PG") {
        Ok(url) => {
            let schema = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
            Store::connect(&url, Some(&schema)).await.unwrap()
        }
        Err(_) => Store::connect("sqlite::memory:", None).await.unwrap(),
    }
}

/// People of the demo organisation, each with a token.
pub const PEOPLE: [&str; 9] = ["wang", "zhao", "li", "chen", "sun", "zhou", "xu", "qian", "ma"];

pub struct App {
    pub state: AppState,
    pub tokens: HashMap<&'static str, String>,
}

impl App {
    pub async fn new() -> Self {
        Self::on(test_store("t_http").await).await
    }

    /// As [`App::new`], over `store`.
    pub async fn on(store: Store) -> Self {
        let units = read_units(&repo("workflows/org/units.csv")).unwrap();
        let people = read_people(&repo("workflows/org/people.csv")).unwrap();
        store.import_org(&units, &people, &|_| {}).await.unwrap();
        let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None).unwrap())));
        let runtime = Arc::new(Runtime::new(store, Arc::new(SystemClock), rules.clone()).await.unwrap());
        let (workflows, _) = load_all(&[repo("workflows/")]).unwrap();
        for wf in workflows {
            runtime.publish(wf).await.unwrap();
        }
        Self::serving(runtime, rules).await
    }

    /// What `serve --demo` loads (workflows, organisation, calendars, overlays, plugins and
    /// their bindings), with the same tokens as [`App::new`].
    pub async fn demo() -> Self {
        let store = test_store("t_demo").await;
        let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None).unwrap())));
        let runtime = Arc::new(Runtime::new(store, Arc::new(SystemClock), rules.clone()).await.unwrap());
        civicflow_server::demo::load(&runtime, &rules, &repo("workflows"), &repo("plugins"))
            .await
            .unwrap();
        civicflow_server::plugins::sync(&runtime.store, &rules, "")
            .await
            .unwrap();
        Self::serving(runtime, rules).await
    }

    /// The app over a loaded runtime, with a token for each of [`PEOPLE`].
    async fn serving(runtime: Arc<Runtime>, rules: Arc<PluginRules>) -> Self {
        let mut tokens = HashMap::new();
        for (i, p) in PEOPLE.iter().enumerate() {
            tokens.insert(
                *p,
                runtime.store.create_token(p, "test", [i as u8 + 1; 32]).await.unwrap(),
            );
        }
        Self {
            state: AppState {
                runtime,
                rules,
                log_sign_in_codes: true,
                secure_cookies: true,
                metrics_token: Some(METRICS_TOKEN.into()),
            },
            tokens,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        who: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(who) = who {
            req = req.header("authorization", format!("Bearer {}", self.tokens[who]));
        }
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
        let res = router(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Send a prepared request; the answer's status, headers and body as text.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let (status, headers, bytes) = self.send_for_bytes(req).await;
        (status, headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// As [`App::send`], the body as bytes (a file).
    pub async fn send_for_bytes(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let res = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, bytes.to_vec())
    }

    /// A bearer-token request with a raw body.
    pub fn raw(&self, method: &str, path: &str, who: Option<&str>, content_type: &str, body: Vec<u8>) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type);
        if let Some(who) = who {
            req = req.header("authorization", format!("Bearer {}", self.tokens[who]));
        }
        req.body(Body::from(body)).unwrap()
    }
}

/// Sign `who` in through the page with a password set for them: the `Set-Cookie` header of
/// the session.
pub async fn sign_in_header(app: &App, who: &str) -> String {
    let store = &app.state.runtime.store;
    store.set_password(who, &format!("pass-{who}-ok")).await.unwrap();
    let req = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "login={who}&password=pass-{who}-ok&action=password&next=/tasks"
        )))
        .unwrap();
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers["location"], "/tasks");
    headers["set-cookie"].to_str().unwrap().to_string()
}

/// The session cookie (`name=value`) for `who`.
pub async fn sign_in(app: &App, who: &str) -> String {
    let header = sign_in_header(app, who).await;
    header.split(';').next().unwrap().to_string()
}

/// One row of the scope table: who (no token for `None`), method, path, body, expected status.
pub type Row<'a> = (Option<&'a str>, &'a str, &'a str, Option<Value>, StatusCode);

pub fn report() -> Value {
    json!({"workflow": "ticket", "unit": "guoyuan-c1-g1", "data": {"category": "road", "description": "路面塌陷需要修补", "location": "果园路5号"}})
}

/// A ticket reported by wang (grid 1, Guoyuan) and dispatched by li to the urban management
/// committee (chen): `(instance id, the open accept task)`.
pub async fn dispatched_ticket(app: &App) -> (String, String) {
    let (status, started) = app
        .call("POST", "/api/instances", Some("wang"), Some(report()), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["instance"]["id"].as_str().unwrap().to_string();
    let dispatch = started["new_tasks"][0].as_str().unwrap().to_string();
    let path = format!("/api/tasks/{dispatch}/complete");
    let (status, done) = app
        .call(
            "POST",
            &path,
            Some("li"),
            Some(json!({"data": {"department": "beichen-cgj"}})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    (id, done["new_tasks"][0].as_str().unwrap().to_string())
}
