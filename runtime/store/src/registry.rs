//! Published workflow versions, in memory for the engine and in the database for restarts.
//! A published (id, version) is immutable: publishing different content under the same
//! version is refused; a change is a new version.

use crate::db::{Store, first_publication, millis};
use crate::error::{Result, StoreError};
use chrono::Utc;
use civicflow_engine::Workflow;
use civicflow_engine::validate::load;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

#[derive(Default)]
pub struct Registry {
    versions: RwLock<HashMap<(String, u32), Arc<Workflow>>>,
}

impl Registry {
    pub fn get(&self, id: &str, version: u32) -> Option<Arc<Workflow>> {
        self.versions
            .read()
            .expect("registry lock")
            .get(&(id.to_string(), version))
            .cloned()
    }

    pub fn latest(&self, id: &str) -> Option<Arc<Workflow>> {
        let map = self.versions.read().expect("registry lock");
        map.iter()
            .filter(|((i, _), _)| i == id)
            .max_by_key(|((_, v), _)| *v)
            .map(|(_, w)| w.clone())
    }

    /// The newest version of every workflow, by id.
    pub fn all_latest(&self) -> Vec<Arc<Workflow>> {
        let map = self.versions.read().expect("registry lock");
        let mut newest: BTreeMap<&str, &Arc<Workflow>> = BTreeMap::new();
        for ((id, v), wf) in map.iter() {
            if newest.get(id.as_str()).is_none_or(|w| w.version() < *v) {
                newest.insert(id, wf);
            }
        }
        newest.into_values().cloned().collect()
    }

    pub(crate) fn insert(&self, wf: Arc<Workflow>) {
        let key = (wf.id().to_string(), wf.version());
        self.versions.write().expect("registry lock").insert(key, wf);
    }
}

impl Store {
    /// Every published version, as a registry (for tools that run without a runtime).
    pub async fn registry(&self) -> Result<Registry> {
        let registry = Registry::default();
        for wf in self.load_workflows().await? {
            registry.insert(Arc::new(wf));
        }
        Ok(registry)
    }

    /// Store a validated workflow version. Returns false when this exact version was
    /// already published.
    pub async fn publish_workflow(&self, wf: &Workflow) -> Result<bool> {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM workflows WHERE id = $1 AND version = $2")
                .bind(wf.id())
                .bind(i64::from(wf.version()))
                .fetch_optional(&self.pool)
                .await?;
        let what = format!("workflow \"{}\" version {}", wf.id(), wf.version());
        if !first_publication(existing, &wf.sha256, &what)? {
            return Ok(false);
        }
        sqlx::query("INSERT INTO workflows (id, version, source, sha256, published_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(wf.id())
            .bind(i64::from(wf.version()))
            .bind(&wf.source)
            .bind(&wf.sha256)
            .bind(millis(Utc::now()))
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    /// Every published version, compiled again from its stored source.
    pub async fn load_workflows(&self) -> Result<Vec<Workflow>> {
        let rows = sqlx::query("SELECT id, version, source FROM workflows ORDER BY id, version")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("id")?;
            let version: i64 = r.try_get("version")?;
            let source: String = r.try_get("source")?;
            let loaded = load(&format!("{id}@{version}"), &source);
            let wf = loaded.workflow.ok_or_else(|| {
                let first = loaded.diagnostics.first().map(ToString::to_string).unwrap_or_default();
                StoreError::Corrupt(format!("stored workflow {id}@{version} no longer loads: {first}"))
            })?;
            out.push(wf);
        }
        Ok(out)
    }
}
