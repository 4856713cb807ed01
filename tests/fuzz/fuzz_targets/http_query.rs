//! Any query string on every GET route that reads one (Open311's lists and filters, the
//! API's lists, cursors and unit filters, the pages' filters and `?lang=`), through the real
//! router over an in-memory store with the demo organisation and a few tickets: never a
//! panic (libFuzzer aborts at one, even one the router would turn into a 500) and never a
//! server error; a bad parameter is the caller's 4xx.
#![no_main]
use axum::body::Body;
use axum::http::{Request, header};
use civicflow_engine::SystemClock;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_server::{AppState, router};
use civicflow_store::{Runtime, Store};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use tower::ServiceExt;

struct Fixture {
    rt: tokio::runtime::Runtime,
    state: AppState,
    token: String,
    cookie: String,
    ticket: String,
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (state, token, cookie, ticket) = rt.block_on(async {
        let store = Store::connect("sqlite::memory:", None).await.unwrap();
        let units = civicflow_store::org_files::read_units(&repo("workflows/org/units.csv")).unwrap();
        let people = civicflow_store::org_files::read_people(&repo("workflows/org/people.csv")).unwrap();
        store.import_org(&units, &people, &|_| {}).await.unwrap();
        let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None).unwrap())));
        let runtime = Arc::new(Runtime::new(store, Arc::new(SystemClock), rules.clone()).await.unwrap());
        let (workflows, _) = civicflow_engine::files::load_all(&[repo("workflows/")]).unwrap();
        for wf in workflows {
            runtime.publish(wf).await.unwrap();
        }
        let report = serde_json::json!({"category": "road", "description": "路灯不亮了很久", "location": "果园路3号"});
        let mut ticket = String::new();
        for _ in 0..3 {
            ticket = runtime.start("wang", "ticket", "guoyuan-c1-g1", report.clone()).await.unwrap().instance.id;
        }
        // li dispatches in Guoyuan: lists, filters and Open311 all have rows for him.
        let token = runtime.store.create_token("li", "fuzz", [7; 32]).await.unwrap();
        let (cookie, _) = runtime
            .store
            .create_session("li", runtime.now(), chrono::Duration::hours(1))
            .await
            .unwrap();
        let state = AppState {
            runtime,
            rules,
            log_sign_in_codes: false,
            secure_cookies: false,
            metrics_token: None,
        };
        (state, token, format!("cf_session={cookie}"), ticket)
    });
    Fixture { rt, state, token, cookie, ticket }
});

/// The routes, with `{id}` for the ticket and `{key}` for Open311's key; every request
/// carries li's bearer token (the API) and session (the pages).
const ROUTES: [&str; 17] = [
    "/open311/v2/requests.json?api_key={key}&",
    "/open311/v2/services.json?",
    "/open311/v2/requests/{id}.json?api_key={key}&",
    "/open311/v2/services/road.json?",
    "/api/tasks?",
    "/api/workflows?",
    "/api/workflows/ticket?",
    "/api/overlays/ticket?",
    "/api/instances/{id}?",
    "/api/attachments/sha256:00?",
    "/tasks?",
    "/done?",
    "/mine?",
    "/inbox?",
    "/login?",
    "/start/ticket?",
    "/instances/{id}?",
];

/// Bytes as a query: what a URI may hold stays as it is (so `&`, `=` and `%` reach the
/// parsers raw, broken escapes included), the rest percent-encoded.
fn as_query(bytes: &[u8]) -> String {
    let mut q = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    q
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&pick, rest)) = bytes.split_first() else {
        return;
    };
    let f = &*FIXTURE;
    let route = ROUTES[pick as usize % ROUTES.len()];
    let uri = route.replace("{id}", &f.ticket).replace("{key}", &f.token) + &as_query(rest);
    let Ok(request) = Request::get(&uri)
        .header(header::AUTHORIZATION, format!("Bearer {}", f.token))
        .header(header::COOKIE, &f.cookie)
        .body(Body::empty())
    else {
        return;
    };
    let status = f.rt.block_on(router(f.state.clone()).oneshot(request)).unwrap().status();
    assert!(!status.is_server_error(), "{uri}: {status}");
});
