//! Form fields that name a unit or a person (`ui: {widget: unit, role: handler}`, `{widget:
//! person, role: resident}`): the org tree and register give their choices, and the runtime
//! refuses a value that is not one, so a department without handlers or a resident's display
//! name typed by hand never reaches the engine.

use crate::db::Store;
use crate::error::Result;
use crate::scope::subtree_end;
use civicflow_engine::EngineError;
use civicflow_engine::Workflow;
use civicflow_engine::definition::{Choice, Localized};
use serde_json::Value;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;

/// Choices offered at most: a unit picker is a city's departments, a person picker one
/// grid's or community's residents.
const MOST: i64 = 500;

/// What a field refers to, from its `ui` hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A unit where someone holds the role (a department with handlers).
    Unit { role: String },
    /// A person holding the role in the subtree of the instance's unit (a resident of the
    /// grid that reports).
    Person { role: String },
}

/// Every referring field of a form, by field name.
pub fn references(wf: &Workflow, form: Option<&str>) -> BTreeMap<String, Reference> {
    let Some(ui) = form.and_then(|f| wf.def.forms.get(f)).and_then(|f| f.ui.as_ref()) else {
        return BTreeMap::new();
    };
    let Some(fields) = ui.get("fields").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    fields
        .iter()
        .filter_map(|(name, hint)| {
            let role = hint.get("role").and_then(Value::as_str)?.to_string();
            let r = match hint.get("widget").and_then(Value::as_str)? {
                "unit" => Reference::Unit { role },
                "person" => Reference::Person { role },
                _ => return None,
            };
            Some((name.clone(), r))
        })
        .collect()
}

/// The choices of one referring field, in name order; `unit_path` is where the instance is.
async fn options(conn: &mut AnyConnection, r: &Reference, unit_path: &str) -> Result<Vec<Choice>> {
    let rows = match r {
        Reference::Unit { role } => {
            sqlx::query(
                "SELECT DISTINCT u.id, u.name, u.name_en FROM person_roles pr JOIN units u ON u.id = pr.unit_id WHERE pr.role = $1 ORDER BY u.name LIMIT $2",
            )
            .bind(role)
            .bind(MOST)
            .fetch_all(&mut *conn)
            .await?
        }
        Reference::Person { role } => {
            sqlx::query(
                "SELECT DISTINCT p.id, p.name, NULL AS name_en FROM person_roles pr JOIN units u ON u.id = pr.unit_id JOIN people p ON p.id = pr.person_id \
                 WHERE pr.role = $1 AND u.path >= $2 AND u.path < $3 ORDER BY p.name LIMIT $4",
            )
            .bind(role)
            .bind(unit_path)
            .bind(subtree_end(unit_path))
            .bind(MOST)
            .fetch_all(&mut *conn)
            .await?
        }
    };
    rows.iter()
        .map(|row| {
            let mut title = Localized::new();
            title.insert("zh-CN".into(), row.try_get::<String, _>("name")?);
            if let Some(en) = row.try_get::<Option<String>, _>("name_en")?.filter(|n| !n.is_empty()) {
                title.insert("en".into(), en);
            }
            Ok(Choice {
                value: Value::String(row.try_get("id")?),
                title,
            })
        })
        .collect()
}

/// Whether `value` is one of the field's valid targets.
async fn valid(conn: &mut AnyConnection, r: &Reference, value: &str, unit_path: &str) -> Result<bool> {
    let found: Option<i64> = match r {
        Reference::Unit { role } => {
            sqlx::query_scalar("SELECT 1 FROM person_roles WHERE unit_id = $1 AND role = $2 LIMIT 1")
                .bind(value)
                .bind(role)
                .fetch_optional(&mut *conn)
                .await?
        }
        Reference::Person { role } => {
            sqlx::query_scalar(
                "SELECT 1 FROM person_roles pr JOIN units u ON u.id = pr.unit_id WHERE pr.person_id = $1 AND pr.role = $2 AND u.path >= $3 AND u.path < $4 LIMIT 1",
            )
            .bind(value)
            .bind(role)
            .bind(unit_path)
            .bind(subtree_end(unit_path))
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    Ok(found.is_some())
}

/// Refuse a form whose referring fields name no valid target (message ids, so each reader
/// gets their language).
pub(crate) async fn check(
    conn: &mut AnyConnection,
    wf: &Workflow,
    form: Option<&str>,
    data: &Value,
    unit_path: &str,
) -> Result<()> {
    let mut problems = Vec::new();
    for (field, r) in references(wf, form) {
        let Some(v) = data.get(&field).filter(|v| !v.is_null()) else {
            continue;
        };
        let ok = match v.as_str() {
            Some(s) => valid(conn, &r, s, unit_path).await?,
            None => false,
        };
        if !ok {
            let id = match r {
                Reference::Unit { .. } => "err-not-a-unit-here",
                Reference::Person { .. } => "err-not-a-person-here",
            };
            problems.push((format!("/{field}"), id.to_string()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::InvalidForm(problems).into())
    }
}

impl Store {
    /// The choices of every referring field of a form, for a page to offer.
    pub async fn reference_choices(
        &self,
        wf: &Workflow,
        form: Option<&str>,
        unit_path: &str,
    ) -> Result<BTreeMap<String, Vec<Choice>>> {
        let mut conn = self.pool.acquire().await?;
        let mut out = BTreeMap::new();
        for (field, r) in references(wf, form) {
            out.insert(field, options(&mut conn, &r, unit_path).await?);
        }
        Ok(out)
    }
}
