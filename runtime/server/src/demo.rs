//! `serve --demo`: publish the shipped workflows and import the demo organisation.

use crate::ServeError;
use civicflow_engine::files::load_all;
use civicflow_store::Runtime;
use civicflow_store::org::ImportError;
use civicflow_store::org_files::{read_people, read_units};
use std::path::Path;

pub async fn load(runtime: &Runtime, dir: &Path) -> Result<(), ServeError> {
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
    Ok(())
}
