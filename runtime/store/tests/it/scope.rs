//! A person's scope as SQL: the task list and every instance list agree with the engine's
//! single-object rule on a table of people × tasks × instances; each list query reads
//! indexes, never a whole table; keyset pages return every row once while rows are added.

use crate::common::*;
use chrono::Duration;
use civicflow_engine::org::within;
use civicflow_engine::validate::load;
use civicflow_store::{InstanceWindow, List, Runtime, Scope, TaskQuery};
use serde_json::json;
use std::collections::BTreeSet;

/// One workflow with a task for every way of reaching one: by role over the unit (escalated
/// to a manager after an hour), open to claim, at the district for clerks below it, and
/// assigned to a person.
const REACH: &str = r#"
id: reach
version: 1
title: {zh-CN: 可达}
roles:
  clerk: {title: {zh-CN: 办事员}}
  manager: {title: {zh-CN: 负责人}}
  resident: {title: {zh-CN: 居民}}
start: {roles: [clerk, resident], form: who, to: split}
forms:
  who:
    schema: {type: object, required: [member], properties: {member: {type: string}}}
states:
  split:
    type: auto
    transitions: [{to: [team, pooled, upward, personal]}]
  team:
    type: task
    assign: {role: clerk}
    escalate: [{after: 1h, to: manager}]
    transitions: [{to: done}]
  pooled:
    type: task
    assign: {role: clerk, pool: true}
    transitions: [{to: done}]
  upward:
    type: task
    assign: {role: clerk, level: district, below: true}
    transitions: [{to: done}]
  personal:
    type: task
    assign: {person: "data.member"}
    transitions: [{to: done}]
  done: {type: end}
"#;

const PEOPLE: [&str; 6] = ["clerk_a", "clerk_a2", "clerk_b", "boss", "res_a", "nobody"];

async fn reach_setup(db: &Db) -> (Runtime, std::sync::Arc<civicflow_engine::ManualClock>) {
    let (rt, clock) = setup(db).await;
    let people = vec![person("res_a", "a", &["resident"]), person("nobody", "b", &[])];
    let units = vec![
        unit("city", None, "city"),
        unit("d", Some("city"), "district"),
        unit("a", Some("d"), "community"),
        unit("b", Some("d"), "community"),
    ];
    rt.store
        .import_org(&units, &people, &|_| {})
        .await
        .expect("more people");
    rt.publish(load("reach.yaml", REACH).workflow.expect("valid"))
        .await
        .expect("publish");
    (rt, clock)
}

/// The read rule as the API applied it before it was SQL, kept here as the oracle.
async fn may_read_oracle(rt: &Runtime, person: &str, id: &str) -> bool {
    let actor = rt.store.actor(person).await.unwrap();
    let instance = rt.store.instance(id).await.unwrap();
    if instance.created_by == person {
        return true;
    }
    let wf = rt.registry.for_instance(&instance).unwrap();
    let staff = wf.working_roles();
    if actor
        .roles
        .iter()
        .any(|g| staff.contains(g.role.as_str()) && within(&instance.unit_path, &g.unit_path))
    {
        return true;
    }
    let tasks = rt.store.instance_tasks(id).await.unwrap();
    tasks.iter().any(|t| actor.may_act_on(&t.task))
}

/// A few instances in both communities, one pool task claimed, one task done, the rest
/// escalated to the district's manager: the instances' ids.
async fn activity(rt: &Runtime, clock: &civicflow_engine::ManualClock) -> Vec<String> {
    let mut ids = Vec::new();
    for (who, unit, member) in [
        ("clerk_a", "a", "res_a"),
        ("clerk_b", "b", "clerk_a"),
        ("res_a", "a", "boss"),
        ("clerk_a2", "a", "nobody"),
    ] {
        let started = rt.start(who, "reach", unit, json!({"member": member})).await.unwrap();
        ids.push(started.instance.id.clone());
    }
    let tasks = rt.store.instance_tasks(&ids[0]).await.unwrap();
    let pooled = tasks.iter().find(|t| t.task.state == "pooled").unwrap();
    rt.claim("clerk_a2", &pooled.task.id).await.unwrap();
    let tasks = rt.store.instance_tasks(&ids[1]).await.unwrap();
    let team = tasks.iter().find(|t| t.task.state == "team").unwrap();
    rt.complete("clerk_b", &team.task.id, json!({})).await.unwrap();
    clock.advance(Duration::hours(2));
    assert!(rt.fire_due_timers(100).await.unwrap() > 0, "escalations fire");
    ids
}

#[tokio::test]
async fn the_scope_filter_and_the_single_object_rules_agree() {
    for db in databases() {
        let (rt, clock) = reach_setup(&db).await;
        let ids = activity(&rt, &clock).await;
        let mut all_open = Vec::new();
        for id in &ids {
            all_open.extend(
                rt.store
                    .instance_tasks(id)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|t| t.status == civicflow_engine::TaskStatus::Open),
            );
        }
        let window = InstanceWindow {
            workflows: vec![("reach", None)],
            service: None,
            closed: None,
            from: t0() - Duration::days(1),
            to: t0() + Duration::days(1),
            limit: 100,
            offset: 0,
        };
        let mut reached = 0;
        for who in PEOPLE {
            let actor = rt.store.actor(who).await.unwrap();
            let scope = rt.scope(&actor);
            let listed: BTreeSet<String> = tasks_of(&rt, who).await.into_iter().map(|t| t.task.id).collect();
            let expected: BTreeSet<String> = all_open
                .iter()
                .filter(|t| actor.may_act_on(&t.task))
                .map(|t| t.task.id.clone())
                .collect();
            assert_eq!(listed, expected, "{}: {who}'s task list", db.label);
            reached += listed.len();
            let mut readable = BTreeSet::new();
            for id in &ids {
                let oracle = may_read_oracle(&rt, who, id).await;
                assert_eq!(
                    rt.store.may_read(&scope, id).await.unwrap(),
                    oracle,
                    "{}: {who} reads {id}",
                    db.label
                );
                if oracle {
                    readable.insert(id.clone());
                }
            }
            let in_window: BTreeSet<String> = rt
                .store
                .instances_in_window(&scope, &window)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.id)
                .collect();
            assert_eq!(in_window, readable, "{}: {who}'s window list", db.label);
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let by_id: BTreeSet<String> = rt
                .store
                .readable_instances(&scope, &refs)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.id)
                .collect();
            assert_eq!(by_id, readable, "{}: {who}'s list by id", db.label);
        }
        // The table is not trivially empty or full: every branch reached someone.
        assert!(
            reached > all_open.len(),
            "{}: {reached} listings of {} tasks",
            db.label,
            all_open.len()
        );
        let boss = tasks_of(&rt, "boss").await;
        assert!(
            boss.iter().any(|t| t.task.state == "team"),
            "{}: escalated to the manager",
            db.label
        );
        let a2 = tasks_of(&rt, "clerk_a2").await;
        assert!(
            a2.iter().any(|t| t.task.state == "upward"),
            "{}: the district's task, open below",
            db.label
        );
        assert!(
            a2.iter().any(|t| t.task.claimed_by.as_deref() == Some("clerk_a2")),
            "{}: claimed",
            db.label
        );
        assert!(
            !tasks_of(&rt, "clerk_a")
                .await
                .iter()
                .any(|t| t.task.claimed_by.as_deref() == Some("clerk_a2")),
            "{}: a task claimed by another leaves the list",
            db.label
        );
        assert!(
            tasks_of(&rt, "nobody").await.len() == 1,
            "{}: only the task assigned to them",
            db.label
        );
    }
}

/// Plan lines that read a whole table (or a whole index) instead of searching an index.
/// Reading a subquery's own rows back (SQLite's `SCAN a` of `CO-ROUTINE a`) is not one.
fn full_scans(plan: &[String]) -> Vec<&String> {
    let trim = |l: &str| l.trim_start_matches(['-', '>', ' ', '|', '`']).to_string();
    let coroutines: Vec<String> = plan
        .iter()
        .filter_map(|l| trim(l).strip_prefix("CO-ROUTINE ").map(|n| format!("SCAN {n}")))
        .collect();
    plan.iter()
        .filter(|l| {
            let l = trim(l);
            (l.starts_with("SCAN ")
                && !l.starts_with("SCAN CONSTANT ROW")
                && !l.contains("subquery")
                && !coroutines.contains(&l))
                || l.contains("Seq Scan")
        })
        .collect()
}

#[tokio::test]
async fn every_scoped_list_searches_indexes() {
    for db in databases() {
        let (rt, clock) = reach_setup(&db).await;
        let ids = activity(&rt, &clock).await;
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let query = TaskQuery {
            workflow: Some("reach"),
            unit: Some("a"),
            after: None,
            limit: 50,
        };
        let window = InstanceWindow {
            workflows: vec![("reach", Some("member")), ("review", None)],
            service: Some("res_a"),
            closed: Some(false),
            from: t0() - Duration::days(1),
            to: t0() + Duration::days(1),
            limit: 100,
            offset: 0,
        };
        for who in PEOPLE {
            let scope: Scope = rt.scope(&rt.store.actor(who).await.unwrap());
            for (name, list) in [
                ("tasks", List::Tasks(&query)),
                ("task counts", List::TaskCounts),
                ("window", List::Window(&window)),
                ("by id", List::ById(&refs)),
                ("may read", List::MayRead(&ids[0])),
            ] {
                let plan = rt.store.query_plan(&scope, &list).await.unwrap();
                assert!(!plan.is_empty(), "{}: {name} has a plan", db.label);
                if std::env::var("SHOW_PLANS").is_ok() {
                    eprintln!("{}: {who}'s {name}:\n{}", db.label, plan.join("\n"));
                }
                let scans = full_scans(&plan);
                assert!(
                    scans.is_empty(),
                    "{}: {who}'s {name} scans: {scans:?}\n{}",
                    db.label,
                    plan.join("\n")
                );
                // A task list never reads instances, and on SQLite each branch reads its
                // index alone (ids, due keys, workflow and unit are in it); only the page's
                // rows come from the table. A page merges its branches in due order (a
                // branch over one unit needs no sort), so it stops at the page's last row.
                if name.starts_with("task") {
                    let instances = plan.iter().filter(|l| l.contains("instances")).count();
                    assert_eq!(
                        instances,
                        0,
                        "{}: {who}'s {name} reads instances:\n{}",
                        db.label,
                        plan.join("\n")
                    );
                }
                // A task list's path conditions are searched in the index, never filtered
                // after reading a role's whole range (PostgreSQL shows that as `Filter:`).
                let filtered: Vec<_> = plan
                    .iter()
                    .filter(|l| name.starts_with("task") && l.contains("Filter:"))
                    .filter(|l| l.contains("unit_path") || l.contains("escalated_path"))
                    .collect();
                assert!(
                    filtered.is_empty(),
                    "{}: {who}'s {name} filters paths: {filtered:?}\n{}",
                    db.label,
                    plan.join("\n")
                );
                if name.starts_with("task") && db.label == "sqlite" {
                    let uncovered = plan
                        .iter()
                        .filter(|l| l.contains("tasks_open_") && !l.contains("COVERING INDEX"))
                        .count();
                    assert_eq!(
                        uncovered,
                        0,
                        "{}: {who}'s {name} reads task rows per branch:\n{}",
                        db.label,
                        plan.join("\n")
                    );
                }
                if name == "tasks" && db.label == "sqlite" {
                    let lines = plan.iter().map(|l| l.trim_start_matches(['-', '>', ' ', '|', '`']));
                    let sorted_equalities = lines
                        .clone()
                        .zip(lines.skip(1))
                        .filter(|(search, next)| {
                            search.ends_with("unit_path=?)") && next.starts_with("USE TEMP B-TREE")
                        })
                        .count();
                    assert!(
                        plan.iter().any(|l| l.contains("MERGE")),
                        "{}: {who}'s page merges:\n{}",
                        db.label,
                        plan.join("\n")
                    );
                    assert_eq!(
                        sorted_equalities,
                        0,
                        "{}: {who}'s page sorts a unit's tasks:\n{}",
                        db.label,
                        plan.join("\n")
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn keyset_pages_give_every_task_once_while_tasks_are_added() {
    for db in databases() {
        let (rt, _clock) = reach_setup(&db).await;
        for _ in 0..7 {
            rt.start("clerk_a", "reach", "a", json!({"member": "res_a"}))
                .await
                .unwrap();
        }
        let scope = rt.scope(&rt.store.actor("clerk_a2").await.unwrap());
        let before: BTreeSet<String> = tasks_of(&rt, "clerk_a2").await.into_iter().map(|t| t.task.id).collect();
        assert!(
            before.len() >= 14,
            "{}: {} tasks to page through",
            db.label,
            before.len()
        );
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = rt
                .store
                .tasks_page(
                    &scope,
                    &TaskQuery {
                        workflow: None,
                        unit: None,
                        after,
                        limit: 4,
                    },
                )
                .await
                .unwrap();
            seen.extend(page.tasks.iter().map(|t| t.task.id.clone()));
            pages += 1;
            // Someone reports again between every two pages.
            rt.start("clerk_a", "reach", "a", json!({"member": "res_a"}))
                .await
                .unwrap();
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
            assert!(pages < 100, "{}: pages end", db.label);
        }
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{}: no task on two pages", db.label);
        for id in &before {
            assert!(
                seen.contains(id),
                "{}: task {id}, there from the start, is on a page",
                db.label
            );
        }
        assert!(pages >= 4, "{}: {pages} pages", db.label);
    }
}

#[tokio::test]
async fn a_new_workflow_reaches_its_roles_scopes_at_once() {
    let db = &databases()[0];
    let (rt, _clock) = reach_setup(db).await;
    let worked = |rt: &Runtime| rt.registry.worked_on_by("resident").to_vec();
    assert!(worked(&rt).is_empty(), "residents work on nothing yet");
    // A second workflow that gives residents a step: asked for again, the answer has it
    // (the per-role answer is cached until the registry changes).
    let survey = REACH
        .replace("id: reach", "id: survey")
        .replace("assign: {role: clerk, pool: true}", "assign: {role: resident}");
    rt.publish(load("survey.yaml", &survey).workflow.expect("valid"))
        .await
        .expect("publish");
    assert_eq!(worked(&rt), ["survey"]);
    let clerk = rt.registry.worked_on_by("clerk");
    assert!(
        clerk.contains(&"reach".to_string()) && clerk.contains(&"survey".to_string()),
        "{clerk:?}"
    );
}
