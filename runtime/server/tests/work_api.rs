//! The end users' API against every role, in scope and out of scope: a table of who may do
//! what to one ticket, and the OpenAPI document covering every route.

mod common;

use axum::http::StatusCode;
use common::{App, Row, dispatched_ticket, report};
use serde_json::json;

#[tokio::test]
async fn every_role_sees_and_does_only_what_its_scope_allows() {
    let app = App::new().await;
    let (ticket, accept) = dispatched_ticket(&app).await;
    let read = format!("/api/instances/{ticket}");
    let complete = format!("/api/tasks/{accept}/complete");
    let claim = format!("/api/tasks/{accept}/claim");
    let code = format!("/api/instances/{ticket}/codes/accept");
    let accept_form = json!({"data": {"decision": "accept"}});
    let withdraw = format!("/api/tasks/{accept}/withdraw");
    let attachment = "/api/attachments/sha256:00".to_string();

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
        (Some("sun"), "POST", &withdraw, None, S::NOT_FOUND),
        (Some("zhao"), "POST", &withdraw, None, S::NOT_FOUND),
        (None, "GET", "/api/tasks", None, S::UNAUTHORIZED),
        (None, "POST", "/api/instances", Some(report()), S::UNAUTHORIZED),
        (Some("zhou"), "POST", "/api/instances", Some(report()), S::CREATED), // a resident of the grid
        (Some("chen"), "POST", "/api/instances", Some(report()), S::FORBIDDEN), // handlers do not report
        (None, "GET", &attachment, None, S::UNAUTHORIZED),
        (Some("xu"), "GET", "/api/attachments/sha256:00", None, S::NOT_FOUND),
        (None, "GET", "/api/workflows", None, S::OK), // what exists is public; data is not
        (None, "GET", "/api/workflows/ticket", None, S::OK),
        (None, "GET", "/api/workflows/no-such", None, S::NOT_FOUND),
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

/// Every endpoint that touches one ticket, against every person of the demo and no one:
/// a grid of expected statuses, one column per caller. Nothing here changes the ticket
/// (forms are invalid, the task is not a pool), so each row sees the same state.
#[tokio::test]
async fn the_endpoint_by_role_matrix_leaks_nothing() {
    let app = App::new().await;
    let (ticket, accept) = dispatched_ticket(&app).await;
    let (status, _, photo) = app
        .send(app.raw(
            "POST",
            "/api/attachments",
            Some("wang"),
            "image/png",
            b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec(),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{photo}");
    let photo = serde_json::from_str::<serde_json::Value>(&photo).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bad_form = json!({"data": {"decision": "maybe"}});
    // Callers, in the order of each row's statuses: nobody, then PEOPLE.
    let callers: Vec<Option<&str>> = std::iter::once(None)
        .chain(common::PEOPLE.iter().copied().map(Some))
        .collect();
    let rows: Vec<(&str, String, Option<serde_json::Value>, [u16; 10])> = vec![
        //                                                    none wang zhao li  chen sun  zhou xu   qian ma
        (
            "GET",
            format!("/api/instances/{ticket}"),
            None,
            [401, 200, 404, 200, 200, 404, 404, 404, 200, 404],
        ),
        (
            "POST",
            format!("/api/tasks/{accept}/complete"),
            Some(bad_form.clone()),
            [401, 403, 404, 403, 422, 404, 404, 404, 403, 404],
        ),
        // Not a pool task: whoever sees it learns only that (409); others learn nothing.
        (
            "POST",
            format!("/api/tasks/{accept}/claim"),
            None,
            [401, 409, 404, 409, 409, 404, 404, 404, 409, 404],
        ),
        // Not a collect state: nobody has an entry to withdraw.
        (
            "POST",
            format!("/api/tasks/{accept}/withdraw"),
            None,
            [401, 403, 404, 403, 403, 404, 404, 404, 403, 404],
        ),
        (
            "POST",
            format!("/api/instances/{ticket}/codes/accept"),
            None,
            [401, 422, 404, 422, 422, 404, 404, 404, 422, 404],
        ),
        (
            "GET",
            "/api/tasks".into(),
            None,
            [401, 200, 200, 200, 200, 200, 200, 200, 200, 200],
        ),
        // A file no instance refers to: its uploader's alone.
        (
            "GET",
            format!("/api/attachments/{photo}"),
            None,
            [401, 200, 404, 404, 404, 404, 404, 404, 404, 404],
        ),
        // Through a ticket that does not refer to it: nobody else.
        (
            "GET",
            format!("/api/attachments/{photo}?instance={ticket}"),
            None,
            [401, 200, 404, 404, 404, 404, 404, 404, 404, 404],
        ),
        ("GET", "/api/workflows/ticket".into(), None, [200; 10]),
        (
            "GET",
            format!("/open311/v2/requests/{ticket}.json"),
            None,
            [401, 200, 404, 200, 200, 404, 404, 404, 200, 404],
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, want) in &rows {
        for (who, want) in callers.iter().zip(want) {
            let (got, answer) = app.call(method, path, *who, body.clone(), None).await;
            if got.as_u16() != *want {
                wrong.push(format!("{who:?} {method} {path}: got {got}, want {want}: {answer}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} cells differ:\n{}", wrong.len(), wrong.join("\n"));
    // Lists never carry the ticket to someone who may not see it.
    for who in common::PEOPLE {
        let (_, list) = app.call("GET", "/api/tasks", Some(who), None, None).await;
        let leaked = list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["instance_id"] == ticket.as_str());
        assert_eq!(leaked, who == "chen", "{who}: {list}");
        let token = app.tokens[who].clone();
        let (_, open311) = app
            .call(
                "GET",
                &format!("/open311/v2/requests.json?api_key={token}"),
                None,
                None,
                None,
            )
            .await;
        let listed = open311
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["service_request_id"] == ticket.as_str());
        let sees = app
            .call("GET", &format!("/api/instances/{ticket}"), Some(who), None, None)
            .await
            .0
            == StatusCode::OK;
        assert_eq!(listed, sees, "{who}: Open311 lists exactly what the API shows");
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

/// A handler's phone loses the answer to its completion and retries: with its key it gets
/// its own answer again (200), where before it got "409 already completed" and could not
/// tell its own success from a colleague's.
#[tokio::test]
async fn a_completion_retried_with_its_key_gets_its_own_answer() {
    let app = App::new().await;
    let (_, accept) = dispatched_ticket(&app).await;
    let complete = format!("/api/tasks/{accept}/complete");
    let form = json!({"data": {"decision": "accept"}});
    let (first, a) = app
        .call("POST", &complete, Some("chen"), Some(form.clone()), Some("done-7"))
        .await;
    assert_eq!(first, StatusCode::OK, "{a}");
    let (again, b) = app
        .call("POST", &complete, Some("chen"), Some(form.clone()), Some("done-7"))
        .await;
    assert_eq!((again, &b), (StatusCode::OK, &a));
    let (unkeyed, err) = app.call("POST", &complete, Some("chen"), Some(form), None).await;
    assert_eq!(unkeyed, StatusCode::CONFLICT, "{err}");
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
        "/api/workflows/{id}",
        "/api/attachments",
        "/api/attachments/{id}",
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
    // Open to this machine and to a scraper with the token; not there for anyone else.
    let from = |ip: [u8; 4], token: Option<&str>| {
        let mut req = app.raw("GET", "/metrics", None, "text/plain", Vec::new());
        let addr = std::net::SocketAddr::from((ip, 40000));
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    };
    assert_eq!(app.send(from([203, 0, 113, 9], None)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.send(from([203, 0, 113, 9], Some("guess-guess-guess"))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(from([203, 0, 113, 9], Some(common::METRICS_TOKEN))).await.0,
        StatusCode::OK
    );
    let (status, _, text) = app.send(from([127, 0, 0, 1], None)).await;
    assert_eq!(status, StatusCode::OK);
    for want in [
        r#"civicflow_http_requests_total{method="GET",route="/api/instances/{id}",status="200"}"#,
        r#"civicflow_transitions_total{source="action",outcome="applied"}"#,
        "civicflow_http_request_seconds",
    ] {
        assert!(text.contains(want), "{want} is missing from:\n{text}");
    }
    assert!(!text.contains(&ticket), "ids never become labels");
}

#[tokio::test]
async fn a_body_or_query_that_does_not_parse_gets_a_json_error() {
    let app = App::new().await;
    for req in [
        app.raw(
            "POST",
            "/api/instances",
            Some("wang"),
            "application/json",
            b"{not json".to_vec(),
        ),
        app.raw(
            "POST",
            "/api/instances",
            Some("wang"),
            "application/json",
            br#"{"workflow": 3}"#.to_vec(),
        ),
        app.raw("POST", "/api/instances", Some("wang"), "text/plain", b"{}".to_vec()),
        app.raw("GET", "/api/tasks?workflow=a&workflow=b", Some("wang"), "", Vec::new()),
    ] {
        let (status, _, body) = app.send(req).await;
        assert!(status.is_client_error(), "{status}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        assert!(
            error["error"]["code"].as_str().unwrap().starts_with("invalid_"),
            "{error}"
        );
    }
    // Filters narrow the list.
    let (ticket, _) = dispatched_ticket(&app).await;
    let (_, all) = app.call("GET", "/api/tasks", Some("chen"), None, None).await;
    let (_, none) = app
        .call("GET", "/api/tasks?unit=beichen-swj", Some("chen"), None, None)
        .await;
    assert!(
        all["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["instance_id"] == ticket.as_str())
    );
    assert_eq!(none["tasks"], serde_json::json!([]));
}
