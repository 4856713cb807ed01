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

#[tokio::test]
async fn the_log_is_searched_within_the_admins_subtrees_by_person_workflow_and_time_in_pages() {
    use civicflow_store::{EventCursor, EventSearch};
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        let a = rt.start("clerk_a", "review", "a", json!({"amount": 10})).await.unwrap();
        clock.advance(chrono::Duration::hours(1));
        rt.complete("clerk_a2", &open_task(&rt, &a.id).await, json!({"approve": true}))
            .await
            .unwrap();
        clock.advance(chrono::Duration::hours(1));
        let b = rt.start("clerk_b", "review", "b", json!({"amount": 20})).await.unwrap();
        let store = &rt.store;
        let path = |u: &str| {
            let store = store.clone();
            let u = u.to_string();
            async move { store.unit_path(&u).await.unwrap() }
        };
        let (district, community_a) = (vec![path("d").await], vec![path("a").await]);
        let all_a = store.events(&a.id).await.unwrap();
        let all_b = store.events(&b.id).await.unwrap();
        fn search(units: &[String]) -> EventSearch<'_> {
            EventSearch {
                units,
                limit: 100,
                ..Default::default()
            }
        }

        // The district sees both communities, newest first; a community only its own.
        let found = store.search_events(&search(&district)).await.unwrap();
        assert_eq!(found.len(), all_a.len() + all_b.len(), "{}", db.label);
        assert!(found.windows(2).all(|w| w[0].row.at >= w[1].row.at), "{}", db.label);
        assert_eq!(found[0].instance_id, b.id);
        let found = store.search_events(&search(&community_a)).await.unwrap();
        assert!(found.iter().all(|f| f.instance_id == a.id), "{}", db.label);
        assert_eq!(found.len(), all_a.len());
        assert!(store.search_events(&search(&[])).await.unwrap().is_empty());

        // By person, and by time: what clerk_a2 did, and what happened in the first hour.
        let by = EventSearch {
            actor: Some("clerk_a2"),
            ..search(&district)
        };
        let found = store.search_events(&by).await.unwrap();
        assert_eq!(found.len(), all_a.iter().filter(|e| e.actor == "clerk_a2").count());
        assert!(!found.is_empty() && found.iter().all(|f| f.row.actor == "clerk_a2"));
        let first_hour = EventSearch {
            to: Some(t0() + chrono::Duration::minutes(59)),
            ..search(&district)
        };
        let found = store.search_events(&first_hour).await.unwrap();
        assert!(found.iter().all(|f| f.row.at == t0()), "{}", db.label);
        assert_eq!(found.len(), all_a.iter().filter(|e| e.at == t0()).count());
        let other = EventSearch {
            workflow: Some("parallel"),
            ..search(&district)
        };
        assert!(store.search_events(&other).await.unwrap().is_empty());

        // Pages of two meet end to end: every event once, in order.
        let mut seen = Vec::new();
        let mut after: Option<EventCursor> = None;
        loop {
            let page = EventSearch {
                limit: 2,
                after: after.as_ref(),
                ..search(&district)
            };
            let rows = store.search_events(&page).await.unwrap();
            if rows.is_empty() {
                break;
            }
            after = Some(EventCursor::parse(&EventCursor::after(rows.last().unwrap()).to_string()).unwrap());
            seen.extend(rows.into_iter().map(|f| (f.instance_id, f.row.seq)));
        }
        assert_eq!(seen.len(), all_a.len() + all_b.len(), "{}", db.label);
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len());

        // Verifying one subtree checks its instances only.
        assert_eq!(store.verify_chains_under(&community_a).await.unwrap().0, 1);
        assert_eq!(store.verify_chains_under(&district).await.unwrap().0, 2);
    }
}
