//! The organisation tree and people: import (all rows checked first, then one transaction,
//! so a bad row imports nothing) and the look-ups the runtime needs for scope checks.

use crate::db::Store;
use crate::error::{Result, StoreError};
use civicflow_engine::Actor;
use civicflow_engine::org::{RoleGrant, child_path};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

pub const UNIT_KINDS: [&str; 7] = [
    "city",
    "district",
    "street",
    "community",
    "grid",
    "building",
    "department",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub id: String,
    pub parent: Option<String>,
    pub kind: String,
    pub name: String,
    pub name_en: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRow {
    pub id: String,
    pub name: String,
    pub unit: String,
    /// `(role, unit)`; the unit defaults to the person's own.
    pub roles: Vec<(String, Option<String>)>,
    pub phone: Option<String>,
    pub locale: Option<String>,
    /// Further columns of the register (income base, dues category...), by column name;
    /// schedules read them as `person.attributes`.
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// A row of an import file, with the line it came from (the header is line 1).
#[derive(Debug, Clone)]
pub struct Numbered<T> {
    pub file: String,
    pub line: usize,
    pub row: T,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub units: usize,
    pub people: usize,
    pub roles: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} row(s) rejected; nothing was imported", .0.len())]
    Rows(Vec<RowError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Store(e.into())
    }
}

fn err<T>(errors: &mut Vec<RowError>, n: &Numbered<T>, message: String) {
    errors.push(RowError {
        file: n.file.clone(),
        line: n.line,
        message,
    });
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Store {
    /// Import units and people. Every row is checked against the file and the database
    /// before anything is written; any error rejects the whole import.
    pub async fn import_org(
        &self,
        units: &[Numbered<UnitRow>],
        people: &[Numbered<PersonRow>],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ImportSummary, ImportError> {
        let existing: HashMap<String, (Option<String>, String)> = sqlx::query("SELECT id, parent_id, path FROM units")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("id")?,
                    (r.try_get("parent_id")?, r.try_get("path")?),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        let mut errors = Vec::new();

        // Units: shape, duplicates, then paths through parents in the file or the database.
        let mut in_file: HashMap<&str, &Numbered<UnitRow>> = HashMap::new();
        for n in units {
            let u = &n.row;
            if !valid_id(&u.id) {
                err(
                    &mut errors,
                    n,
                    format!("unit id \"{}\" must be 1-64 letters, digits, '-' or '_'", u.id),
                );
            }
            if !UNIT_KINDS.contains(&u.kind.as_str()) {
                err(
                    &mut errors,
                    n,
                    format!(
                        "unknown unit kind \"{}\"; expected one of {}",
                        u.kind,
                        UNIT_KINDS.join(", ")
                    ),
                );
            }
            if u.name.trim().is_empty() {
                err(&mut errors, n, "unit name is empty".into());
            }
            if let Some((parent, _)) = existing.get(&u.id)
                && *parent != u.parent
            {
                let message = format!(
                    "unit \"{}\" already exists under another parent; import does not move units",
                    u.id
                );
                err(&mut errors, n, message);
            }
            if let Some(first) = in_file.insert(&u.id, n) {
                err(
                    &mut errors,
                    n,
                    format!("unit \"{}\" is listed twice (first at line {})", u.id, first.line),
                );
            }
        }
        let mut paths: HashMap<String, String> = existing.iter().map(|(id, (_, p))| (id.clone(), p.clone())).collect();
        for n in units {
            if let Err(message) = resolve_path(&n.row.id, &in_file, &mut paths, &mut HashSet::new()) {
                err(&mut errors, n, message);
            }
        }

        // People and their roles.
        let mut seen_people = HashMap::new();
        for n in people {
            let p = &n.row;
            if !valid_id(&p.id) {
                err(
                    &mut errors,
                    n,
                    format!("person id \"{}\" must be 1-64 letters, digits, '-' or '_'", p.id),
                );
            }
            if p.name.trim().is_empty() {
                err(&mut errors, n, "name is empty".into());
            }
            if !paths.contains_key(&p.unit) {
                err(&mut errors, n, format!("unknown unit \"{}\"", p.unit));
            }
            for (role, unit) in &p.roles {
                if !valid_id(role) {
                    err(&mut errors, n, format!("bad role name \"{role}\""));
                }
                if let Some(u) = unit
                    && !paths.contains_key(u)
                {
                    err(&mut errors, n, format!("role \"{role}\" names unknown unit \"{u}\""));
                }
            }
            if let Some(first) = seen_people.insert(p.id.clone(), n.line) {
                err(
                    &mut errors,
                    n,
                    format!("person \"{}\" is listed twice (first at line {first})", p.id),
                );
            }
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(ImportError::Rows(errors));
        }

        // Parents before children: sort by path depth.
        let mut ordered: Vec<&Numbered<UnitRow>> = units.iter().collect();
        ordered.sort_by_key(|n| paths[&n.row.id].matches('/').count());
        let mut tx = self.pool.begin().await?;
        let mut summary = ImportSummary::default();
        let mut done = 0u64;
        for n in ordered {
            let u = &n.row;
            sqlx::query("INSERT INTO units (id, parent_id, kind, name, name_en, path) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name, name_en = excluded.name_en")
                .bind(&u.id)
                .bind(&u.parent)
                .bind(&u.kind)
                .bind(&u.name)
                .bind(&u.name_en)
                .bind(&paths[&u.id])
                .execute(&mut *tx)
                .await?;
            summary.units += 1;
            done += 1;
            progress(done);
        }
        for n in people {
            let p = &n.row;
            sqlx::query("INSERT INTO people (id, name, unit_id, phone, locale, attributes) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET name = excluded.name, unit_id = excluded.unit_id, phone = excluded.phone, locale = excluded.locale, attributes = excluded.attributes")
                .bind(&p.id)
                .bind(&p.name)
                .bind(&p.unit)
                .bind(&p.phone)
                .bind(&p.locale)
                .bind(serde_json::to_string(&p.attributes).expect("string map serializes"))
                .execute(&mut *tx)
                .await?;
            // An imported person's roles are exactly what the file says.
            sqlx::query("DELETE FROM person_roles WHERE person_id = $1")
                .bind(&p.id)
                .execute(&mut *tx)
                .await?;
            for (role, unit) in &p.roles {
                sqlx::query(
                    "INSERT INTO person_roles (person_id, role, unit_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(&p.id)
                .bind(role)
                .bind(unit.as_ref().unwrap_or(&p.unit))
                .execute(&mut *tx)
                .await?;
                summary.roles += 1;
            }
            summary.people += 1;
            done += 1;
            progress(done);
        }
        // Every server reloads the units it keeps in memory (levels) when this changes.
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('org_imported', $1) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// The person with every role they hold and where.
    pub async fn actor(&self, person_id: &str) -> Result<Actor> {
        let mut conn = self.reader.acquire().await?;
        load_actor(&mut conn, person_id).await
    }

    pub async fn unit_path(&self, unit_id: &str) -> Result<String> {
        let mut conn = self.reader.acquire().await?;
        load_unit_path(&mut conn, unit_id).await
    }

    /// A person's own unit: its id and path (where they report from, what they are offered).
    pub async fn home_unit(&self, person_id: &str) -> Result<(String, String)> {
        let row = sqlx::query("SELECT u.id, u.path FROM people p JOIN units u ON u.id = p.unit_id WHERE p.id = $1")
            .bind(person_id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("person \"{person_id}\"")))?;
        Ok((row.try_get("id")?, row.try_get("path")?))
    }

    pub async fn count_units(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM units")
            .fetch_one(&self.reader)
            .await?)
    }

    pub async fn count_people(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM people")
            .fetch_one(&self.reader)
            .await?)
    }
}

pub(crate) async fn load_unit_path(conn: &mut sqlx::AnyConnection, unit_id: &str) -> Result<String> {
    sqlx::query_scalar("SELECT path FROM units WHERE id = $1")
        .bind(unit_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("unit \"{unit_id}\"")))
}

/// `(person, unit, unit path)` for everyone holding `role`.
/// A holder of a role: the person, their attributes, and the unit (id, path) of the grant.
pub(crate) struct Holder {
    pub person: String,
    pub attributes: serde_json::Value,
    pub unit: String,
    pub path: String,
}

pub(crate) async fn load_holders(conn: &mut sqlx::AnyConnection, role: &str) -> Result<Vec<Holder>> {
    let rows = sqlx::query("SELECT r.person_id, p.attributes, r.unit_id, u.path FROM person_roles r JOIN units u ON u.id = r.unit_id JOIN people p ON p.id = r.person_id WHERE r.role = $1 ORDER BY r.person_id, r.unit_id")
        .bind(role)
        .fetch_all(&mut *conn)
        .await?;
    // What workflows wrote to the register, over the imported columns.
    let written = sqlx::query("SELECT v.person_id, v.name, v.value FROM person_register v WHERE v.person_id IN (SELECT r.person_id FROM person_roles r WHERE r.role = $1)")
        .bind(role)
        .fetch_all(&mut *conn)
        .await?;
    let mut register: std::collections::HashMap<String, serde_json::Map<String, serde_json::Value>> =
        Default::default();
    for r in &written {
        let value: String = r.try_get(2)?;
        register
            .entry(r.try_get(0)?)
            .or_default()
            .insert(r.try_get(1)?, serde_json::from_str(&value)?);
    }
    rows.iter()
        .map(|r| {
            let person: String = r.try_get(0)?;
            let attributes: String = r.try_get(1)?;
            let mut attributes: serde_json::Value = serde_json::from_str(&attributes)?;
            if let (Some(map), Some(extra)) = (attributes.as_object_mut(), register.get(&person)) {
                map.extend(extra.clone());
            }
            Ok(Holder {
                person,
                attributes,
                unit: r.try_get(2)?,
                path: r.try_get(3)?,
            })
        })
        .collect()
}

/// Columns for a person and their grants, joined from `people p`; see [`roles_from`].
pub(crate) const ACTOR_JOIN: &str = "p.id AS p_id, r.role AS r_role, r.unit_id AS r_unit_id, ru.path AS r_path";
pub(crate) const ACTOR_FROM: &str =
    "LEFT JOIN person_roles r ON r.person_id = p.id LEFT JOIN units ru ON ru.id = r.unit_id";

/// The actor from rows selected with [`ACTOR_JOIN`] (one row per grant, or one with none).
pub(crate) fn actor_from(rows: &[sqlx::any::AnyRow], person: &str) -> Result<Actor> {
    let known = match rows.first() {
        Some(r) => r.try_get::<Option<String>, _>("p_id")?.is_some(),
        None => false,
    };
    if !known {
        return Err(StoreError::NotFound(format!("person \"{person}\"")));
    }
    let mut roles = Vec::new();
    for r in rows {
        if let (Some(role), Some(unit_id), Some(unit_path)) =
            (r.try_get("r_role")?, r.try_get("r_unit_id")?, r.try_get("r_path")?)
        {
            roles.push(RoleGrant {
                role,
                unit_id,
                unit_path,
            });
        }
    }
    Ok(Actor {
        person: person.to_string(),
        roles,
        system: false,
    })
}

/// The person (must exist) and their role grants.
pub(crate) async fn load_actor(conn: &mut sqlx::AnyConnection, person_id: &str) -> Result<Actor> {
    let sql = format!("SELECT {ACTOR_JOIN} FROM people p {ACTOR_FROM} WHERE p.id = $1 ORDER BY r.role, ru.path");
    let rows = sqlx::query(&sql).bind(person_id).fetch_all(conn).await?;
    actor_from(&rows, person_id)
}

/// The person and the path of the unit they want to act in, in one round trip.
pub(crate) async fn load_actor_at(
    conn: &mut sqlx::AnyConnection,
    person_id: &str,
    unit_id: &str,
) -> Result<(Actor, String)> {
    let sql = format!(
        "SELECT {ACTOR_JOIN}, (SELECT path FROM units WHERE id = $2) AS target_path FROM people p {ACTOR_FROM} WHERE p.id = $1"
    );
    let rows = sqlx::query(&sql).bind(person_id).bind(unit_id).fetch_all(conn).await?;
    let actor = actor_from(&rows, person_id)?;
    let path: Option<String> = rows[0].try_get("target_path")?;
    Ok((
        actor,
        path.ok_or_else(|| StoreError::NotFound(format!("unit \"{unit_id}\"")))?,
    ))
}

fn resolve_path(
    id: &str,
    in_file: &HashMap<&str, &Numbered<UnitRow>>,
    paths: &mut HashMap<String, String>,
    visiting: &mut HashSet<String>,
) -> Result<String, String> {
    if let Some(p) = paths.get(id) {
        return Ok(p.clone());
    }
    let Some(n) = in_file.get(id) else {
        return Err(format!("unknown parent unit \"{id}\""));
    };
    if !visiting.insert(id.to_string()) {
        return Err(format!("unit \"{id}\" is its own ancestor (a cycle in parents)"));
    }
    let parent_path = match &n.row.parent {
        None => None,
        Some(parent) => Some(resolve_path(parent, in_file, paths, visiting)?),
    };
    let path = child_path(parent_path.as_deref(), id);
    paths.insert(id.to_string(), path.clone());
    Ok(path)
}
