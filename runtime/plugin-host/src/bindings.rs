//! Which plugin answers a rule hook for an instance: the binding at the instance's unit or
//! the nearest ancestor that has one ("configure, don't fork": a district binds a rule, a
//! community overrides it for its subtree). An instance keeps the plugin version it
//! resolved first, so publishing or rebinding never changes a decision mid-flight.

use crate::host::{Host, Limits, LimitsAsked, Plugin};
use civicflow_engine::Workflow;
use civicflow_engine::machine::{Instance, RuleAnswer, RuleFailure, Rules};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// "Hook `hook` of workflow `workflow` is answered by plugin `plugin@version` at `unit_id`
/// and below."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub unit_id: String,
    pub workflow: String,
    pub hook: String,
    pub plugin: String,
    pub version: String,
    /// What the binding asks for beyond its plugin's manifest.
    #[serde(default)]
    pub limits: LimitsAsked,
}

impl Binding {
    pub fn plugin_ref(&self) -> String {
        format!("{}@{}", self.plugin, self.version)
    }
}

#[derive(Debug, Default, Clone)]
pub struct BindingTable {
    by_key: HashMap<(String, String, String), Binding>,
    /// The workflows each unit binds some hook of.
    bound_at: HashMap<String, HashSet<String>>,
}

impl BindingTable {
    pub fn new(bindings: impl IntoIterator<Item = Binding>) -> Self {
        let by_key = bindings
            .into_iter()
            .map(|b| ((b.unit_id.clone(), b.workflow.clone(), b.hook.clone()), b))
            .collect::<HashMap<_, _>>();
        let mut bound_at: HashMap<String, HashSet<String>> = HashMap::new();
        for (unit, workflow, _) in by_key.keys() {
            bound_at.entry(unit.clone()).or_default().insert(workflow.clone());
        }
        Self { by_key, bound_at }
    }

    /// The nearest unit up the tree from `unit_path` that binds any hook of `workflow`.
    pub fn nearest_bound<'a>(&self, unit_path: &'a str, workflow: &str) -> Option<&'a str> {
        unit_path
            .split('/')
            .filter(|s| !s.is_empty())
            .rev()
            .find(|unit| self.bound_at.get(*unit).is_some_and(|w| w.contains(workflow)))
    }

    /// The binding nearest to the unit at `unit_path` (`/city/district/.../unit/`).
    pub fn resolve(&self, unit_path: &str, workflow: &str, hook: &str) -> Option<&Binding> {
        self.chain(unit_path, workflow, hook).into_iter().next()
    }

    /// Every binding up the tree from the unit, nearest first: where a plugin that answers
    /// "inherit" hands the question.
    pub fn chain(&self, unit_path: &str, workflow: &str, hook: &str) -> Vec<&Binding> {
        unit_path
            .split('/')
            .filter(|s| !s.is_empty())
            .rev()
            .filter_map(|unit| {
                self.by_key
                    .get(&(unit.to_string(), workflow.to_string(), hook.to_string()))
            })
            .collect()
    }
}

/// Rule hooks answered by bound plugins, else by the workflow's default expression.
pub struct PluginRules {
    host: Arc<Host>,
    bindings: RwLock<BindingTable>,
    /// Each loaded version with the limits its manifest asks for.
    plugins: RwLock<HashMap<String, (Arc<Plugin>, Limits)>>,
}

impl PluginRules {
    pub fn new(host: Arc<Host>) -> Self {
        Self {
            host,
            bindings: RwLock::default(),
            plugins: RwLock::default(),
        }
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    pub fn set_bindings(&self, table: BindingTable) {
        *self.bindings.write().expect("bindings lock") = table;
    }

    /// Load a version; `limits` (its manifest's) apply when no binding names it any more.
    pub fn add_plugin(&self, plugin: Plugin, limits: Limits) {
        let key = format!("{}@{}", plugin.id, plugin.version);
        self.plugins
            .write()
            .expect("plugins lock")
            .insert(key, (Arc::new(plugin), limits));
    }

    pub fn has_plugin(&self, plugin_ref: &str) -> bool {
        self.plugins.read().expect("plugins lock").contains_key(plugin_ref)
    }

    fn plugin(&self, plugin_ref: &str) -> Option<(Arc<Plugin>, Limits)> {
        self.plugins.read().expect("plugins lock").get(plugin_ref).cloned()
    }
}

impl Rules for PluginRules {
    fn evaluate(
        &self,
        wf: &Workflow,
        instance: &Instance,
        hook: &str,
        input: &Value,
        pinned: Option<&str>,
    ) -> Result<Option<RuleAnswer>, RuleFailure> {
        let chain: Vec<Binding> = self
            .bindings
            .read()
            .expect("bindings lock")
            .chain(&instance.unit_path, wf.id(), hook)
            .into_iter()
            .cloned()
            .collect();
        // Who is asked, in turn, while each answers "inherit": the pinned version first (with
        // its binding's limits if a binding still names it, else its manifest's) and the
        // bindings above it, else every binding up the tree; then the workflow's default.
        let asked: Vec<(String, LimitsAsked)> = match pinned {
            Some(p) => {
                let at = chain.iter().position(|b| b.plugin_ref() == p);
                std::iter::once((p.to_string(), at.map(|i| chain[i].limits).unwrap_or_default()))
                    .chain(
                        at.into_iter()
                            .flat_map(|i| chain[i + 1..].iter().map(|b| (b.plugin_ref(), b.limits))),
                    )
                    .collect()
            }
            None => chain.iter().map(|b| (b.plugin_ref(), b.limits)).collect(),
        };
        for (plugin_ref, bound_limits) in asked {
            if let Some(answer) = self.ask(&plugin_ref, bound_limits, hook, input)? {
                return Ok(Some(answer));
            }
        }
        // Nobody bound decided: the engine answers with the workflow's default.
        Ok(None)
    }

    fn locality(&self, wf: &Workflow, unit_path: &str, pins: &BTreeMap<String, String>) -> Option<String> {
        let bindings = self.bindings.read().expect("bindings lock");
        match bindings.nearest_bound(unit_path, wf.id()) {
            Some(unit) => Some(unit.to_string()),
            // Unbound since, but a pinned version still answers this instance.
            None => pins.values().next().cloned(),
        }
    }
}

impl PluginRules {
    /// One plugin's answer; `None` when it defers to the binding above.
    fn ask(
        &self,
        plugin_ref: &str,
        bound_limits: LimitsAsked,
        hook: &str,
        input: &Value,
    ) -> Result<Option<RuleAnswer>, RuleFailure> {
        let plugin_ref = plugin_ref.to_string();
        let failure = |message: String| RuleFailure {
            plugin: Some(plugin_ref.clone()),
            message,
        };
        let (plugin, own_limits) = self
            .plugin(&plugin_ref)
            .ok_or_else(|| failure("plugin is not loaded on this server".into()))?;
        let limits = bound_limits.over(own_limits);
        let started = std::time::Instant::now();
        let result = self.host.call(&plugin, hook, input, &limits);
        let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
        metrics::counter!("civicflow_plugin_calls_total", "plugin" => plugin_ref.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("civicflow_plugin_call_seconds", "plugin" => plugin_ref.clone())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(report) if report.inherit => Ok(None),
            Ok(report) => Ok(Some(RuleAnswer {
                value: report.output,
                plugin: Some(plugin_ref),
            })),
            Err(e) => {
                tracing::warn!(plugin = %plugin_ref, hook, error = %e, "rule plugin failed");
                Err(failure(format!("{}: {e}", e.code())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(unit: &str, version: &str) -> Binding {
        Binding {
            unit_id: unit.into(),
            workflow: "dues".into(),
            hook: "dues.rate".into(),
            plugin: "rate".into(),
            version: version.into(),
            limits: LimitsAsked::default(),
        }
    }

    #[test]
    fn the_nearest_binding_up_the_tree_wins() {
        let t = BindingTable::new([bind("district", "1"), bind("community", "2")]);
        assert_eq!(
            t.resolve("/city/district/street/community/grid/", "dues", "dues.rate")
                .unwrap()
                .version,
            "2"
        );
        assert_eq!(
            t.resolve("/city/district/street/other/", "dues", "dues.rate")
                .unwrap()
                .version,
            "1"
        );
        assert!(t.resolve("/city/elsewhere/", "dues", "dues.rate").is_none());
        assert!(t.resolve("/city/district/", "ticket", "dues.rate").is_none());
    }
}

#[cfg(test)]
mod inherit_tests {
    use super::*;
    use civicflow_engine::machine::{Instance, Position, Status};
    use serde_json::json;

    /// A module that answers `body` (a JSON text) to every call.
    fn answering(body: &str) -> Vec<u8> {
        let escaped = body.replace('"', "\\\"");
        let wat = format!(
            r#"(module
              (import "civicflow" "log" (func $log (param i32 i32)))
              (memory (export "memory") 1)
              (data (i32.const 16) "{escaped}")
              (func (export "civicflow_abi_version") (result i32) (i32.const 1))
              (func (export "civicflow_alloc") (param i32) (result i32) (i32.const 1024))
              (func (export "civicflow_call") (param i32 i32) (result i64)
                (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {len}))))"#,
            len = body.len()
        );
        wat::parse_str(&wat).unwrap()
    }

    fn binding(unit: &str, plugin: &str) -> Binding {
        Binding {
            unit_id: unit.into(),
            workflow: "w".into(),
            hook: "w.rate".into(),
            plugin: plugin.into(),
            version: "1".into(),
            limits: LimitsAsked::default(),
        }
    }

    #[test]
    fn a_plugin_that_inherits_hands_the_question_up_the_tree() {
        let yaml = "id: w\nversion: 1\ntitle: {zh-CN: w}\nroles: {r: {title: {zh-CN: r}}}\nstart: {roles: [r], to: done}\nrules: {w.rate: {default: \"7\"}}\nstates: {done: {type: end}}\n";
        let wf = civicflow_engine::validate::load("w.yaml", yaml).workflow.unwrap();
        let rules = PluginRules::new(Arc::new(Host::new(None).unwrap()));
        for (id, body) in [("district", r#"{"ok":1}"#), ("community", r#"{"inherit":true}"#)] {
            let plugin = rules.host().load(id, "1", &answering(body)).unwrap();
            rules.add_plugin(plugin, Limits::default());
        }
        let instance = |path: &str| Instance {
            id: "i".into(),
            workflow: "w".into(),
            workflow_version: 1,
            overlays: Vec::new(),
            unit_id: "g".into(),
            unit_path: path.into(),
            status: Status::Running,
            position: Position::default(),
            data: json!({}),
            rev: 0,
            created_by: "p".into(),
            created_at: chrono::Utc::now(),
            number: None,
        };
        let ask = |path: &str| {
            rules
                .evaluate(&wf, &instance(path), "w.rate", &json!({}), None)
                .unwrap()
        };
        rules.set_bindings(BindingTable::new([binding("d", "district"), binding("c", "community")]));
        let a = ask("/city/d/s/c/g/").expect("the district's plugin answers");
        assert_eq!((a.value, a.plugin.as_deref()), (json!(1), Some("district@1")));
        // With nothing above it no plugin decides: the engine answers with the workflow's default.
        rules.set_bindings(BindingTable::new([binding("c", "community")]));
        assert!(ask("/city/d/s/c/g/").is_none());
    }
}
