//! The event log read as a whole: `civicflow audit verify` and the audit page recompute
//! instances' hash chains, and the audit page searches the log by person, unit, workflow
//! and time, newest first.

use crate::db::{Store, millis};
use crate::error::Result;
use crate::events::{GENESIS, event_hash};
use crate::queries::EventRow;
use crate::scope::{Args, in_subtrees};
use crate::writes::{Arg, bind};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// A search of the event log. Only instances under one of `units` (unit paths: the
/// subtrees the searcher administers) are searched.
#[derive(Debug, Default)]
pub struct EventSearch<'a> {
    pub units: &'a [String],
    /// Who acted (a person's id).
    pub actor: Option<&'a str>,
    pub workflow: Option<&'a str>,
    /// From this instant (inclusive) to that one (exclusive).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Where the previous page ended.
    pub after: Option<&'a EventCursor>,
    pub limit: i64,
}

/// An event found, with the instance it belongs to.
#[derive(Debug, Clone)]
pub struct FoundEvent {
    pub instance_id: String,
    pub workflow_id: String,
    pub unit_id: String,
    pub row: EventRow,
}

/// The position of an event in the newest-first log: `(at, instance, seq)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    at: i64,
    instance: String,
    seq: i64,
}

impl EventCursor {
    pub fn after(found: &FoundEvent) -> Self {
        Self {
            at: millis(found.row.at),
            instance: found.instance_id.clone(),
            seq: found.row.seq,
        }
    }

    /// Read a cursor a previous page gave; `None` if it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        let (at, rest) = s.split_once('.')?;
        let (instance, seq) = rest.rsplit_once('.')?;
        Some(Self {
            at: at.parse().ok()?,
            instance: instance.to_string(),
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EventCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.at, self.instance, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenChain {
    pub instance_id: String,
    pub seq: i64,
    pub reason: String,
}

impl Store {
    /// Every instance whose event chain does not verify, with the first bad event.
    pub async fn verify_chains(&self) -> Result<(usize, Vec<BrokenChain>)> {
        let heads = sqlx::query("SELECT id, last_seq, last_hash FROM instances ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        self.verify_heads(&heads).await
    }

    /// As [`Store::verify_chains`], for the instances under the subtrees of `paths`.
    pub async fn verify_chains_under(&self, paths: &[String]) -> Result<(usize, Vec<BrokenChain>)> {
        let mut args = Args::default();
        let sql = format!(
            "SELECT i.id, i.last_seq, i.last_hash FROM instances i WHERE {} ORDER BY i.id",
            in_subtrees("i.unit_path", paths, &mut args)
        );
        let heads = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        self.verify_heads(&heads).await
    }

    /// Events of the log, newest first, as `q` narrows them.
    pub async fn search_events(&self, q: &EventSearch<'_>) -> Result<Vec<FoundEvent>> {
        let mut args = Args::default();
        let mut conditions = vec![in_subtrees("i.unit_path", q.units, &mut args)];
        if let Some(actor) = q.actor {
            conditions.push(format!("e.actor = {}", args.text(actor)));
        }
        if let Some(w) = q.workflow {
            conditions.push(format!("i.workflow_id = {}", args.text(w)));
        }
        if let Some(from) = q.from {
            conditions.push(format!("e.at >= {}", args.push(Arg::Int(millis(from)))));
        }
        if let Some(to) = q.to {
            conditions.push(format!("e.at < {}", args.push(Arg::Int(millis(to)))));
        }
        if let Some(c) = q.after {
            let (at, instance, seq) = (
                args.push(Arg::Int(c.at)),
                args.text(&c.instance),
                args.push(Arg::Int(c.seq)),
            );
            conditions.push(format!("(e.at, e.instance_id, e.seq) < ({at}, {instance}, {seq})"));
        }
        let limit = args.push(Arg::Int(q.limit));
        let sql = format!(
            "SELECT e.instance_id, e.seq, e.at, e.actor, e.kind, e.payload, i.workflow_id, i.unit_id \
             FROM events e JOIN instances i ON i.id = e.instance_id WHERE {} \
             ORDER BY e.at DESC, e.instance_id DESC, e.seq DESC LIMIT {limit}",
            conditions.join(" AND ")
        );
        let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                Ok(FoundEvent {
                    instance_id: r.try_get("instance_id")?,
                    workflow_id: r.try_get("workflow_id")?,
                    unit_id: r.try_get("unit_id")?,
                    row: EventRow::read(r)?,
                })
            })
            .collect()
    }

    /// The units of the subtrees of `paths` as `(id, path)`, in tree order, at most `limit`
    /// (the audit page's choice of unit).
    pub async fn units_under(&self, paths: &[String], limit: i64) -> Result<Vec<(String, String)>> {
        let mut args = Args::default();
        let within = in_subtrees("i.path", paths, &mut args);
        let limit = args.push(Arg::Int(limit));
        let sql = format!("SELECT i.id, i.path FROM units i WHERE {within} ORDER BY i.path LIMIT {limit}");
        let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("path")?)))
            .collect()
    }

    /// The people a search box's text means: the one with that id, or everyone so named.
    pub async fn people_called(&self, text: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM people WHERE id = $1 OR name = $1 ORDER BY id LIMIT 10")
                .bind(text.trim())
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn verify_heads(&self, heads: &[sqlx::any::AnyRow]) -> Result<(usize, Vec<BrokenChain>)> {
        let mut broken = Vec::new();
        for head in heads {
            let id: String = head.try_get("id")?;
            let last_seq: i64 = head.try_get("last_seq")?;
            let last_hash: String = head.try_get("last_hash")?;
            if let Some(b) = self.verify_chain(&id, last_seq, &last_hash).await? {
                broken.push(b);
            }
        }
        Ok((heads.len(), broken))
    }

    async fn verify_chain(&self, id: &str, last_seq: i64, last_hash: &str) -> Result<Option<BrokenChain>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, kind, payload, prev_hash, hash FROM events WHERE instance_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let fail = |seq: i64, reason: String| {
            Ok(Some(BrokenChain {
                instance_id: id.to_string(),
                seq,
                reason,
            }))
        };
        let mut prev = GENESIS.to_string();
        let mut expected_seq = 1;
        for r in &rows {
            let seq: i64 = r.try_get("seq")?;
            if seq != expected_seq {
                return fail(expected_seq, format!("event {expected_seq} is missing"));
            }
            let stored_prev: String = r.try_get("prev_hash")?;
            if stored_prev != prev {
                return fail(seq, "previous-hash link does not match the event before it".into());
            }
            let hash = event_hash(
                &prev,
                id,
                seq,
                r.try_get("at")?,
                &r.try_get::<String, _>("actor")?,
                &r.try_get::<String, _>("kind")?,
                &r.try_get::<String, _>("payload")?,
            );
            if hash != r.try_get::<String, _>("hash")? {
                return fail(seq, "content does not match its hash (edited)".into());
            }
            prev = hash;
            expected_seq += 1;
        }
        if expected_seq - 1 != last_seq || prev != last_hash {
            return fail(
                expected_seq,
                format!(
                    "chain ends at event {} but the instance records {last_seq} (events removed or added)",
                    expected_seq - 1
                ),
            );
        }
        Ok(None)
    }
}
