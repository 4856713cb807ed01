//! `serve --demo`: publish the shipped workflows and import the demo organisation.

use crate::ServeError;
use crate::plugins::{self, Package};
use civicflow_engine::files::load_all;
use civicflow_plugin_host::{Binding, PluginRules};
use civicflow_store::Runtime;
use civicflow_store::org::ImportError;
use civicflow_store::org_files::{read_people, read_units};
use std::path::Path;

pub async fn load(runtime: &Runtime, rules: &PluginRules, dir: &Path, plugins_dir: &Path) -> Result<(), ServeError> {
    let (workflows, diagnostics) = load_all(&[dir.to_path_buf()]).map_err(|e| ServeError::Demo(e.to_string()))?;
    if let Some(d) = diagnostics.iter().find(|d| d.is_error()) {
        return Err(ServeError::Demo(format!("shipped workflow does not validate: {d}")));
    }
    for wf in workflows {
        let label = format!("{}@{}", wf.id(), wf.version());
        let (_, fresh) = runtime.publish(wf).await?;
        tracing::info!(workflow = %label, fresh, "demo workflow published");
    }
    let org = dir.join("org");
    let units = read_units(&org.join("units.csv")).map_err(|e| ServeError::Demo(e.to_string()))?;
    let people = read_people(&org.join("people.csv")).map_err(|e| ServeError::Demo(e.to_string()))?;
    match runtime.store.import_org(&units, &people, &|_| {}).await {
        Ok(s) => tracing::info!(units = s.units, people = s.people, "demo organisation loaded"),
        Err(ImportError::Rows(rows)) => {
            return Err(ServeError::Demo(
                rows.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            ));
        }
        Err(ImportError::Store(e)) => return Err(e.into()),
    }
    load_calendars(runtime, dir, &units).await?;
    load_overlays(runtime, dir).await?;
    load_plugins(runtime, rules, plugins_dir).await
}

/// The shipped locality overlays (`*.overlay.yaml`), from the root of the tree down.
async fn load_overlays(runtime: &Runtime, dir: &Path) -> Result<(), ServeError> {
    let (overlays, problems) =
        civicflow_engine::files::load_overlays(&[dir.join("overlays")]).map_err(|e| ServeError::Demo(e.to_string()))?;
    if let Some(d) = problems.first() {
        return Err(ServeError::Demo(format!("shipped overlay does not load: {d}")));
    }
    for o in runtime.in_tree_order(overlays).await? {
        let label = format!("{} at {}@{}", o.workflow, o.unit, o.version);
        let fresh = runtime
            .publish_overlay(o, "demo")
            .await
            .map_err(|e| ServeError::Demo(format!("overlay {label}: {e}")))?;
        tracing::info!(overlay = %label, fresh, "demo overlay published");
    }
    Ok(())
}

/// The shipped working-day tables (`*.calendar.yaml`), uploaded at the root unit.
async fn load_calendars(
    runtime: &Runtime,
    dir: &Path,
    units: &[civicflow_store::org::Numbered<civicflow_store::org::UnitRow>],
) -> Result<(), ServeError> {
    let Some(root) = units.iter().map(|u| &u.row).find(|u| u.parent.is_none()) else {
        return Ok(());
    };
    let files = civicflow_engine::files::calendar_files(&[dir.join("calendars")]).unwrap_or_default();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| ServeError::Demo(format!("{}: {e}", f.display())))?;
        let table = civicflow_engine::calendar::YearTable::parse(&f.display().to_string(), &text)
            .map_err(|p| ServeError::Demo(p.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
        runtime
            .store
            .upload_calendar(&root.id, &table, "demo", runtime.now())
            .await?;
        tracing::info!(year = table.year, unit = %root.id, "demo calendar uploaded");
    }
    runtime.sync_places().await?;
    Ok(())
}

/// Publish every built shipped plugin (a folder with `plugin.yaml` and its module) and the
/// demo bindings in `plugins/bindings.demo.yaml`.
async fn load_plugins(runtime: &Runtime, rules: &PluginRules, dir: &Path) -> Result<(), ServeError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut folders: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("plugin.yaml").exists())
        .collect();
    folders.sort();
    for folder in folders {
        let package = match Package::read(&folder) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(plugin = %folder.display(), error = %e, "shipped plugin not loaded (build it with plugins/build)");
                continue;
            }
        };
        let fresh = plugins::publish(&runtime.store, rules, &package, "demo")
            .await
            .map_err(|e| ServeError::Demo(format!("{}: {e}", folder.display())))?;
        tracing::info!(plugin = %package.manifest.plugin_ref(), fresh, "demo plugin published");
    }
    let bindings_file = dir.join("bindings.demo.yaml");
    if let Ok(text) = std::fs::read_to_string(&bindings_file) {
        let bindings: Vec<Binding> =
            civicflow_engine::yaml::SourceDoc::parse(&bindings_file.display().to_string(), &text)
                .map_err(|d| ServeError::Demo(d.to_string()))
                .and_then(|doc| {
                    serde_json::from_value(doc.value["bindings"].clone())
                        .map_err(|e| ServeError::Demo(format!("{}: {e}", bindings_file.display())))
                })?;
        for b in &bindings {
            plugins::bind(&runtime.store, &runtime.registry, b, "demo")
                .await
                .map_err(|e| ServeError::Demo(format!("binding {}: {e}", b.plugin_ref())))?;
        }
    }
    Ok(())
}
