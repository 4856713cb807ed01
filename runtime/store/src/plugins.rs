//! Stored plugin versions (immutable), bindings along the org tree, and the signing keys
//! each unit trusts. The store keeps bytes and JSON; the plugin host gives them meaning.

use crate::admin_log::{self, AdminAction};
use crate::db::{Store, first_publication, millis};
use crate::error::{Result, StoreError};
use chrono::Utc;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct PluginRecord {
    pub id: String,
    pub version: String,
    pub sha256: String,
    /// The manifest as JSON.
    pub manifest: serde_json::Value,
    pub wasm: Vec<u8>,
    /// The trusted public key (base64) whose signature was verified, if signed.
    pub signed_with: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BindingRecord {
    pub unit_id: String,
    pub workflow: String,
    pub hook: String,
    pub plugin: String,
    pub version: String,
    /// Limits as JSON (the plugin host's `Limits`).
    pub limits: serde_json::Value,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Store {
    /// Store a plugin version. Returns false when this exact version is already there;
    /// different bytes under a published version are refused (versions are immutable).
    pub async fn publish_plugin(&self, p: &PluginRecord, by: &str) -> Result<bool> {
        use base64::Engine;
        let existing: Option<String> = sqlx::query_scalar("SELECT sha256 FROM plugins WHERE id = $1 AND version = $2")
            .bind(&p.id)
            .bind(&p.version)
            .fetch_optional(&self.pool)
            .await?;
        if !first_publication(existing, &p.sha256, &format!("plugin {}@{}", p.id, p.version))? {
            return Ok(false);
        }
        let now = millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO plugins (id, version, sha256, manifest, wasm_base64, signed_with, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&p.id)
            .bind(&p.version)
            .bind(&p.sha256)
            .bind(p.manifest.to_string())
            .bind(b64().encode(&p.wasm))
            .bind(&p.signed_with)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let author = p.manifest["author_unit"].as_str().unwrap_or_default();
        let published = AdminAction::PluginPublished {
            plugin: p.id.clone(),
            version: p.version.clone(),
        };
        admin_log::record(&mut tx, now, by, author, &published).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn plugins(&self) -> Result<Vec<PluginRecord>> {
        use base64::Engine;
        let rows = sqlx::query(
            "SELECT id, version, sha256, manifest, wasm_base64, signed_with FROM plugins ORDER BY id, version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let manifest: String = r.try_get("manifest")?;
                let wasm: String = r.try_get("wasm_base64")?;
                Ok(PluginRecord {
                    id: r.try_get("id")?,
                    version: r.try_get("version")?,
                    sha256: r.try_get("sha256")?,
                    manifest: serde_json::from_str(&manifest)?,
                    wasm: b64()
                        .decode(wasm)
                        .map_err(|e| StoreError::Corrupt(format!("plugin bytes: {e}")))?,
                    signed_with: r.try_get("signed_with")?,
                })
            })
            .collect()
    }

    /// Bind (or rebind) a hook at a unit. The plugin version must be published.
    pub async fn bind(&self, b: &BindingRecord, by: &str) -> Result<()> {
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM plugins WHERE id = $1 AND version = $2")
            .bind(&b.plugin)
            .bind(&b.version)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("plugin {}@{}", b.plugin, b.version)));
        }
        self.unit_path(&b.unit_id).await?;
        let now = millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO bindings (unit_id, workflow_id, hook, plugin_id, plugin_version, limits, bound_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (unit_id, workflow_id, hook) DO UPDATE SET plugin_id = excluded.plugin_id, plugin_version = excluded.plugin_version, limits = excluded.limits, bound_at = excluded.bound_at",
        )
        .bind(&b.unit_id)
        .bind(&b.workflow)
        .bind(&b.hook)
        .bind(&b.plugin)
        .bind(&b.version)
        .bind(b.limits.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let bound = AdminAction::PluginBound {
            workflow: b.workflow.clone(),
            hook: b.hook.clone(),
            plugin: b.plugin.clone(),
            version: b.version.clone(),
        };
        admin_log::record(&mut tx, now, by, &b.unit_id, &bound).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn bindings(&self) -> Result<Vec<BindingRecord>> {
        let rows = sqlx::query("SELECT unit_id, workflow_id, hook, plugin_id, plugin_version, limits FROM bindings ORDER BY unit_id, workflow_id, hook").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let limits: String = r.try_get("limits")?;
                Ok(BindingRecord {
                    unit_id: r.try_get("unit_id")?,
                    workflow: r.try_get("workflow_id")?,
                    hook: r.try_get("hook")?,
                    plugin: r.try_get("plugin_id")?,
                    version: r.try_get("plugin_version")?,
                    limits: serde_json::from_str(&limits)?,
                })
            })
            .collect()
    }

    /// A value that changes whenever plugins or bindings do, so servers reload only then.
    pub async fn plugins_stamp(&self) -> Result<String> {
        let row = sqlx::query("SELECT (SELECT COUNT(*) FROM plugins) AS p, (SELECT COUNT(*) FROM bindings) AS b, (SELECT COALESCE(MAX(bound_at), 0) FROM bindings) AS t").fetch_one(&self.pool).await?;
        Ok(format!(
            "{}:{}:{}",
            row.try_get::<i64, _>("p")?,
            row.try_get::<i64, _>("b")?,
            row.try_get::<i64, _>("t")?
        ))
    }

    pub async fn trust_key(&self, unit_id: &str, public_key: &str) -> Result<()> {
        self.unit_path(unit_id).await?;
        sqlx::query("INSERT INTO trusted_keys (unit_id, public_key) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(unit_id)
            .bind(public_key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keys trusted by the unit or any of its ancestors.
    pub async fn trusted_keys(&self, unit_id: &str) -> Result<Vec<String>> {
        let path = self.unit_path(unit_id).await?;
        let ancestors: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut keys = Vec::new();
        for unit in ancestors {
            let rows: Vec<String> = sqlx::query_scalar("SELECT public_key FROM trusted_keys WHERE unit_id = $1")
                .bind(unit)
                .fetch_all(&self.pool)
                .await?;
            keys.extend(rows);
        }
        Ok(keys)
    }
}
