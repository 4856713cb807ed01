use crate::common::*;
use serde_json::json;

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
