//! Locality overlays over HTTP: a unit's admin publishes its change for its own subtree
//! only; a wrong one is refused with located reasons and nothing stored; a rollback takes
//! effect for the next instance; another server picks up a publication within a second.

mod common;

use axum::http::StatusCode;
use civicflow_engine::SystemClock;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_server::AppState;
use civicflow_store::org_files::{read_people, read_units};
use civicflow_store::{Runtime, Store};
use common::{App, repo};
use serde_json::{Value, json};
use std::sync::Arc;

fn xincun_overlay() -> String {
    std::fs::read_to_string(repo("workflows/overlays/guoyuan-c2.ticket.overlay.yaml")).unwrap()
}

/// The demo app plus a token for Xincun community's workflow admin (tian).
async fn app() -> App {
    let mut app = App::new().await;
    let token = app
        .state
        .runtime
        .store
        .create_token("tian", "test", [101; 32])
        .await
        .unwrap();
    app.tokens.insert("tian", token);
    app
}

async fn publish(app: &App, who: &str, source: &str) -> (StatusCode, Value) {
    let body = json!({"source": source, "file": "xincun.overlay.yaml"});
    app.call("POST", "/api/overlays", Some(who), Some(body), None).await
}

fn elderly_report(unit: &str) -> Value {
    json!({"workflow": "ticket", "unit": unit, "data": {"category": "elderly", "description": "独居老人家中无人应答", "location": "新村2号楼"}})
}

/// zhao reports an elderly-care case in Xincun grid 1.
async fn report_in_xincun(app: &App) -> (StatusCode, Value) {
    let body = elderly_report("guoyuan-c2-g1");
    app.call("POST", "/api/instances", Some("zhao"), Some(body), None).await
}

async fn set_live(app: &App, who: &str, version: u32) -> (StatusCode, Value) {
    let body = json!({"version": version});
    app.call(
        "PUT",
        "/api/overlays/ticket/guoyuan-c2/live",
        Some(who),
        Some(body),
        None,
    )
    .await
}

fn categories(detail: &Value) -> Vec<String> {
    detail["forms"]["report"]["schema"]["properties"]["category"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["const"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_communitys_admin_changes_its_own_subtree_and_its_sibling_keeps_the_default() {
    let app = app().await;
    let (status, answer) = publish(&app, "tian", &xincun_overlay()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (_, again) = publish(&app, "tian", &xincun_overlay()).await;
    assert_eq!(
        again["published"], false,
        "the same version twice changes nothing: {again}"
    );

    let (_, here) = app
        .call("GET", "/api/workflows/ticket?unit=guoyuan-c2-g1", None, None, None)
        .await;
    assert_eq!(
        here["composition"]["overlays"],
        json!([{"unit": "guoyuan-c2", "version": 1}]),
        "{here}"
    );
    assert!(categories(&here).contains(&"elderly".to_string()));
    let (_, sibling) = app
        .call("GET", "/api/workflows/ticket?unit=guoyuan-c1-g1", None, None, None)
        .await;
    assert_eq!(sibling["composition"]["overlays"], json!([]));
    assert!(!categories(&sibling).contains(&"elderly".to_string()));

    let (status, started) = report_in_xincun(&app).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["instance"]["states"], json!(["community_desk"]));
    assert_eq!(
        started["instance"]["overlays"],
        json!([{"unit": "guoyuan-c2", "version": 1}])
    );
    let (status, refused) = app
        .call(
            "POST",
            "/api/instances",
            Some("wang"),
            Some(elderly_report("guoyuan-c1-g1")),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no such category next door: {refused}"
    );

    let (_, listed) = app.call("GET", "/api/overlays/ticket", Some("wang"), None, None).await;
    assert_eq!(listed["overlays"][0]["unit"], "guoyuan-c2");
    assert_eq!(listed["overlays"][0]["versions"][0]["published_by"], "tian");
}

#[tokio::test]
async fn an_overlay_above_or_beside_the_admins_unit_is_refused_and_nothing_is_stored() {
    let app = app().await;
    for unit in ["guoyuan", "guoyuan-c1", "beichen"] {
        let text = xincun_overlay().replace("unit: guoyuan-c2\n", &format!("unit: {unit}\n"));
        let (status, answer) = publish(&app, "tian", &text).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{unit}: {answer}");
    }
    // A grid worker holds no admin role at all.
    let (status, _) = publish(&app, "zhao", &xincun_overlay()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Inside its subtree, an overlay still may not name a unit outside it.
    let text = format!("{}available_in: [guoyuan-c2, guoyuan-c1]\n", xincun_overlay());
    let (status, answer) = publish(&app, "tian", &text).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let d = &answer["error"]["diagnostics"][0];
    assert_eq!(
        (d["file"].as_str(), d["line"].as_u64()),
        (Some("xincun.overlay.yaml"), Some(80)),
        "{answer}"
    );
    assert!(d["message"].as_str().unwrap().contains("guoyuan-c1"), "{answer}");
    let (_, listed) = app.call("GET", "/api/overlays/ticket", Some("tian"), None, None).await;
    assert_eq!(listed["overlays"], json!([]), "nothing stored: {listed}");
}

#[tokio::test]
async fn an_overlay_with_errors_is_refused_with_every_one_located_and_nothing_stored() {
    let app = app().await;
    let text = xincun_overlay()
        .replace("    due: 4h\n", "    due: \"4 +\"\n")
        .replace("      - to: community_handle\n", "      - to: comunity_handle\n");
    let (status, answer) = publish(&app, "tian", &text).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let diagnostics = answer["error"]["diagnostics"].as_array().unwrap();
    let at: Vec<(u64, &str)> = diagnostics
        .iter()
        .map(|d| (d["line"].as_u64().unwrap(), d["message"].as_str().unwrap()))
        .collect();
    assert!(
        diagnostics.iter().all(|d| d["file"] == "xincun.overlay.yaml"),
        "{answer}"
    );
    assert!(at.iter().any(|(l, _)| *l == 59), "the bad limit, at its line: {at:?}");
    assert!(
        at.iter()
            .any(|(l, m)| *l == 61 && m.contains("did you mean \"community_handle\"")),
        "the misspelt state, at its line: {at:?}"
    );
    let (_, listed) = app.call("GET", "/api/overlays/ticket", Some("tian"), None, None).await;
    assert_eq!(listed["overlays"], json!([]), "nothing stored: {listed}");
    let (_, here) = app
        .call("GET", "/api/workflows/ticket?unit=guoyuan-c2-g1", None, None, None)
        .await;
    assert_eq!(here["composition"]["overlays"], json!([]));
}

#[tokio::test]
async fn a_rollback_gives_the_next_instance_the_earlier_version_and_running_ones_keep_theirs() {
    let app = app().await;
    assert_eq!(publish(&app, "tian", &xincun_overlay()).await.0, StatusCode::CREATED);
    let v2 = xincun_overlay()
        .replace("version: 1\n", "version: 2\n")
        .replace("    due: 4h\n", "    due: 2h\n");
    assert_eq!(publish(&app, "tian", &v2).await.0, StatusCode::CREATED);
    let (_, first) = report_in_xincun(&app).await;
    assert_eq!(
        first["instance"]["overlays"],
        json!([{"unit": "guoyuan-c2", "version": 2}])
    );

    let (status, _) = set_live(&app, "zhao", 1).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = set_live(&app, "tian", 1).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, second) = report_in_xincun(&app).await;
    assert_eq!(
        second["instance"]["overlays"],
        json!([{"unit": "guoyuan-c2", "version": 1}])
    );
    let id = first["instance"]["id"].as_str().unwrap();
    let (_, still) = app
        .call("GET", &format!("/api/instances/{id}"), Some("zhao"), None, None)
        .await;
    assert_eq!(
        still["instance"]["overlays"],
        json!([{"unit": "guoyuan-c2", "version": 2}]),
        "{still}"
    );
    assert!(
        app.state.runtime.store.verify_chains().await.unwrap().1.is_empty(),
        "the audit chain holds"
    );
}

/// A server over `url` (in `schema` on PostgreSQL) with the demo workflows, running its
/// scheduler loop as `serve` does.
async fn server(url: &str, schema: Option<&str>, import: bool) -> (AppState, tokio::sync::watch::Sender<bool>) {
    let store = Store::connect(url, schema).await.unwrap();
    if import {
        let units = read_units(&repo("workflows/org/units.csv")).unwrap();
        let people = read_people(&repo("workflows/org/people.csv")).unwrap();
        store.import_org(&units, &people, &|_| {}).await.unwrap();
    }
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None).unwrap())));
    let runtime = Arc::new(Runtime::new(store, Arc::new(SystemClock), rules.clone()).await.unwrap());
    if import {
        let (workflows, _) = civicflow_engine::files::load_all(&[repo("workflows/ticket.yaml")]).unwrap();
        for wf in workflows {
            runtime.publish(wf).await.unwrap();
        }
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(civicflow_server::scheduler::run(
        runtime.clone(),
        rules.clone(),
        String::new(),
        stop_rx,
    ));
    let state = AppState {
        runtime,
        rules,
        log_sign_in_codes: false,
        secure_cookies: true,
        metrics_token: None,
    };
    (state, stop)
}

#[tokio::test]
async fn an_overlay_published_through_one_server_is_used_by_another_within_two_seconds() {
    // PostgreSQL when CI names one (two servers on one database, as deployed), else two
    // servers on one SQLite file.
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = match std::env::var("CIVICFLOW_TEST_PG") {
        Ok(url) => (url, Some(format!("t_two_{}", uuid::Uuid::now_v7().simple()))),
        Err(_) => (format!("sqlite://{}", dir.path().join("shared.db").display()), None),
    };
    let (one, stop_one) = server(&url, schema.as_deref(), true).await;
    let (two, stop_two) = server(&url, schema.as_deref(), false).await;
    let token = |s: &AppState, p: &'static str, seed: u8| {
        let store = s.runtime.store.clone();
        async move { store.create_token(p, "test", [seed; 32]).await.unwrap() }
    };
    let mut a = App {
        state: one,
        tokens: Default::default(),
    };
    a.tokens.insert("tian", token(&a.state, "tian", 7).await);
    let mut b = App {
        state: two,
        tokens: Default::default(),
    };
    b.tokens.insert("zhao", token(&b.state, "zhao", 8).await);

    let (status, answer) = publish(&a, "tian", &xincun_overlay()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let published = std::time::Instant::now();
    let mut seen = None;
    while published.elapsed() < std::time::Duration::from_secs(5) {
        let (status, started) = b
            .call(
                "POST",
                "/api/instances",
                Some("zhao"),
                Some(elderly_report("guoyuan-c2-g1")),
                None,
            )
            .await;
        if status == StatusCode::CREATED {
            assert_eq!(
                started["instance"]["overlays"],
                json!([{"unit": "guoyuan-c2", "version": 1}])
            );
            seen = Some(published.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seen = seen.expect("the other server never used the overlay");
    assert!(seen < std::time::Duration::from_secs(2), "took {seen:?}");
    let _ = stop_one.send(true);
    let _ = stop_two.send(true);
}
