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
        assert_eq!(tasks[0].status, "cancelled", "leaving the state cancels its task");
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
