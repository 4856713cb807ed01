use crate::common::*;
use civicflow_engine::EngineError;
use civicflow_store::StoreError;
use serde_json::json;

#[tokio::test]
async fn guards_choose_the_path_and_scope_limits_who_acts() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let small = rt.start("clerk_a", "review", "a", json!({"amount": 50})).await.unwrap();
        assert_eq!(small.position.tokens, vec!["clerk_review"], "{}", db.label);
        let big = rt
            .start("clerk_a", "review", "a", json!({"amount": 5000}))
            .await
            .unwrap();
        assert_eq!(big.position.tokens, vec!["manager_review"], "{}", db.label);

        // A clerk of community b cannot act on community a's task, and nothing changes.
        let task = open_task(&rt, &small.id).await;
        let before = rt.store.events(&small.id).await.unwrap().len();
        let err = rt
            .complete("clerk_b", &task, json!({"approve": true}))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Engine(EngineError::Forbidden(_))),
            "{}: {err}",
            db.label
        );
        assert_eq!(rt.store.events(&small.id).await.unwrap().len(), before);

        // The district manager's role covers the whole subtree.
        let done = rt
            .complete("boss", &open_task(&rt, &big.id).await, json!({"approve": true}))
            .await
            .unwrap();
        assert_eq!(done.position.tokens, vec!["done"]);
        assert_eq!(done.data["approved_by"], "boss");
        assert_eq!(done.status.as_str(), "completed");

        let rejected = rt.complete("clerk_a2", &task, json!({"approve": false})).await.unwrap();
        assert_eq!(rejected.position.tokens, vec!["rejected"], "{}", db.label);
        assert_eq!(rejected.data["clerk_review"], json!({"approve": false}));
    }
}

#[tokio::test]
async fn bad_form_data_is_refused_per_field_and_changes_nothing() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let err = rt
            .start("clerk_a", "review", "a", json!({"amount": -3}))
            .await
            .unwrap_err();
        let StoreError::Engine(EngineError::InvalidForm(fields)) = err else {
            panic!("{}: {err}", db.label)
        };
        assert_eq!(fields[0].0, "/amount");
        // A field the start form does not declare (the manager's `approved_by`) is refused:
        // a starter cannot pre-fill what a later step writes.
        let err = rt
            .start("clerk_a", "review", "a", json!({"amount": 10, "approved_by": "me"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Engine(EngineError::InvalidForm(f)) if f[0].0 == "/approved_by"),
            "{}: {err}",
            db.label
        );

        let inst = rt.start("clerk_a", "review", "a", json!({"amount": 10})).await.unwrap();
        let task = open_task(&rt, &inst.id).await;
        let err = rt
            .complete("clerk_a", &task, json!({"approve": "yes"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Engine(EngineError::InvalidForm(f)) if f[0].0 == "/approve"),
            "{err}"
        );
        // Nor may a completion write a field its form does not declare (before, it was kept
        // in the instance's data beside the step's own fields).
        let err = rt
            .complete("clerk_a", &task, json!({"approve": true, "approved_by": "me"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Engine(EngineError::InvalidForm(f)) if f[0].0 == "/approved_by"),
            "{}: {err}",
            db.label
        );
        let after = rt.store.instance(&inst.id).await.unwrap();
        assert_eq!(
            after.rev, inst.rev,
            "{}: a refused form must not change the instance",
            db.label
        );
        assert_eq!(open_task(&rt, &inst.id).await, task);
    }
}

#[tokio::test]
async fn outsiders_cannot_start_and_unknown_things_are_not_found() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let err = rt.start("boss", "review", "a", json!({"amount": 1})).await.unwrap_err();
        assert_eq!(err.code(), "forbidden", "{}: manager is not a start role", db.label);
        assert_eq!(
            rt.start("nobody", "review", "a", json!({})).await.unwrap_err().code(),
            "not_found"
        );
        assert_eq!(
            rt.start("clerk_a", "nope", "a", json!({})).await.unwrap_err().code(),
            "not_found"
        );
        assert_eq!(
            rt.complete("clerk_a", "no-such-task", json!({}))
                .await
                .unwrap_err()
                .code(),
            "not_found"
        );
    }
}

#[tokio::test]
async fn parallel_branches_join_before_going_on() {
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        let inst = rt.start("clerk_a", "parallel", "a", json!({})).await.unwrap();
        let mut tokens = inst.position.tokens.clone();
        tokens.sort();
        assert_eq!(tokens, vec!["left", "right"], "{}", db.label);
        let after_left = rt
            .complete("clerk_a", &open_task(&rt, &inst.id).await, json!({}))
            .await
            .unwrap();
        assert_eq!(
            after_left.position.tokens,
            vec!["right"],
            "{}: left waits at the join",
            db.label
        );
        clock.advance(chrono::Duration::hours(2));
        assert_eq!(rt.fire_due_timers(10).await.unwrap(), 1);
        let end = rt.store.instance(&inst.id).await.unwrap();
        assert_eq!(end.position.tokens, vec!["done"], "{}", db.label);
        assert_eq!(end.status.as_str(), "completed");
    }
}

#[tokio::test]
async fn a_new_version_does_not_move_running_instances() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let old = rt.start("clerk_a", "review", "a", json!({"amount": 5})).await.unwrap();
        let v2 = REVIEW.replace("version: 1", "version: 2").replace(
            "{to: done, when: \"form.approve\"}",
            "{to: rejected, when: \"form.approve\"}",
        );
        rt.publish(civicflow_engine::validate::load("v2.yaml", &v2).workflow.unwrap())
            .await
            .unwrap();
        // Same version number, different content: refused.
        let clash = REVIEW.replace("title: {zh-CN: 审核, en: Review}", "title: {zh-CN: 改过}");
        let err = rt
            .publish(civicflow_engine::validate::load("clash.yaml", &clash).workflow.unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("immutable"), "{err}");

        let done = rt
            .complete("clerk_a", &open_task(&rt, &old.id).await, json!({"approve": true}))
            .await
            .unwrap();
        assert_eq!(done.workflow_version, 1);
        assert_eq!(done.position.tokens, vec!["done"], "{}: v1 rules still apply", db.label);
        let new = rt.start("clerk_a", "review", "a", json!({"amount": 5})).await.unwrap();
        assert_eq!(new.workflow_version, 2);
    }
}

#[tokio::test]
async fn a_pool_task_is_claimed_once_and_then_only_the_claimant_completes_it() {
    for db in databases() {
        let (rt, _) = setup(&db).await;
        let inst = rt.start("clerk_a", "pool", "a", json!({})).await.unwrap();
        let task = inst.new_tasks[0].id.clone();
        let visible = |p: &'static str| {
            let rt = &rt;
            async move { crate::common::tasks_of(rt, p).await.len() }
        };
        assert_eq!(
            (
                visible("clerk_a").await,
                visible("clerk_a2").await,
                visible("clerk_b").await
            ),
            (1, 1, 0),
            "{}",
            db.label
        );
        assert_eq!(
            rt.claim("clerk_b", &task).await.unwrap_err().code(),
            "forbidden",
            "{}: out of scope",
            db.label
        );
        rt.claim("clerk_a2", &task).await.unwrap();
        assert_eq!(
            rt.claim("clerk_a", &task).await.unwrap_err().code(),
            "conflict",
            "{}: already claimed",
            db.label
        );
        assert_eq!(
            visible("clerk_a").await,
            0,
            "{}: a claimed task leaves the others' lists",
            db.label
        );
        assert_eq!(
            rt.complete("clerk_a", &task, json!({})).await.unwrap_err().code(),
            "forbidden"
        );
        let done = rt.complete("clerk_a2", &task, json!({})).await.unwrap();
        assert_eq!(done.status.as_str(), "completed", "{}", db.label);
    }
}

#[tokio::test]
async fn schedules_start_one_instance_per_holder_and_catch_up_missed_periods() {
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        assert_eq!(rt.run_due_schedules().await.unwrap(), 0, "nothing due at publish time");
        // Down from March to mid June: April, May and June are each caught up, for 3 clerks.
        clock.set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 6, 15, 0, 0, 0).unwrap());
        assert_eq!(rt.run_due_schedules().await.unwrap(), 9, "{}", db.label);
        assert_eq!(
            rt.run_due_schedules().await.unwrap(),
            0,
            "{}: each period once",
            db.label
        );
        let mine = crate::common::tasks_of(&rt, "clerk_b").await;
        let mut periods = Vec::new();
        for t in &mine {
            periods.push(
                rt.store.instance(&t.task.instance_id).await.unwrap().data["period"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        periods.sort();
        assert_eq!(periods, vec!["2026-04", "2026-05", "2026-06"], "{}", db.label);
        assert_eq!(
            rt.complete("clerk_a", &mine[0].task.id, json!({}))
                .await
                .unwrap_err()
                .code(),
            "forbidden"
        );
    }
}
