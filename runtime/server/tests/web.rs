//! Pages, sign-in, attachments and Open311 through the router: what the browser test drives,
//! checked here at the HTTP level where each refusal can be seen exactly.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{App, dispatched_ticket, report};
use serde_json::Value;

/// A valid 2×2 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 2, 0, 0, 0, 2, 8,
    2, 0, 0, 0, 0xfd, 0xd4, 0x9a, 0x73, 0, 0, 0, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x38, 0xa1, 0x21,
    0x07, 0x44, 0x0c, 0x10, 0x0a, 0, 0x20, 0x3e, 0x04, 0x39, 0xa5, 0x35, 0x35, 0xc9, 0, 0, 0, 0, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

fn form(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    req.body(Body::empty()).unwrap()
}

/// Sign in with a password; the session cookie (`name=value`), which is HttpOnly, Secure,
/// SameSite=Lax and for the whole site.
async fn sign_in(app: &App, who: &str) -> String {
    let cookie = common::sign_in_header(app, who).await;
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn pages_need_a_session_and_sign_in_is_rate_limited() {
    let app = App::new().await;
    let (status, headers, _) = app.send(get("/tasks", None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "redirected to sign in");
    assert_eq!(headers[header::LOCATION], "/login?next=%2Ftasks");
    let (_, headers, _) = app.send(get("/login", None)).await;
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
    app.state
        .runtime
        .store
        .set_password("wang", "right-password")
        .await
        .unwrap();
    for _ in 0..5 {
        let (status, _, body) = app
            .send(form("/login", None, "login=wang&password=wrong-one&action=password"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("账号或密码不正确"), "zh-CN by default");
    }
    // The sixth try is refused even with the right password, and says when to come back.
    let (status, headers, body) = app
        .send(form(
            "/login",
            None,
            "login=wang&password=right-password&action=password",
        ))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Another account is not locked by wang's failures.
    sign_in(&app, "chen").await;
    // A sign-in posted from another site is refused.
    let mut req = form("/login", None, "login=chen&password=pass-chen-ok&action=password");
    req.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    req.headers_mut()
        .insert(header::HOST, "civicflow.example".parse().unwrap());
    assert_eq!(app.send(req).await.0, StatusCode::FORBIDDEN);
    // A stranger's sign-in text is neither stored nor echoed whole, and a big body is refused.
    let long = "陌".repeat(2_000);
    let (status, _, body) = app
        .send(form(
            "/login",
            None,
            &format!("login={long}&password=x&action=password"),
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body.contains(&"陌".repeat(64)) && !body.contains(&"陌".repeat(65)),
        "echoed in full"
    );
    let store = &app.state.runtime.store;
    let by_text = store.sign_in_attempts(&format!("person:{long}")).await.unwrap();
    assert_eq!(by_text, 0, "the text itself was stored as the rate-limit key");
    let huge = format!("login={}&password=x&action=password", "a".repeat(100_000));
    assert_eq!(
        app.send(form("/login", None, &huge)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

/// Twenty wrong passwords for one account at the same moment: five are checked, the rest
/// are turned away. Before, the cap was read before and written after the argon2 check, so
/// all of them were checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_wrong_passwords_are_held_to_the_cap() {
    use tower::ServiceExt;
    let app = App::new().await;
    app.state
        .runtime
        .store
        .set_password("wang", "right-password")
        .await
        .unwrap();
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..20 {
        let router = civicflow_server::router(app.state.clone());
        let req = form(
            "/login",
            None,
            &format!("login=wang&password=wrong-{i}&action=password"),
        );
        tries.spawn(async move { router.oneshot(req).await.unwrap().status() });
    }
    let statuses = tries.join_all().await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 15), "{statuses:?}");
}

#[tokio::test]
async fn asking_for_codes_is_throttled_like_failed_sign_ins() {
    let app = App::new().await;
    for _ in 0..5 {
        let (status, _, body) = app.send(form("/login", None, "login=zhao&action=send_code")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _, _) = app.send(form("/login", None, "login=zhao&action=send_code")).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "a sixth code in the window is refused"
    );
    // An account that does not exist answers alike, so the throttle tells nothing either.
    for _ in 0..5 {
        app.send(form("/login", None, "login=nobody&action=send_code")).await;
    }
    let (status, _, _) = app.send(form("/login", None, "login=nobody&action=send_code")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_language_picked_before_signing_in_becomes_the_persons_setting() {
    let app = App::new().await;
    app.state
        .runtime
        .store
        .set_password("sun", "pass-sun-ok")
        .await
        .unwrap();
    let (status, headers, body) = app
        .send(form(
            "/login",
            Some("cf_lang=en"),
            "login=sun&password=pass-sun-ok&action=password&next=/tasks",
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let cookie = headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // Another browser, no language cookie and a Chinese Accept-Language: the setting wins.
    let mut req = get("/tasks", Some(&cookie));
    req.headers_mut()
        .insert(header::ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9".parse().unwrap());
    let (_, _, page) = app.send(req).await;
    assert!(page.contains(r#"<html lang="en">"#), "{page}");
    // Someone who never chose keeps the default.
    let other = sign_in(&app, "chen").await;
    let (_, _, page) = app.send(get("/tasks", Some(&other))).await;
    assert!(page.contains(r#"<html lang="zh-CN">"#), "{page}");
}

#[tokio::test]
async fn forms_render_from_the_schema_and_keep_input_on_errors() {
    let app = App::new().await;
    let cookie = sign_in(&app, "wang").await;
    let (status, _, page) = app.send(get("/start/ticket", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"id="f-description""#) && page.contains(r#"minlength="5""#),
        "{page}"
    );
    assert!(page.contains(">道路设施<"), "zh-CN option titles from the schema");
    let (_, _, english) = app.send(get("/start/ticket?lang=en", Some(&cookie))).await;
    assert!(
        english.contains(">Roads and facilities<") && english.contains("What happened"),
        "{english}"
    );
    // `?lang=` became wang's setting; switch back for the messages checked below.
    app.send(get("/tasks?lang=zh-CN", Some(&cookie))).await;
    let csrf = page
        .split(r#"name="_csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();

    let boundary = "XyZ";
    let part = |name: &str, value: &str| {
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    let multipart = |parts: &[(&str, &str)]| {
        let mut body: String = parts.iter().map(|(n, v)| part(n, v)).collect();
        body.push_str(&format!("--{boundary}--\r\n"));
        Request::post("/start/ticket")
            .header(header::COOKIE, &cookie)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap()
    };
    // Without the session's CSRF token nothing happens.
    let (status, _, _) = app
        .send(multipart(&[
            ("_unit", "guoyuan-c1-g1"),
            ("/description", "井盖破损很久了"),
        ]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // With errors: the summary, the message beside the field, and the typed text kept.
    let (status, _, page) = app
        .send(multipart(&[
            ("_csrf", &csrf),
            ("_unit", "guoyuan-c1-g1"),
            ("/description", "井盖"),
            ("/location", "果园路"),
        ]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains(r##"href="#f-category""##), "summary links to the field");
    assert!(page.contains("至少填写 5 个字符"));
    assert!(
        page.contains(">井盖<") || page.contains(r#"value="井盖""#),
        "input kept"
    );
    assert_eq!(
        app.state.runtime.store.instances_of("ticket", 10).await.unwrap().len(),
        0,
        "nothing started"
    );
    // Corrected, it starts; the key makes a second identical post land on the same ticket.
    let good = [
        ("_csrf", csrf.as_str()),
        ("_unit", "guoyuan-c1-g1"),
        ("_key", "form-key-1"),
        ("/category", "road"),
        ("/description", "井盖破损很久了"),
        ("/location", "果园路"),
    ];
    let (status, headers, _) = app.send(multipart(&good)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, again, _) = app.send(multipart(&good)).await;
    assert_eq!(
        again[header::LOCATION].to_str().unwrap(),
        headers[header::LOCATION].to_str().unwrap().trim_end_matches("?done=1")
    );
    assert_eq!(
        app.state.runtime.store.instances_of("ticket", 10).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_page_outside_ones_scope_is_not_found() {
    let app = App::new().await;
    let (ticket, accept) = dispatched_ticket(&app).await;
    for (who, want) in [
        ("wang", StatusCode::OK),
        ("chen", StatusCode::OK),
        ("zhao", StatusCode::NOT_FOUND),
        ("xu", StatusCode::NOT_FOUND),
    ] {
        let cookie = sign_in(&app, who).await;
        let (status, _, page) = app.send(get(&format!("/instances/{ticket}"), Some(&cookie))).await;
        assert_eq!(status, want, "{who}: {page}");
        if want == StatusCode::OK {
            assert!(
                page.contains("王网格 发起了「事件上报与闭环」"),
                "{who}: timeline in plain words: {page}"
            );
        }
        let (status, _, _) = app.send(get(&format!("/tasks/{accept}"), Some(&cookie))).await;
        let want_task = if who == "chen" {
            StatusCode::OK
        } else if want == StatusCode::OK {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, want_task, "{who} opens the task");
    }
    let cookie = sign_in(&app, "chen").await;
    let (_, _, list) = app.send(get("/tasks?lang=en", Some(&cookie))).await;
    assert!(list.contains("My tasks") && list.contains("Accept"), "{list}");
}

#[tokio::test]
async fn attachments_are_kept_by_content_hash_and_checked_by_their_bytes() {
    let app = App::new().await;
    let (status, _, body) = app
        .send(app.raw("POST", "/api/attachments", Some("wang"), "image/png", PNG.to_vec()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let out: Value = serde_json::from_str(&body).unwrap();
    let id = out["id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let (again, _, body2) = app
        .send(app.raw("POST", "/api/attachments", Some("zhou"), "image/png", PNG.to_vec()))
        .await;
    assert_eq!(
        (again, serde_json::from_str::<Value>(&body2).unwrap()["id"].clone()),
        (StatusCode::CREATED, out["id"].clone())
    );
    // A page claiming to be a picture is refused by its bytes.
    let (status, _, body) = app
        .send(app.raw(
            "POST",
            "/api/attachments",
            Some("wang"),
            "image/png",
            b"<script>alert(1)</script>".to_vec(),
        ))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let read = |who: &str, query: String| {
        app.raw(
            "GET",
            &format!("/api/attachments/{id}{query}"),
            Some(who),
            "",
            Vec::new(),
        )
    };
    // Each uploader reads it back; knowing the hash is not enough for anyone else (before,
    // any token holder read any file by its hash).
    let (status, headers, bytes) = app.send(read("zhou", String::new())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(bytes.len(), String::from_utf8_lossy(PNG).len());
    assert_eq!(app.send(read("wang", String::new())).await.0, StatusCode::OK);
    assert_eq!(app.send(read("li", String::new())).await.0, StatusCode::NOT_FOUND);
    // The ticket form takes the reference; the ticket's readers read it through the ticket.
    let report = serde_json::json!({"workflow": "ticket", "unit": "guoyuan-c1-g1",
        "data": {"category": "road", "description": "井盖破损很久了", "location": "果园路", "photos": [id]}});
    let (status, created) = app
        .call("POST", "/api/instances", Some("wang"), Some(report), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ticket = created["instance"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.send(read("li", format!("?instance={ticket}"))).await.0,
        StatusCode::OK,
        "the street's dispatcher"
    );
    assert_eq!(
        app.send(read("xu", format!("?instance={ticket}"))).await.0,
        StatusCode::NOT_FOUND,
        "a resident elsewhere"
    );
    // An instance one may read that does not refer to the file opens nothing.
    let (_, other) = app
        .call("POST", "/api/instances", Some("wang"), Some(common::report()), None)
        .await;
    let other = other["instance"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.send(read("li", format!("?instance={other}"))).await.0,
        StatusCode::NOT_FOUND
    );
    // The page shows it through the ticket, to the dispatcher.
    let cookie = sign_in(&app, "li").await;
    let (_, _, page) = app.send(get(&format!("/instances/{ticket}"), Some(&cookie))).await;
    let link = format!("/attachments/{id}?instance={ticket}");
    assert!(
        page.contains(&link.replace('/', "&#x2f;")) || page.contains(&link),
        "{page}"
    );
    assert_eq!(app.send(get(&link, Some(&cookie))).await.0, StatusCode::OK);
    assert_eq!(
        app.send(get(&format!("/attachments/{id}"), Some(&cookie))).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_open311_client_files_a_report_and_reads_its_status() {
    let app = App::new().await;
    let (status, _, body) = app.send(get("/open311/v2/services.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    let services: Value = serde_json::from_str(&body).unwrap();
    assert!(
        services
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["service_code"] == "road" && s["service_name"] == "道路设施"),
        "{services}"
    );
    let (status, _, body) = app.send(get("/open311/v2/services/road.json", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.send(get("/open311/v2/services/nothing.json", None)).await.0,
        StatusCode::NOT_FOUND
    );

    let key = app.tokens["wang"].clone();
    let post = |body: String| form("/open311/v2/requests.json", None, &body);
    let (status, _, body) = app
        .send(post(format!("api_key={key}&service_code=road&description=%E8%B7%AF%E7%81%AF%E4%B8%8D%E4%BA%AE%E4%BA%86&address_string=%E6%9E%9C%E5%9B%AD%E8%B7%AF3%E5%8F%B7")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let id = created[0]["service_request_id"].as_str().unwrap().to_string();
    // A retry with the client's Idempotency-Key files nothing new.
    let body = format!(
        "api_key={key}&service_code=water&description=%E6%B0%B4%E7%AE%A1%E7%88%86%E4%BA%86%E5%88%B0%E5%A4%84%E6%98%AF%E6%B0%B4&address_string=%E6%9E%9C%E5%9B%AD%E8%B7%AF"
    );
    let mut ids = Vec::new();
    for expected in [StatusCode::CREATED, StatusCode::OK] {
        let mut req = post(body.clone());
        req.headers_mut()
            .insert("idempotency-key", "phone-retry-1".parse().unwrap());
        let (status, _, answer) = app.send(req).await;
        assert_eq!(status, expected, "{answer}");
        ids.push(serde_json::from_str::<Value>(&answer).unwrap()[0]["service_request_id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    // A key is stored: one of 10,000 characters is refused, here and on the JSON API.
    let mut req = post(body.clone());
    req.headers_mut()
        .insert("idempotency-key", "k".repeat(10_000).parse().unwrap());
    let (status, _, answer) = app.send(req).await;
    assert!(
        status.is_client_error() && answer.contains("Idempotency-Key"),
        "{status} {answer}"
    );
    let mut req = app.raw(
        "POST",
        "/api/instances",
        Some("wang"),
        "application/json",
        report().to_string().into_bytes(),
    );
    req.headers_mut()
        .insert("idempotency-key", "k".repeat(10_000).parse().unwrap());
    let (status, _, answer) = app.send(req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.contains("Idempotency-Key must be 1 to 200"), "{answer}");
    // Bad input says which parameter, and files nothing.
    let (status, _, body) = app
        .send(post(format!("api_key={key}&service_code=road&description=x")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("description") && body.contains("address_string"),
        "{body}"
    );
    assert_eq!(
        app.send(post("service_code=road&description=abcdef".into())).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A body the form reader cannot take still answers in GeoReport's error list, with the
    // 400 GeoReport gives a missing required parameter.
    let (status, _, body) = app.send(post(format!("api_key={key}&description=abcdef"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let errors: Value = serde_json::from_str(&body).expect("a JSON error list");
    assert!(
        errors[0]["description"].as_str().unwrap().contains("service_code"),
        "{body}"
    );

    let (status, _, body) = app
        .send(get(&format!("/open311/v2/requests/{id}.json?api_key={key}"), None))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got[0]["status"], "open");
    assert_eq!(got[0]["service_code"], "road");
    assert_eq!(got[0]["description"], "路灯不亮了");
    assert_eq!(got[0]["address"], "果园路3号");
    let (_, _, body) = app
        .send(get(&format!("/open311/v2/requests.json?api_key={key}"), None))
        .await;
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["service_request_id"], id.as_str(), "newest first");
    // GeoReport's filters: ids, service, status and dates; a bad one says which and why.
    let (app_ref, key_ref) = (&app, &key);
    let list = |query: String| async move {
        let (status, _, body) = app_ref
            .send(get(
                &format!("/open311/v2/requests.json?api_key={key_ref}&{query}"),
                None,
            ))
            .await;
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };
    let (_, by_id) = list(format!("service_request_id={id},nonexistent")).await;
    assert_eq!(by_id.as_array().unwrap().len(), 1);
    assert_eq!(list("service_code=water".into()).await.1.as_array().unwrap().len(), 1);
    assert_eq!(list("status=closed".into()).await.1, serde_json::json!([]));
    assert_eq!(
        list("start_date=2099-01-01T00:00:00Z".into()).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        list("end_date=2000-01-01T00:00:00Z".into()).await.1,
        serde_json::json!([]),
        "nothing was reported 90 days before 2000"
    );
    // Pages of a list: newest first, each request once.
    let first = list("page_size=1".into()).await.1;
    let second = list("page_size=1&page=2".into()).await.1;
    assert_eq!(first[0]["service_request_id"], listed[0]["service_request_id"]);
    assert_eq!(second[0]["service_request_id"], id.as_str());
    assert_eq!(list("page_size=1&page=3".into()).await.1, serde_json::json!([]));
    assert_eq!(list("page_size=0".into()).await.0, StatusCode::BAD_REQUEST);
    let (status, bad) = list("status=pending".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad[0]["description"].as_str().unwrap().contains("pending"), "{bad}");
    let (status, bad) = list("start_date=yesterday".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad[0]["description"].as_str().unwrap().contains("start_date"), "{bad}");
    // The last moment chrono can hold: refused, not a panic in the handler.
    let (status, bad) = list("end_date=%2B262142-12-31T23:59:59.999Z".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad[0]["description"].as_str().unwrap().contains("out of range"),
        "{bad}"
    );
    // Another community's grid worker neither lists nor reads it.
    let other = app.tokens["zhao"].clone();
    let (status, _, _) = app
        .send(get(&format!("/open311/v2/requests/{id}.json?api_key={other}"), None))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, body) = app
        .send(get(&format!("/open311/v2/requests.json?api_key={other}"), None))
        .await;
    assert_eq!(body, "[]");
}

#[tokio::test]
async fn punctuation_follows_the_language_and_the_icon_is_served() {
    let app = App::new().await;
    let (id, _) = dispatched_ticket(&app).await;
    let cookie = sign_in(&app, "wang").await;
    let (_, _, zh) = app.send(get(&format!("/instances/{id}"), Some(&cookie))).await;
    assert!(zh.contains("所属单位："), "full-width colon in Chinese");
    let (_, _, en) = app.send(get(&format!("/instances/{id}?lang=en"), Some(&cookie))).await;
    assert!(
        en.contains("Unit: ") && !en.contains('：'),
        "no full-width colon in English"
    );
    let (status, headers, icon) = app.send(get("/favicon.ico", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    assert!(icon.starts_with("<svg"));
}

/// A ticket the department sent back: the street's dispatcher is told. Its instance id.
async fn sent_back_ticket(app: &App) -> String {
    let (id, accept) = dispatched_ticket(app).await;
    let body = serde_json::json!({"data": {"decision": "return", "reason": "属于水务部门职责"}});
    let (status, answer) = app
        .call(
            "POST",
            &format!("/api/tasks/{accept}/complete"),
            Some("chen"),
            Some(body),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    id
}

#[tokio::test]
async fn the_timeline_says_a_notification_in_the_readers_language_and_names_units() {
    let app = App::new().await;
    let id = sent_back_ticket(&app).await;
    let cookie = sign_in(&app, "li").await;
    let (_, _, zh) = app.send(get(&format!("/instances/{id}"), Some(&cookie))).await;
    assert!(
        zh.contains("事件被退回：属于水务部门职责"),
        "the notification's text: {zh}"
    );
    assert!(!zh.contains("beichen-cgj"), "units by name, never by id: {zh}");
    let (_, _, en) = app.send(get(&format!("/instances/{id}?lang=en"), Some(&cookie))).await;
    assert!(en.contains("Ticket sent back: 属于水务部门职责"), "{en}");
}

#[tokio::test]
async fn a_notification_reaches_the_inbox_and_the_webhook_signed() {
    use civicflow_server::outbox::{Webhook, deliver_due};
    use std::sync::{Arc, Mutex};
    let app = App::new().await;
    let id = sent_back_ticket(&app).await;

    // The event names who got it: the street's dispatcher, the nearest one above the grid.
    let events = app.state.runtime.store.events(&id).await.unwrap();
    let notified = events.iter().find(|e| e.kind == "notified").expect("a notification");
    assert_eq!(notified.payload["recipients"], serde_json::json!(["li"]));

    // li sees one unread message in the header, reads it in the inbox, opens it.
    let li = sign_in(&app, "li").await;
    let (_, _, tasks) = app.send(get("/tasks", Some(&li))).await;
    assert!(tasks.contains("1 条未读"), "the unread count in the header: {tasks}");
    let (_, _, inbox) = app.send(get("/inbox", Some(&li))).await;
    assert!(inbox.contains("事件被退回：属于水务部门职责"), "{inbox}");
    let notice = inbox
        .split("href=\"/inbox/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let (status, headers, _) = app.send(get(&format!("/inbox/{notice}"), Some(&li))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], format!("/instances/{id}").as_str());
    let (_, _, tasks) = app.send(get("/tasks", Some(&li))).await;
    assert!(!tasks.contains("条未读"), "read once opened: {tasks}");
    // Someone else's notification is not theirs to open.
    let chen = sign_in(&app, "chen").await;
    let (status, _, _) = app.send(get(&format!("/inbox/{notice}"), Some(&chen))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, empty) = app.send(get("/inbox", Some(&chen))).await;
    assert!(empty.contains("暂无消息"), "{empty}");

    // The outbound channel: a receiver on loopback that fails once, then takes it.
    let got: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let receiver = {
        let (got, calls) = (got.clone(), calls.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| async move {
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                got.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let secret = "a signing key of some length";
    let hook = Webhook::new(&format!("http://127.0.0.1:{port}/hook"), secret).unwrap();
    let store = &app.state.runtime.store;
    let now = chrono::Utc::now();
    assert_eq!(
        deliver_due(store, &hook, now).await.unwrap(),
        0,
        "the gateway failed the first time"
    );
    assert_eq!(
        deliver_due(store, &hook, now).await.unwrap(),
        0,
        "not due again before its backoff"
    );
    let later = now + chrono::Duration::seconds(31);
    assert_eq!(deliver_due(store, &hook, later).await.unwrap(), 1);
    assert_eq!(
        deliver_due(store, &hook, later + chrono::Duration::hours(3))
            .await
            .unwrap(),
        0,
        "delivered once"
    );
    let got = got.lock().unwrap();
    let (headers, body) = &got[0];
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["recipients"][0]["name"], "李调度");
    assert_eq!(payload["recipients"][0]["phone"], "13800000003");
    assert_eq!(payload["text"]["zh-CN"], "事件被退回：属于水务部门职责");
    assert_eq!(headers["x-civicflow-delivery"], notice.as_str());
    // The receiver checks the signature over the timestamp and the body with the shared key.
    let timestamp: i64 = headers["x-civicflow-timestamp"].to_str().unwrap().parse().unwrap();
    assert_eq!(
        headers["x-civicflow-signature"],
        hook.signature(timestamp, body.as_bytes()).as_str()
    );
    let other = Webhook::new(&format!("http://127.0.0.1:{port}/hook"), "another key, not ours").unwrap();
    assert_ne!(
        headers["x-civicflow-signature"],
        other.signature(timestamp, body.as_bytes()).as_str()
    );
    assert!(
        Webhook::new("https://sms.example/hook", secret).is_err(),
        "http only, said so"
    );
}

#[tokio::test]
async fn what_i_did_is_under_done_with_its_number_and_an_entry_leaves_my_to_do_list() {
    let app = App::new().await;
    let (id, accept) = dispatched_ticket(&app).await;
    let number = app
        .state
        .runtime
        .store
        .instance(&id)
        .await
        .unwrap()
        .number
        .expect("numbered");
    let (status, answer) = app
        .call(
            "POST",
            &format!("/api/tasks/{accept}/complete"),
            Some("chen"),
            Some(serde_json::json!({"data": {"decision": "accept"}})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let chen = sign_in(&app, "chen").await;
    let (_, _, done) = app.send(get("/done", Some(&chen))).await;
    assert!(done.contains("我办理了「部门签收」"), "what I did: {done}");
    assert!(done.contains("当前：部门办理"), "where it stands: {done}");
    let year = chrono::Utc::now()
        .with_timezone(&civicflow_engine::time::DEFAULT_TIME_ZONE)
        .format("%Y")
        .to_string();
    let shown = format!("事件 {year}-{number:06}");
    assert!(done.contains(&shown), "{shown} in: {done}");
    // The row says what it is about: the ticket's summary line, not the process name only.
    assert!(done.contains("果园路5号：路面塌陷需要修补"), "{done}");
    let (_, _, tasks) = app.send(get("/tasks", Some(&chen))).await;
    assert!(tasks.contains(&shown) && tasks.contains("部门办理"), "{tasks}");
    // One timeline entry per human action (reported, dispatched, accepted); the steps each
    // began and the rules that decided fold beneath them, and no plugin is named to a handler.
    let (_, _, page) = app.send(get(&format!("/instances/{id}"), Some(&chen))).await;
    let timeline = page.split("<ol class=\"timeline\">").nth(1).unwrap();
    assert_eq!(timeline.matches("<li><time").count(), 3, "{timeline}");
    assert!(timeline.contains("「部门办理」环节开始"), "{timeline}");
    assert!(
        !timeline.contains("流转至"),
        "a move is said by the step it begins: {timeline}"
    );
    // The grid's dispatch is done at the street's command centre, and says so.
    assert!(timeline.contains("环节开始，由 果园新村街道 "), "{timeline}");
    let (_, _, mine) = app.send(get("/mine", Some(&sign_in(&app, "wang").await))).await;
    assert!(mine.contains(&shown) && mine.contains("当前：部门办理"), "{mine}");

    // A sign-up made is done for me though the activity stays open for others.
    let runtime = &app.state.runtime;
    let data = serde_json::json!({"title": "果园社区环境清洁日", "kind": "regular", "starts_at": "2099-06-06T08:30:00+08:00",
        "ends_at": "2099-06-06T11:30:00+08:00", "capacity": 2, "planned_hours": 3, "location": "果园社区文化广场"});
    let activity = runtime.start("feng", "volunteering", "guoyuan-c1", data).await.unwrap();
    let signup = activity.new_tasks[0].id.clone();
    let song = sign_in(&app, "song").await;
    let (_, _, before) = app.send(get("/tasks", Some(&song))).await;
    assert!(
        before.contains(&format!("/tasks/{signup}")),
        "open to sign up: {before}"
    );
    runtime
        .complete("song", &signup, serde_json::json!({"note": "自带工具"}))
        .await
        .unwrap();
    let (_, _, after) = app.send(get("/tasks", Some(&song))).await;
    assert!(
        !after.contains(&format!("/tasks/{signup}")),
        "signed up: not to do any more: {after}"
    );
    let (_, _, done) = app.send(get("/done", Some(&song))).await;
    assert!(
        done.contains("我在「报名中」提交了（备注：自带工具）")
            && done.contains("果园社区环境清洁日（果园社区文化广场）"),
        "{done}"
    );
    let luo = sign_in(&app, "luo").await;
    let (_, _, others) = app.send(get("/tasks", Some(&luo))).await;
    assert!(
        others.contains(&format!("/tasks/{signup}")),
        "still open to others: {others}"
    );
}

/// A multipart form post, as the task pages send them.
fn multipart(path: &str, cookie: &str, fields: &[(&str, &str)]) -> Request<Body> {
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str("--b0undary--\r\n");
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=b0undary")
        .body(Body::from(body))
        .unwrap()
}

fn between<'a>(html: &'a str, before: &str, after: &str) -> &'a str {
    html.split(before)
        .nth(1)
        .and_then(|s| s.split(after).next())
        .unwrap_or("")
}

#[tokio::test]
async fn the_organiser_shows_a_qr_code_a_volunteer_checks_in_with_and_a_sign_up_can_be_withdrawn() {
    let app = App::new().await;
    let runtime = &app.state.runtime;
    let activity = |starts: chrono::DateTime<chrono::Utc>| {
        serde_json::json!({"title": "果园社区环境清洁日", "kind": "regular", "starts_at": starts.to_rfc3339(),
            "ends_at": (starts + chrono::Duration::hours(3)).to_rfc3339(), "capacity": 2, "planned_hours": 3,
            "location": "果园社区文化广场"})
    };
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let today = runtime
        .start("feng", "volunteering", "guoyuan-c1", activity(soon))
        .await
        .unwrap();
    runtime
        .complete("song", &today.new_tasks[0].id, serde_json::json!({}))
        .await
        .unwrap();
    let song = sign_in(&app, "song").await;
    let (_, _, page) = app.send(get(&format!("/instances/{}", today.id), Some(&song))).await;
    assert!(page.contains("已登记 1 人，还剩 1 个名额"), "places left: {page}");
    // The activity starts: sign-up closes and check-in opens.
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    assert_eq!(runtime.fire_due_timers(10).await.unwrap(), 1);

    let feng = sign_in(&app, "feng").await;
    let (_, _, page) = app.send(get(&format!("/instances/{}", today.id), Some(&feng))).await;
    let screen = format!("/instances/{}/code/check_in", today.id);
    assert!(page.contains(&screen), "the organiser's button: {page}");
    let (status, _, shown) = app.send(get(&screen, Some(&feng))).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(
        shown.contains("<svg") && shown.contains("http-equiv=\"refresh\""),
        "a QR code, redrawn: {shown}"
    );
    let link = between(&shown, "id=\"checkin-link\" href=\"", "\"")
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    let path = &link[link
        .find("/tasks/")
        .unwrap_or_else(|| panic!("a task link: {link} in {shown}"))..];
    // Only the organiser's role shows codes.
    let (status, _, _) = app.send(get(&screen, Some(&song))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The volunteer's camera opens the link: the form has the code, and submitting checks in.
    let (_, _, scanned) = app.send(get(path, Some(&song))).await;
    assert!(scanned.contains("已扫码"), "{scanned}");
    let code = between(&scanned, "name=\"_code\" value=\"", "\"");
    let csrf = between(&scanned, "name=\"_csrf\" value=\"", "\"");
    let task = between(path, "/tasks/", "?");
    let (status, _, _) = app
        .send(multipart(
            &format!("/tasks/{task}"),
            &song,
            &[("_csrf", csrf), ("_code", code)],
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let data = runtime.store.instance(&today.id).await.unwrap().data;
    assert_eq!(data["attendance"][0]["key"], "song", "{data}");
    // Without a code the page says to scan first, and a post without one is refused in words.
    let (_, _, bare) = app
        .send(get(&format!("/tasks/{task}"), Some(&sign_in(&app, "luo").await)))
        .await;
    assert!(bare.contains("请扫描现场工作人员出示的签到码"), "{bare}");

    // Another activity: signed up, then withdrawn from its page.
    let later = runtime
        .start(
            "feng",
            "volunteering",
            "guoyuan-c1",
            activity(chrono::Utc::now() + chrono::Duration::days(30)),
        )
        .await
        .unwrap();
    let signup = later.new_tasks[0].id.clone();
    runtime.complete("song", &signup, serde_json::json!({})).await.unwrap();
    let (_, _, page) = app.send(get(&format!("/instances/{}", later.id), Some(&song))).await;
    assert!(page.contains("撤回报名"), "{page}");
    let csrf = between(&page, "name=\"_csrf\" value=\"", "\"");
    let (status, _, _) = app
        .send(form(
            &format!("/tasks/{signup}/withdraw"),
            Some(&song),
            &format!("_csrf={csrf}"),
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let data = runtime.store.instance(&later.id).await.unwrap().data;
    assert_eq!(data["volunteers"], serde_json::json!([]), "{data}");
}

#[tokio::test]
async fn units_and_people_are_picked_by_name_from_those_who_can_act() {
    let app = App::new().await;
    // The report: the resident is one of this grid's, by name.
    let wang = sign_in(&app, "wang").await;
    let (_, _, start) = app.send(get("/start/ticket", Some(&wang))).await;
    let resident = between(&start, "id=\"f-resident\"", "</select>");
    assert!(
        resident.contains("value=\"zhou\"") && resident.contains("周居民"),
        "{resident}"
    );
    assert!(
        !resident.contains("xu"),
        "a resident of another community is not offered: {resident}"
    );
    // Dispatch without a district's own list: the units that have handlers, by name.
    let (status, started) = app
        .call("POST", "/api/instances", Some("wang"), Some(common::report()), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let dispatch = started["new_tasks"][0].as_str().unwrap();
    let li = sign_in(&app, "li").await;
    let (_, _, form) = app.send(get(&format!("/tasks/{dispatch}"), Some(&li))).await;
    let departments = between(&form, "id=\"f-department\"", "</select>");
    assert!(
        departments.contains("区城市管理委员会") && departments.contains("区水务局"),
        "{departments}"
    );
    assert!(
        !departments.contains("新村社区"),
        "a unit nobody there could handle: {departments}"
    );
    // The API checks the same: a unit without handlers is refused in words.
    let (status, answer) = app
        .call(
            "POST",
            &format!("/api/tasks/{dispatch}/complete"),
            Some("li"),
            Some(serde_json::json!({"data": {"department": "guoyuan-c2"}})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer["error"]["fields"]["/department"],
        "Pick from the list: nobody at that unit can handle it."
    );
}

/// The href of a list page's 显示更多 link, unescaped.
fn more_link(html: &str) -> String {
    let link = html
        .split("<a href=\"")
        .find(|s| s.contains("id=\"more\""))
        .expect("a more link");
    link.split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#x2f;", "/")
}

#[tokio::test]
async fn long_task_lists_come_in_pages_with_more_and_a_cursor() {
    let app = App::demo().await;
    for _ in 0..53 {
        let (status, body) = app
            .call("POST", "/api/instances", Some("wang"), Some(common::report()), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // The demo district routes a road report straight to its urban management committee.
    // The API: pages of `limit` joined by `next_cursor`, each task once.
    let mut seen = std::collections::BTreeSet::new();
    let mut path = "/api/tasks?limit=20".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = app.call("GET", &path, Some("chen"), None, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");

        for t in page["tasks"].as_array().unwrap() {
            assert!(
                seen.insert(t["id"].as_str().unwrap().to_string()),
                "a task on two pages"
            );
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/tasks?limit=20&cursor={c}"),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (53, 3));
    let (status, bad) = app
        .call("GET", "/api/tasks?cursor=nonsense", Some("chen"), None, None)
        .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor")),
        "{bad}"
    );
    let (status, _) = app.call("GET", "/api/tasks?limit=0", Some("chen"), None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The page: 50 rows, the total, and a link to the rest that keeps the filter.
    let cookie = sign_in(&app, "chen").await;
    let (status, _, html) = app.send(get("/tasks?workflow=ticket", Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<li class=\"item").count(), 50, "one page of rows");
    assert!(html.contains("共 53 项待办"), "the total is shown");
    let more = more_link(&html);
    assert!(more.contains("workflow=ticket") && more.contains("after="), "{more}");
    let (_, _, rest) = app.send(get(&more, Some(&cookie))).await;
    assert_eq!(rest.matches("<li class=\"item").count(), 3, "the rest");
    assert!(!rest.contains("id=\"more\""), "no more after the last page");
    // 我发起的 pages the same way, newest first.
    let cookie = sign_in(&app, "wang").await;
    let (_, _, mine) = app.send(get("/mine", Some(&cookie))).await;
    assert_eq!(
        mine.matches("<li class=\"item").count(),
        50,
        "one page of what I started"
    );
    let more = more_link(&mine);
    let (_, _, older) = app.send(get(&more, Some(&cookie))).await;
    assert_eq!(older.matches("<li class=\"item").count(), 3, "the oldest three");
    let ids = |html: &str| -> Vec<String> {
        html.split("href=\"/instances/")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().to_string())
            .collect()
    };
    let (first, second) = (ids(&mine), ids(&older));
    assert_eq!((first.len(), second.len()), (50, 3), "rows link their instances");
    assert!(first.iter().all(|i| !second.contains(i)), "no instance on both pages");

    // The committee sends every ticket back: 已办 (chen's) and the inbox of the street's
    // dispatcher (told of each return) page the same way, each row once.
    for task in &seen {
        let form = serde_json::json!({"data": {"decision": "return", "reason": "非本部门职责"}});
        let path = format!("/api/tasks/{task}/complete");
        let (status, body) = app.call("POST", &path, Some("chen"), Some(form), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for (who, path, row) in [
        ("chen", "/done", "<li class=\"item"),
        ("li", "/inbox", "href=\"/inbox/"),
    ] {
        let cookie = sign_in(&app, who).await;
        let (_, _, first) = app.send(get(path, Some(&cookie))).await;
        assert_eq!(first.matches(row).count(), 50, "{who}'s {path}: one page");
        let more = more_link(&first);
        assert!(more.starts_with(&format!("{path}?after=")), "{more}");
        let (_, _, rest) = app.send(get(&more, Some(&cookie))).await;
        assert_eq!(rest.matches(row).count(), 3, "{who}'s {path}: the rest");
        assert!(
            !rest.contains("id=\"more\""),
            "{who}'s {path}: no more after the last page"
        );
        let links = |html: &str, prefix: &str| -> Vec<String> {
            html.split(prefix)
                .skip(1)
                .map(|s| s.split('"').next().unwrap().to_string())
                .collect()
        };
        let prefix = if path == "/done" {
            "href=\"/instances/"
        } else {
            "href=\"/inbox/"
        };
        let (a, b) = (links(&first, prefix), links(&rest, prefix));
        assert!(a.iter().all(|x| !b.contains(x)), "{who}'s {path}: no row on both pages");
    }
}

/// A client that sends its request headers slowly (slowloris) is cut off once the header
/// timeout passes; before, `axum::serve` set no timer and held the connection for ever.
#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = civicflow_server::router(app.state.clone());
    let timeout = std::time::Duration::from_millis(300);
    tokio::spawn(civicflow_server::listen::serve(
        listener,
        router,
        timeout,
        std::future::pending(),
    ));
    // A whole request is answered.
    let mut quick = tokio::net::TcpStream::connect(addr).await.unwrap();
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 64];
    let n = quick.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    // Headers begun and never finished: the server closes the connection.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection was still open after 10 s");
}

/// A forged multipart post (another site's form, no valid token) stores none of its files:
/// before, every file was kept and only then was the token checked.
#[tokio::test]
async fn a_forged_post_with_files_stores_nothing() {
    let app = App::new().await;
    let cookie = sign_in(&app, "wang").await;
    // A picture nobody has uploaded yet.
    let mut png = PNG.to_vec();
    png.extend_from_slice(b"forged");
    let reference = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&png)));
    let mut body = b"--b0undary\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n".to_vec();
    body.extend_from_slice(&png);
    body.extend_from_slice(
        b"\r\n--b0undary\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\nforged\r\n--b0undary--\r\n",
    );
    let req = Request::post("/start/ticket")
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=b0undary")
        .body(Body::from(body))
        .unwrap();
    let (status, _, _) = app.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let path = format!("/api/attachments/{reference}");
    let (status, _, _) = app.send(app.raw("GET", &path, Some("wang"), "", Vec::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the forged post's file was stored");
}

/// A handler that panics answers 500 with an error id, JSON on the API and a page in
/// zh-CN elsewhere, and the same router goes on answering (before, the connection dropped
/// with no answer at all).
#[tokio::test]
async fn a_panicking_handler_answers_500_with_an_error_id_and_the_server_goes_on() {
    use tower::ServiceExt;
    let boom = || async {
        if true {
            panic!("a bug");
        }
        "never"
    };
    let app = axum::Router::new()
        .route("/api/boom", axum::routing::get(boom))
        .route("/boom", axum::routing::get(boom))
        .route("/fine", axum::routing::get(|| async { "fine" }))
        .layer(axum::middleware::from_fn(civicflow_server::contain_panics));
    let call = |path: &str| {
        let app = app.clone();
        let req = Request::get(path).body(Body::empty()).unwrap();
        async move {
            let res = app.oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (status, body) = call("/api/boom").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"], "internal");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("(error "),
        "{body}"
    );
    let (status, page) = call("/boom").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(page.contains("错误编号"), "{page}");
    assert_eq!(call("/fine").await, (StatusCode::OK, "fine".to_string()));
}

/// Posts the sign-in form for `who` (password set beforehand) from a browser already holding
/// `cookie`, with `next`: the answer's status and headers.
async fn sign_in_with(app: &App, who: &str, cookie: Option<&str>, next: &str) -> (StatusCode, axum::http::HeaderMap) {
    let body = format!("login={who}&password=pass-{who}-ok&action=password&next={next}");
    let (status, headers, _) = app.send(form("/login", cookie, &body)).await;
    (status, headers)
}

fn session_of(headers: &axum::http::HeaderMap) -> String {
    headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Session fixation: a session id the browser already holds, made up or an attacker's own
/// planted in the victim's browser, is never the one signing-in gives; the victim's session
/// is new and the planted one stays its owner's. Signing out ends it on the server.
#[tokio::test]
async fn signing_in_always_makes_a_new_session() {
    let app = App::new().await;
    let planted = sign_in(&app, "zhao").await;
    sign_in(&app, "wang").await; // sets wang's password
    let (status, headers) = sign_in_with(&app, "wang", Some(&planted), "/tasks").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let victims = session_of(&headers);
    assert_ne!(victims, planted, "sign-in kept the session the browser brought");
    let (_, _, theirs) = app.send(get("/tasks", Some(&planted))).await;
    assert!(theirs.contains("赵网格") && !theirs.contains("王网格"), "{theirs:.300}");

    let made_up = "cf_session=chosen-by-the-attacker";
    let (_, headers) = sign_in_with(&app, "wang", Some(made_up), "/tasks").await;
    assert_ne!(session_of(&headers), made_up);
    let (status, _, _) = app.send(get("/tasks", Some(made_up))).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "a made-up session id signs nobody in");

    let (_, _, page) = app.send(get("/tasks", Some(&victims))).await;
    let csrf = between(&page, "name=\"_csrf\" value=\"", "\"").to_string();
    let (status, _, _) = app
        .send(form("/logout", Some(&victims), &format!("_csrf={csrf}")))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = app.send(get("/tasks", Some(&victims))).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "a signed-out session still opened a page"
    );
}

/// After signing in, only a path of this site is followed, however the `next` is spelled
/// (encoded, with tabs, backslashes or a scheme); anything else goes to the task list.
#[tokio::test]
async fn sign_in_redirects_only_within_the_site() {
    let app = App::new().await;
    common::sign_in(&app, "wang").await; // sets the password
    let cases = [
        ("%2Fdone", "/done"),
        ("%2Finstances%2Fx%3Ftab%3Dlog", "/instances/x?tab=log"),
        ("%2F%2Fevil.example", "/tasks"),
        ("%2F%09%2Fevil.example", "/tasks"),
        ("%2F%5Cevil.example", "/tasks"),
        ("%5C%5Cevil.example", "/tasks"),
        ("https%3A%2F%2Fevil.example", "/tasks"),
        ("https:evil.example", "/tasks"),
        ("%2F%0D%0ASet-Cookie%3A+x%3Dy", "/tasks"),
        ("javascript%3Aalert(1)", "/tasks"),
        ("%20%2F%2Fevil.example", "/tasks"),
    ];
    for (next, want) in cases {
        let (status, headers) = sign_in_with(&app, "wang", None, next).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(headers[header::LOCATION], want, "next={next}");
    }
}

/// Every route that reads a body refuses one a byte over its limit with 413 (JSON on the
/// API, a page in the person's language on pages) before anything is kept; one at its limit
/// is read. The API's routes come from the OpenAPI document, so a new one is covered.
#[tokio::test]
async fn every_route_refuses_a_body_over_its_limit() {
    use civicflow_server::body_limits as limit;
    let app = App::new().await;
    let (_, accept) = dispatched_ticket(&app).await;
    let cookie = sign_in(&app, "chen").await; // whose task `accept` is
    let instances_before = app.state.runtime.store.verify_chains().await.unwrap().0;
    let doc = serde_json::to_value(civicflow_server::openapi()).unwrap();
    // (method, path, content type, limit, who: API token or page cookie)
    let mut routes: Vec<(String, String, &str, usize, bool)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_none() {
                continue;
            }
            let (content_type, size) = match path.as_str() {
                "/api/plugins" => ("application/json", limit::PLUGIN_PACKAGE),
                // One byte over a file's limit is read, to say so in the upload's own words.
                "/api/attachments" => ("image/png", limit::UPLOAD),
                _ => ("application/json", limit::JSON),
            };
            let concrete = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            routes.push((method.to_uppercase(), concrete, content_type, size, true));
        }
    }
    assert!(routes.len() >= 9, "{routes:?}");
    let urlencoded = "application/x-www-form-urlencoded";
    for path in [
        "/login",
        "/logout",
        "/inbox/read-all",
        "/tasks/x/claim",
        "/tasks/x/withdraw",
    ] {
        routes.push(("POST".into(), path.into(), urlencoded, limit::SMALL_FORM, false));
    }
    for path in ["/start/ticket".to_string(), format!("/tasks/{accept}")] {
        let multipart = "multipart/form-data; boundary=big";
        routes.push(("POST".into(), path, multipart, limit::FORM_WITH_FILES, false));
    }
    routes.push((
        "POST".into(),
        "/open311/v2/requests.json".into(),
        urlencoded,
        limit::JSON,
        true,
    ));

    let mut wrong = Vec::new();
    for (method, path, content_type, size, api) in &routes {
        for (len, too_large) in [(*size, false), (size + 1, true)] {
            // A wrong token, so that a form at its limit is read through and changes nothing.
            let mut body = if *api { Vec::new() } else { b"_csrf=forged&x=".to_vec() };
            body.resize(len, b'a');
            let mut req = app.raw(method, path, api.then_some("chen"), content_type, body);
            if !*api {
                req.headers_mut().insert(header::COOKIE, cookie.parse().unwrap());
            }
            let (status, _, answer) = app.send(req).await;
            let refused = status == StatusCode::PAYLOAD_TOO_LARGE;
            if refused != too_large {
                wrong.push(format!("{method} {path} {len} bytes: {status} {answer:.120}"));
            } else if refused && *api && !answer.contains("\"code\"") {
                wrong.push(format!("{method} {path}: 413 not as a JSON error: {answer:.120}"));
            } else if refused && !*api && !answer.contains("太大") {
                wrong.push(format!("{method} {path}: 413 not as a page in zh-CN: {answer:.120}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let instances_after = app.state.runtime.store.verify_chains().await.unwrap().0;
    assert_eq!(instances_before, instances_after, "an oversized body started something");
}

/// Guessing ids learns nothing: another unit's real ticket (and its task) and a
/// well-formed id never issued answer alike (same status, same body) on the API, the pages
/// and Open311.
#[tokio::test]
async fn a_real_id_out_of_scope_answers_like_one_that_does_not_exist() {
    let app = App::new().await;
    let (ticket, task) = dispatched_ticket(&app).await;
    let never = uuid::Uuid::now_v7().to_string();
    let cookie = sign_in(&app, "zhao").await; // another community's grid worker
    let token = app.tokens["zhao"].clone();
    // (method, path with {} for the id, whether the id is the task's)
    let routes = [
        ("GET", "/api/instances/{}", false),
        ("POST", "/api/tasks/{}/claim", true),
        ("GET", "/open311/v2/requests/{}.json", false),
        ("GET", "/instances/{}", false),
        ("GET", "/tasks/{}", true),
    ];
    for (method, path, of_task) in routes {
        let mut answers = Vec::new();
        for id in [if of_task { &task } else { &ticket }, &never] {
            let concrete = path.replace("{}", id);
            let req = if path.starts_with("/api/") {
                app.raw(method, &concrete, Some("zhao"), "application/json", Vec::new())
            } else if path.starts_with("/open311/") {
                get(&format!("{concrete}?api_key={token}"), None)
            } else {
                get(&concrete, Some(&cookie))
            };
            let (status, _, body) = app.send(req).await;
            answers.push((status, body.replace(id.as_str(), "ID")));
        }
        assert_eq!(answers[0].0, StatusCode::NOT_FOUND, "{path}: {}", answers[0].1);
        assert_eq!(
            answers[0], answers[1],
            "{path}: a real id answers unlike one never issued"
        );
    }
}

/// Rename a table of the SQLite file at `url` from another connection: the server's next
/// query of it fails as a real database failure does.
async fn rename_table(url: &str, from: &str, to: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query(&format!("ALTER TABLE {from} RENAME TO {to}"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The error id an answer gives, checked to be one (a UUID), so whoever helps can find it
/// in the log.
fn error_id(answer: &str) -> String {
    let id: String = answer
        .split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|w| uuid::Uuid::parse_str(w).is_ok())
        .unwrap_or_else(|| panic!("no error id in {answer}"))
        .to_string();
    id
}

#[tokio::test]
async fn a_database_failure_is_the_servers_own_with_an_error_id_never_not_found_or_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("civicflow.db").display());
    let app = App::on(civicflow_store::Store::connect(&url, None).await.unwrap()).await;
    let (id, _) = dispatched_ticket(&app).await;
    let cookie = sign_in(&app, "wang").await;
    let key = &app.tokens["wang"];

    rename_table(&url, "instances", "instances_away").await;
    let (status, _, page) = app.send(get(&format!("/instances/{id}"), Some(&cookie))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{page}");
    assert!(page.contains("错误编号") && !page.contains("未找到"), "{page}");
    error_id(&page);
    let (status, body) = app
        .call("GET", &format!("/api/instances/{id}"), Some("wang"), None, None)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    error_id(body["error"]["message"].as_str().unwrap());
    let path = format!("/open311/v2/requests/{id}.json?api_key={key}");
    let (status, _, list) = app.send(get(&path, None)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{list}");
    error_id(&list);
    rename_table(&url, "instances_away", "instances").await;
    let (status, _, _) = app.send(get(&format!("/instances/{id}"), Some(&cookie))).await;
    assert_eq!(status, StatusCode::OK, "back once the table is");

    // The session is fine but the register cannot be read: not a trip to the sign-in page.
    rename_table(&url, "people", "people_away").await;
    let (status, headers, page) = app.send(get("/tasks", Some(&cookie))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{headers:?}");
    error_id(&page);
    let (status, body) = app.call("GET", "/api/tasks", Some("wang"), None, None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
}

/// The rows of the audit page's list.
fn audit_rows(page: &str) -> Vec<&str> {
    between(page, "id=\"audit-events\">", "</ol>")
        .split("<li class=\"item\">")
        .skip(1)
        .collect()
}

#[tokio::test]
async fn an_admin_searches_the_log_of_their_subtree_and_verifies_its_chains() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("civicflow.db").display());
    let app = App::on(civicflow_store::Store::connect(&url, None).await.unwrap()).await;
    let store = &app.state.runtime.store;
    let (guoyuan, _) = dispatched_ticket(&app).await;
    let xincun_report = serde_json::json!({"workflow": "ticket", "unit": "guoyuan-c2-g1",
        "data": {"category": "road", "description": "井盖缺失需要补上", "location": "新村路2号"}});
    let (status, started) = app
        .call("POST", "/api/instances", Some("zhao"), Some(xincun_report), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let xincun = started["instance"]["id"].as_str().unwrap().to_string();
    let (events_g, events_x) = (
        store.events(&guoyuan).await.unwrap(),
        store.events(&xincun).await.unwrap(),
    );

    // The district's admin sees every event of both communities, said in words.
    let he = sign_in(&app, "he").await;
    let (status, _, page) = app.send(get("/admin/audit", Some(&he))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"nav-audit\""), "the menu offers it to an admin");
    assert_eq!(audit_rows(&page).len(), events_g.len() + events_x.len(), "{page}");
    assert!(
        page.contains("李调度") && page.contains("果园社区第一网格"),
        "names, not ids"
    );
    // By person: only what 李调度 did.
    let by_li = events_g.iter().chain(&events_x).filter(|e| e.actor == "li").count();
    assert!(by_li > 0);
    let (_, _, page) = app
        .send(get("/admin/audit?person=%E6%9D%8E%E8%B0%83%E5%BA%A6", Some(&he)))
        .await;
    assert_eq!(audit_rows(&page).len(), by_li, "{page}");
    // By unit, and a day that is not one.
    let (_, _, page) = app.send(get("/admin/audit?unit=guoyuan-c2", Some(&he))).await;
    assert_eq!(audit_rows(&page).len(), events_x.len(), "{page}");
    let (status, _, page) = app.send(get("/admin/audit?from=yesterday", Some(&he))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("「yesterday」不是日期"), "{page}");

    // A community's admin sees their community only; a sibling's is not there for them.
    let tian = sign_in(&app, "tian").await;
    let (status, _, page) = app.send(get("/admin/audit", Some(&tian))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(audit_rows(&page).len(), events_x.len(), "{page}");
    assert!(
        !page.contains("果园社区第一网格") && page.contains("新村社区第一网格"),
        "{page}"
    );
    let (status, _, _) = app.send(get("/admin/audit?unit=guoyuan-c1", Some(&tian))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nobody else sees the page or the menu item.
    let wang = sign_in(&app, "wang").await;
    let (status, _, _) = app.send(get("/admin/audit", Some(&wang))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, tasks) = app.send(get("/tasks", Some(&wang))).await;
    assert!(!tasks.contains("nav-audit"));

    // What admins changed is there too, at the unit it concerns, for its admins only.
    let mut tokens = std::collections::HashMap::new();
    for who in ["he", "tian"] {
        tokens.insert(
            who,
            store
                .create_token(who, "test", [200 + who.len() as u8; 32])
                .await
                .unwrap(),
        );
    }
    let as_admin = |who: &str, path: &str, body: Value| {
        let mut req = app.raw("POST", path, None, "application/json", body.to_string().into_bytes());
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {}", tokens[who]).parse().unwrap(),
        );
        req
    };
    let overlay = std::fs::read_to_string(common::repo("workflows/overlays/guoyuan-c2.ticket.overlay.yaml")).unwrap();
    let (status, _, answer) = app
        .send(as_admin(
            "tian",
            "/api/overlays",
            serde_json::json!({"source": overlay, "file": "x.yaml"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let table = std::fs::read_to_string(common::repo("workflows/calendars/cn-2026.calendar.yaml")).unwrap();
    let (status, _, answer) = app
        .send(as_admin(
            "he",
            "/api/calendars",
            serde_json::json!({"unit_id": "guoyuan-c1", "text": table}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let changes = |page: &str| -> Vec<String> {
        between(page, "id=\"audit-changes\">", "</ol>")
            .split("<li class=\"item\">")
            .skip(1)
            .map(|row| between(row, "<strong>", "</strong>").to_string())
            .collect()
    };
    let (_, _, page) = app.send(get("/admin/audit", Some(&he))).await;
    assert_eq!(
        changes(&page),
        [
            "何管理员 上传了 2026 年的工作日历",
            "田管理员 发布了本单位对「事件上报与闭环」的第 1 版改动"
        ],
        "{page}"
    );
    let (_, _, page) = app.send(get("/admin/audit", Some(&tian))).await;
    assert_eq!(
        changes(&page),
        ["田管理员 发布了本单位对「事件上报与闭环」的第 1 版改动"]
    );
    let (_, _, page) = app.send(get("/admin/audit?person=he", Some(&he))).await;
    assert_eq!(changes(&page).len(), 1, "by person");

    // Verifying: intact, then one changed record is found.
    let (_, _, page) = app.send(get("/admin/audit", Some(&he))).await;
    let csrf = between(&page, "name=\"_csrf\" value=\"", "\"").to_string();
    let (status, _, page) = app
        .send(form("/admin/audit/verify", Some(&he), &format!("_csrf={csrf}")))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("已核验 2 个事项的记录链，全部完好"), "{page}");
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE events SET payload = replace(payload, '井盖', '路灯') WHERE instance_id = $1")
            .bind(&xincun)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (_, _, page) = app
        .send(form("/admin/audit/verify", Some(&he), &format!("_csrf={csrf}")))
        .await;
    assert!(page.contains("其中 1 个有异常"), "{page}");
    let (status, _, _) = app.send(form("/admin/audit/verify", Some(&tian), "_csrf=forged")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a forged post is refused");
}

/// The value beside `label` in the dashboard table `id`.
fn figure<'a>(page: &'a str, id: &str, label: &str) -> &'a str {
    let table = between(page, &format!("id=\"{id}\""), "</table>");
    let row = between(table, &format!("<th scope=\"row\">{label}</th>"), "</tr>");
    between(row, "<td>", "</td>")
}

#[tokio::test]
async fn the_dashboard_counts_what_the_admins_units_started_and_exports_it() {
    let app = App::new().await;
    let store = &app.state.runtime.store;
    // Three tickets in Guoyuan grid 1 (one dispatched), one in Xincun.
    let (dispatched, _) = dispatched_ticket(&app).await;
    for _ in 0..2 {
        let (status, _) = app
            .call("POST", "/api/instances", Some("wang"), Some(report()), None)
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let xincun = serde_json::json!({"workflow": "ticket", "unit": "guoyuan-c2-g1",
        "data": {"category": "road", "description": "井盖缺失需要补上", "location": "新村路2号"}});
    let (status, _) = app
        .call("POST", "/api/instances", Some("zhao"), Some(xincun), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!store.instance(&dispatched).await.unwrap().position.tokens.is_empty());

    let he = sign_in(&app, "he").await;
    let (status, _, page) = app.send(get("/admin/dashboard?workflow=ticket", Some(&he))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(figure(&page, "dashboard-headline", "受理"), "4", "{page}");
    assert_eq!(figure(&page, "dashboard-headline", "已办结"), "0");
    assert_eq!(figure(&page, "dashboard-headline", "办结率"), "0.0%");
    assert_eq!(figure(&page, "dashboard-headline", "办结用时中位数"), "—");
    let weeks = between(&page, "id=\"dashboard-weeks\"", "</table>");
    assert_eq!(weeks.matches("<tr>").count(), 1, "all started this week: {weeks}");
    // Each table has its chart, drawn on the server; the open ones are its one slice.
    for chart in ["chart-closure", "chart-weeks"] {
        let svg = between(&page, &format!("id=\"{chart}\">"), "</figure>");
        assert!(svg.trim_start().starts_with("<svg"), "{chart}: {svg}");
    }
    assert!(between(&page, "id=\"chart-closure\">", "</figure>").contains("办理中"));
    // The workflow names its category field: the frequent issues, by the choice's label.
    assert_eq!(report()["data"]["category"], "road");
    assert_eq!(figure(&page, "dashboard-categories", "道路设施"), "4", "{page}");
    assert!(between(&page, "id=\"chart-categories\">", "</figure>").contains("<svg"));
    assert!(!page.contains("平均评分"), "no rating yet");
    let (_, _, page) = app
        .send(get("/admin/dashboard?workflow=ticket&unit=guoyuan-c1", Some(&he)))
        .await;
    assert_eq!(figure(&page, "dashboard-headline", "受理"), "3");
    // The community's admin counts their community only, and cannot ask for another.
    let tian = sign_in(&app, "tian").await;
    let (_, _, page) = app.send(get("/admin/dashboard?workflow=ticket", Some(&tian))).await;
    assert_eq!(figure(&page, "dashboard-headline", "受理"), "1");
    let (status, _, _) = app
        .send(get("/admin/dashboard?workflow=ticket&unit=guoyuan-c1", Some(&tian)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let wang = sign_in(&app, "wang").await;
    let (status, _, _) = app.send(get("/admin/dashboard", Some(&wang))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Days that are not, or the wrong way round, are said.
    let (status, _, page) = app
        .send(get(
            "/admin/dashboard?workflow=ticket&from=2026-12-31&to=2026-01-01",
            Some(&he),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("开始日期晚于结束日期"), "{page}");
    // A period before any of them counts nothing.
    let (_, _, page) = app
        .send(get(
            "/admin/dashboard?workflow=ticket&from=2020-01-01&to=2020-01-31",
            Some(&he),
        ))
        .await;
    assert_eq!(figure(&page, "dashboard-headline", "受理"), "0");

    // The CSV says the same, with a byte-order mark for spreadsheet programs.
    let (status, headers, csv) = app.send(get("/admin/dashboard.csv?workflow=ticket", Some(&he))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
    assert!(csv.starts_with('\u{feff}'), "BOM");
    let rows: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(rows[0], "类别,项目,数值");
    assert!(rows.contains(&"总体情况,受理,4"), "{csv}");
    assert!(rows.contains(&"总体情况,办结率,0.0%"), "{csv}");

    // The workbook opens with the same numbers, counts and rates as numbers.
    let (status, headers, xlsx) = app
        .send_for_bytes(get("/admin/dashboard.xlsx?workflow=ticket", Some(&he)))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .ends_with(".xlsx\"")
    );
    use calamine::{Data, Reader};
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(xlsx)).expect("an xlsx workbook");
    assert_eq!(
        book.sheet_names(),
        [
            "总体情况",
            "按类别受理量（高频问题）",
            "每周受理量",
            "当前超时未办（按承办单位）"
        ]
    );
    let sheet = book.worksheet_range("总体情况").unwrap();
    let value = |label: &str| {
        sheet
            .rows()
            .find(|r| r[0] == Data::String(label.into()))
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("no {label}"))
    };
    assert_eq!(value("受理"), Data::Float(4.0));
    assert_eq!(value("办结率"), Data::Float(0.0));
    assert_eq!(value("办结用时中位数"), Data::String("—".into()));
    let weeks = book.worksheet_range("每周受理量").unwrap();
    assert_eq!(weeks.rows().nth(1).map(|r| r[1].clone()), Some(Data::Float(4.0)));
}
