//! What the admin pages (the event log, the figures) share: reading their filters (a unit
//! the viewer administers, days in China time) and offering their choices.

use super::pages::name_of;
use super::session::Viewer;
use super::views::Choice;
use crate::AppState;
use crate::admin::administered;
use chrono::{DateTime, NaiveDate, Utc};
use civicflow_engine::definition::localize;
use civicflow_engine::org::within;
use civicflow_engine::time::DEFAULT_TIME_ZONE;
use civicflow_store::StoreError;

/// Units offered in the unit filter: a district's streets, communities and grids.
const UNIT_CHOICES: i64 = 500;

/// A filter's value, if one was filled in.
pub(super) fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A day filled in as `2026-12-01`: `Ok(None)` when none, `Err` with the text that is not one.
pub(super) fn day_given(v: &Option<String>) -> Result<Option<NaiveDate>, String> {
    match given(v) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| s.to_string()),
    }
}

/// The start of day `d` in China time, as an instant.
pub(super) fn day_start(d: NaiveDate) -> Option<DateTime<Utc>> {
    d.and_hms_opt(0, 0, 0)?
        .and_local_timezone(DEFAULT_TIME_ZONE)
        .single()
        .map(|t| t.to_utc())
}

/// The subtrees to search: the chosen unit if the viewer administers it, else all theirs.
/// `None`: a unit they do not administer (or none at all) is asked for.
pub(super) async fn reach(
    state: &AppState,
    viewer: &Viewer,
    unit: Option<&str>,
) -> Result<Option<Vec<String>>, StoreError> {
    let mine = administered(&viewer.actor);
    let Some(unit) = unit else {
        return Ok((!mine.is_empty()).then_some(mine));
    };
    let path = match state.runtime.store.unit_path(unit).await {
        Ok(p) => p,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(mine.iter().any(|m| within(&path, m)).then(|| vec![path]))
}

/// The units an admin may narrow a page to, in tree order, indented by depth so the tree
/// reads as one.
pub(super) async fn unit_choices(state: &AppState, viewer: &Viewer) -> Result<Vec<Choice>, StoreError> {
    let store = &state.runtime.store;
    let rows = store.units_under(&administered(&viewer.actor), UNIT_CHOICES).await?;
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    let names = store.names(&ids, &[]).await?;
    Ok(rows
        .iter()
        .map(|(id, path)| {
            let depth = path.matches('/').count().saturating_sub(2);
            Choice {
                id: id.clone(),
                name: format!("{}{}", "　".repeat(depth.min(6)), name_of(&names, id, viewer.lang)),
            }
        })
        .collect())
}

/// Every published workflow, by title.
pub(super) fn workflow_choices(state: &AppState, lang: &str) -> Vec<Choice> {
    let mut all: Vec<Choice> = state
        .runtime
        .registry
        .all_latest()
        .iter()
        .map(|w| Choice {
            id: w.id().to_string(),
            name: localize(&w.def.title, lang).to_string(),
        })
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}
