use crate::common::*;
use civicflow_store::idempotency::Once;
use civicflow_store::{Applied, Op};
use serde_json::{Value, json};
use std::time::Duration;

fn answer(applied: &Applied) -> Value {
    json!({"id": applied.instance.id, "rev": applied.instance.rev})
}

fn start(amount: i64) -> Op {
    Op::Start {
        person: "clerk_a".into(),
        workflow: "review".into(),
        unit: "a".into(),
        data: json!({"amount": amount}),
    }
}

async fn instances(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM instances")
        .fetch_one(&db.raw().await)
        .await
        .unwrap()
}

/// A keyed request cut off at any moment (the server killed, the client gone) leaves its
/// key answered together with its effect, or free: the retry gets the first answer or runs
/// once. Before, the key was reserved in a commit of its own and answered "in progress"
/// forever when the request died in between.
#[tokio::test]
async fn a_keyed_request_cut_off_at_any_moment_is_retried_into_exactly_one_effect() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let before = instances(&db).await;
        let tries = 40u64;
        let mut cut_off = 0;
        for i in 0..tries {
            let key = format!("cut-{i}");
            let first =
                tokio::time::timeout(Duration::from_micros(i * 150), rt.once(Some(&key), answer, start(1))).await;
            let retry = rt.once(Some(&key), answer, start(1)).await.unwrap();
            match (first, retry) {
                (Ok(Ok(Once::Ran(first))), Once::Repeated(again)) => assert_eq!(first, again, "{}", db.label),
                (Err(_), Once::Ran(_) | Once::Repeated(_)) => cut_off += 1,
                other => panic!("{}: {key}: {other:?}", db.label),
            }
        }
        assert!(
            cut_off > 0,
            "{}: no request was cut off; the test proves nothing",
            db.label
        );
        assert_eq!(instances(&db).await - before, tries as i64, "{}", db.label);
    }
}

/// Eight copies of one keyed request at once: one runs, seven are sent its answer.
#[tokio::test]
async fn concurrent_copies_of_a_keyed_request_run_once() {
    for db in databases() {
        let rt = std::sync::Arc::new(setup(&db).await.0);
        let before = instances(&db).await;
        let mut copies = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let rt = rt.clone();
            copies.spawn(async move { rt.once(Some("same"), answer, start(2)).await.unwrap() });
        }
        let answers: Vec<Once> = copies.join_all().await;
        let ran: Vec<&Value> = answers
            .iter()
            .filter_map(|a| if let Once::Ran(v) = a { Some(v) } else { None })
            .collect();
        assert_eq!(ran.len(), 1, "{}: {answers:?}", db.label);
        for a in &answers {
            let (Once::Ran(v) | Once::Repeated(v)) = a;
            assert_eq!(v, ran[0], "{}", db.label);
        }
        assert_eq!(instances(&db).await - before, 1, "{}", db.label);
    }
}

/// A completion whose answer was lost is retried into its own answer, not into "already
/// completed"; a refused keyed completion keeps nothing, so the corrected one may reuse it.
#[tokio::test]
async fn a_retried_keyed_completion_gets_its_own_answer() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let inst = rt.start("clerk_a", "review", "a", json!({"amount": 5})).await.unwrap();
        let task = open_task(&rt, &inst.id).await;
        let complete = |form: Value| Op::Complete {
            person: "clerk_a".into(),
            task: task.clone(),
            form,
        };
        let refused = rt
            .once(Some("done-1"), answer, complete(json!({"approve": "yes"})))
            .await;
        assert_eq!(refused.unwrap_err().code(), "invalid_form", "{}", db.label);
        let Once::Ran(first) = rt
            .once(Some("done-1"), answer, complete(json!({"approve": true})))
            .await
            .unwrap()
        else {
            panic!("{}: the corrected completion did not run", db.label);
        };
        let again = rt
            .once(Some("done-1"), answer, complete(json!({"approve": true})))
            .await
            .unwrap();
        assert_eq!(again, Once::Repeated(first), "{}", db.label);
        let unkeyed = rt
            .complete("clerk_a", &task, json!({"approve": true}))
            .await
            .unwrap_err();
        assert!(matches!(unkeyed.code(), "gone" | "conflict"), "{}: {unkeyed}", db.label);
    }
}

/// A key's answer is kept for a week: a retry within it is answered, one after the chore
/// has dropped it runs as a new request.
#[tokio::test]
async fn a_keys_answer_is_kept_for_a_week_then_forgotten() {
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        let Once::Ran(first) = rt.once(Some("week"), answer, start(3)).await.unwrap() else {
            panic!("{}: did not run", db.label);
        };
        clock.advance(civicflow_store::idempotency::KEPT_FOR - chrono::Duration::hours(1));
        assert_eq!(rt.store.forget_old_keys(rt.now()).await.unwrap(), 0, "{}", db.label);
        assert_eq!(
            rt.once(Some("week"), answer, start(3)).await.unwrap(),
            Once::Repeated(first.clone())
        );
        clock.advance(chrono::Duration::hours(2));
        assert_eq!(rt.store.forget_old_keys(rt.now()).await.unwrap(), 1, "{}", db.label);
        let Once::Ran(second) = rt.once(Some("week"), answer, start(3)).await.unwrap() else {
            panic!("{}: a forgotten key was still answered", db.label);
        };
        assert_ne!(first, second);
    }
}
