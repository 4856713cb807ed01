//! Finding and loading definition files on disk: the one place the engine reads files,
//! so that `validate`, `test`, `publish` and `serve --demo` agree on what a workflow file is.

use crate::Diagnostic;
use crate::definition::Workflow;
use crate::overlay::Overlay;
use crate::validate::load;
use std::path::{Path, PathBuf};

/// Workflow files under the given paths: `*.yaml`/`*.yml`, not scenario files
/// (`*.test.yaml`), calendar tables (`*.calendar.yaml`) nor overlays (`*.overlay.yaml`),
/// sorted for stable output.
pub fn workflow_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    collect(paths, &|p| {
        is_yaml(p) && !is_scenario(p) && !is_calendar(p) && !is_overlay(p)
    })
}

/// Locality overlays: `*.overlay.yaml`.
pub fn overlay_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    collect(paths, &is_overlay)
}

pub fn is_overlay(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".overlay.yaml") || n.ends_with(".overlay.yml"))
}

/// Read every overlay file: those that parse, and the diagnostics of those that do not.
pub fn load_overlays(paths: &[PathBuf]) -> std::io::Result<(Vec<Overlay>, Vec<Diagnostic>)> {
    let mut overlays = Vec::new();
    let mut diagnostics = Vec::new();
    for file in overlay_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
        match Overlay::load(&file.display().to_string(), &text) {
            Ok(o) => overlays.push(o),
            Err(d) => diagnostics.extend(d),
        }
    }
    Ok((overlays, diagnostics))
}

/// Working-day tables: `*.calendar.yaml` or `*.calendar.csv`.
pub fn calendar_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    collect(paths, &is_calendar)
}

fn is_calendar(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        [".calendar.yaml", ".calendar.yml", ".calendar.csv"]
            .iter()
            .any(|s| n.ends_with(s))
    })
}

pub fn scenario_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    collect(paths, &is_scenario)
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn is_scenario(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.yaml") || n.ends_with(".test.yml"))
}

fn collect(paths: &[PathBuf], keep: &dyn Fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            let files: Vec<PathBuf> = entries.iter().filter(|e| e.is_file() && keep(e)).cloned().collect();
            let dirs: Vec<PathBuf> = entries.into_iter().filter(|e| e.is_dir()).collect();
            out.extend(files);
            out.extend(collect(&dirs, keep)?);
        } else if p.is_file() {
            // A file named outright is taken if it is of the kind asked for.
            if keep(p) {
                out.push(p.clone());
            }
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such file or folder", p.display()),
            ));
        }
    }
    Ok(out)
}

/// Load every workflow file; diagnostics of all files, and the workflows that loaded.
pub fn load_all(paths: &[PathBuf]) -> std::io::Result<(Vec<Workflow>, Vec<Diagnostic>)> {
    let mut workflows = Vec::new();
    let mut diagnostics = Vec::new();
    for file in workflow_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
        let loaded = load(&file.display().to_string(), &text);
        diagnostics.extend(loaded.diagnostics);
        workflows.extend(loaded.workflow);
    }
    Ok((workflows, diagnostics))
}
