//! Notifications: who a workflow's `notify` reaches, their inbox, and the outbox a
//! delivery channel (a webhook to an SMS or WeChat gateway) drains.
//!
//! A notice is resolved to people inside the transaction of the step that fired it, so the
//! `notified` event names exactly the people whose inbox got it.

use crate::db::{Store, from_millis, millis};
use crate::error::Result;
use crate::scope::{ancestor_paths, subtree_end};
use crate::writes::{Arg, Write};
use chrono::{DateTime, Utc};
use civicflow_engine::{Audience, Event, Step};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};
use std::collections::BTreeSet;

/// Person ids bound in one insert: well under every backend's limit on parameters.
const PEOPLE_CHUNK: usize = 200;

/// Resolve every notice of `s` to people, record them in its `notified` event, and return
/// the writes that put it in their inboxes and in the outbox.
pub(crate) async fn address(conn: &mut AnyConnection, s: &mut Step, now: DateTime<Utc>) -> Result<Vec<Write>> {
    let mut writes = Vec::new();
    let at = millis(now);
    for notice in &s.notices {
        let id = uuid::Uuid::now_v7().to_string();
        let (recipients, inbox) = match &notice.audience {
            Audience::People(ids) => people(conn, ids, &id, at).await?,
            Audience::Holders { role, unit_path, below } => holders(conn, role, unit_path, *below, &id, at).await?,
        };
        writes.push(Write::new(
            "INSERT INTO notices (id, instance_id, template, text, at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                Arg::Text(id.clone()),
                Arg::Text(s.instance.id.clone()),
                Arg::Text(notice.template.clone()),
                Arg::Text(Value::Object(notice.text.clone()).to_string()),
                Arg::Int(at),
                // Nobody to deliver to: nothing for the outbox.
                Arg::MaybeInt((!recipients.is_empty()).then_some(at)),
            ],
        ));
        writes.extend(inbox);
        if let Some(Event::Notified { recipients: said, .. }) = s.events.get_mut(notice.event).map(|e| &mut e.event) {
            *said = Some(recipients);
        }
    }
    Ok(writes)
}

/// People named by an expression: those who exist, in the order given, once each.
async fn people(conn: &mut AnyConnection, ids: &[String], notice: &str, at: i64) -> Result<(Vec<String>, Vec<Write>)> {
    let mut seen = BTreeSet::new();
    let wanted: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
    let mut existing = BTreeSet::new();
    for chunk in wanted.chunks(PEOPLE_CHUNK) {
        let sql = format!("SELECT id FROM people WHERE id IN ({})", list(1, chunk.len()));
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        existing.extend(q.fetch_all(&mut *conn).await?);
    }
    let found: Vec<String> = wanted
        .into_iter()
        .filter(|id| existing.contains(*id))
        .cloned()
        .collect();
    let writes = found
        .chunks(PEOPLE_CHUNK)
        .map(|chunk| {
            let rows: Vec<String> = (0..chunk.len()).map(|i| format!("(${}, $1, $2)", i + 3)).collect();
            let mut args = vec![Arg::Text(notice.into()), Arg::Int(at)];
            args.extend(chunk.iter().map(|p| Arg::Text(p.clone())));
            Write::new(
                &format!(
                    "INSERT INTO inbox (person_id, notice_id, at) VALUES {}",
                    rows.join(", ")
                ),
                args,
            )
        })
        .collect();
    Ok((found, writes))
}

/// Holders of a role at the nearest unit at or above `unit_path` that has any, or every
/// holder in its subtree. The insert repeats the read's filter in SQL, so a thousand
/// owners cost one statement, not a thousand parameters.
async fn holders(
    conn: &mut AnyConnection,
    role: &str,
    unit_path: &str,
    below: bool,
    notice: &str,
    at: i64,
) -> Result<(Vec<String>, Vec<Write>)> {
    // The units whose holders are meant, as a condition on `u.path` from placeholder `$n`.
    let (bounds, filter): (Vec<String>, fn(usize) -> String) = if below {
        let end = subtree_end(unit_path);
        (vec![unit_path.into(), end], |n| {
            format!("u.path >= ${n} AND u.path < ${}", n + 1)
        })
    } else {
        match nearest_holding(conn, role, unit_path).await? {
            Some((_, nearest)) => (vec![nearest], |n| format!("u.path = ${n}")),
            None => return Ok((Vec::new(), Vec::new())),
        }
    };
    let holders = "FROM person_roles pr JOIN units u ON u.id = pr.unit_id WHERE pr.role =";
    let read = format!(
        "SELECT DISTINCT pr.person_id {holders} $1 AND {} ORDER BY pr.person_id",
        filter(2)
    );
    let mut q = sqlx::query_scalar::<_, String>(&read).bind(role);
    for b in &bounds {
        q = q.bind(b.as_str());
    }
    let recipients = q.fetch_all(&mut *conn).await?;
    let mut args = vec![Arg::Text(notice.into()), Arg::Int(at), Arg::Text(role.into())];
    args.extend(bounds.into_iter().map(Arg::Text));
    let insert = Write::new(
        &format!(
            "INSERT INTO inbox (person_id, notice_id, at) SELECT DISTINCT pr.person_id, $1, $2 {holders} $3 AND {}",
            filter(4)
        ),
        args,
    );
    Ok((recipients, vec![insert]))
}

/// The nearest unit at or above `unit_path` where someone holds `role`: its id and path.
/// Who "the supervisor" of a grid is, or which command centre a grid's dispatch goes to.
pub(crate) async fn nearest_holding(
    conn: &mut AnyConnection,
    role: &str,
    unit_path: &str,
) -> Result<Option<(String, String)>> {
    let ancestors = ancestor_paths(unit_path);
    let sql = format!(
        "SELECT u.id, u.path FROM person_roles pr JOIN units u ON u.id = pr.unit_id WHERE pr.role = $1 AND u.path IN ({}) ORDER BY LENGTH(u.path) DESC LIMIT 1",
        list(2, ancestors.len())
    );
    let mut q = sqlx::query(&sql).bind(role);
    for p in &ancestors {
        q = q.bind(*p);
    }
    Ok(match q.fetch_optional(&mut *conn).await? {
        Some(r) => Some((r.try_get("id")?, r.try_get("path")?)),
        None => None,
    })
}

/// `/a/`, `/a/b/`, `/a/b/c/` for `/a/b/c/`.
/// `$from, ..., $(from + n - 1)`.
fn list(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A notification as it was sent: what, about which instance, when.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub id: String,
    pub instance_id: String,
    pub workflow: String,
    pub template: String,
    /// The text in each language the template has.
    pub text: Map<String, Value>,
    pub at: DateTime<Utc>,
}

fn sent_from(r: &sqlx::any::AnyRow) -> Result<Sent> {
    Ok(Sent {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        workflow: r.try_get("workflow_id")?,
        template: r.try_get("template")?,
        text: serde_json::from_str(&r.try_get::<String, _>("text")?)?,
        at: from_millis(r.try_get("at")?),
    })
}

/// One notification in a person's inbox.
#[derive(Debug, Clone, Serialize)]
pub struct InboxItem {
    #[serde(flatten)]
    pub notice: Sent,
    pub read: bool,
}

/// A notice waiting for the outbound channel, with whom it is for.
#[derive(Debug, Clone, Serialize)]
pub struct Outgoing {
    #[serde(flatten)]
    pub notice: Sent,
    pub attempts: i64,
    pub recipients: Vec<Recipient>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    pub id: String,
    pub name: String,
    pub phone: Option<String>,
    pub locale: Option<String>,
}

impl Store {
    /// A person's notifications, newest first: `limit` of them after `after` (a previous
    /// page's last notification: its time and id).
    pub async fn inbox(&self, person: &str, after: Option<&crate::Cursor>, limit: i64) -> Result<Vec<InboxItem>> {
        let (at, notice) = crate::Cursor::below(after);
        let rows = sqlx::query(
            "SELECT n.id, n.instance_id, i.workflow_id, n.template, n.text, b.at, b.read_at FROM inbox b \
             JOIN notices n ON n.id = b.notice_id JOIN instances i ON i.id = n.instance_id \
             WHERE b.person_id = $1 AND (b.at, b.notice_id) < ($2, $3) ORDER BY b.at DESC, b.notice_id DESC LIMIT $4",
        )
        .bind(person)
        .bind(at)
        .bind(notice)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InboxItem {
                    notice: sent_from(r)?,
                    read: r.try_get::<Option<i64>, _>("read_at")?.is_some(),
                })
            })
            .collect()
    }

    /// The unit whose holders of `role` act on a task at `unit_id`: the nearest at or above
    /// it that has any (a grid's dispatch is the street's command centre's).
    pub async fn acting_unit(&self, role: &str, unit_id: &str) -> Result<Option<String>> {
        let mut conn = self.reader.acquire().await?;
        let path = crate::org::load_unit_path(&mut conn, unit_id).await?;
        Ok(nearest_holding(&mut conn, role, &path).await?.map(|(id, _)| id))
    }

    pub async fn unread_count(&self, person: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE person_id = $1 AND read_at IS NULL")
                .bind(person)
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// Mark one of a person's notifications read; the instance it is about, if it is theirs.
    pub async fn open_notification(&self, person: &str, notice: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        sqlx::query("UPDATE inbox SET read_at = $3 WHERE person_id = $1 AND notice_id = $2 AND read_at IS NULL")
            .bind(person)
            .bind(notice)
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar(
            "SELECT n.instance_id FROM inbox b JOIN notices n ON n.id = b.notice_id WHERE b.person_id = $1 AND b.notice_id = $2",
        )
        .bind(person)
        .bind(notice)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn mark_all_read(&self, person: &str, now: DateTime<Utc>) -> Result<u64> {
        Ok(
            sqlx::query("UPDATE inbox SET read_at = $2 WHERE person_id = $1 AND read_at IS NULL")
                .bind(person)
                .bind(millis(now))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Notices due for delivery, oldest first, with their recipients' names and phones.
    pub async fn outbox_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Outgoing>> {
        let rows = sqlx::query(
            "SELECT n.id, n.instance_id, i.workflow_id, n.template, n.text, n.at, n.attempts FROM notices n \
             JOIN instances i ON i.id = n.instance_id \
             WHERE n.next_attempt_at IS NOT NULL AND n.next_attempt_at <= $1 ORDER BY n.next_attempt_at, n.id LIMIT $2",
        )
        .bind(millis(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get("id")?;
            let people = sqlx::query(
                "SELECT p.id, p.name, p.phone, p.locale FROM inbox b JOIN people p ON p.id = b.person_id WHERE b.notice_id = $1 ORDER BY p.id",
            )
            .bind(&id)
            .fetch_all(&self.pool)
            .await?;
            let recipients = people
                .iter()
                .map(|p| {
                    Ok(Recipient {
                        id: p.try_get("id")?,
                        name: p.try_get("name")?,
                        phone: p.try_get("phone")?,
                        locale: p.try_get("locale")?,
                    })
                })
                .collect::<Result<_>>()?;
            out.push(Outgoing {
                notice: sent_from(r)?,
                attempts: r.try_get("attempts")?,
                recipients,
            });
        }
        Ok(out)
    }

    /// Take a due notice for delivery until `lease_until`, so another server's loop leaves
    /// it alone; false when someone else took it first.
    pub async fn claim_delivery(&self, notice: &str, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query("UPDATE notices SET next_attempt_at = $3 WHERE id = $1 AND next_attempt_at <= $2")
            .bind(notice)
            .bind(millis(now))
            .bind(millis(lease_until))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The channel took the notice: it leaves the outbox.
    pub async fn delivered(&self, notice: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE notices SET delivered_at = $2, next_attempt_at = NULL, attempts = attempts + 1 WHERE id = $1",
        )
        .bind(notice)
        .bind(millis(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The channel failed: try again at `retry_at`, or (`None`) give up and leave the outbox.
    pub async fn delivery_failed(&self, notice: &str, retry_at: Option<DateTime<Utc>>) -> Result<()> {
        sqlx::query("UPDATE notices SET next_attempt_at = $2, attempts = attempts + 1 WHERE id = $1")
            .bind(notice)
            .bind(retry_at.map(millis))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ancestor_paths;

    #[test]
    fn ancestors_of_a_path_include_itself() {
        assert_eq!(ancestor_paths("/a/b/c/"), vec!["/a/", "/a/b/", "/a/b/c/"]);
        assert_eq!(ancestor_paths("/a/"), vec!["/a/"]);
    }
}
