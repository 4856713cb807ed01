//! `civicflow validate` and `civicflow publish`: workflow files and locality overlays.

use anyhow::{Result, bail};
use civicflow_engine::Diagnostic;
use civicflow_engine::files::{load_all, load_overlays, overlay_files, workflow_files};
use civicflow_engine::validate::load_composed;
use civicflow_store::StoreError;
use std::path::PathBuf;
use std::process::ExitCode;

/// Check workflows, and each overlay composed onto the newest version of its base among
/// them. An overlay's place in a chain (its ancestors' overlays below it) needs the
/// organisation tree: `civicflow test` and publishing check that.
pub fn run(paths: &[PathBuf]) -> Result<ExitCode> {
    let files = workflow_files(paths)?.len() + overlay_files(paths)?.len();
    let (workflows, mut diagnostics) = load_all(paths)?;
    let (overlays, overlay_problems) = load_overlays(paths)?;
    diagnostics.extend(overlay_problems);
    let mut valid = workflows.len();
    for o in &overlays {
        let base = workflows
            .iter()
            .filter(|w| w.id() == o.workflow)
            .max_by_key(|w| w.version());
        let Some(base) = base else {
            diagnostics.push(o.error(
                "/extends",
                format!("no workflow \"{}\" among the files checked", o.workflow),
            ));
            continue;
        };
        let loaded = load_composed(&base.file, &base.source, &[o]);
        valid += usize::from(loaded.workflow.is_some());
        diagnostics.extend(loaded.diagnostics);
    }
    diagnostics.dedup();
    for d in &diagnostics {
        println!("{d}");
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    println!("{files} file(s) checked: {valid} valid, {errors} error(s), {warnings} warning(s)");
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Publish workflows, then overlays from the root of the tree down. A refusal prints every
/// located reason; what was published before it stays published.
pub async fn publish(db: &str, paths: &[PathBuf], keep: &[String], by: &str) -> Result<ExitCode> {
    let (workflows, mut diagnostics) = load_all(paths)?;
    let (overlays, problems) = load_overlays(paths)?;
    diagnostics.extend(problems);
    if diagnostics.iter().any(Diagnostic::is_error) {
        for d in &diagnostics {
            println!("{d}");
        }
        bail!("nothing published: fix the errors above first");
    }
    let store = civicflow_store::Store::connect(db, None).await?;
    let runtime = civicflow_store::Runtime::new(
        store,
        std::sync::Arc::new(civicflow_engine::SystemClock),
        std::sync::Arc::new(civicflow_engine::machine::ExpressionRules),
    )
    .await?;
    for wf in workflows {
        let label = format!("{}@{}", wf.id(), wf.version());
        match runtime.publish_base(wf, keep, by).await {
            Ok((_, fresh)) => println!("{label}: {}", if fresh { "published" } else { "already published" }),
            Err(e) => return Ok(refused(&label, e)),
        }
    }
    for o in runtime.in_tree_order(overlays).await? {
        let label = format!("overlay of {} at {}@{}", o.workflow, o.unit, o.version);
        match runtime.publish_overlay(o, by).await {
            Ok(fresh) => println!("{label}: {}", if fresh { "published" } else { "already published" }),
            Err(e) => return Ok(refused(&label, e)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn refused(label: &str, e: StoreError) -> ExitCode {
    match e {
        StoreError::Refused(message, diagnostics) => {
            for d in &diagnostics {
                println!("{d}");
            }
            println!("{label}: {message}");
        }
        other => println!("{label}: {other}"),
    }
    ExitCode::FAILURE
}
