//! `civicflow validate` and `civicflow publish`.

use anyhow::{Result, bail};
use civicflow_engine::Diagnostic;
use civicflow_engine::files::{load_all, workflow_files};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(paths: &[PathBuf]) -> Result<ExitCode> {
    let files = workflow_files(paths)?;
    let (workflows, diagnostics) = load_all(paths)?;
    for d in &diagnostics {
        println!("{d}");
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    println!(
        "{} file(s) checked: {} valid, {errors} error(s), {warnings} warning(s)",
        files.len(),
        workflows.len()
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn publish(db: &str, paths: &[PathBuf]) -> Result<ExitCode> {
    let (workflows, diagnostics) = load_all(paths)?;
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
        let (_, fresh) = runtime.publish(wf).await?;
        println!("{label}: {}", if fresh { "published" } else { "already published" });
    }
    Ok(ExitCode::SUCCESS)
}
