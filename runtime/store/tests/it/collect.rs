//! Entries from many people at once, signed callbacks and ledger credits, on each database.

use crate::common::*;
use civicflow_engine::validate::load;
use civicflow_store::signals::{SignalOutcome, sign};
use serde_json::json;

const BALLOT: &str = r#"
id: ballot
version: 1
title: {zh-CN: 表决}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], to: voting}
forms:
  ballot:
    schema: {type: object, required: [choice], properties: {choice: {type: string}}}
states:
  voting:
    type: collect
    form: ballot
    assign: {role: clerk, below: true}
    collect: {into: ballots, key: "actor.id"}
    timers: [{after: 1d, to: done}]
  done: {type: end}
"#;

const PAYMENT: &str = r#"
id: payment
version: 1
title: {zh-CN: 缴费}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], to: pay}
signals:
  paid: {secret: TEST_PROVIDER_SECRET, instance: /order, id: /txn}
schedules:
  - id: yearly
    cron: "0 0 1 1 *"
    for_each_role: clerk
    data: {member: "person.id", points: "ledger.points or 0"}
states:
  pay:
    type: wait
    on:
      paid:
        - to: done
          when: "signal.fen == 100"
          credit: [{account: points, to: "instance.created_by", amount: "signal.fen / 10"}]
  done: {type: end}
"#;

async fn publish(rt: &civicflow_store::Runtime, src: &str) {
    rt.publish(load("fixture.yaml", src).workflow.expect("valid fixture"))
        .await
        .expect("publish");
}

/// Twenty people vote at the same moment: every ballot is kept, none twice. On PostgreSQL
/// the actions race on one instance and the losers are read again and retried.
#[tokio::test]
async fn simultaneous_entries_are_all_kept_once() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let voters: Vec<String> = (0..20).map(|i| format!("voter{i}")).collect();
        let people: Vec<_> = voters.iter().map(|v| person(v, "a", &["clerk"])).collect();
        rt.store.import_org(&[], &people, &|_| {}).await.expect("voters");
        publish(&rt, BALLOT).await;
        let inst = rt.start("clerk_a", "ballot", "a", json!({})).await.unwrap();
        let task = open_task(&rt, &inst.id).await;
        let rt = std::sync::Arc::new(rt);
        let mut handles = Vec::new();
        for v in voters.clone() {
            let (rt, task) = (rt.clone(), task.clone());
            handles.push(tokio::spawn(async move {
                rt.complete(&v, &task, json!({"choice": "yes"})).await
            }));
        }
        for h in handles {
            h.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: a ballot was refused: {e}", db.label));
        }
        let again = rt.complete("voter3", &task, json!({"choice": "no"})).await.unwrap_err();
        assert_eq!(again.code(), "duplicate", "{}", db.label);
        let data = rt.store.instance(&inst.id).await.unwrap().data;
        let mut keys: Vec<&str> = data["ballots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["key"].as_str().unwrap())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 20, "{}: {data}", db.label);
    }
}

/// A callback is checked, taken once, ignored when nothing waits for it, and its credit is
/// read by the next yearly schedule.
#[tokio::test]
async fn signed_callbacks_are_taken_once_and_credit_the_ledger() {
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        rt.provide_secret("TEST_PROVIDER_SECRET", "s3cret");
        publish(&rt, PAYMENT).await;
        let inst = rt.start("clerk_a", "payment", "a", json!({})).await.unwrap();
        let body = |txn: &str| serde_json::to_vec(&json!({"order": inst.id, "txn": txn, "fen": 100})).unwrap();

        let forged = rt
            .signal("payment", "paid", &body("t1"), &sign("guess", &body("t1")))
            .await;
        assert_eq!(forged.unwrap_err().code(), "forbidden", "{}", db.label);
        let first = rt
            .signal("payment", "paid", &body("t1"), &sign("s3cret", &body("t1")))
            .await
            .unwrap();
        assert!(matches!(first, SignalOutcome::Applied(_)), "{}: {first:?}", db.label);
        let repeat = rt
            .signal("payment", "paid", &body("t1"), &sign("s3cret", &body("t1")))
            .await
            .unwrap();
        assert!(matches!(repeat, SignalOutcome::Duplicate), "{}: {repeat:?}", db.label);
        let second = rt
            .signal("payment", "paid", &body("t2"), &sign("s3cret", &body("t2")))
            .await
            .unwrap();
        assert!(matches!(second, SignalOutcome::Ignored(_)), "{}: {second:?}", db.label);

        let kinds: Vec<String> = rt
            .store
            .events(&inst.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| *k == "credited").count(),
            1,
            "{}: {kinds:?}",
            db.label
        );
        assert_eq!(
            kinds.iter().filter(|k| *k == "signal_ignored").count(),
            1,
            "{}",
            db.label
        );

        clock.set(
            chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:01Z")
                .unwrap()
                .to_utc(),
        );
        rt.run_due_schedules().await.unwrap();
        let items = rt.store.instances_of("payment", 100).await.unwrap();
        let yearly = items
            .iter()
            .find(|i| i.data["member"] == "clerk_a")
            .expect("a yearly item");
        assert_eq!(yearly.data["points"], json!(10.0), "{}", db.label);
        let other = items
            .iter()
            .find(|i| i.data["member"] == "clerk_b")
            .expect("a yearly item");
        assert_eq!(other.data["points"], json!(0), "{}", db.label);
    }
}
