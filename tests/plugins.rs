//! Rule plugins deciding instances: bindings along the org tree, version pinning, and a
//! failing plugin recorded on the instance while the server keeps serving.

use civicflow_engine::ManualClock;
use civicflow_engine::validate::load;
use civicflow_plugin_host::{Binding, BindingTable, Host, Limits, LimitsAsked, PluginRules};
use civicflow_store::org::{Numbered, PersonRow, UnitRow};
use civicflow_store::{Runtime, Store};
use serde_json::json;
use std::sync::Arc;

const WORKFLOW: &str = r#"
id: dues
version: 1
title: {zh-CN: 党费}
roles:
  member: {title: {zh-CN: 党员}}
start: {roles: [member], to: first}
rules:
  dues.rate: {default: "0"}
states:
  first:
    type: auto
    set: {first_rate: {rule: dues.rate}}
    transitions: [{to: confirm}]
  confirm:
    type: task
    assign: {role: member}
    transitions: [{to: second}]
  second:
    type: auto
    set: {second_rate: {rule: dues.rate}}
    transitions: [{to: done}]
  done: {type: end}
"#;

/// A plugin that answers `{"ok": answer}` whatever it is asked, or loops forever, or
/// ("slow") counts to 10,000 before answering 5.
fn plugin(answer: &str) -> Vec<u8> {
    let answer_ok = |a: &str| {
        format!(
            "(i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {}))",
            format!("{{\"ok\":{a}}}").len()
        )
    };
    let (answer, body) = match answer {
        "loop" => (answer, "(loop (br 0)) (i64.const 0)".to_string()),
        "slow" => (
            "5",
            format!(
                "(local $n i32) (loop (local.set $n (i32.add (local.get $n) (i32.const 1)))
                   (br_if 0 (i32.lt_u (local.get $n) (i32.const 10000)))) {}",
                answer_ok("5")
            ),
        ),
        _ => (answer, answer_ok(answer)),
    };
    let json = format!("{{\"ok\":{answer}}}");
    wat::parse_str(format!(
        r#"(module (memory (export "memory") 1) (data (i32.const 16) "{}")
            (func (export "civicflow_abi_version") (result i32) (i32.const 1))
            (func (export "civicflow_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "civicflow_call") (param i32 i32) (result i64) {body}))"#,
        json.replace('"', "\\\"")
    ))
    .unwrap()
}

fn bind(unit: &str, plugin: &str, version: &str) -> Binding {
    Binding {
        unit_id: unit.into(),
        workflow: "dues".into(),
        hook: "dues.rate".into(),
        plugin: plugin.into(),
        version: version.into(),
        limits: LimitsAsked::default(),
    }
}

fn row<T>(row: T) -> Numbered<T> {
    Numbered {
        file: "test".into(),
        line: 0,
        row,
    }
}

/// A store with a district of two communities, c1 and c2, each with one member.
async fn org() -> Store {
    let store = Store::connect("sqlite::memory:", None).await.unwrap();
    let unit = |id: &str, parent: Option<&str>, kind: &str| {
        row(UnitRow {
            id: id.into(),
            parent: parent.map(Into::into),
            kind: kind.into(),
            name: id.into(),
            name_en: None,
        })
    };
    let person = |id: &str, unit: &str| {
        row(PersonRow {
            id: id.into(),
            name: id.into(),
            unit: unit.into(),
            roles: vec![("member".into(), None)],
            phone: None,
            locale: None,
            attributes: Default::default(),
        })
    };
    let units = [
        unit("city", None, "city"),
        unit("district", Some("city"), "district"),
        unit("c1", Some("district"), "community"),
        unit("c2", Some("district"), "community"),
    ];
    store
        .import_org(&units, &[person("m1", "c1"), person("m2", "c2")], &|_| {})
        .await
        .unwrap();
    store
}

async fn setup() -> (Runtime, Arc<PluginRules>) {
    let store = org().await;
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None).unwrap())));
    for (id, version, answer) in [
        ("national", "1", "1"),
        ("national", "2", "2"),
        ("rural", "1", "3"),
        ("looping", "1", "loop"),
    ] {
        rules.add_plugin(
            rules.host().load(id, version, &plugin(answer)).unwrap(),
            Limits::default(),
        );
    }
    // Its manifest allows 1,000 instructions; a binding may allow more.
    let tight = Limits {
        fuel: 1_000,
        ..Limits::default()
    };
    rules.add_plugin(rules.host().load("slow", "1", &plugin("slow")).unwrap(), tight);
    let rt = Runtime::new(store, Arc::new(ManualClock::new(chrono::Utc::now())), rules.clone())
        .await
        .unwrap();
    rt.publish(load("dues.yaml", WORKFLOW).workflow.unwrap()).await.unwrap();
    (rt, rules)
}

#[tokio::test]
async fn a_community_binding_overrides_its_district_and_instances_keep_their_version() {
    let (rt, rules) = setup().await;
    rules.set_bindings(BindingTable::new([
        bind("district", "national", "1"),
        bind("c1", "rural", "1"),
    ]));
    let in_c1 = rt.start("m1", "dues", "c1", json!({})).await.unwrap();
    let in_c2 = rt.start("m2", "dues", "c2", json!({})).await.unwrap();
    assert_eq!(in_c1.data["first_rate"], 3, "the community's own rule");
    assert_eq!(in_c2.data["first_rate"], 1, "the district's rule");

    // Version 2 is published and the district now binds it.
    rules.set_bindings(BindingTable::new([
        bind("district", "national", "2"),
        bind("c1", "rural", "1"),
    ]));
    let done = rt.complete("m2", &in_c2.new_tasks[0].id, json!({})).await.unwrap();
    assert_eq!(
        done.data["second_rate"], 1,
        "a running instance keeps the version it resolved first"
    );
    let fresh = rt.start("m2", "dues", "c2", json!({})).await.unwrap();
    assert_eq!(fresh.data["first_rate"], 2, "a new instance gets the new version");

    let log = rt.store.events(&in_c2.id).await.unwrap();
    let by: Vec<&str> = log
        .iter()
        .filter(|e| e.kind == "rule_evaluated")
        .map(|e| e.payload["by"].as_str().unwrap())
        .collect();
    assert_eq!(by, vec!["national@1", "national@1"]);
}

#[tokio::test]
async fn without_a_binding_the_default_expression_answers() {
    let (rt, _) = setup().await;
    let i = rt.start("m1", "dues", "c1", json!({})).await.unwrap();
    assert_eq!(i.data["first_rate"], 0);
}

#[tokio::test]
async fn a_failing_plugin_is_recorded_on_the_instance_and_changes_nothing_else() {
    let (rt, rules) = setup().await;
    let i = rt.start("m1", "dues", "c1", json!({})).await.unwrap();
    rules.set_bindings(BindingTable::new([bind("c1", "looping", "1")]));
    // The instance resolved nothing yet (default expression), so the loop is reached.
    let err = rt.complete("m1", &i.new_tasks[0].id, json!({})).await.unwrap_err();
    assert_eq!(err.code(), "rule_failed");
    assert!(
        err.to_string().contains("looping@1") && err.to_string().contains("out_of_fuel"),
        "{err}"
    );
    let after = rt.store.instance(&i.id).await.unwrap();
    assert_eq!(after.position.tokens, vec!["confirm"], "the task is still open");
    let last = rt.store.events(&i.id).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "rule_failed");
    assert_eq!(last.payload["plugin"], "looping@1");

    // Fixed binding: the same task completes.
    rules.set_bindings(BindingTable::new([bind("c1", "rural", "1")]));
    let done = rt.complete("m1", &i.new_tasks[0].id, json!({})).await.unwrap();
    assert_eq!(done.data["second_rate"], 3);
    let (_, broken) = rt.store.verify_chains().await.unwrap();
    assert!(broken.is_empty());
}

/// A start its community's rule refuses has no instance to be noted on: it is kept by unit,
/// with the plugin and the reason (before, only the starter was told), and only there.
#[tokio::test]
async fn a_start_a_failing_rule_refuses_is_kept_for_its_units_admins() {
    let (rt, rules) = setup().await;
    rules.set_bindings(BindingTable::new([bind("c1", "looping", "1")]));
    let err = rt.start("m1", "dues", "c1", json!({})).await.unwrap_err();
    assert_eq!(err.code(), "rule_failed");
    let c1 = rt.store.unit_path("c1").await.unwrap();
    let refused = rt.store.refused_starts(&c1, 10).await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let r = &refused[0];
    assert_eq!(
        (
            r.workflow.as_str(),
            r.unit_id.as_str(),
            r.person.as_str(),
            r.rule.as_str(),
            r.plugin.as_deref()
        ),
        ("dues", "c1", "m1", "dues.rate", Some("looping@1"))
    );
    assert!(r.error.contains("out_of_fuel"), "{}", r.error);
    let c2 = rt.store.unit_path("c2").await.unwrap();
    assert!(
        rt.store.refused_starts(&c2, 10).await.unwrap().is_empty(),
        "a sibling's list"
    );
    let district = rt.store.unit_path("district").await.unwrap();
    assert_eq!(
        rt.store.refused_starts(&district, 10).await.unwrap().len(),
        1,
        "the district sees its subtree's"
    );
}

#[tokio::test]
async fn a_pinned_version_no_longer_bound_runs_under_its_own_manifest_limits() {
    let (rt, rules) = setup().await;
    let generous = Binding {
        limits: LimitsAsked {
            fuel: Some(10_000_000),
            ..LimitsAsked::default()
        },
        ..bind("c1", "slow", "1")
    };
    rules.set_bindings(BindingTable::new([generous]));
    let i = rt.start("m1", "dues", "c1", json!({})).await.unwrap();
    assert_eq!(i.data["first_rate"], 5, "the binding's fuel lets it finish");

    // The community moves on; the running instance keeps slow@1, now under the 1,000
    // instructions its manifest asks for rather than the old binding's limits.
    rules.set_bindings(BindingTable::new([bind("c1", "rural", "1")]));
    let err = rt.complete("m1", &i.new_tasks[0].id, json!({})).await.unwrap_err();
    assert!(
        err.to_string().contains("slow@1") && err.to_string().contains("out_of_fuel"),
        "{err}"
    );
}

/// A binding that names no limits runs its plugin under the manifest's, not the defaults.
#[tokio::test]
async fn a_plain_binding_keeps_its_manifests_limits() {
    let (rt, rules) = setup().await;
    rules.set_bindings(BindingTable::new([bind("c1", "slow", "1")]));
    let err = rt.start("m1", "dues", "c1", json!({})).await.unwrap_err();
    assert!(
        err.to_string().contains("slow@1") && err.to_string().contains("out_of_fuel"),
        "{err}"
    );
}

/// c1's rule: a plugin that runs until `open` lets it go, telling `entered` when it starts.
struct GatedRules {
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    open: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl civicflow_engine::machine::Rules for GatedRules {
    fn evaluate(
        &self,
        _: &civicflow_engine::Workflow,
        instance: &civicflow_engine::Instance,
        _: &str,
        _: &serde_json::Value,
        _: Option<&str>,
    ) -> Result<Option<civicflow_engine::machine::RuleAnswer>, civicflow_engine::machine::RuleFailure> {
        if !instance.unit_path.contains("/c1/") {
            return Ok(None);
        }
        self.entered.lock().unwrap().send(()).unwrap();
        let released = self
            .open
            .lock()
            .unwrap()
            .recv_timeout(std::time::Duration::from_secs(20));
        Ok(Some(civicflow_engine::machine::RuleAnswer {
            value: json!(if released.is_ok() { 9 } else { -1 }),
            plugin: Some("gate@1".into()),
        }))
    }

    fn locality(
        &self,
        _: &civicflow_engine::Workflow,
        unit_path: &str,
        _: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        unit_path.contains("/c1/").then(|| "c1".into())
    }
}

/// While c1's plugin runs, c2's people start and complete their own work: the plugin holds
/// neither the SQLite writer nor a thread the server's requests need. (Before, the call ran
/// inside the writer's transaction and every write in the city waited for it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_communitys_running_plugin_holds_up_no_other_communitys_work() {
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, open) = std::sync::mpsc::channel();
    let rules = Arc::new(GatedRules {
        entered: std::sync::Mutex::new(entered_tx),
        open: std::sync::Mutex::new(open),
    });
    let rt = Arc::new(
        Runtime::new(org().await, Arc::new(ManualClock::new(chrono::Utc::now())), rules)
            .await
            .unwrap(),
    );
    rt.publish(load("dues.yaml", WORKFLOW).workflow.unwrap()).await.unwrap();
    let held = tokio::spawn({
        let rt = rt.clone();
        async move { rt.start("m1", "dues", "c1", json!({})).await }
    });
    tokio::task::spawn_blocking(move || entered.recv_timeout(std::time::Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("c1's rule is running");
    let neighbour = async {
        for _ in 0..3 {
            let i = rt.start("m2", "dues", "c2", json!({})).await.unwrap();
            rt.complete("m2", &i.new_tasks[0].id, json!({})).await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), neighbour)
        .await
        .expect("c2's work waited for c1's plugin");
    release.send(()).unwrap();
    let c1 = held.await.unwrap().unwrap();
    assert_eq!(c1.data["first_rate"], 9, "c1's own rule decided, once released");
    let (_, broken) = rt.store.verify_chains().await.unwrap();
    assert!(broken.is_empty());
}
