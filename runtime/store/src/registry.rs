//! Published workflow versions and locality overlays, in memory for the engine and in the
//! database for restarts and for other servers.
//!
//! A published (id, version) is immutable, and so is an overlay's (workflow, unit, version):
//! a change is a new version. What a unit runs is [`Registry::resolve`]: the base version
//! the unit is on (the newest, unless it is held on an earlier one) with the live overlay
//! of every unit from the root down to it, composed and checked once, then cached by that
//! exact composition, which is also what an instance pins.

use crate::admin_log::{self, AdminAction};
use crate::db::{Store, first_publication, millis};
use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};
use civicflow_engine::Diagnostic;
use civicflow_engine::Workflow;
use civicflow_engine::overlay::{Overlay, OverlayPin, compose};
use civicflow_engine::validate::{Loaded, load, load_composed};
use civicflow_engine::yaml::SourceDoc;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// A unit kept on an earlier base version, by whom and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub version: u32,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// One published overlay version, with who published it and when.
#[derive(Debug, Clone)]
pub struct PublishedOverlay {
    pub overlay: Arc<Overlay>,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// What a unit runs: the base version and the overlays above and at it, root first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    pub workflow: String,
    pub version: u32,
    pub overlays: Vec<OverlayPin>,
}

#[derive(Default)]
struct Inner {
    bases: HashMap<(String, u32), Arc<Workflow>>,
    overlays: HashMap<(String, String), BTreeMap<u32, PublishedOverlay>>,
    live: HashMap<(String, String), u32>,
    holds: HashMap<(String, String), Hold>,
    composed: HashMap<Chain, Arc<Workflow>>,
}

#[derive(Default)]
pub struct Registry {
    inner: RwLock<Inner>,
    /// `worked_on_by` per role, asked for by every scoped request; emptied by every change.
    worked_on: RwLock<HashMap<String, Arc<[String]>>>,
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().expect("registry lock")
    }

    /// Emptied while the change holds the lock, so no reader caches what it read before.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let inner = self.inner.write().expect("registry lock");
        self.worked_on.write().expect("registry cache lock").clear();
        inner
    }

    /// A base version.
    pub fn get(&self, id: &str, version: u32) -> Option<Arc<Workflow>> {
        self.read().bases.get(&(id.to_string(), version)).cloned()
    }

    fn base(&self, id: &str, version: u32) -> Result<Arc<Workflow>> {
        self.get(id, version)
            .ok_or_else(|| StoreError::NotFound(format!("workflow {id}@{version}")))
    }

    /// The newest base version (the one units without a hold get).
    pub fn latest(&self, id: &str) -> Option<Arc<Workflow>> {
        let inner = self.read();
        newest(&inner, id)
    }

    /// The newest base version of every workflow, by id.
    pub fn all_latest(&self) -> Vec<Arc<Workflow>> {
        let inner = self.read();
        let mut newest: BTreeMap<&str, &Arc<Workflow>> = BTreeMap::new();
        for ((id, v), wf) in inner.bases.iter() {
            if newest.get(id.as_str()).is_none_or(|w| w.version() < *v) {
                newest.insert(id, wf);
            }
        }
        newest.into_values().cloned().collect()
    }

    /// The workflows (ids) on which `role` works in any published version or composition
    /// in use: a step is assigned to it or escalates to it.
    pub fn worked_on_by(&self, role: &str) -> Arc<[String]> {
        let inner = self.read();
        if let Some(ids) = self.worked_on.read().expect("registry cache lock").get(role) {
            return ids.clone();
        }
        let all = inner.bases.values().chain(inner.composed.values());
        let ids: std::collections::BTreeSet<&str> = all
            .filter(|wf| wf.working_roles().contains(role))
            .map(|wf| wf.id())
            .collect();
        let ids: Arc<[String]> = ids.into_iter().map(str::to_string).collect();
        // Still under the read lock: a change waits for it, then empties the cache.
        self.worked_on
            .write()
            .expect("registry cache lock")
            .insert(role.to_string(), ids.clone());
        ids
    }

    /// The effective workflow `id` at the unit on `unit_path`: None if there is no such
    /// workflow. Composition is checked at publication, so an error here means stored data
    /// changed under the server.
    pub fn resolve(&self, id: &str, unit_path: &str) -> Result<Option<Arc<Workflow>>> {
        match self.chain_at(id, unit_path) {
            Some(chain) => self.pinned(&chain).map(Some),
            None => Ok(None),
        }
    }

    /// Every workflow as the unit on `unit_path` has it, that may be started there.
    pub fn offered_at(&self, unit_path: &str) -> Vec<Arc<Workflow>> {
        let ids: Vec<String> = self.all_latest().iter().map(|w| w.id().to_string()).collect();
        ids.iter()
            .filter_map(|id| match self.resolve(id, unit_path) {
                Ok(wf) => wf,
                Err(e) => {
                    tracing::error!(workflow = %id, unit = %unit_path, error = %e, "a workflow does not compose here");
                    None
                }
            })
            .filter(|wf| wf.available_at(unit_path))
            .collect()
    }

    /// What the unit on `unit_path` runs of `id`: its base version and live overlays.
    pub fn chain_at(&self, id: &str, unit_path: &str) -> Option<Chain> {
        self.chain_without_hold(id, unit_path, None)
    }

    /// As [`Registry::chain_at`], as if `unit` held nothing (its hold about to be lifted).
    pub(crate) fn chain_without_hold(&self, id: &str, unit_path: &str, unit: Option<&str>) -> Option<Chain> {
        let inner = self.read();
        let held = crate::places::ids(unit_path)
            .filter(|u| Some(*u) != unit)
            .filter_map(|u| inner.holds.get(&(id.to_string(), u.to_string())))
            .next_back()
            .map(|h| h.version);
        let version = held.or_else(|| newest(&inner, id).map(|w| w.version()))?;
        let overlays = crate::places::ids(unit_path)
            .filter_map(|u| {
                let version = *inner.live.get(&(id.to_string(), u.to_string()))?;
                Some(OverlayPin {
                    unit: u.to_string(),
                    version,
                })
            })
            .collect();
        Some(Chain {
            workflow: id.to_string(),
            version,
            overlays,
        })
    }

    /// The workflow an instance runs: its base version with the overlays it started with.
    pub fn for_instance(&self, i: &civicflow_engine::Instance) -> Result<Arc<Workflow>> {
        if i.overlays.is_empty() {
            return self.base(&i.workflow, i.workflow_version);
        }
        self.pinned(&Chain {
            workflow: i.workflow.clone(),
            version: i.workflow_version,
            overlays: i.overlays.clone(),
        })
    }

    /// The workflow an instance pinned: a base version with exactly these overlays.
    pub fn pinned(&self, chain: &Chain) -> Result<Arc<Workflow>> {
        // The base itself is already compiled; only compositions are composed and cached.
        if chain.overlays.is_empty() {
            return self.base(&chain.workflow, chain.version);
        }
        if let Some(wf) = self.read().composed.get(chain) {
            return Ok(wf.clone());
        }
        let loaded = self.compose(chain, &[])?;
        let wf = Arc::new(loaded.workflow.ok_or_else(|| {
            let first = loaded.diagnostics.first().map(ToString::to_string).unwrap_or_default();
            StoreError::Corrupt(format!("{} no longer composes: {first}", describe(chain)))
        })?);
        self.write().composed.insert(chain.clone(), wf.clone());
        Ok(wf)
    }

    /// Compose `chain`, with `extra` overlays (not yet published) used in place of the
    /// published ones of the same unit or added after them, and check the result; `base`
    /// replaces the chain's base version (one being published).
    pub(crate) fn compose(&self, chain: &Chain, extra: &[&Overlay]) -> Result<Loaded> {
        let base = self.base(&chain.workflow, chain.version)?;
        self.compose_on(&base, &chain.overlays, extra)
    }

    pub(crate) fn compose_on(&self, base: &Workflow, pins: &[OverlayPin], extra: &[&Overlay]) -> Result<Loaded> {
        let published = self.layers(base.id(), pins, extra)?;
        let layers = with_extra(&published, pins, extra);
        Ok(load_composed(&source_name(base), &base.source, &layers))
    }

    /// The composed document of `chain`, each part with the file and line it came from
    /// (for `civicflow show`), or why it does not compose.
    pub fn composed_document(&self, chain: &Chain) -> Result<Result<SourceDoc, Vec<Diagnostic>>> {
        let base = self.base(&chain.workflow, chain.version)?;
        let published = self.layers(&chain.workflow, &chain.overlays, &[])?;
        let layers = with_extra(&published, &chain.overlays, &[]);
        Ok(SourceDoc::parse(&source_name(&base), &base.source)
            .map_err(|d| vec![d])
            .and_then(|doc| compose(&doc, &layers)))
    }

    /// The published overlays `pins` name (those of units in `extra` are left out).
    fn layers(&self, workflow: &str, pins: &[OverlayPin], extra: &[&Overlay]) -> Result<Vec<Option<Arc<Overlay>>>> {
        let inner = self.read();
        pins.iter()
            .map(|pin| {
                if extra.iter().any(|o| o.unit == pin.unit) {
                    return Ok(None);
                }
                inner
                    .overlays
                    .get(&(workflow.to_string(), pin.unit.clone()))
                    .and_then(|vs| vs.get(&pin.version))
                    .map(|p| Some(p.overlay.clone()))
                    .ok_or_else(|| StoreError::NotFound(format!("overlay of \"{workflow}\" at {pin}")))
            })
            .collect()
    }

    /// Every version of the overlay of `workflow` at `unit`, oldest first.
    pub fn overlay_versions(&self, workflow: &str, unit: &str) -> Vec<PublishedOverlay> {
        let inner = self.read();
        inner
            .overlays
            .get(&(workflow.to_string(), unit.to_string()))
            .map(|vs| vs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// `(unit, live version)` of every overlay of `workflow`.
    pub fn live_overlays(&self, workflow: &str) -> Vec<(String, u32)> {
        let inner = self.read();
        let mut out: Vec<(String, u32)> = inner
            .live
            .iter()
            .filter(|((w, _), _)| w == workflow)
            .map(|((_, u), v)| (u.clone(), *v))
            .collect();
        out.sort();
        out
    }

    /// Units held on an earlier base version of `workflow`.
    pub fn holds(&self, workflow: &str) -> Vec<(String, Hold)> {
        let inner = self.read();
        let mut out: Vec<(String, Hold)> = inner
            .holds
            .iter()
            .filter(|((w, _), _)| w == workflow)
            .map(|((_, u), h)| (u.clone(), h.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Units that run their own version of `workflow` (a live overlay or a hold): each is
    /// the root of a region where schedules fire with that unit's composition.
    pub fn region_roots(&self, workflow: &str) -> std::collections::BTreeSet<String> {
        let mut out: std::collections::BTreeSet<String> =
            self.live_overlays(workflow).into_iter().map(|(u, _)| u).collect();
        out.extend(self.holds(workflow).into_iter().map(|(u, _)| u));
        out
    }

    pub(crate) fn insert(&self, wf: Arc<Workflow>) {
        let key = (wf.id().to_string(), wf.version());
        self.write().bases.insert(key, wf);
    }

    pub(crate) fn insert_overlay(&self, published: PublishedOverlay) {
        let o = &published.overlay;
        let key = (o.workflow.clone(), o.unit.clone());
        let version = o.version;
        self.write().overlays.entry(key).or_default().insert(version, published);
    }

    fn set_state(&self, live: HashMap<(String, String), u32>, holds: HashMap<(String, String), Hold>) {
        let mut inner = self.write();
        inner.live = live;
        inner.holds = holds;
    }

    fn has_overlay(&self, workflow: &str, unit: &str, version: u32) -> bool {
        self.read()
            .overlays
            .get(&(workflow.to_string(), unit.to_string()))
            .is_some_and(|vs| vs.contains_key(&version))
    }
}

/// `published` (by pin, None where `extra` has that unit's) with the extra overlays in their
/// unit's place or after the rest.
fn with_extra<'a>(
    published: &'a [Option<Arc<Overlay>>],
    pins: &[OverlayPin],
    extra: &[&'a Overlay],
) -> Vec<&'a Overlay> {
    let mut layers: Vec<&Overlay> = pins
        .iter()
        .zip(published)
        .filter_map(|(pin, p)| match p {
            Some(o) => Some(o.as_ref()),
            None => extra.iter().find(|o| o.unit == pin.unit).copied(),
        })
        .collect();
    layers.extend(extra.iter().filter(|o| !pins.iter().any(|p| p.unit == o.unit)).copied());
    layers
}

/// The name diagnostics give the base's text: the file it was published from.
fn source_name(base: &Workflow) -> String {
    if base.file.is_empty() {
        format!("{}@{}", base.id(), base.version())
    } else {
        base.file.clone()
    }
}

fn newest(inner: &Inner, id: &str) -> Option<Arc<Workflow>> {
    inner
        .bases
        .iter()
        .filter(|((i, _), _)| i == id)
        .max_by_key(|((_, v), _)| *v)
        .map(|(_, w)| w.clone())
}

/// `ticket@6 + guoyuan@1` for messages.
pub fn describe(chain: &Chain) -> String {
    let mut out = format!("{}@{}", chain.workflow, chain.version);
    for p in &chain.overlays {
        out.push_str(&format!(" + {p}"));
    }
    out
}

impl Store {
    /// Every published version and overlay, with what is live, as a registry (for tools
    /// that run without a runtime).
    pub async fn registry(&self) -> Result<Registry> {
        let registry = Registry::default();
        self.refresh_registry(&registry).await?;
        Ok(registry)
    }

    /// Read into `registry` the versions and overlays it does not have yet (they never
    /// change once published) and what is live and held now.
    pub(crate) async fn refresh_registry(&self, registry: &Registry) -> Result<()> {
        let rows = sqlx::query("SELECT id, version, file, source FROM workflows ORDER BY id, version")
            .fetch_all(&self.pool)
            .await?;
        for r in rows {
            let id: String = r.try_get("id")?;
            let version = u32::try_from(r.try_get::<i64, _>("version")?).unwrap_or(0);
            if registry.get(&id, version).is_some() {
                continue;
            }
            let file: String = r.try_get("file")?;
            let source: String = r.try_get("source")?;
            let file = if file.is_empty() {
                format!("{id}@{version}")
            } else {
                file
            };
            let loaded = load(&file, &source);
            let wf = loaded.workflow.ok_or_else(|| {
                let first = loaded.diagnostics.first().map(ToString::to_string).unwrap_or_default();
                StoreError::Corrupt(format!("stored workflow {id}@{version} no longer loads: {first}"))
            })?;
            registry.insert(Arc::new(wf));
        }
        let rows = sqlx::query(
            "SELECT workflow_id, unit_id, version, file, source, published_by, published_at FROM overlays ORDER BY workflow_id, unit_id, version",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let (workflow, unit): (String, String) = (r.try_get("workflow_id")?, r.try_get("unit_id")?);
            let version = u32::try_from(r.try_get::<i64, _>("version")?).unwrap_or(0);
            if registry.has_overlay(&workflow, &unit, version) {
                continue;
            }
            let (file, source): (String, String) = (r.try_get("file")?, r.try_get("source")?);
            let overlay = Overlay::load(&file, &source).map_err(|d| {
                let first = d.first().map(ToString::to_string).unwrap_or_default();
                StoreError::Corrupt(format!(
                    "stored overlay of {workflow} at {unit}@{version} no longer loads: {first}"
                ))
            })?;
            registry.insert_overlay(PublishedOverlay {
                overlay: Arc::new(overlay),
                by: r.try_get("published_by")?,
                at: crate::db::from_millis(r.try_get("published_at")?),
            });
        }
        let mut live = HashMap::new();
        for r in sqlx::query("SELECT workflow_id, unit_id, version FROM overlay_live")
            .fetch_all(&self.pool)
            .await?
        {
            let version = u32::try_from(r.try_get::<i64, _>("version")?).unwrap_or(0);
            live.insert((r.try_get("workflow_id")?, r.try_get("unit_id")?), version);
        }
        let mut holds = HashMap::new();
        for r in sqlx::query("SELECT workflow_id, unit_id, version, held_by, held_at FROM base_holds")
            .fetch_all(&self.pool)
            .await?
        {
            let hold = Hold {
                version: u32::try_from(r.try_get::<i64, _>("version")?).unwrap_or(0),
                by: r.try_get("held_by")?,
                at: crate::db::from_millis(r.try_get("held_at")?),
            };
            holds.insert((r.try_get("workflow_id")?, r.try_get("unit_id")?), hold);
        }
        registry.set_state(live, holds);
        Ok(())
    }

    /// Changes whenever anything is published, rolled back or held, by any server.
    pub async fn registry_stamp(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM registry_log")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Store a validated workflow version. Returns false when this exact version was
    /// already published.
    pub async fn publish_workflow(&self, wf: &Workflow, by: &str) -> Result<bool> {
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
        let now = millis(Utc::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO workflows (id, version, source, sha256, published_at, file) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
            .bind(wf.id())
            .bind(i64::from(wf.version()))
            .bind(&wf.source)
            .bind(&wf.sha256)
            .bind(now)
            .bind(&wf.file)
            .execute(&mut *tx)
            .await?;
        let published = AdminAction::WorkflowPublished {
            workflow: wf.id().to_string(),
            version: wf.version(),
        };
        log(&mut tx, "", &published, by, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// One line of the registry's history (which is also its change stamp), and the same
/// change in the admin log, in the change's transaction.
pub(crate) async fn log(
    conn: &mut sqlx::AnyConnection,
    unit: &str,
    action: &AdminAction,
    by: &str,
    at: i64,
) -> Result<()> {
    if let Some((workflow, version)) = action.workflow_version() {
        sqlx::query("INSERT INTO registry_log (workflow_id, unit_id, action, version, by_person, at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(workflow)
            .bind(unit)
            .bind(action.kind())
            .bind(i64::from(version))
            .bind(by)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    }
    admin_log::record(conn, at, by, unit, action).await
}
