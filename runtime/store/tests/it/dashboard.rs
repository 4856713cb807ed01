use crate::common::*;
use civicflow_engine::validate::load;
use civicflow_store::dashboard::{Figures, Period};
use serde_json::json;

const TIMED: &str = r#"
id: timed
version: 1
title: {zh-CN: 限时办理}
roles:
  clerk: {title: {zh-CN: 办事员}}
start: {roles: [clerk], form: report, to: handle}
statistics: {category: kind, rating: score}
forms:
  report:
    schema: {type: object, properties: {kind: {type: string}}}
  done:
    schema: {type: object, properties: {score: {type: integer}}}
states:
  handle:
    type: task
    form: done
    assign: {role: clerk}
    due: 1d
    transitions: [{to: closed, set: {score: "form.score"}}]
  closed: {type: end}
"#;

#[tokio::test]
async fn figures_count_the_period_under_the_subtree_in_sql() {
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        rt.publish(load("timed.yaml", TIMED).workflow.unwrap()).await.unwrap();
        let hour = chrono::Duration::hours(1);
        // In community a: one closed in an hour, one closed after its day, one left open.
        let road = json!({"kind": "road"});
        let quick = rt.start("clerk_a", "timed", "a", road.clone()).await.unwrap();
        let slow = rt.start("clerk_a", "timed", "a", road.clone()).await.unwrap();
        rt.start("clerk_b", "timed", "b", road.clone()).await.unwrap();
        clock.advance(hour);
        let done = |score: i64| json!({ "score": score });
        rt.complete("clerk_a", &open_task(&rt, &quick.id).await, done(5))
            .await
            .unwrap();
        clock.advance(hour * 29);
        rt.complete("clerk_a", &open_task(&rt, &slow.id).await, done(2))
            .await
            .unwrap();
        let open = rt
            .start("clerk_a", "timed", "a", json!({"kind": "water"}))
            .await
            .unwrap();
        clock.advance(hour * 30);
        // A week later, in the next week: counted in its own week.
        clock.advance(chrono::Duration::days(7));
        rt.start("clerk_a", "timed", "a", road).await.unwrap();

        let community_a = vec![rt.store.unit_path("a").await.unwrap()];
        let period = Period {
            workflow: "timed",
            units: &community_a,
            from: t0(),
            to: t0() + chrono::Duration::days(30),
            weeks_from: t0(),
            category: Some("kind"),
            rating: Some("score"),
        };
        let got = rt.store.figures(&period, rt.now()).await.unwrap();
        let want = Figures {
            started: 4,
            closed: 2,
            closed_on_time: 1,
            median_seconds: Some(3600),
            by_week: vec![(t0(), 3), (t0() + chrono::Duration::days(7), 1)],
            by_category: vec![("road".into(), 3), ("water".into(), 1)],
            rating: Some((3.5, 2)),
            // The one left open is past its day; the one of next week is not yet.
            overdue_by_unit: vec![("a".into(), 1)],
        };
        assert_eq!(got, want, "{}", db.label);
        assert!(!open_task(&rt, &open.id).await.is_empty());

        // The district counts community b too; a period before any start counts nothing.
        let district = vec![rt.store.unit_path("d").await.unwrap()];
        let all = rt
            .store
            .figures(
                &Period {
                    units: &district,
                    ..period.clone()
                },
                rt.now(),
            )
            .await
            .unwrap();
        assert_eq!((all.started, all.overdue_by_unit.len()), (5, 2), "{}", db.label);
        let before = Period {
            from: t0() - chrono::Duration::days(9),
            to: t0(),
            ..period.clone()
        };
        let none = rt.store.figures(&before, rt.now()).await.unwrap();
        assert_eq!((none.started, none.closed, none.median_seconds), (0, 0, None));
        assert_eq!(
            none.overdue_by_unit, want.overdue_by_unit,
            "overdue now, whenever started"
        );
    }
}
