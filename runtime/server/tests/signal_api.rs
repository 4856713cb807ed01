//! A payment provider's signed notice over HTTP: refused unsigned or forged, taken once,
//! acknowledged again when repeated.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use civicflow_engine::SystemClock;
use civicflow_engine::files::load_all;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_server::{AppState, router};
use civicflow_store::org_files::{read_people, read_units};
use civicflow_store::signals::sign;
use civicflow_store::{Runtime, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

async fn send(state: &AppState, body: &[u8], signature: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::post("/api/signals/dues/payment").header("content-type", "application/json");
    if let Some(s) = signature {
        req = req.header("x-civicflow-signature", s);
    }
    let res = router(state.clone())
        .oneshot(req.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_payment_notice_is_checked_and_taken_once() {
    let store = Store::connect("sqlite::memory:", None).await.unwrap();
    let units = read_units(&repo("workflows/org/units.csv")).unwrap();
    let people = read_people(&repo("workflows/org/people.csv")).unwrap();
    store.import_org(&units, &people, &|_| {}).await.unwrap();
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None).unwrap())));
    let runtime = Arc::new(Runtime::new(store, Arc::new(SystemClock), rules.clone()).await.unwrap());
    let (workflows, _) = load_all(&[repo("workflows/dues.yaml")]).unwrap();
    for wf in workflows {
        runtime.publish(wf).await.unwrap();
    }
    runtime.provide_secret("CIVICFLOW_PAYMENT_SECRET", "provider-key");
    let item = runtime
        .start(
            "zheng",
            "dues",
            "guoyuan-c1",
            json!({"member": "wu", "month": "2026-09", "month_start": "2026-09-01T00:00:00Z", "income": 4500, "category": "employed"}),
        )
        .await
        .unwrap();
    let state = AppState {
        runtime: runtime.clone(),
        rules,
        log_sign_in_codes: false,
        secure_cookies: true,
        metrics_token: None,
    };
    let body = serde_json::to_vec(
        &json!({"out_trade_no": item.id, "transaction_id": "T-1", "amount_fen": 4500, "status": "SUCCESS"}),
    )
    .unwrap();

    let (status, _) = send(&state, &body, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, err) = send(&state, &body, Some(&sign("wrong-key", &body))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(
        runtime.store.instance(&item.id).await.unwrap().position.tokens,
        vec!["pay"]
    );

    let good = sign("provider-key", &body);
    let (status, answer) = send(&state, &body, Some(&good)).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"outcome": "applied"})));
    let (status, answer) = send(&state, &body, Some(&good)).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"outcome": "duplicate"})));
    let paid = runtime.store.instance(&item.id).await.unwrap();
    assert_eq!(paid.position.tokens, vec!["paid"]);
    assert_eq!(paid.data["paid_fen"], 4500);

    let garbage = b"not json";
    let (status, err) = send(&state, garbage, Some(&sign("provider-key", garbage))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
}
