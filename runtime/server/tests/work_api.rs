//! The end users' API against every role, in scope and out of scope: a table of who may do
//! what to one ticket, and the OpenAPI document covering every route.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use civicflow_engine::SystemClock;
use civicflow_engine::files::load_all;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_server::{AppState, router};
use civicflow_store::org_files::{read_people, read_units};
use civicflow_store::{Runtime, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// People of the demo organisation, each with a token.
const PEOPLE: [&str; 9] = ["wang", "zhao", "li", "chen", "sun", "zhou", "xu", "qian", "ma"];

struct App {
    state: AppState,
    tokens: HashMap<&'static str, String>,
}

impl App {
    async fn new() -> Self {
        let store = Store::connect("sqlite::memory:", None).await.unwrap();
        let units = read_units(&repo("workflows/org/units.csv")).unwrap();
        let people = read_people(&repo("workflows/org/people.csv")).unwrap();
        store.import_org(&units, &people, &|_| {}).await.unwrap();
        let mut tokens = HashMap::new();
        for (i, p) in PEOPLE.iter().enumerate() {
            tokens.insert(*p, store.create_token(p, "test", [i as u8 + 1; 32]).await.unwrap());
        }
        let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None).unwrap())));
        let runtime = Arc::new(Runtime::new(store, Arc::new(SystemClock), rules.clone()).await.unwrap());
        let (workflows, _) = load_all(&[repo("workflows/")]).unwrap();
        for wf in workflows {
            runtime.publish(wf).await.unwrap();
        }
        Self {
            state: AppState { runtime, rules },
            tokens,
        }
    }

    async fn call(
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
}

/// One row of the scope table: who (no token for `None`), method, path, body, expected status.
type Row<'a> = (Option<&'a str>, &'a str, &'a str, Option<Value>, StatusCode);

fn report() -> Value {
    json!({"workflow": "ticket", "unit": "guoyuan-c1-g1", "data": {"category": "road", "description": "路面塌陷需要修补", "location": "果园路5号"}})
}

/// A ticket reported by wang (grid 1, Guoyuan) and dispatched by li to the urban management
/// committee (chen): `(instance id, the open accept task)`.
async fn dispatched_ticket(app: &App) -> (String, String) {
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

#[tokio::test]
async fn every_role_sees_and_does_only_what_its_scope_allows() {
    let app = App::new().await;
    let (ticket, accept) = dispatched_ticket(&app).await;
    let read = format!("/api/instances/{ticket}");
    let complete = format!("/api/tasks/{accept}/complete");
    let claim = format!("/api/tasks/{accept}/claim");
    let code = format!("/api/instances/{ticket}/codes/accept");
    let accept_form = json!({"data": {"decision": "accept"}});

    use StatusCode as S;
    // (who, method, path, body, expected): a row per role and endpoint. 404 where the person
    // may not even know the ticket exists, 403 where they see it but may not act.
    let table: Vec<Row> = vec![
        (None, "GET", &read, None, S::UNAUTHORIZED),
        (Some("wang"), "GET", &read, None, S::OK),        // reported it
        (Some("li"), "GET", &read, None, S::OK),          // dispatcher of the street
        (Some("qian"), "GET", &read, None, S::OK),        // district supervisor
        (Some("chen"), "GET", &read, None, S::OK),        // its handler
        (Some("sun"), "GET", &read, None, S::NOT_FOUND),  // handler of another department
        (Some("zhao"), "GET", &read, None, S::NOT_FOUND), // grid worker of another community
        (Some("zhou"), "GET", &read, None, S::NOT_FOUND), // resident of the same grid, not theirs
        (Some("xu"), "GET", &read, None, S::NOT_FOUND),   // resident elsewhere
        (Some("wang"), "GET", "/api/instances/no-such-id", None, S::NOT_FOUND),
        (None, "POST", &complete, Some(accept_form.clone()), S::UNAUTHORIZED),
        (Some("sun"), "POST", &complete, Some(accept_form.clone()), S::NOT_FOUND),
        (Some("zhao"), "POST", &complete, Some(accept_form.clone()), S::NOT_FOUND),
        (Some("zhou"), "POST", &complete, Some(accept_form.clone()), S::NOT_FOUND),
        (Some("wang"), "POST", &complete, Some(accept_form.clone()), S::FORBIDDEN),
        (
            Some("chen"),
            "POST",
            &complete,
            Some(json!({"data": {"decision": "maybe"}})),
            S::UNPROCESSABLE_ENTITY,
        ),
        (Some("sun"), "POST", &claim, None, S::NOT_FOUND),
        (Some("chen"), "POST", &claim, None, S::CONFLICT), // not a pool task
        (Some("zhao"), "POST", &code, None, S::NOT_FOUND),
        (Some("wang"), "POST", &code, None, S::UNPROCESSABLE_ENTITY), // tickets take no codes
        (Some("zhao"), "POST", "/api/instances", Some(report()), S::FORBIDDEN), // not his grid
        (Some("chen"), "POST", &complete, Some(accept_form.clone()), S::OK),
        (Some("chen"), "POST", &complete, Some(accept_form), S::CONFLICT), // done already
    ];
    for (who, method, path, body, want) in table {
        let (got, answer) = app.call(method, path, who, body, None).await;
        assert_eq!(got, want, "{who:?} {method} {path}: {answer}");
        if got.is_client_error() {
            assert!(
                answer["error"]["code"].is_string(),
                "{who:?} {method} {path}: errors have a code: {answer}"
            );
        }
    }

    // Task lists: the handler sees the ticket's next task, others in other scopes do not.
    for (who, sees) in [("chen", true), ("sun", false), ("zhao", false), ("zhou", false)] {
        let (status, list) = app.call("GET", "/api/tasks", Some(who), None, None).await;
        assert_eq!(status, StatusCode::OK);
        let has = list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["instance_id"] == ticket.as_str());
        assert_eq!(has, sees, "{who}: {list}");
    }
}

#[tokio::test]
async fn a_repeated_post_with_the_same_key_starts_one_instance() {
    let app = App::new().await;
    let (first, a) = app
        .call("POST", "/api/instances", Some("wang"), Some(report()), Some("k-1"))
        .await;
    let (again, b) = app
        .call("POST", "/api/instances", Some("wang"), Some(report()), Some("k-1"))
        .await;
    assert_eq!((first, again), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["instance"]["id"], b["instance"]["id"]);
    // The same key from another person is theirs, and a refused request frees its key.
    let (bad, err) = app
        .call(
            "POST",
            "/api/instances",
            Some("zhou"),
            Some(json!({"workflow": "ticket", "unit": "guoyuan-c1-g1", "data": {"category": "road"}})),
            Some("k-1"),
        )
        .await;
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"]["fields"]["/description"].is_string() || err["error"]["fields"][""].is_string(),
        "{err}"
    );
    let (ok, c) = app
        .call("POST", "/api/instances", Some("zhou"), Some(report()), Some("k-1"))
        .await;
    assert_eq!(ok, StatusCode::CREATED, "{c}");
    assert_ne!(a["instance"]["id"], c["instance"]["id"]);
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let app = App::new().await;
    let (status, doc) = app.call("GET", "/openapi.json", None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/workflows",
        "/api/instances",
        "/api/instances/{id}",
        "/api/instances/{id}/codes/{state}",
        "/api/tasks",
        "/api/tasks/{id}/complete",
        "/api/tasks/{id}/claim",
        "/api/tasks/{id}/withdraw",
        "/api/plugins",
        "/api/bindings",
        "/api/signals/{workflow}/{signal}",
    ] {
        assert!(paths.contains_key(path), "{path} is missing from /openapi.json");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_transitions() {
    let app = App::new().await;
    let (ticket, _) = dispatched_ticket(&app).await;
    app.call("GET", &format!("/api/instances/{ticket}"), Some("wang"), None, None)
        .await;
    let res = router(app.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for want in [
        r#"civicflow_http_requests_total{method="GET",route="/api/instances/{id}",status="200"}"#,
        r#"civicflow_transitions_total{source="action",outcome="applied"}"#,
        "civicflow_http_request_seconds",
    ] {
        assert!(text.contains(want), "{want} is missing from:\n{text}");
    }
    assert!(!text.contains(&ticket), "ids never become labels");
}
