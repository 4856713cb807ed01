//! `civicflow show` and `civicflow diff`: the effective workflow at a unit, as the database
//! has it, with where each part was written.

use anyhow::{Context, Result, bail};
use civicflow_engine::yaml::SourceDoc;
use civicflow_store::Store;
use civicflow_store::registry::{Chain, Registry, describe};
use std::process::ExitCode;

async fn composed(store: &Store, registry: &Registry, workflow: &str, unit: &str) -> Result<(Chain, SourceDoc)> {
    let path = store
        .unit_path(unit)
        .await
        .with_context(|| format!("unit \"{unit}\""))?;
    let Some(chain) = registry.chain_at(workflow, &path) else {
        bail!("no workflow \"{workflow}\" is published");
    };
    match registry.composed_document(&chain)? {
        Ok(doc) => Ok((chain, doc)),
        Err(diagnostics) => {
            for d in &diagnostics {
                println!("{d}");
            }
            bail!("{} does not compose", describe(&chain))
        }
    }
}

/// The effective definition; lines an overlay wrote end with `# file:line`.
pub async fn show(db: &str, workflow: &str, unit: &str) -> Result<ExitCode> {
    let store = Store::connect(db, None).await?;
    let registry = store.registry().await?;
    let (chain, doc) = composed(&store, &registry, workflow, unit).await?;
    println!("# {workflow} at {unit}: {}", describe(&chain));
    println!("# base: {}", doc.file);
    print!("{}", doc.to_yaml(true));
    Ok(ExitCode::SUCCESS)
}

/// How the effective definitions at two units differ, as a unified diff.
pub async fn diff(db: &str, workflow: &str, a: &str, b: &str) -> Result<ExitCode> {
    let store = Store::connect(db, None).await?;
    let registry = store.registry().await?;
    let (chain_a, doc_a) = composed(&store, &registry, workflow, a).await?;
    let (chain_b, doc_b) = composed(&store, &registry, workflow, b).await?;
    let (text_a, text_b) = (doc_a.to_yaml(false), doc_b.to_yaml(false));
    let diff = similar::TextDiff::from_lines(&text_a, &text_b);
    let header_a = format!("{a}: {}", describe(&chain_a));
    let header_b = format!("{b}: {}", describe(&chain_b));
    print!("{}", diff.unified_diff().context_radius(3).header(&header_a, &header_b));
    Ok(ExitCode::SUCCESS)
}
