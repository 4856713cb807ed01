//! `civicflow import`: units and people from CSV or .xlsx, with a progress bar.

use anyhow::{Result, bail};
use civicflow_store::org::ImportError;
use civicflow_store::org_files::{read_people, read_units};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(db: &str, units: Option<&Path>, people: Option<&Path>) -> Result<ExitCode> {
    if units.is_none() && people.is_none() {
        bail!("nothing to import: give --units FILE and/or --people FILE");
    }
    let mut read_errors = Vec::new();
    let units = match units.map(read_units).transpose() {
        Ok(u) => u.unwrap_or_default(),
        Err(e) => {
            read_errors.push(e);
            Vec::new()
        }
    };
    let people = match people.map(read_people).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => {
            read_errors.push(e);
            Vec::new()
        }
    };
    if !read_errors.is_empty() {
        for e in &read_errors {
            println!("{e}");
        }
        println!("nothing was imported");
        return Ok(ExitCode::FAILURE);
    }
    let store = civicflow_store::Store::connect(db, None).await?;
    let bar = ProgressBar::new((units.len() + people.len()) as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} rows {elapsed}").expect("progress template"));
    let result = store.import_org(&units, &people, &|n| bar.set_position(n)).await;
    bar.finish_and_clear();
    match result {
        Ok(s) => {
            println!(
                "imported {} unit(s), {} person(s), {} role grant(s)",
                s.units, s.people, s.roles
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::Rows(errors)) => {
            for e in &errors {
                println!("{e}");
            }
            println!("{} row(s) rejected; nothing was imported", errors.len());
            Ok(ExitCode::FAILURE)
        }
        Err(ImportError::Store(e)) => Err(e.into()),
    }
}
