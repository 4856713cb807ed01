use crate::common::*;
use civicflow_engine::ManualClock;
use serde_json::json;
use std::sync::Arc;

fn count(events: &[civicflow_store::EventRow], kind: &str) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

/// A timer that fell due while no server was running fires once on the next start.
#[tokio::test]
async fn timer_due_during_downtime_fires_once_after_restart() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let inst = rt.start("clerk_a", "review", "a", json!({"amount": 1})).await.unwrap();
        assert_eq!(rt.fire_due_timers(10).await.unwrap(), 0, "nothing is due yet");
        rt.store.close().await;
        drop(rt);

        // Three days later a new process starts on the same database.
        let clock = Arc::new(ManualClock::new(t0() + chrono::Duration::days(3)));
        let rt = runtime(db.store().await, clock).await;
        // The escalation (after 1 day) and the expiry (after 2 days) are both due.
        assert_eq!(rt.fire_due_timers(10).await.unwrap(), 2, "{}", db.label);
        assert_eq!(
            rt.fire_due_timers(10).await.unwrap(),
            0,
            "{}: fired once only",
            db.label
        );
        let end = rt.store.instance(&inst.id).await.unwrap();
        assert_eq!(end.position.tokens, vec!["expired"], "{}", db.label);
        let events = rt.store.events(&inst.id).await.unwrap();
        assert_eq!(count(&events, "timer_fired"), 1);
        assert_eq!(count(&events, "escalated"), 1);
        let tasks = rt.store.instance_tasks(&inst.id).await.unwrap();
        assert_eq!(
            tasks[0].status,
            civicflow_engine::TaskStatus::Cancelled,
            "leaving the state cancels its task"
        );
        assert_eq!(tasks[0].task.escalated_to.as_deref(), Some("manager"));
    }
}

#[tokio::test]
async fn escalation_lets_the_escalated_role_act() {
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        let inst = rt.start("clerk_a", "review", "a", json!({"amount": 1})).await.unwrap();
        let task = open_task(&rt, &inst.id).await;
        assert_eq!(
            rt.complete("boss", &task, json!({"approve": true}))
                .await
                .unwrap_err()
                .code(),
            "forbidden"
        );
        clock.advance(chrono::Duration::hours(25));
        assert_eq!(rt.fire_due_timers(10).await.unwrap(), 1);
        let done = rt.complete("boss", &task, json!({"approve": true})).await.unwrap();
        assert_eq!(done.position.tokens, vec!["done"], "{}", db.label);
        // The expiry timer went with the state it belonged to.
        clock.advance(chrono::Duration::days(5));
        assert_eq!(rt.fire_due_timers(10).await.unwrap(), 0);
    }
}

/// Two server processes on one PostgreSQL database: every timer fires exactly once.
#[tokio::test]
async fn two_runtimes_on_postgres_fire_each_timer_exactly_once() {
    let Some(db) = postgres() else {
        eprintln!("skipped: set CIVICFLOW_TEST_PG=postgres://... to run the PostgreSQL tests");
        return;
    };
    let (rt, _) = setup(&db).await;
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(
            rt.start("clerk_a", "review", "a", json!({"amount": i}))
                .await
                .unwrap()
                .id
                .clone(),
        );
    }
    drop(rt);
    let later = t0() + chrono::Duration::days(3);
    let one = runtime(db.store().await, Arc::new(ManualClock::new(later))).await;
    let two = runtime(db.store().await, Arc::new(ManualClock::new(later))).await;
    let drain = |rt: civicflow_store::Runtime| async move {
        let mut total = 0;
        loop {
            let n = rt.fire_due_timers(7).await.unwrap();
            total += n;
            if n == 0 && rt.fire_due_timers(1).await.unwrap() == 0 {
                return (total, rt);
            }
        }
    };
    let ((a, one), (b, _two)) = tokio::join!(drain(one), drain(two));
    assert_eq!(
        a + b,
        240,
        "120 escalations and 120 expiries; first runtime fired {a}, second {b}"
    );
    for id in &ids {
        let events = one.store.events(id).await.unwrap();
        assert_eq!(count(&events, "timer_fired"), 1, "instance {id}");
        assert_eq!(count(&events, "escalated"), 1, "instance {id}");
    }
    let (_, broken) = one.store.verify_chains().await.unwrap();
    assert!(broken.is_empty(), "{broken:?}");
    one.store.drop_schema(db.schema.as_deref().unwrap()).await.unwrap();
}

/// Escalation to a role at a level above the instance's unit reaches a task that sits in
/// another branch of the tree (a department's task reaching the street's command centre):
/// the escalated holder may act on it and finds it in their task list.
#[tokio::test]
async fn escalation_by_level_reaches_a_task_in_another_branch() {
    const ACROSS: &str = r#"
id: across
version: 1
title: {zh-CN: 跨部门}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], to: handle}
states:
  handle:
    type: task
    assign: {role: clerk, unit: "'b'"}
    due: 1d
    escalate: [{to: {role: clerk, level: community}}]
    transitions: [{to: done}]
  done: {type: end}
"#;
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        let wf = civicflow_engine::validate::load("across.yaml", ACROSS)
            .workflow
            .unwrap();
        rt.publish(wf).await.unwrap();
        let inst = rt.start("clerk_a", "across", "a", json!({})).await.unwrap();
        let task = open_task(&rt, &inst.id).await;
        let listed = async |rt: &civicflow_store::Runtime, who: &str| {
            let tasks = crate::common::tasks_of(rt, who).await;
            tasks.iter().any(|t| t.task.instance_id == inst.id)
        };
        assert!(
            !listed(&rt, "clerk_a").await,
            "{}: not clerk_a's before the limit",
            db.label
        );
        assert_eq!(
            rt.complete("clerk_a", &task, json!({})).await.unwrap_err().code(),
            "forbidden"
        );
        clock.advance(chrono::Duration::hours(25));
        assert_eq!(rt.fire_due_timers(10).await.unwrap(), 1);
        assert!(
            listed(&rt, "clerk_a").await,
            "{}: in clerk_a's list once escalated",
            db.label
        );
        let done = rt.complete("clerk_a", &task, json!({})).await.unwrap();
        assert_eq!(done.position.tokens, vec!["done"], "{}", db.label);
    }
}

/// What a step writes to a person's register is kept beyond its instance, survives a new
/// import of the people, and is what a later schedule reads.
#[tokio::test]
async fn register_attributes_reach_later_instances_and_survive_an_import() {
    const MARK: &str = r#"
id: mark
version: 1
title: {zh-CN: 登记}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], to: mark}
states:
  mark:
    type: task
    assign: {role: clerk}
    transitions:
      - to: done
        register: {person: "instance.created_by", set: {exempt_until: "'2099-12'", ignored: "none"}}
  done: {type: end}
schedules:
  - id: items
    cron: "0 9 1 * *"
    for_each_role: clerk
    data: {member: "person.id", exempt: "(person.attributes.exempt_until or '') >= scheduled_on[:7]"}
"#;
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        let wf = civicflow_engine::validate::load("mark.yaml", MARK).workflow.unwrap();
        rt.publish(wf).await.unwrap();
        let inst = rt.start("clerk_a", "mark", "a", json!({})).await.unwrap();
        let task = open_task(&rt, &inst.id).await;
        rt.complete("clerk_a", &task, json!({})).await.unwrap();
        let events = rt.store.events(&inst.id).await.unwrap();
        let written = events.iter().find(|e| e.kind == "register_updated").expect("audited");
        assert_eq!(
            written.payload["set"],
            json!({"exempt_until": "2099-12"}),
            "{}: null is not written",
            db.label
        );
        // A new import of the same people keeps what the workflow wrote.
        seed(&rt.store).await;
        clock.advance(chrono::Duration::days(40));
        rt.run_due_schedules().await.unwrap();
        let items = rt.store.instances_of("mark", 100).await.unwrap();
        let exempt = |who: &str| {
            items
                .iter()
                .find(|i| i.data["member"] == who)
                .map(|i| i.data["exempt"].clone())
        };
        assert_eq!(exempt("clerk_a"), Some(json!(true)), "{}", db.label);
        assert_eq!(exempt("clerk_b"), Some(json!(false)), "{}", db.label);
    }
}

/// A level no unit has is refused when the workflow is published, not when it first fires.
#[tokio::test]
async fn a_misspelt_level_is_refused_at_publication() {
    let db = &databases()[0];
    let (rt, _) = setup(db).await;
    let text = "id: lv\nversion: 1\ntitle: {zh-CN: x}\nroles: {clerk: {title: {zh-CN: x}}}\nstart: {roles: [clerk], to: t}\nstates:\n  t: {type: task, assign: {role: clerk, level: comunity}, transitions: [{to: e}]}\n  e: {type: end}\n";
    let wf = civicflow_engine::validate::load("lv.yaml", text).workflow.unwrap();
    let e = rt.publish(wf).await.unwrap_err().to_string();
    assert!(
        e.contains("\"comunity\"") && e.contains("did you mean \"community\""),
        "{e}"
    );
    assert!(rt.registry.latest("lv").is_none(), "nothing is published");
}

/// An import elsewhere (the CLI, another server) that changes only a unit's level is noticed.
#[tokio::test]
async fn an_import_that_changes_a_level_is_noticed() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        assert!(!rt.sync_places().await.unwrap(), "{}: nothing changed yet", db.label);
        let units = vec![unit("city", None, "city"), unit("d", Some("city"), "street")];
        rt.store.import_org(&units, &[], &|_| {}).await.unwrap();
        assert!(rt.sync_places().await.unwrap(), "{}: same count, other level", db.label);
    }
}
