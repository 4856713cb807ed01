//! Publishing base versions and locality overlays so that every unit's composition still
//! holds: nothing is stored unless the effective workflow of every unit it reaches composes
//! and passes the workflow checks, and every refusal names the file and line to fix.
//! Each change is logged (`registry_log`), which is also how other servers notice it.

use crate::admin_log::AdminAction;
use crate::db::millis;
use crate::error::{Result, StoreError};
use crate::registry::{PublishedOverlay, log};
use crate::runtime::Shared;
use civicflow_engine::overlay::{Overlay, OverlayPin};
use civicflow_engine::{Diagnostic, Workflow};
use sqlx::Row;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A unit as messages name it.
struct UnitInfo {
    path: String,
    name: String,
}

impl Shared {
    /// Publish a validated base version and arm its schedules. Every unit's live overlays
    /// are composed onto it first; if one no longer applies the publication is refused
    /// with the overlay's file and line, unless that unit (or one above it) is in `keep`:
    /// those units stay on the previous version (recorded as a hold) and everyone else
    /// gets the new one.
    pub async fn publish_base(&self, wf: Workflow, keep: &[String], by: &str) -> Result<(Arc<Workflow>, bool)> {
        self.check_levels(&wf)?;
        self.check_units_exist(&wf).await?;
        let id = wf.id().to_string();
        if let Some(same) = self.registry.get(&id, wf.version())
            && same.sha256 == wf.sha256
        {
            return Ok((same, false));
        }
        let previous = self.registry.latest(&id).map(|w| w.version());
        let mut kept = Vec::new();
        for unit in keep {
            let info = self.unit(unit).await?;
            let Some(version) = previous.filter(|v| *v < wf.version()) else {
                return Err(StoreError::Invalid(format!(
                    "there is no earlier version of \"{id}\" to keep unit \"{}\" on",
                    info.name
                )));
            };
            kept.push((unit.clone(), info.path, version));
        }
        let held: Vec<String> = self.registry.holds(&id).into_iter().map(|(u, _)| u).collect();
        let mut problems = Problems::default();
        for (unit, _) in self.registry.live_overlays(&id) {
            let info = self.unit(&unit).await?;
            let on_path = |u: &String| info.path.contains(&format!("/{u}/"));
            if kept.iter().any(|(k, _, _)| on_path(k)) || held.iter().any(on_path) {
                continue;
            }
            let pins = self
                .registry
                .chain_at(&id, &info.path)
                .map(|c| c.overlays)
                .unwrap_or_default();
            let loaded = self.registry.compose_on(&wf, &pins, &[])?;
            problems.add(&unit, &info, loaded.diagnostics);
        }
        if !problems.is_empty() {
            return Err(StoreError::Refused(
                format!(
                    "{id} version {} is not published: overlays below no longer apply to it. Fix them, or keep their units on version {} (`--keep UNIT`)",
                    wf.version(),
                    previous.unwrap_or_default()
                ),
                problems.into_diagnostics(),
            ));
        }
        let fresh = self.store.publish_workflow(&wf, by).await?;
        let now = millis(self.now());
        for (unit, _, version) in &kept {
            let mut tx = self.store.pool.begin().await?;
            sqlx::query(
                "INSERT INTO base_holds (workflow_id, unit_id, version, held_by, held_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (workflow_id, unit_id) DO UPDATE SET version = excluded.version, held_by = excluded.held_by, held_at = excluded.held_at",
            )
            .bind(&id)
            .bind(unit)
            .bind(i64::from(*version))
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let held = AdminAction::BaseHeld {
                workflow: id.clone(),
                version: *version,
            };
            log(&mut tx, unit, &held, by, now).await?;
            tx.commit().await?;
        }
        let wf = Arc::new(wf);
        self.registry.insert(wf.clone());
        self.reload_after_change().await?;
        self.arm_schedules(&id).await?;
        Ok((wf, fresh))
    }

    /// Publish a unit's overlay version and make it the live one there. Refused, with
    /// located diagnostics and nothing stored, when it does not compose at its unit (on top
    /// of its ancestors' overlays) or breaks an overlay of a unit below it.
    pub async fn publish_overlay(&self, overlay: Overlay, by: &str) -> Result<bool> {
        let id = overlay.workflow.clone();
        let refuse = |message: String, d: Vec<Diagnostic>| StoreError::Refused(message, d);
        if self.registry.latest(&id).is_none() {
            let d = vec![overlay.error("/extends", format!("no workflow \"{id}\" is published"))];
            return Err(refuse(
                format!("the overlay extends \"{id}\", which is not published"),
                d,
            ));
        }
        let Some(info) = self.unit_if_any(&overlay.unit).await? else {
            let d = vec![overlay.error("/unit", format!("no unit \"{}\" in the organisation", overlay.unit))];
            return Err(refuse("the overlay names a unit that does not exist".into(), d));
        };
        let mut outside = Vec::new();
        for (named, pointer) in overlay.named_units() {
            let inside = self
                .unit_if_any(&named)
                .await?
                .is_some_and(|u| u.path.starts_with(&info.path));
            if !inside {
                let message = format!(
                    "\"{named}\" is not a unit of {}'s subtree; an overlay changes its own subtree only",
                    info.name
                );
                outside.push(overlay.error(&pointer, message));
            }
        }
        if !outside.is_empty() {
            return Err(refuse("the overlay names units outside its subtree".into(), outside));
        }
        let versions = self.registry.overlay_versions(&id, &overlay.unit);
        if let Some(same) = versions.iter().find(|p| p.overlay.version == overlay.version) {
            if same.overlay.sha256 == overlay.sha256 {
                return Ok(false);
            }
            return Err(StoreError::Invalid(format!(
                "the overlay of \"{id}\" at {} version {} is already published with different content; published versions are immutable, so raise the version",
                info.name, overlay.version
            )));
        }
        if let Some(newest) = versions.last().map(|p| p.overlay.version)
            && newest > overlay.version
        {
            return Err(StoreError::Invalid(format!(
                "the overlay of \"{id}\" at {} is at version {newest} already; publish {} (or roll back to an earlier one)",
                info.name,
                newest + 1
            )));
        }
        let problems = self.check_subtree(&id, &overlay.unit, &info, &overlay).await?;
        if !problems.is_empty() {
            return Err(refuse(
                format!("the overlay of \"{id}\" at {} is not published", info.name),
                problems,
            ));
        }
        let now = millis(self.now());
        let mut tx = self.store.pool.begin().await?;
        sqlx::query(
            "INSERT INTO overlays (workflow_id, unit_id, version, file, source, sha256, published_by, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(&overlay.unit)
        .bind(i64::from(overlay.version))
        .bind(overlay.file())
        .bind(&overlay.source)
        .bind(&overlay.sha256)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        set_live(&mut tx, &id, &overlay.unit, overlay.version, by, now).await?;
        // The unit's overlay was checked against the newest base: it is on that now.
        sqlx::query("DELETE FROM base_holds WHERE workflow_id = $1 AND unit_id = $2")
            .bind(&id)
            .bind(&overlay.unit)
            .execute(&mut *tx)
            .await?;
        let published = AdminAction::OverlayPublished {
            workflow: id.clone(),
            version: overlay.version,
        };
        log(&mut tx, &overlay.unit, &published, by, now).await?;
        tx.commit().await?;
        self.registry.insert_overlay(PublishedOverlay {
            overlay: Arc::new(overlay),
            by: by.to_string(),
            at: crate::db::from_millis(now),
        });
        self.reload_after_change().await?;
        self.arm_schedules(&id).await?;
        Ok(true)
    }

    /// Make an earlier (or any published) version of a unit's overlay the live one, after
    /// checking it still composes there and below.
    pub async fn set_live_overlay(&self, workflow: &str, unit: &str, version: u32, by: &str) -> Result<()> {
        let info = self.unit(unit).await?;
        let Some(chosen) = self
            .registry
            .overlay_versions(workflow, unit)
            .into_iter()
            .find(|p| p.overlay.version == version)
        else {
            return Err(StoreError::NotFound(format!(
                "version {version} of the overlay of \"{workflow}\" at {}",
                info.name
            )));
        };
        let problems = self.check_subtree(workflow, unit, &info, &chosen.overlay).await?;
        if !problems.is_empty() {
            return Err(StoreError::Refused(
                format!(
                    "version {version} of the overlay of \"{workflow}\" at {} no longer applies",
                    info.name
                ),
                problems,
            ));
        }
        let now = millis(self.now());
        let mut tx = self.store.pool.begin().await?;
        set_live(&mut tx, workflow, unit, version, by, now).await?;
        let live = AdminAction::OverlayLive {
            workflow: workflow.to_string(),
            version,
        };
        log(&mut tx, unit, &live, by, now).await?;
        tx.commit().await?;
        self.reload_after_change().await?;
        self.arm_schedules(workflow).await?;
        Ok(())
    }

    /// Read what another server or the CLI published since this one last looked.
    pub async fn sync_registry(&self) -> Result<bool> {
        let stamp = self.store.registry_stamp().await?;
        if *self.registry_stamp.read().expect("not poisoned") == stamp {
            return Ok(false);
        }
        self.reload_registry(stamp).await?;
        Ok(true)
    }

    /// Read the registry again after this server changed it, with the stamp taken first,
    /// so the scheduler's next tick does not read it a second time.
    async fn reload_after_change(&self) -> Result<()> {
        let stamp = self.store.registry_stamp().await?;
        self.reload_registry(stamp).await
    }

    async fn reload_registry(&self, stamp: i64) -> Result<()> {
        self.store.refresh_registry(&self.registry).await?;
        *self.registry_stamp.write().expect("not poisoned") = stamp;
        Ok(())
    }

    /// Overlays in the order they must be published: from the root of the tree down, so each
    /// is checked on top of its ancestors' (one rule for the CLI, the demo and scenarios).
    pub async fn in_tree_order(&self, overlays: Vec<Overlay>) -> Result<Vec<Overlay>> {
        let mut placed = Vec::with_capacity(overlays.len());
        for o in overlays {
            let depth = self
                .store
                .unit_path(&o.unit)
                .await
                .map_or(0, |p| p.matches('/').count());
            placed.push((depth, o));
        }
        placed.sort_by_key(|(depth, _)| *depth);
        Ok(placed.into_iter().map(|(_, o)| o).collect())
    }

    /// `overlay` composed at `unit` (on its ancestors' live overlays) and at every unit
    /// below with a live overlay: what does not hold, each diagnostic naming its unit.
    async fn check_subtree(&self, id: &str, unit: &str, info: &UnitInfo, overlay: &Overlay) -> Result<Vec<Diagnostic>> {
        let mut problems = Problems::default();
        let mut units: BTreeSet<String> = BTreeSet::from([unit.to_string()]);
        units.extend(self.registry.live_overlays(id).into_iter().map(|(u, _)| u));
        for u in units {
            let Some(at) = self.unit_if_any(&u).await?.filter(|a| a.path.starts_with(&info.path)) else {
                continue;
            };
            let Some(mut chain) = self.registry.chain_without_hold(id, &at.path, Some(unit)) else {
                continue;
            };
            if !chain.overlays.iter().any(|p| p.unit == unit) {
                let depth = |p: &OverlayPin| at.path.find(&format!("/{}/", p.unit)).unwrap_or(0);
                chain.overlays.push(overlay.pin());
                chain.overlays.sort_by_key(depth);
            }
            let loaded = self.registry.compose(&chain, &[overlay])?;
            if let Some(wf) = &loaded.workflow
                && let Err(e) = self.check_levels(wf)
            {
                problems.add(&u, &at, vec![overlay.error("", e.to_string())]);
            }
            problems.add(&u, &at, loaded.diagnostics);
        }
        Ok(problems.into_diagnostics())
    }

    /// Schedules fire per region: the whole organisation, and each unit that runs its own
    /// version of the workflow (a live overlay or a hold), with that unit's cron. Arms the
    /// regions' schedules, re-times one whose cron changed, drops what no longer exists.
    pub(crate) async fn arm_schedules(&self, id: &str) -> Result<()> {
        let now = self.now();
        let mut regions = vec![(String::new(), String::new())];
        for u in self.registry.region_roots(id) {
            if let Some(info) = self.unit_if_any(&u).await? {
                regions.push((u, info.path));
            }
        }
        let mut wanted = BTreeSet::new();
        for (region, path) in &regions {
            let Some(wf) = self.registry.resolve(id, path)? else {
                continue;
            };
            for s in &wf.def.schedules {
                let signature = format!("{} {}", s.cron, s.time_zone.as_deref().unwrap_or(""));
                wanted.insert((s.id.clone(), region.clone()));
                let next = wf.next_schedule_time(&s.id, now).map(millis).unwrap_or(i64::MAX);
                // Arm it if new; a changed cron re-times the region's schedule, while one armed
                // before crons were recorded ('') keeps its time, which may be catching up.
                for sql in [
                    "INSERT INTO schedule_runs (workflow_id, schedule_id, region, cron, next_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    "UPDATE schedule_runs SET cron = $4, next_at = CASE WHEN cron = '' THEN next_at ELSE $5 END WHERE workflow_id = $1 AND schedule_id = $2 AND region = $3 AND cron <> $4",
                ] {
                    sqlx::query(sql)
                        .bind(id)
                        .bind(&s.id)
                        .bind(region)
                        .bind(&signature)
                        .bind(next)
                        .execute(&self.store.pool)
                        .await?;
                }
            }
        }
        let armed = sqlx::query("SELECT schedule_id, region FROM schedule_runs WHERE workflow_id = $1")
            .bind(id)
            .fetch_all(&self.store.pool)
            .await?;
        for r in armed {
            let key: (String, String) = (r.try_get("schedule_id")?, r.try_get("region")?);
            if !wanted.contains(&key) {
                sqlx::query("DELETE FROM schedule_runs WHERE workflow_id = $1 AND schedule_id = $2 AND region = $3")
                    .bind(id)
                    .bind(&key.0)
                    .bind(&key.1)
                    .execute(&self.store.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Every unit a workflow is made available in exists.
    async fn check_units_exist(&self, wf: &Workflow) -> Result<()> {
        let mut missing = Vec::new();
        for u in &wf.def.available_in {
            if self.unit_if_any(u).await?.is_none() {
                missing.push(format!("\"{u}\""));
            }
        }
        if missing.is_empty() || !self.places_known() {
            return Ok(());
        }
        Err(StoreError::Invalid(format!(
            "available_in names units the organisation does not have: {}",
            missing.join(", ")
        )))
    }

    async fn unit(&self, id: &str) -> Result<UnitInfo> {
        self.unit_if_any(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("unit \"{id}\"")))
    }

    async fn unit_if_any(&self, id: &str) -> Result<Option<UnitInfo>> {
        let row = sqlx::query("SELECT path, name FROM units WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.store.pool)
            .await?;
        row.map(|r| {
            Ok(UnitInfo {
                path: r.try_get("path")?,
                name: r.try_get("name")?,
            })
        })
        .transpose()
    }
}

async fn set_live(
    conn: &mut sqlx::AnyConnection,
    workflow: &str,
    unit: &str,
    version: u32,
    by: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO overlay_live (workflow_id, unit_id, version, set_by, set_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (workflow_id, unit_id) DO UPDATE SET version = excluded.version, set_by = excluded.set_by, set_at = excluded.set_at",
    )
    .bind(workflow)
    .bind(unit)
    .bind(i64::from(version))
    .bind(by)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Errors of composing at several units, each reported once with the units it breaks.
#[derive(Default)]
struct Problems(std::collections::BTreeMap<(String, usize, usize, String), Vec<String>>);

impl Problems {
    fn add(&mut self, unit: &str, info: &UnitInfo, diagnostics: Vec<Diagnostic>) {
        for d in diagnostics.into_iter().filter(Diagnostic::is_error) {
            let units = self.0.entry((d.file, d.line, d.col, d.message)).or_default();
            units.push(format!("{} \"{unit}\"", info.name));
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.0
            .into_iter()
            .map(|((file, line, col, message), units)| Diagnostic {
                file,
                line,
                col,
                severity: civicflow_engine::Severity::Error,
                message: format!("{message} (at {})", units.join(", ")),
            })
            .collect()
    }
}
