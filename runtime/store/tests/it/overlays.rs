//! Overlays in the store: a base version that breaks one is refused with its file, line and
//! column and nothing is stored; `keep` holds that unit on the previous version and lets the
//! rest move on; instances keep the composition they started with across updates and
//! restarts; the audit chain holds.

use crate::common::{REVIEW, databases, open_task, runtime, setup};
use civicflow_engine::overlay::Overlay;
use civicflow_engine::validate::load;
use civicflow_store::StoreError;
use serde_json::json;

/// Community a sends large requests to a second look by its own clerk first.
const SECOND_LOOK: &str = "\
extends: review
unit: a
version: 1
states:
  check:
    transitions:
      - {to: second_look, when: \"data.amount > 500\", insert_before: manager_review}
  second_look:
    type: task
    form: decision
    assign: {role: clerk}
    transitions:
      - {to: manager_review, when: \"form.approve\"}
      - {to: rejected}
";

fn overlay(text: &str) -> Overlay {
    Overlay::load("a.overlay.yaml", text).expect("the overlay loads")
}

/// Version 2 of the review workflow without `manager_review`, which the overlay routes to.
fn review_v2() -> civicflow_engine::Workflow {
    let text = REVIEW
        .replace("version: 1", "version: 2")
        .replace("      - {to: manager_review, when: \"data.amount > 1000\"}\n", "")
        .replace(
            "  manager_review:\n    type: task\n    form: decision\n    assign: {role: manager}\n    transitions:\n      - {to: done, when: \"form.approve\", set: {approved_by: \"actor.id\"}}\n      - {to: rejected}\n",
            "",
        );
    load("review-v2.yaml", &text)
        .workflow
        .expect("version 2 is valid on its own")
}

#[tokio::test]
async fn a_base_version_an_overlay_no_longer_applies_to_is_refused_at_the_overlays_line() {
    for db in databases() {
        let (rt, _clock) = setup(&db).await;
        rt.publish_overlay(overlay(SECOND_LOOK), "admin_a")
            .await
            .expect("publish the overlay");
        let refused = rt.publish_base(review_v2(), &[], "it").await.expect_err("refused");
        let StoreError::Refused(_, diagnostics) = &refused else {
            panic!("{}: {refused}", db.label);
        };
        let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        for wanted in [
            "a.overlay.yaml:7:69: error: no transition \"manager_review\" here to place this one next to",
            "a.overlay.yaml:13:14: error: unknown state \"manager_review\"",
        ] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(wanted) && l.ends_with("(at a \"a\")")),
                "{}: {wanted} in {lines:?}",
                db.label
            );
        }
        assert_eq!(rt.registry.latest("review").unwrap().version(), 1, "nothing published");
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workflows WHERE id = 'review'")
            .fetch_one(&db.raw().await)
            .await
            .unwrap();
        assert_eq!(stored, 1, "{}", db.label);
    }
}

#[tokio::test]
async fn kept_units_stay_on_the_previous_version_and_the_rest_move_on() {
    for db in databases() {
        let (rt, _clock) = setup(&db).await;
        rt.publish_overlay(overlay(SECOND_LOOK), "admin_a").await.unwrap();
        rt.publish_base(review_v2(), &["a".into()], "it")
            .await
            .expect("published with a kept");
        let a = rt
            .start("clerk_a", "review", "a", json!({"amount": 800}))
            .await
            .unwrap();
        assert_eq!((a.workflow_version, a.overlays.len()), (1, 1), "{}", db.label);
        assert_eq!(a.position.tokens, ["second_look"]);
        let b = rt
            .start("clerk_b", "review", "b", json!({"amount": 5000}))
            .await
            .unwrap();
        assert_eq!((b.workflow_version, b.overlays.len()), (2, 0), "{}", db.label);
        assert_eq!(b.position.tokens, ["clerk_review"], "version 2 has no manager review");
        let holds = rt.registry.holds("review");
        assert_eq!(holds.len(), 1);
        assert_eq!(
            (holds[0].0.as_str(), holds[0].1.version, holds[0].1.by.as_str()),
            ("a", 1, "it")
        );
    }
}

#[tokio::test]
async fn an_instance_keeps_its_composition_across_updates_and_restarts() {
    for db in databases() {
        let (rt, clock) = setup(&db).await;
        rt.publish_overlay(overlay(SECOND_LOOK), "admin_a").await.unwrap();
        let started = rt
            .start("clerk_a", "review", "a", json!({"amount": 800}))
            .await
            .unwrap();
        // The overlay moves on: large requests skip the second look from version 2.
        let v2 = SECOND_LOOK
            .replace("version: 1", "version: 2")
            .replace("> 500", "> 5000");
        rt.publish_overlay(overlay(&v2), "admin_a").await.unwrap();
        let later = rt
            .start("clerk_a", "review", "a", json!({"amount": 800}))
            .await
            .unwrap();
        assert_eq!(later.position.tokens, ["clerk_review"], "{}", db.label);
        let store = rt.store.clone();
        drop(rt);
        // A restarted server reads every version back and composes the pinned one again.
        let rt = runtime(store, clock).await;
        let task = open_task(&rt, &started.id).await;
        let done = rt.complete("clerk_a2", &task, json!({"approve": true})).await.unwrap();
        assert_eq!(done.position.tokens, ["manager_review"], "{}", db.label);
        assert_eq!(done.overlays[0].version, 1);
        let (chains, broken) = rt.store.verify_chains().await.unwrap();
        assert!(chains >= 2 && broken.is_empty(), "{}: {broken:?}", db.label);
    }
}
