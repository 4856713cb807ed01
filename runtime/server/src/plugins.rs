//! Plugins between the store and the host: publishing a package (every check before
//! anything is stored) and keeping a server's loaded plugins and bindings in step with the
//! database, which several servers may share.

use civicflow_engine::Workflow;
use civicflow_plugin_host::manifest::MAX_MODULE_BYTES;
use civicflow_plugin_host::{Binding, BindingTable, Manifest, Plugin, PluginRules, stored_limits, verify_signature};
use civicflow_store::plugins::{BindingRecord, PluginRecord};
use civicflow_store::{Registry, Store};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Manifest(Vec<civicflow_engine::Diagnostic>),
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}")]
    Plugin(#[from] civicflow_plugin_host::PluginError),
    #[error(transparent)]
    Store(#[from] civicflow_store::StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// A plugin package read from a folder: `plugin.yaml`, its module, an optional
/// `<module>.sig` (base64 ed25519 signature of the module bytes).
pub struct Package {
    pub manifest: Manifest,
    pub wasm: Vec<u8>,
    pub signature: Option<String>,
}

impl Package {
    pub fn read(dir: &Path) -> Result<Self, PublishError> {
        let manifest_path = dir.join("plugin.yaml");
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| PublishError::Read(manifest_path.display().to_string(), e))?;
        let manifest = Manifest::parse(&manifest_path.display().to_string(), &text).map_err(PublishError::Manifest)?;
        let module = dir.join(&manifest.module);
        let wasm = std::fs::read(&module).map_err(|e| PublishError::Read(module.display().to_string(), e))?;
        let sig_path = dir.join(format!("{}.sig", manifest.module));
        let signature = std::fs::read_to_string(&sig_path).ok();
        Ok(Self {
            manifest,
            wasm,
            signature,
        })
    }
}

/// Check and store a package: size, module shape and ABI (by loading it), the signature
/// against the keys trusted by the author unit and its ancestors. Returns whether it is new.
pub async fn publish(store: &Store, rules: &PluginRules, package: &Package, by: &str) -> Result<bool, PublishError> {
    let m = &package.manifest;
    if package.wasm.len() > MAX_MODULE_BYTES {
        return Err(PublishError::Invalid(format!(
            "module is {} bytes; the limit is {MAX_MODULE_BYTES}",
            package.wasm.len()
        )));
    }
    m.limits().check().map_err(PublishError::Invalid)?;
    let trusted = store.trusted_keys(&m.author_unit).await?;
    let signed_with = verify_signature(&package.wasm, package.signature.as_deref(), &trusted)?;
    let plugin = compile(rules, &m.id, &m.version, package.wasm.clone()).await?;
    let record = PluginRecord {
        id: m.id.clone(),
        version: m.version.clone(),
        sha256: hex::encode(Sha256::digest(&package.wasm)),
        manifest: serde_json::to_value(m).expect("manifest serializes"),
        wasm: package.wasm.clone(),
        signed_with,
    };
    let fresh = store.publish_plugin(&record, by).await?;
    rules.add_plugin(plugin, m.limits());
    Ok(fresh)
}

/// Compile on a blocking thread: within the compile limits a module may still take a few
/// seconds (BENCHMARKS.md), and the host compiles one module at a time.
async fn compile(
    rules: &PluginRules,
    id: &str,
    version: &str,
    wasm: Vec<u8>,
) -> Result<Plugin, civicflow_plugin_host::PluginError> {
    let (host, id, version) = (rules.host().clone(), id.to_string(), version.to_string());
    tokio::task::spawn_blocking(move || host.load(&id, &version, &wasm))
        .await
        .expect("the compile thread does not panic")
}

/// The one check every way of binding makes (CLI, HTTP, the demo, scenario files): the
/// workflow is published, it has the rule hook, and the plugin implements that hook.
pub fn check_binding(workflow: Option<&Workflow>, binding: &Binding, plugin_hooks: &[String]) -> Result<(), String> {
    let Some(wf) = workflow else {
        return Err(format!("no workflow \"{}\" is published", binding.workflow));
    };
    if !wf.def.rules.contains_key(&binding.hook) {
        let hooks: Vec<&str> = wf.def.rules.keys().map(String::as_str).collect();
        return Err(format!(
            "workflow \"{}\" has no rule hook \"{}\"{}; its hooks: {}",
            binding.workflow,
            binding.hook,
            civicflow_engine::diagnostic::suggest(&binding.hook, hooks.iter().copied()),
            if hooks.is_empty() {
                "none".into()
            } else {
                hooks.join(", ")
            }
        ));
    }
    if !plugin_hooks.contains(&binding.hook) {
        return Err(format!(
            "plugin {} does not implement the hook \"{}\"; it implements: {}",
            binding.plugin_ref(),
            binding.hook,
            plugin_hooks.join(", ")
        ));
    }
    Ok(())
}

/// Bind a hook to a published plugin version that declares it, for a hook the workflow has
/// at the binding's unit.
pub async fn bind(store: &Store, workflows: &Registry, binding: &Binding, by: &str) -> Result<(), PublishError> {
    let published = store.plugins().await?;
    let record = published
        .iter()
        .find(|p| p.id == binding.plugin && p.version == binding.version)
        .ok_or_else(|| PublishError::Invalid(format!("plugin {} is not published", binding.plugin_ref())))?;
    let hooks: Vec<String> = record.manifest["hooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    binding
        .limits
        .over(stored_limits(&record.manifest))
        .check()
        .map_err(PublishError::Invalid)?;
    // The workflow as the binding's unit has it: an overlay there may add the hook.
    let unit_path = store.unit_path(&binding.unit_id).await.unwrap_or_default();
    let wf = workflows.resolve(&binding.workflow, &unit_path)?;
    check_binding(wf.as_deref(), binding, &hooks).map_err(PublishError::Invalid)?;
    store
        .bind(
            &BindingRecord {
                unit_id: binding.unit_id.clone(),
                workflow: binding.workflow.clone(),
                hook: binding.hook.clone(),
                plugin: binding.plugin.clone(),
                version: binding.version.clone(),
                limits: serde_json::to_value(binding.limits).expect("limits serialize"),
            },
            by,
        )
        .await?;
    Ok(())
}

/// Load plugins and bindings that changed since `stamp`; returns the new stamp.
pub async fn sync(store: &Store, rules: &PluginRules, stamp: &str) -> Result<String, civicflow_store::StoreError> {
    let now = store.plugins_stamp().await?;
    if now == stamp {
        return Ok(now);
    }
    for p in store.plugins().await? {
        let plugin_ref = format!("{}@{}", p.id, p.version);
        if rules.has_plugin(&plugin_ref) {
            continue;
        }
        match compile(rules, &p.id, &p.version, p.wasm).await {
            Ok(plugin) => rules.add_plugin(plugin, stored_limits(&p.manifest)),
            Err(e) => tracing::error!(plugin = %plugin_ref, error = %e, "stored plugin does not load"),
        }
    }
    let bindings = store.bindings().await?.into_iter().map(|b| Binding {
        limits: serde_json::from_value(b.limits).unwrap_or_default(),
        unit_id: b.unit_id,
        workflow: b.workflow,
        hook: b.hook,
        plugin: b.plugin,
        version: b.version,
    });
    rules.set_bindings(BindingTable::new(bindings));
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_names_a_published_hook_the_plugin_implements() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../workflows/ticket.yaml")).unwrap();
        let wf = civicflow_engine::validate::load("ticket.yaml", &text).workflow.unwrap();
        let binding = |hook: &str| Binding {
            unit_id: "beichen".into(),
            workflow: "ticket".into(),
            hook: hook.into(),
            plugin: "p".into(),
            version: "1.0.0".into(),
            limits: Default::default(),
        };
        let hooks = vec!["dues.rate".to_string()];
        let e = check_binding(Some(&wf), &binding("ticket.route"), &hooks).unwrap_err();
        assert_eq!(
            e,
            "plugin p@1.0.0 does not implement the hook \"ticket.route\"; it implements: dues.rate"
        );
        assert!(
            check_binding(None, &binding("ticket.route"), &hooks)
                .unwrap_err()
                .contains("no workflow")
        );
        let e = check_binding(Some(&wf), &binding("dues.rate"), &hooks).unwrap_err();
        assert!(e.contains("has no rule hook \"dues.rate\""), "{e}");
        assert!(check_binding(Some(&wf), &binding("ticket.route"), &["ticket.route".into()]).is_ok());
    }
}
