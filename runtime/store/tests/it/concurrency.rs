use crate::common::*;
use serde_json::json;
use std::sync::Arc;

/// Two people complete the same task at the same moment: exactly one wins, the other gets
/// a conflict, and the log shows one completion.
#[tokio::test]
async fn concurrent_completion_of_one_task_has_exactly_one_winner() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        for round in 0..20 {
            let inst = rt
                .start("clerk_a", "review", "a", json!({"amount": round}))
                .await
                .unwrap();
            let task = open_task(&rt, &inst.id).await;
            let (x, y) = tokio::join!(
                rt.complete("clerk_a", &task, json!({"approve": true})),
                rt.complete("clerk_a2", &task, json!({"approve": false})),
            );
            let wins = [x.is_ok(), y.is_ok()].iter().filter(|w| **w).count();
            assert_eq!(wins, 1, "{} round {round}: {x:?} / {y:?}", db.label);
            let loser = x.err().or(y.err()).expect("one side failed");
            assert_eq!(loser.code(), "conflict", "{}: {loser}", db.label);
            let completions = rt
                .store
                .events(&inst.id)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.kind == "task_completed")
                .count();
            assert_eq!(completions, 1);
        }
    }
}

/// Concurrent actions may share one transaction (SQLite's group commit). One whose write
/// fails must not take the others with it, nor leave anything half-written.
#[tokio::test]
async fn a_failing_write_among_concurrent_actions_spoils_nothing_else() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let good = rt.start("clerk_a", "route", "a", json!({})).await.unwrap();
        let bad = rt.start("clerk_a", "route", "a", json!({})).await.unwrap();
        let (g, b) = tokio::join!(
            rt.complete("clerk_a", &good.new_tasks[0].id, json!({"unit": "b"})),
            rt.complete("clerk_a2", &bad.new_tasks[0].id, json!({"unit": "nowhere"})),
        );
        let g = g.unwrap_or_else(|e| panic!("{}: {e}", db.label));
        assert_eq!(g.new_tasks[0].unit_path, "/city/d/b/", "{}", db.label);
        let err = b.unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{}: {err}", db.label);
        let untouched = rt.store.instance(&bad.id).await.unwrap();
        assert_eq!(
            (untouched.rev, untouched.position.tokens.clone()),
            (bad.rev, vec!["route".to_string()]),
            "{}",
            db.label
        );
        assert_eq!(
            rt.store.events(&bad.id).await.unwrap().len(),
            rt.store.events(&good.id).await.unwrap().len() - 4
        );
        let (_, broken) = rt.store.verify_chains().await.unwrap();
        assert!(broken.is_empty(), "{}: {broken:?}", db.label);
    }
}

/// Starts at the same moment each get their own number, with no gap, and the number stored
/// is the one the starter was told (it is taken as the last write of the start).
#[tokio::test]
async fn concurrent_starts_get_consecutive_numbers_as_stored() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let rt = Arc::new(rt);
        let starts: Vec<_> = (0..24)
            .map(|n| {
                let rt = rt.clone();
                tokio::spawn(async move { rt.start("clerk_a", "review", "a", json!({"amount": n})).await })
            })
            .collect();
        let mut numbers = Vec::new();
        for s in starts {
            let applied = s.await.unwrap().unwrap_or_else(|e| panic!("{}: {e}", db.label));
            let stored = rt.store.instance(&applied.id).await.unwrap();
            assert_eq!(stored.number, applied.number, "{}", db.label);
            numbers.push(applied.number.expect("a start is numbered"));
        }
        numbers.sort();
        assert_eq!(numbers, (1..=24).collect::<Vec<i64>>(), "{}", db.label);
    }
}
