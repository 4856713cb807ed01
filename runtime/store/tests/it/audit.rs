use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn hash_chain_detects_an_edited_event() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let a = rt.start("clerk_a", "review", "a", json!({"amount": 10})).await.unwrap();
        rt.complete("clerk_a", &open_task(&rt, &a.id).await, json!({"approve": true}))
            .await
            .unwrap();
        let b = rt.start("clerk_a", "review", "a", json!({"amount": 20})).await.unwrap();
        let (checked, broken) = rt.store.verify_chains().await.unwrap();
        assert_eq!((checked, broken.len()), (2, 0), "{}", db.label);

        // Somebody with database access rewrites history: the approval becomes a rejection.
        let raw = db.raw().await;
        let edited = sqlx::query("UPDATE events SET payload = REPLACE(payload, 'true', 'false') WHERE instance_id = $1 AND kind = 'task_completed'")
            .bind(&a.id)
            .execute(&raw)
            .await
            .unwrap();
        assert_eq!(edited.rows_affected(), 1);
        let (_, broken) = rt.store.verify_chains().await.unwrap();
        assert_eq!(broken.len(), 1, "{}", db.label);
        assert_eq!(broken[0].instance_id, a.id);
        assert!(broken[0].reason.contains("edited"), "{}", broken[0].reason);

        // Deleting the last event of another instance is caught too.
        sqlx::query(
            "DELETE FROM events WHERE instance_id = $1 AND seq = (SELECT MAX(seq) FROM events WHERE instance_id = $1)",
        )
        .bind(&b.id)
        .execute(&raw)
        .await
        .unwrap();
        let (_, broken) = rt.store.verify_chains().await.unwrap();
        assert_eq!(broken.len(), 2, "{}", db.label);
    }
}
