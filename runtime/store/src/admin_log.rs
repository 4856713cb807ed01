//! What admins did, one row per change, written in the change's own transaction at the
//! unit it concerns: publishing a workflow or an overlay, choosing which overlay version is
//! live, holding a unit on a base version, publishing and binding plugins, uploading a
//! working-day calendar. The audit page lists them under the subtrees an admin administers.

use crate::db::{Store, millis};
use crate::error::Result;
use crate::scope::{Args, in_subtrees};
use crate::writes::{Arg, bind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

/// One kind of change an admin makes, with what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "detail", rename_all = "snake_case")]
pub enum AdminAction {
    WorkflowPublished {
        workflow: String,
        version: u32,
    },
    OverlayPublished {
        workflow: String,
        version: u32,
    },
    /// This version of the unit's overlay is live now (a rollback, or back again).
    OverlayLive {
        workflow: String,
        version: u32,
    },
    /// The unit stays on this base version, its overlay not applying to the newer one.
    BaseHeld {
        workflow: String,
        version: u32,
    },
    PluginPublished {
        plugin: String,
        version: String,
    },
    PluginBound {
        workflow: String,
        hook: String,
        plugin: String,
        version: String,
    },
    CalendarUploaded {
        year: i32,
    },
}

impl AdminAction {
    /// The action as stored (`overlay_published`).
    pub fn kind(&self) -> String {
        self.split().0
    }

    /// The workflow and version a change of the registry concerns; none for plugins and
    /// calendars.
    pub fn workflow_version(&self) -> Option<(&str, u32)> {
        match self {
            AdminAction::WorkflowPublished { workflow, version }
            | AdminAction::OverlayPublished { workflow, version }
            | AdminAction::OverlayLive { workflow, version }
            | AdminAction::BaseHeld { workflow, version } => Some((workflow, *version)),
            _ => None,
        }
    }

    fn split(&self) -> (String, Value) {
        let mut tagged = serde_json::to_value(self).expect("an admin action serializes");
        let kind = tagged["action"].as_str().unwrap_or_default().to_string();
        (kind, tagged["detail"].take())
    }
}

/// A change found in the admin log.
#[derive(Debug, Clone)]
pub struct AdminEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub unit_id: String,
    /// `None` for an action this version does not know (a newer server's).
    pub action: Option<AdminAction>,
    pub kind: String,
}

/// Log `action` by `actor` at `unit` (`""`: the whole organisation) on `conn`, which is
/// the change's transaction.
pub(crate) async fn record(
    conn: &mut AnyConnection,
    at: i64,
    actor: &str,
    unit: &str,
    action: &AdminAction,
) -> Result<()> {
    let (kind, detail) = action.split();
    sqlx::query(
        "INSERT INTO admin_log (id, at, actor, unit_id, unit_path, action, detail) \
         VALUES ($1, $2, $3, $4, COALESCE((SELECT path FROM units WHERE id = $4), '/'), $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(at)
    .bind(actor)
    .bind(unit)
    .bind(kind)
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Changes at units under `paths`, newest first: by `actor` if given, in `[from, to)`.
    pub async fn admin_actions(
        &self,
        paths: &[String],
        actor: Option<&str>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<AdminEntry>> {
        let mut args = Args::default();
        let mut conditions = vec![in_subtrees("unit_path", paths, &mut args)];
        if let Some(a) = actor {
            conditions.push(format!("actor = {}", args.text(a)));
        }
        if let Some(t) = from {
            conditions.push(format!("at >= {}", args.push(Arg::Int(millis(t)))));
        }
        if let Some(t) = to {
            conditions.push(format!("at < {}", args.push(Arg::Int(millis(t)))));
        }
        let limit = args.push(Arg::Int(limit));
        let sql = format!(
            "SELECT at, actor, unit_id, action, detail FROM admin_log WHERE {} ORDER BY at DESC, id DESC LIMIT {limit}",
            conditions.join(" AND ")
        );
        let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("action")?;
                let detail: Value = serde_json::from_str(&r.try_get::<String, _>("detail")?)?;
                let action = serde_json::from_value(serde_json::json!({"action": kind, "detail": detail})).ok();
                Ok(AdminEntry {
                    at: crate::db::from_millis(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    unit_id: r.try_get("unit_id")?,
                    action,
                    kind,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::AdminAction;

    #[test]
    fn an_action_is_stored_as_its_kind_and_detail() {
        let a = AdminAction::PluginBound {
            workflow: "w".into(),
            hook: "route".into(),
            plugin: "p".into(),
            version: "1.0.0".into(),
        };
        let (kind, detail) = a.split();
        assert_eq!(kind, "plugin_bound");
        assert_eq!(detail["hook"], "route");
        let back: AdminAction = serde_json::from_value(serde_json::json!({"action": kind, "detail": detail})).unwrap();
        assert_eq!(back, a);
    }
}
