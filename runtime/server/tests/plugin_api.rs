//! Uploading and binding plugins over HTTP: who may, what is refused and why, and the bound
//! plugin then deciding an instance.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use civicflow_server::{AppState, router};
use common::repo;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct App {
    state: AppState,
    admin: String,
    grid_worker: String,
}

/// The shared test app, plus a token for the city's plugin administrator (he).
async fn app() -> App {
    let shared = common::App::new().await;
    let admin = shared
        .state
        .runtime
        .store
        .create_token("he", "test", [100; 32])
        .await
        .unwrap();
    App {
        grid_worker: shared.tokens["wang"].clone(),
        state: shared.state,
        admin,
    }
}

async fn post(app: &App, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = router(app.state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn upload_body(manifest: &str) -> Value {
    let wasm = std::fs::read(repo("plugins/ticket-route/plugin.wasm")).unwrap();
    json!({"manifest": manifest, "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm)})
}

fn manifest() -> String {
    std::fs::read_to_string(repo("plugins/ticket-route/plugin.yaml")).unwrap()
}

fn binding(unit: &str) -> Value {
    json!({"unit_id": unit, "workflow": "ticket", "hook": "ticket.route", "plugin": "ticket-route-beichen", "version": "1.1.0"})
}

#[tokio::test]
async fn only_a_plugin_admin_of_the_author_unit_may_upload() {
    let app = app().await;
    let (status, body) = post(&app, "/api/plugins", None, upload_body(&manifest())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = post(&app, "/api/plugins", Some("cf_wrong"), upload_body(&manifest())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = post(&app, "/api/plugins", Some(&app.grid_worker), upload_body(&manifest())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = post(&app, "/api/plugins", Some(&app.admin), upload_body(&manifest())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["id"], "ticket-route-beichen");
    let (status, body) = post(&app, "/api/plugins", Some(&app.admin), upload_body(&manifest())).await;
    assert_eq!(
        (status, &body["published"]),
        (StatusCode::OK, &json!(false)),
        "the same bytes again change nothing"
    );
}

#[tokio::test]
async fn bad_uploads_say_where_and_why_and_store_nothing() {
    let app = app().await;
    let (status, body) = post(
        &app,
        "/api/plugins",
        Some(&app.admin),
        upload_body(&manifest().replace("abi: 1", "abi: 2")),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["fields"]["/manifest"]
            .as_str()
            .unwrap()
            .starts_with("3:6: abi:"),
        "{body}"
    );
    let mut junk = upload_body(&manifest());
    junk["wasm_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(b"not wasm"));
    let (status, body) = post(&app, "/api/plugins", Some(&app.admin), junk).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_module")),
        "{body}"
    );
    let (status, _) = post(&app, "/api/plugins", Some(&app.admin), json!({"manifest": manifest()})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a missing field is refused by the JSON extractor"
    );
    assert!(app.state.runtime.store.plugins().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_binding_made_over_http_decides_the_next_ticket() {
    let app = app().await;
    let (status, _) = post(&app, "/api/plugins", Some(&app.admin), upload_body(&manifest())).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = post(&app, "/api/bindings", Some(&app.admin), binding("demo-city")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "above the admin's own district: {body}");
    // The same check as the command line: a workflow that exists, a hook it has.
    for (key, wrong, says) in [
        ("workflow", "tickets", "no workflow \"tickets\" is published"),
        ("hook", "ticket.rout", "has no rule hook \"ticket.rout\""),
    ] {
        let mut b = binding("beichen");
        b[key] = json!(wrong);
        let (status, body) = post(&app, "/api/bindings", Some(&app.admin), b).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{body}");
    }
    // Limits above the documented maxima are refused, naming each, and nothing is bound.
    let mut absurd = binding("beichen");
    absurd["limits"] = json!({"fuel": u64::MAX, "wall_ms": u64::MAX});
    let (status, body) = post(&app, "/api/bindings", Some(&app.admin), absurd).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let says = body["error"]["message"].as_str().unwrap();
    assert!(
        says.contains("limits.fuel is 18446744073709551615; the most allowed is 500000000"),
        "{body}"
    );
    assert!(says.contains("limits.wall_ms"), "{body}");
    assert!(app.state.runtime.store.bindings().await.unwrap().is_empty());
    let (status, body) = post(&app, "/api/bindings", Some(&app.admin), binding("beichen")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let data = json!({"category": "water", "description": "供水管道破裂漏水", "location": "果园社区6号楼"});
    let ticket = app
        .state
        .runtime
        .start("wang", "ticket", "guoyuan-c1-g1", data)
        .await
        .unwrap();
    assert_eq!(ticket.data["department"], "beichen-swj");
    assert_eq!(ticket.position.tokens, vec!["accept"]);
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let app = app().await;
    app.state.runtime.store.revoke_token(&app.admin).await.unwrap();
    let (status, body) = post(&app, "/api/plugins", Some(&app.admin), upload_body(&manifest())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_locality_admin_uploads_a_calendar_and_bad_tables_say_where() {
    let app = app().await;
    let table = std::fs::read_to_string(repo("workflows/calendars/cn-2026.calendar.yaml")).unwrap();
    let body = json!({"unit_id": "beichen", "text": table});
    let (status, _) = post(&app, "/api/calendars", Some(&app.grid_worker), body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let bad = json!({"unit_id": "beichen", "format": "csv", "text": "date,kind,name\n2026-10-12,workday,补班\n"});
    let (status, answer) = post(&app, "/api/calendars", Some(&app.admin), bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let why = answer["error"]["fields"]["/text"].as_str().unwrap();
    assert!(why.starts_with("row 2:") && why.contains("Monday"), "{why}");
    assert!(
        app.state.runtime.store.calendars().await.unwrap().is_empty(),
        "a bad table stores nothing"
    );
    let (status, answer) = post(&app, "/api/calendars", Some(&app.admin), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["year"].as_i64(), answer["holidays"].as_u64()),
        (Some(2026), Some(33))
    );
    let stored = app.state.runtime.store.calendars().await.unwrap();
    assert_eq!((stored.len(), stored[0].unit_id.as_str()), (1, "beichen"));
}
