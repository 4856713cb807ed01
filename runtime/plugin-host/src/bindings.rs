//! Which plugin answers a rule hook for an instance: the binding at the instance's unit or
//! the nearest ancestor that has one ("configure, don't fork": a district binds a rule, a
//! community overrides it for its subtree). An instance keeps the plugin version it
//! resolved first, so publishing or rebinding never changes a decision mid-flight.

use crate::host::{Host, Limits, Plugin};
use civicflow_engine::Workflow;
use civicflow_engine::machine::{Instance, RuleAnswer, RuleFailure, Rules};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
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
    #[serde(default)]
    pub limits: Limits,
}

impl Binding {
    pub fn plugin_ref(&self) -> String {
        format!("{}@{}", self.plugin, self.version)
    }
}

#[derive(Debug, Default, Clone)]
pub struct BindingTable {
    by_key: HashMap<(String, String, String), Binding>,
}

impl BindingTable {
    pub fn new(bindings: impl IntoIterator<Item = Binding>) -> Self {
        let by_key = bindings
            .into_iter()
            .map(|b| ((b.unit_id.clone(), b.workflow.clone(), b.hook.clone()), b))
            .collect();
        Self { by_key }
    }

    /// The binding nearest to the unit at `unit_path` (`/city/district/.../unit/`).
    pub fn resolve(&self, unit_path: &str, workflow: &str, hook: &str) -> Option<&Binding> {
        unit_path.split('/').filter(|s| !s.is_empty()).rev().find_map(|unit| {
            self.by_key
                .get(&(unit.to_string(), workflow.to_string(), hook.to_string()))
        })
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

    pub fn host(&self) -> &Host {
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
    ) -> Result<RuleAnswer, RuleFailure> {
        let binding = self
            .bindings
            .read()
            .expect("bindings lock")
            .resolve(&instance.unit_path, wf.id(), hook)
            .cloned();
        // Pinned: the same version as before, with the current binding's limits if it still
        // names that version, else the version's own manifest limits.
        let (plugin_ref, bound_limits) = match (pinned, &binding) {
            (Some(p), b) => (
                p.to_string(),
                b.as_ref().filter(|b| b.plugin_ref() == p).map(|b| b.limits),
            ),
            (None, Some(b)) => (b.plugin_ref(), Some(b.limits)),
            (None, None) => {
                let value = wf.default_rule(hook, input).map_err(RuleFailure::expression)?;
                return Ok(RuleAnswer { value, plugin: None });
            }
        };
        let failure = |message: String| RuleFailure {
            plugin: Some(plugin_ref.clone()),
            message,
        };
        let (plugin, own_limits) = self
            .plugin(&plugin_ref)
            .ok_or_else(|| failure("plugin is not loaded on this server".into()))?;
        let limits = bound_limits.unwrap_or(own_limits);
        let started = std::time::Instant::now();
        let result = self.host.call(&plugin, hook, input, &limits);
        let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
        metrics::counter!("civicflow_plugin_calls_total", "plugin" => plugin_ref.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("civicflow_plugin_call_seconds", "plugin" => plugin_ref.clone())
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(report) => Ok(RuleAnswer {
                value: report.output,
                plugin: Some(plugin_ref),
            }),
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
            limits: Limits::default(),
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
