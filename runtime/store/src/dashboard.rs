//! The figures of a dashboard, each one SQL aggregate over the instances of one workflow
//! started in a period under some subtrees (path ranges on `instances_unit`), never by
//! loading instances: how many were started, closed, closed in time, how long closing took
//! (the median), how many started each week, and which units hold overdue tasks now.

use crate::db::{Store, from_millis, millis};
use crate::error::Result;
use crate::scope::{Args, in_subtrees};
use crate::writes::{Arg, bind};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// What to count: one workflow's instances started in `[from, to)` under one of `units`.
#[derive(Debug, Clone)]
pub struct Period<'a> {
    pub workflow: &'a str,
    pub units: &'a [String],
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Weeks are counted from this instant (a Monday 00:00 in the readers' time zone).
    pub weeks_from: DateTime<Utc>,
    /// The workflow's `statistics`: the data field instances are grouped by, and the
    /// number averaged.
    pub category: Option<&'a str>,
    pub rating: Option<&'a str>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub started: i64,
    /// Of those started, how many are closed (reached an end).
    pub closed: i64,
    /// Of those closed, how many had no task finished after its time limit.
    pub closed_on_time: i64,
    /// The median time from start to close of those closed, in seconds.
    pub median_seconds: Option<i64>,
    /// Started per week: (the week's first instant, count), weeks without any left out.
    pub by_week: Vec<(DateTime<Utc>, i64)>,
    /// Started per value of the category field, most first (the high-frequency issues).
    pub by_category: Vec<(String, i64)>,
    /// The rating's average and how many instances have one.
    pub rating: Option<(f64, i64)>,
    /// Open tasks past their time limit now, by the unit holding them (a department),
    /// whenever their instance started.
    pub overdue_by_unit: Vec<(String, i64)>,
}

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

impl Store {
    /// The SQL type a JSON number is cast to for an average.
    fn real_type(&self) -> &'static str {
        match self.backend {
            crate::db::Backend::Sqlite => "REAL",
            crate::db::Backend::Postgres => "DOUBLE PRECISION",
        }
    }

    pub async fn figures(&self, p: &Period<'_>, now: DateTime<Utc>) -> Result<Figures> {
        if p.units.is_empty() {
            return Ok(Figures::default());
        }
        // Every query starts from the same filter on `instances i`: the workflow, the
        // subtrees and (`dated`) the period.
        let filter = |args: &mut Args, dated: bool| {
            let workflow = args.text(p.workflow);
            let period = if dated {
                let (from, to) = (args.push(Arg::Int(millis(p.from))), args.push(Arg::Int(millis(p.to))));
                format!(" AND i.created_at >= {from} AND i.created_at < {to}")
            } else {
                String::new()
            };
            let within = in_subtrees("i.unit_path", p.units, args);
            format!("i.workflow_id = {workflow}{period} AND {within}")
        };
        let late = "EXISTS (SELECT 1 FROM tasks t WHERE t.instance_id = i.id AND t.due_at IS NOT NULL \
                    AND t.completed_at IS NOT NULL AND t.completed_at > t.due_at)";

        let mut args = Args::default();
        let sql = format!(
            "SELECT COUNT(*) AS started, \
             COALESCE(SUM(CASE WHEN i.status = 'completed' THEN 1 ELSE 0 END), 0) AS closed, \
             COALESCE(SUM(CASE WHEN i.status = 'completed' AND NOT {late} THEN 1 ELSE 0 END), 0) AS on_time \
             FROM instances i WHERE {}",
            filter(&mut args, true)
        );
        let row = bind(sqlx::query(&sql), &args.list).fetch_one(&self.reader).await?;
        let (started, closed, closed_on_time): (i64, i64, i64) =
            (row.try_get("started")?, row.try_get("closed")?, row.try_get("on_time")?);

        // The median: the middle row of the closed ones ordered by how long they took (the
        // lower middle of an even count).
        let median_seconds = if closed == 0 {
            None
        } else {
            let mut args = Args::default();
            let where_ = filter(&mut args, true);
            let offset = args.push(Arg::Int((closed - 1) / 2));
            let sql = format!(
                "SELECT i.updated_at - i.created_at AS took FROM instances i \
                 WHERE {where_} AND i.status = 'completed' ORDER BY took LIMIT 1 OFFSET {offset}"
            );
            let row = bind(sqlx::query(&sql), &args.list).fetch_optional(&self.reader).await?;
            row.map(|r| r.try_get::<i64, _>("took"))
                .transpose()?
                .map(|ms| ms / 1000)
        };

        let mut args = Args::default();
        let where_ = filter(&mut args, true);
        let origin = args.push(Arg::Int(millis(p.weeks_from)));
        let week = args.push(Arg::Int(WEEK_MS));
        let sql = format!(
            "SELECT (i.created_at - {origin}) / {week} AS w, COUNT(*) AS n FROM instances i \
             WHERE {where_} GROUP BY (i.created_at - {origin}) / {week} ORDER BY w"
        );
        let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        let by_week = rows
            .iter()
            .map(|r| {
                let w: i64 = r.try_get("w")?;
                Ok((from_millis(millis(p.weeks_from) + w * WEEK_MS), r.try_get("n")?))
            })
            .collect::<Result<Vec<_>>>()?;

        // Categories and the rating in one pass over the instances' data (each read from
        // the JSON), grouped by category (one group when none is named).
        let (by_category, rating) = if p.category.is_none() && p.rating.is_none() {
            (Vec::new(), None)
        } else {
            let mut args = Args::default();
            let category = match p.category {
                Some(field) => self.json_text("i.data", field, &mut args),
                None => "CAST(NULL AS TEXT)".into(),
            };
            let (total, rated) = match p.rating {
                Some(field) => {
                    let value = self.json_text("i.data", field, &mut args);
                    (
                        format!("SUM(CAST({value} AS {}))", self.real_type()),
                        format!("COUNT({value})"),
                    )
                }
                // Typed, so each backend reads the columns alike.
                None => (
                    format!("CAST(NULL AS {})", self.real_type()),
                    "CAST(0 AS BIGINT)".into(),
                ),
            };
            let where_ = filter(&mut args, true);
            let sql = format!(
                "SELECT {category} AS c, COUNT(*) AS n, {total} AS total, {rated} AS rated \
                 FROM instances i WHERE {where_} GROUP BY 1 ORDER BY 2 DESC, 1"
            );
            let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
            let (mut groups, mut sum, mut count) = (Vec::new(), 0.0, 0i64);
            for r in &rows {
                let c: Option<String> = r.try_get("c")?;
                groups.push((c.unwrap_or_default(), r.try_get("n")?));
                sum += r.try_get::<Option<f64>, _>("total")?.unwrap_or(0.0);
                count += r.try_get::<i64, _>("rated")?;
            }
            let rating = (p.rating.is_some() && count > 0).then(|| (sum / count as f64, count));
            (if p.category.is_some() { groups } else { Vec::new() }, rating)
        };

        // Overdue now, whenever the instance started.
        let mut args = Args::default();
        let where_ = filter(&mut args, false);
        let now = args.push(Arg::Int(millis(now)));
        let sql = format!(
            "SELECT t.unit_id, COUNT(*) AS n FROM tasks t JOIN instances i ON i.id = t.instance_id \
             WHERE {where_} AND t.status = 'open' AND t.due_at < {now} \
             GROUP BY t.unit_id ORDER BY COUNT(*) DESC, t.unit_id"
        );
        let rows = bind(sqlx::query(&sql), &args.list).fetch_all(&self.reader).await?;
        let overdue_by_unit = rows
            .iter()
            .map(|r| Ok((r.try_get("unit_id")?, r.try_get("n")?)))
            .collect::<Result<Vec<_>>>()?;

        Ok(Figures {
            started,
            closed,
            closed_on_time,
            median_seconds,
            by_week,
            by_category,
            rating,
            overdue_by_unit,
        })
    }
}
