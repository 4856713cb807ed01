//! `civicflow bench-dashboard`: the dashboard's figures (`Store::figures`) for one street
//! over a year, on SQLite, with `tickets` closed tickets spread over 10 streets of one
//! district, 365 days and 200 grids (each with its handling task, some finished late).
//! Each ticket has one of 8 categories and a score of 1 to 5, counted and averaged.
//! The rows are written by one SQL statement each (running a million tickets through the
//! engine would take hours and measure the engine, not the dashboard). Prints the figures
//! once, then the latency of `runs` calls: p50, p99 and max, for the street and for the
//! whole district.

use crate::bench::{generated, scratch_store};
use anyhow::{Context, Result, bail};
use chrono::{Duration, TimeZone, Utc};
use civicflow_store::Backend;
use civicflow_store::dashboard::Period;
use civicflow_store::org::{PersonRow, UnitRow};
use sqlx::Connection;
use std::process::ExitCode;
use std::time::Instant;

/// The workflow the rows are counted under (no definition is needed to count).
const WORKFLOW: &str = "closed-cases";
const STREETS: usize = 10;
const COMMUNITIES: usize = 4;
const GRIDS: usize = 5;

fn unit(id: String, parent: Option<String>, kind: &str) -> civicflow_store::org::Numbered<UnitRow> {
    generated(UnitRow {
        name: id.clone(),
        id,
        parent,
        kind: kind.into(),
        name_en: None,
    })
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(tickets: usize, runs: usize) -> Result<ExitCode> {
    let (tmp, store, _) = scratch_store(None).await?;
    if store.backend() != Backend::Sqlite {
        bail!("bench-dashboard measures SQLite");
    }
    let mut units = vec![
        unit("city".into(), None, "city"),
        unit("district".into(), Some("city".into()), "district"),
        unit("dept".into(), Some("district".into()), "department"),
    ];
    for s in 0..STREETS {
        units.push(unit(format!("s{s}"), Some("district".into()), "street"));
        for c in 0..COMMUNITIES {
            units.push(unit(format!("s{s}c{c}"), Some(format!("s{s}")), "community"));
            for g in 0..GRIDS {
                units.push(unit(format!("s{s}c{c}g{g}"), Some(format!("s{s}c{c}")), "grid"));
            }
        }
    }
    let nobody: Vec<civicflow_store::org::Numbered<PersonRow>> = Vec::new();
    store.import_org(&units, &nobody, &|_| {}).await?;

    let url = format!("sqlite://{}", tmp.path().join("bench.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    let year_start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().context("a date")?;
    let start_ms = year_start.timestamp_millis();
    let year_ms: i64 = 365 * 24 * 3600 * 1000;
    let began = Instant::now();
    sqlx::query(
        "CREATE TEMP TABLE grids AS SELECT ROW_NUMBER() OVER (ORDER BY path) - 1 AS n, id, path \
         FROM units WHERE kind = 'grid'",
    )
    .execute(&mut conn)
    .await?;
    let grids = (STREETS * COMMUNITIES * GRIDS) as i64;
    // Ticket i: at grid i mod 200, started i/N of the way through the year, closed 1 to
    // 200 hours later; its handling task was due after 72 hours.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1) \
         INSERT INTO instances (id, workflow_id, workflow_version, unit_id, unit_path, status, position, data, rev, \
           created_by, created_at, updated_at, last_seq, last_hash, overlays, number) \
         SELECT printf('t%09d', i), $5, 1, g.id, g.path, 'completed', '{\"tokens\":[]}', \
           json_object('kind', 'k' || (i % 8), 'score', 1 + i % 5), 1, 'bench', \
           $2 + i * ($3 / $1), $2 + i * ($3 / $1) + 3600000 * (1 + abs(random()) % 200), 1, '', '[]', i \
         FROM n JOIN grids g ON g.n = i % $4",
    )
    .bind(tickets as i64)
    .bind(start_ms)
    .bind(year_ms)
    .bind(grids)
    .bind(WORKFLOW)
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "INSERT INTO tasks (id, instance_id, state, unit_id, unit_path, pool, status, due_at, created_at, completed_at) \
         SELECT 'k' || id, id, 'handle', 'dept', '/city/district/dept/', 0, 'completed', created_at + 259200000, \
           created_at, updated_at FROM instances",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    conn.close().await?;
    println!(
        "seeded: {tickets} closed tickets in {:.1} s",
        began.elapsed().as_secs_f64()
    );

    let street = vec![store.unit_path("s3").await?];
    let district = vec![store.unit_path("district").await?];
    let now = year_start + Duration::days(366);
    for (name, paths) in [("street", &street), ("district", &district)] {
        let period = Period {
            workflow: WORKFLOW,
            units: paths,
            from: year_start,
            to: year_start + Duration::days(365),
            weeks_from: year_start - Duration::days(3),
            category: Some("kind"),
            rating: Some("score"),
        };
        let f = store.figures(&period, now).await?;
        println!(
            "{name}: started {}, closed {}, on time {}, median {} s, weeks {}, categories {}, rating {:?}",
            f.started,
            f.closed,
            f.closed_on_time,
            f.median_seconds.unwrap_or(0),
            f.by_week.len(),
            f.by_category.len(),
            f.rating
        );
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            store.figures(&period, now).await?;
            times.push(t.elapsed());
        }
        times.sort();
        let at = |p: f64| ms(times[((times.len() - 1) as f64 * p).round() as usize]);
        println!(
            "dashboard_{name}_ms: p50 {:.1}, p99 {:.1}, max {:.1} ({runs} runs)",
            at(0.5),
            at(0.99),
            ms(*times.last().context("runs > 0")?)
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
