//! Backups taken while the server runs, and restoring one into a fresh database.
//!
//! SQLite: `VACUUM INTO` writes a consistent, compacted copy from one read transaction (the
//! online way SQLite offers through SQL; sqlx exposes no `sqlite3_backup_*`), and restoring
//! copies that file the same way into the new place. PostgreSQL: `pg_dump --format=custom`
//! and `pg_restore`, so a backup is one the database's own tools read. Restoring refuses a
//! target that already holds data, then opens it (bringing an older backup's schema up to
//! date) and verifies every instance's hash chain.

use crate::db::{Backend, Store};
use crate::error::{Result, StoreError};
use sqlx::Connection;
use std::path::{Path, PathBuf};

/// What a restore found in the restored database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub instances_checked: usize,
    pub broken_chains: usize,
}

fn backend(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite://") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::Invalid(format!(
            "backups are of sqlite://FILE or postgres://USER@HOST/DB databases, not \"{url}\""
        )))
    }
}

/// The file of a `sqlite://FILE[?options]` URL.
fn sqlite_file(url: &str) -> PathBuf {
    let rest = url.trim_start_matches("sqlite://");
    PathBuf::from(rest.split('?').next().unwrap_or(rest))
}

fn refuse_existing(to: &Path) -> Result<()> {
    if to.exists() {
        return Err(StoreError::Invalid(format!(
            "{} exists; a backup or restore never overwrites a file",
            to.display()
        )));
    }
    Ok(())
}

/// `VACUUM INTO` from `from` (opened read-only) into the new file `to`.
async fn sqlite_copy(from: &Path, to: &Path) -> Result<()> {
    refuse_existing(to)?;
    if !from.is_file() {
        return Err(StoreError::Invalid(format!("{} is not a file", from.display())));
    }
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=ro", from.display())).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(to.display().to_string())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Run a PostgreSQL client tool, with its own error text when it fails.
fn pg_tool(program: &str, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(program).args(args).output().map_err(|e| {
        StoreError::Invalid(format!(
            "{program} could not be run ({e}): install the PostgreSQL client tools"
        ))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Write a consistent copy of the database at `url` to the new file `to`.
pub async fn backup(url: &str, to: &Path) -> Result<()> {
    match backend(url)? {
        Backend::Sqlite => sqlite_copy(&sqlite_file(url), to).await,
        Backend::Postgres => {
            refuse_existing(to)?;
            let file = to.display().to_string();
            pg_tool(
                "pg_dump",
                &["--format=custom", "--no-owner", "--file", &file, "--dbname", url],
            )
        }
    }
}

/// Restore the backup `from` into the database at `url`, which must hold no data yet, and
/// verify every hash chain in it.
pub async fn restore(from: &Path, url: &str) -> Result<Restored> {
    match backend(url)? {
        Backend::Sqlite => sqlite_copy(from, &sqlite_file(url)).await?,
        Backend::Postgres => {
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(url).await?;
            let tables: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_one(&mut conn)
            .await?;
            conn.close().await?;
            if tables > 0 {
                return Err(StoreError::Invalid(format!(
                    "the database at {url} already has {tables} tables; restore into an empty one"
                )));
            }
            let file = from.display().to_string();
            pg_tool(
                "pg_restore",
                &[
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    "--dbname",
                    url,
                    &file,
                ],
            )?;
        }
    }
    let store = Store::connect(url, None).await?;
    let (checked, broken) = store.verify_chains().await?;
    Ok(Restored {
        instances_checked: checked,
        broken_chains: broken.len(),
    })
}
