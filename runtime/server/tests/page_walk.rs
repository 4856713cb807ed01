//! Every page a demo person can reach, over demo data in several states, in zh-CN and in en:
//! none may show a message id, an internal unit or person id, an English engine error on a
//! Chinese page, or a notification without text or recipients.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{App, sign_in};
use serde_json::json;
use std::collections::BTreeSet;

/// Everyone who uses the pages in the demo, by what they do.
const WALKERS: [&str; 16] = [
    "wang", "zhao", "li", "chen", "sun", "zhou", "wu", "zheng", "qian", "feng", "ma", "song", "luo", "xie", "he",
    "tian",
];

async fn page(app: &App, cookie: &str, path: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = app.send(req).await;
    (status, body)
}

/// The text a person reads: tags, attributes, scripts and styles removed.
fn visible(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&quot;", "\"").replace("&#x27;", "'").replace("&amp;", "&")
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
}

/// A run of this many English words on a Chinese page is an untranslated sentence.
const ENGLISH_RUN: usize = 4;

fn problems(text: &str, lang: &str, units: &BTreeSet<String>, people: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    const PREFIXES: [&str; 14] = [
        "err-",
        "event-",
        "nav-",
        "task-",
        "tasks-",
        "instance-",
        "done-",
        "inbox-",
        "start-",
        "mine-",
        "span-",
        "duration-",
        "notified-",
        "page-",
    ];
    for w in words(text) {
        if PREFIXES.iter().any(|p| w.starts_with(p)) {
            found.push(format!("message id {w}"));
        }
        if units.contains(w) {
            found.push(format!("unit id {w}"));
        }
        // "he" is also an English word.
        if people.contains(w) && !(lang == "en" && w == "he") {
            found.push(format!("person id {w}"));
        }
    }
    if lang == "zh-CN" {
        let mut run = 0;
        for token in text.split_whitespace() {
            let english = token
                .chars()
                .all(|c| c.is_ascii_alphabetic() || ",.:;\"'()".contains(c))
                && token.chars().filter(char::is_ascii_alphabetic).count() >= 2;
            run = if english { run + 1 } else { 0 };
            if run == ENGLISH_RUN {
                found.push(format!("English sentence near \"{token}\""));
            }
        }
    }
    for empty in ["通知 ：", "通知 （", "Notified :", "Notified ("] {
        if text.contains(empty) && !text.contains("无人接收") && !text.contains("nobody") {
            found.push(format!("notification without recipients ({empty})"));
        }
    }
    found
}

/// Demo data in several states: tickets dispatched, sent back and in the department's
/// hands; an activity open for sign-up with one volunteer in; a wish; a vote proposed, one
/// rejected with a notice to its proposer. Returns the activity's start.
async fn seed_states(app: &App) -> civicflow_store::Applied {
    let runtime = &app.state.runtime;
    let report = |what: &str| json!({"category": "road", "description": what, "location": "果园路5号"});
    // Beichen's routing sends a road report straight to its urban management department.
    let sent_back = runtime
        .start("wang", "ticket", "guoyuan-c1-g1", report("路面塌陷需要修补"))
        .await
        .unwrap();
    let returned = runtime
        .complete(
            "chen",
            &sent_back.new_tasks[0].id,
            json!({"decision": "return", "reason": "属于水务部门职责"}),
        )
        .await
        .unwrap();
    runtime
        .complete("li", &returned.new_tasks[0].id, json!({"department": "beichen-swj"}))
        .await
        .unwrap();
    let accepted = runtime
        .start("wang", "ticket", "guoyuan-c1-g1", report("井盖破损，行人容易踩空"))
        .await
        .unwrap();
    runtime
        .complete("chen", &accepted.new_tasks[0].id, json!({"decision": "accept"}))
        .await
        .unwrap();
    let activity = json!({"title": "果园社区环境清洁日", "kind": "regular", "starts_at": "2099-06-06T08:30:00+08:00",
        "ends_at": "2099-06-06T11:30:00+08:00", "capacity": 2, "planned_hours": 3, "location": "果园社区文化广场"});
    let activity = runtime
        .start("feng", "volunteering", "guoyuan-c1", activity)
        .await
        .unwrap();
    runtime
        .complete("song", &activity.new_tasks[0].id, json!({}))
        .await
        .unwrap();
    runtime
        .start(
            "zhou",
            "micro-wish",
            "guoyuan-c1-g1",
            json!({"title": "希望有人陪老人聊天", "category": "health"}),
        )
        .await
        .unwrap();
    let vote = |title: &str| {
        json!({"title": title, "matter": "ordinary", "opens_at": "2099-05-06T08:00:00+08:00",
            "closes_at": "2099-05-13T20:00:00+08:00", "roll": [{"household": "1-101", "area": 90, "owners": ["zhou"]}]})
    };
    runtime
        .start("feng", "vote", "guoyuan-c1", vote("加装电动自行车充电桩"))
        .await
        .unwrap();
    let rejected = runtime
        .start("feng", "vote", "guoyuan-c1", vote("更换小区大门"))
        .await
        .unwrap();
    runtime
        .complete(
            "zheng",
            &rejected.new_tasks[0].id,
            json!({"approve": false, "reason": "名册需先与物业核对"}),
        )
        .await
        .unwrap();

    activity
}

/// Every page `cookie`'s person reaches in `lang` from the lists, following links to tasks,
/// start forms and instances: `(path, html)` of each that answered (not a redirect).
async fn walk(app: &App, cookie: &str, lang: &str) -> Vec<(String, String)> {
    let mut pages = Vec::new();
    let mut queue: Vec<String> = ["/tasks", "/start", "/done", "/mine", "/inbox"]
        .iter()
        .map(|p| p.to_string())
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, html) = page(app, cookie, &format!("{path}{sep}lang={lang}")).await;
        if status == StatusCode::SEE_OTHER {
            continue;
        }
        assert!(status.is_success(), "{lang} {path}: {status}");
        for link in html.split("href=\"").skip(1).filter_map(|s| s.split('"').next()) {
            let link = link.split('?').next().unwrap_or(link);
            let followed = ["/tasks/", "/start/", "/instances/", "/admin/"]
                .iter()
                .any(|p| link.starts_with(p));
            if followed && !seen.contains(link) {
                queue.push(link.to_string());
            }
        }
        pages.push((path, html));
    }
    pages
}

#[tokio::test]
async fn every_page_in_both_languages_speaks_to_people() {
    let app = App::demo().await;
    let activity = seed_states(&app).await;
    let units: BTreeSet<String> = csv_column("workflows/org/units.csv");
    let people: BTreeSet<String> = csv_column("workflows/org/people.csv");
    let mut visited = 0;
    let mut failures = Vec::new();
    for who in WALKERS {
        let cookie = sign_in(&app, who).await;
        for lang in ["zh-CN", "en"] {
            for (path, html) in walk(&app, &cookie, lang).await {
                visited += 1;
                for p in problems(&visible(&html), lang, &units, &people) {
                    failures.push(format!("{who} {lang} {path}: {p}"));
                }
            }
        }
    }
    // A refusal reads as a sentence in the person's language: a second sign-up, posted.
    let song = sign_in(&app, "song").await;
    let signup = &activity.new_tasks[0].id;
    for (lang, said) in [("zh-CN", "您已经登记过了"), ("en", "You have already entered")] {
        let (_, form) = page(&app, &song, &format!("/tasks/{signup}?lang={lang}")).await;
        let csrf = form
            .split("name=\"_csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        let req = Request::post(format!("/tasks/{signup}"))
            .header(header::COOKIE, &song)
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=walk")
            .body(Body::from(format!(
                "--walk\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n{csrf}\r\n--walk--\r\n"
            )))
            .unwrap();
        let (status, _, refused) = app.send(req).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert!(refused.contains(said), "{refused}");
        for p in problems(&visible(&refused), lang, &units, &people) {
            failures.push(format!("song {lang} refused sign-up: {p}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(visited > 150, "walked {visited} pages");
    println!("walked {visited} pages");
}

/// What a forged post could change: every instance with its tasks, each walker's unread
/// count and whether each walker's session still opens a page.
async fn state_of(app: &App, sessions: &[(&str, String)]) -> String {
    let store = &app.state.runtime.store;
    let mut out = String::new();
    for workflow in [
        "ticket",
        "volunteering",
        "micro-wish",
        "vote",
        "dues",
        "member-development",
    ] {
        for instance in store.instances_of(workflow, 1000).await.unwrap() {
            let tasks = store.instance_tasks(&instance.id).await.unwrap();
            out += &format!("{instance:?}\n{tasks:?}\n");
        }
    }
    for (who, cookie) in sessions {
        let unread = store.unread_count(who).await.unwrap();
        let (status, _) = page(app, cookie, "/tasks").await;
        out += &format!("{who}: {unread} unread, /tasks {status}\n");
    }
    out
}

/// Every `<form method="post">` on a page: its action and whether it posts multipart.
fn post_forms(html: &str) -> Vec<(String, bool)> {
    html.split("<form ")
        .skip(1)
        .filter_map(|rest| {
            let tag = rest.split('>').next()?;
            if !tag.contains("method=\"post\"") {
                return None;
            }
            let action = tag.split("action=\"").nth(1)?.split('"').next()?;
            let action = action.replace("&#x2f;", "/").replace("&amp;", "&");
            Some((action, tag.contains("multipart/form-data")))
        })
        .collect()
}

/// Every form any demo person is shown (sign out, claim, withdraw, mark read, each task's
/// and each start form), posted by that person's own browser with no token and with a
/// wrong one, as another site's page would: each is refused and nothing changes. Sign-in
/// itself, which has no session yet, refuses a post from another origin.
#[tokio::test]
async fn every_form_on_every_page_refuses_a_post_without_its_token() {
    let app = App::demo().await;
    seed_states(&app).await;
    let mut sessions = Vec::new();
    let mut forms = BTreeSet::new();
    for who in WALKERS {
        let cookie = sign_in(&app, who).await;
        for (_, html) in walk(&app, &cookie, "zh-CN").await {
            for (action, multipart) in post_forms(&html) {
                forms.insert((who, cookie.clone(), action, multipart));
            }
        }
        sessions.push((who, cookie));
    }
    let actions: BTreeSet<&str> = forms.iter().map(|(_, _, a, _)| a.as_str()).collect();
    for kind in [
        "/logout",
        "/tasks/",
        "/start/",
        "/inbox/read-all",
        "/admin/audit/verify",
    ] {
        assert!(
            actions.iter().any(|a| a.starts_with(kind)),
            "no {kind} form was found: {actions:?}"
        );
    }
    let before = state_of(&app, &sessions).await;
    let mut accepted = Vec::new();
    // Sign-out last: a forged one that worked would end the session the others post with.
    let (sign_outs, others): (Vec<_>, Vec<_>) = forms.iter().partition(|(_, _, a, _)| a == "/logout");
    for (who, cookie, action, multipart) in others.into_iter().chain(sign_outs) {
        for token in [None, Some("forged")] {
            let (content_type, body) = if *multipart {
                let field = token.map_or(String::new(), |t| {
                    format!("--forge\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\n{t}\r\n")
                });
                ("multipart/form-data; boundary=forge", format!("{field}--forge--\r\n"))
            } else {
                let body = token.map_or(String::new(), |t| format!("_csrf={t}"));
                ("application/x-www-form-urlencoded", body)
            };
            let req = Request::post(action.as_str())
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap();
            let (status, _, answer) = app.send(req).await;
            if status != StatusCode::FORBIDDEN {
                accepted.push(format!("{who} {action} token {token:?}: {status} {answer:.200}"));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "forged posts not refused:\n{}",
        accepted.join("\n")
    );
    assert_eq!(
        state_of(&app, &sessions).await,
        before,
        "a forged post changed something"
    );
    println!("{} forms, each forged twice", forms.len());

    let password = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "civicflow.example")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from(
            "login=wang&password=pass-wang-ok&action=password&next=/tasks",
        ))
        .unwrap();
    let (status, headers, _) = app.send(password).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        headers.get(header::SET_COOKIE).is_none(),
        "a session was made for another site"
    );
}

fn csv_column(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(common::repo(path)).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_walk_would_notice_what_it_looks_for() {
    let units: BTreeSet<String> = ["beichen-cgj".to_string()].into();
    let people: BTreeSet<String> = ["zhou".to_string(), "he".to_string()].into();
    let found = |text: &str, lang: &str| problems(text, lang, &units, &people);
    assert_eq!(
        found("未能提交：not allowed: you may not submit an entry", "zh-CN").len(),
        1
    );
    assert_eq!(found("承办部门 beichen-cgj", "zh-CN").len(), 1);
    assert_eq!(found("业主 zhou", "en").len(), 1);
    assert_eq!(found("event-rule_decided", "zh-CN").len(), 1);
    assert_eq!(found("通知 ：", "zh-CN").len(), 1);
    assert!(found("He was told", "en").is_empty());
    assert!(found("果园社区 · English", "zh-CN").is_empty());
}
