//! The organisation as the engine asks about it while stepping ([`Places`]): each unit's
//! level, and the working-day calendars units uploaded. Held in memory and reloaded when
//! units or calendars change, so a step does no IO for them.

use crate::db::{Store, millis};
use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};
use civicflow_engine::calendar::{Calendar, YearTable};
use civicflow_engine::places::{Places, UnitRef};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Units by id with their level, and calendar tables by unit id.
#[derive(Default)]
pub struct OrgPlaces {
    kinds: HashMap<String, String>,
    tables: HashMap<String, Vec<YearTable>>,
    /// Effective calendars by unit path, built on first use.
    calendars: RwLock<HashMap<String, Arc<Calendar>>>,
}

/// The unit ids along a path, root first: `/a/b/c/` gives a, b, c.
/// The ids on a materialised unit path (`/city/district/street/`), root first.
pub(crate) fn ids(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The path of the ancestor `id` on `path` (its prefix up to and including `id`).
fn prefix_through(path: &str, id: &str) -> Option<String> {
    let needle = format!("/{id}/");
    path.find(&needle).map(|i| path[..i + needle.len()].to_string())
}

impl OrgPlaces {
    /// The levels (kinds) the organisation's units have.
    pub fn levels(&self) -> std::collections::BTreeSet<&str> {
        self.kinds.values().map(String::as_str).collect()
    }
}

impl Places for OrgPlaces {
    fn calendar(&self, unit_path: &str) -> Arc<Calendar> {
        if let Some(c) = self.calendars.read().expect("not poisoned").get(unit_path) {
            return c.clone();
        }
        let leaf = ids(unit_path).next_back().unwrap_or_default();
        let tables = ids(unit_path).rev().flat_map(|id| self.tables.get(id)).flatten();
        let cal = Arc::new(Calendar::nearest_first(leaf, tables));
        self.calendars
            .write()
            .expect("not poisoned")
            .insert(unit_path.to_string(), cal.clone());
        cal
    }

    fn ancestor_at(&self, unit_path: &str, level: &str) -> Option<UnitRef> {
        let id = ids(unit_path)
            .rev()
            .find(|id| self.kinds.get(*id).is_some_and(|k| k == level))?;
        Some(UnitRef {
            id: id.to_string(),
            path: prefix_through(unit_path, id)?,
        })
    }
}

/// One uploaded table as listed.
#[derive(Debug, Clone)]
pub struct CalendarRow {
    pub unit_id: String,
    pub table: YearTable,
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

impl Store {
    /// Every unit's level and every uploaded calendar table.
    pub async fn load_places(&self) -> Result<OrgPlaces> {
        let mut places = OrgPlaces::default();
        for r in sqlx::query("SELECT id, kind FROM units").fetch_all(&self.pool).await? {
            places.kinds.insert(r.try_get("id")?, r.try_get("kind")?);
        }
        for row in self.calendars().await? {
            places.tables.entry(row.unit_id).or_default().push(row.table);
        }
        Ok(places)
    }

    /// What `load_places` would read has changed when this text changes: every import
    /// marks itself in `settings`, every upload has its time.
    pub async fn places_stamp(&self) -> Result<String> {
        let r = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(value), '') FROM settings WHERE name = 'org_imported') AS imported, \
             (SELECT COUNT(*) FROM calendars) AS tables, (SELECT COALESCE(MAX(uploaded_at), 0) FROM calendars) AS latest",
        )
        .fetch_one(&self.pool)
        .await?;
        let (imported, tables, latest): (String, i64, i64) =
            (r.try_get("imported")?, r.try_get("tables")?, r.try_get("latest")?);
        Ok(format!("{imported}:{tables}:{latest}"))
    }

    /// Store `table` as `unit`'s calendar for its year, replacing an earlier upload.
    pub async fn upload_calendar(&self, unit: &str, table: &YearTable, by: &str, at: DateTime<Utc>) -> Result<()> {
        let known = sqlx::query("SELECT 1 FROM units WHERE id = $1")
            .bind(unit)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound(format!("unit \"{unit}\"")));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO calendars (unit_id, year, table_json, uploaded_by, uploaded_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (unit_id, year) DO UPDATE SET table_json = excluded.table_json, \
             uploaded_by = excluded.uploaded_by, uploaded_at = excluded.uploaded_at",
        )
        .bind(unit)
        .bind(i64::from(table.year))
        .bind(table.to_json().to_string())
        .bind(by)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        let uploaded = crate::admin_log::AdminAction::CalendarUploaded { year: table.year };
        crate::admin_log::record(&mut tx, millis(at), by, unit, &uploaded).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every uploaded table, by unit and year.
    pub async fn calendars(&self) -> Result<Vec<CalendarRow>> {
        let rows =
            sqlx::query("SELECT unit_id, table_json, uploaded_by, uploaded_at FROM calendars ORDER BY unit_id, year")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("table_json")?;
                let json: serde_json::Value = serde_json::from_str(&text)?;
                Ok(CalendarRow {
                    unit_id: r.try_get("unit_id")?,
                    table: YearTable::from_json(&json).map_err(StoreError::Corrupt)?,
                    uploaded_by: r.try_get("uploaded_by")?,
                    uploaded_at: crate::db::from_millis(r.try_get("uploaded_at")?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_by_level() {
        let mut p = OrgPlaces::default();
        for (id, kind) in [("city", "city"), ("d", "district"), ("s", "street"), ("g", "grid")] {
            p.kinds.insert(id.into(), kind.into());
        }
        let street = p.ancestor_at("/city/d/s/g/", "street").unwrap();
        assert_eq!((street.id.as_str(), street.path.as_str()), ("s", "/city/d/s/"));
        assert_eq!(p.ancestor_at("/city/d/s/g/", "district").unwrap().path, "/city/d/");
        assert!(p.ancestor_at("/city/d/", "street").is_none());
    }
}
