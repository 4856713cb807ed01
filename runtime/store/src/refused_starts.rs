//! Starts a locality's rule refused. A refused action on an instance is noted in that
//! instance's log; a refused start has no instance, so it is kept here, by unit, for the
//! unit's admins to see which plugin turned whose report away and why.

use crate::db::{Store, from_millis, millis};
use crate::error::Result;
use crate::scope::subtree_end;
use chrono::{DateTime, Utc};
use civicflow_engine::EngineError;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct RefusedStart {
    pub at: DateTime<Utc>,
    pub workflow: String,
    pub unit_id: String,
    pub person: String,
    pub rule: String,
    pub plugin: Option<String>,
    pub error: String,
}

impl Store {
    /// Keep a start refused by a failing rule (other refusals are the starter's to fix).
    pub(crate) async fn record_refused_start(
        &self,
        workflow: &str,
        unit: &str,
        person: &str,
        failure: &EngineError,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let EngineError::Rule { hook, plugin, message } = failure else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO refused_starts (id, at, workflow_id, unit_id, unit_path, person_id, rule, plugin, error) \
             SELECT $1, $2, $3, $4, path, $5, $6, $7, $8 FROM units WHERE id = $4",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(millis(now))
        .bind(workflow)
        .bind(unit)
        .bind(person)
        .bind(hook)
        .bind(plugin.as_deref())
        .bind(message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest `limit` refused starts in the subtree at `unit_path`, newest first.
    pub async fn refused_starts(&self, unit_path: &str, limit: i64) -> Result<Vec<RefusedStart>> {
        let rows = sqlx::query(
            "SELECT at, workflow_id, unit_id, person_id, rule, plugin, error FROM refused_starts \
             WHERE unit_path >= $1 AND unit_path < $2 ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(unit_path)
        .bind(subtree_end(unit_path))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RefusedStart {
                    at: from_millis(row.try_get("at")?),
                    workflow: row.try_get("workflow_id")?,
                    unit_id: row.try_get("unit_id")?,
                    person: row.try_get("person_id")?,
                    rule: row.try_get("rule")?,
                    plugin: row.try_get("plugin")?,
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }
}
