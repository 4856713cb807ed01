//! `civicflow bench`: durable transitions per second. Each instance of a small two-step
//! workflow makes three transitions (start, review, approve); every one is its own
//! committed transaction with its hash-chained events, exactly as the server does it.

use anyhow::Result;
use civicflow_engine::SystemClock;
use civicflow_engine::machine::ExpressionRules;
use civicflow_engine::validate::load;
use civicflow_store::org::{Numbered, PersonRow, UnitRow};
use civicflow_store::{Backend, Runtime, Store};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKFLOW: &str = r#"
id: bench
version: 1
title: {zh-CN: 基准, en: Benchmark}
roles:
  clerk: {title: {zh-CN: 办事员, en: Clerk}}
start: {roles: [clerk], to: review}
forms:
  decision:
    schema: {type: object, required: [ok], properties: {ok: {type: boolean}, note: {type: string, maxLength: 200}}}
states:
  review:
    type: task
    form: decision
    assign: {role: clerk}
    due: 3d
    escalate: [{after: 3d, to: clerk}]
    transitions:
      - {to: approve, when: "form.ok", set: {reviewed_at: "now"}}
      - {to: rejected}
  approve:
    type: task
    form: decision
    assign: {role: clerk}
    transitions: [{to: done}]
  rejected: {type: end}
  done: {type: end}
"#;

/// `overlays`: that many nested units below the root, each with an overlay of the workflow,
/// and the clerk in the deepest, so every start resolves through them and every step runs
/// the composed workflow.
/// A benchmark's own database: `db` in a schema of its own (its name returned, for
/// [`drop_scratch`]), or a new SQLite file in a temporary folder (gone with the folder).
/// A row the benchmarks make up, for the register import (which names each row's source).
pub fn generated<T>(row: T) -> civicflow_store::org::Numbered<T> {
    civicflow_store::org::Numbered {
        file: "generated".into(),
        line: 0,
        row,
    }
}

pub async fn scratch_store(db: Option<&str>) -> Result<(tempfile::TempDir, Store, String)> {
    let tmp = tempfile::tempdir()?;
    let url = match db {
        Some(u) => u.to_string(),
        None => format!("sqlite://{}", tmp.path().join("bench.db").display()),
    };
    let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
    let store = Store::connect(&url, Some(&schema)).await?;
    Ok((tmp, store, schema))
}

/// Drop what [`scratch_store`] made on PostgreSQL (SQLite's file goes with its folder).
pub async fn drop_scratch(store: &Store, schema: &str) -> Result<()> {
    if store.backend() == Backend::Postgres {
        store.drop_schema(schema).await?;
    }
    store.close().await;
    Ok(())
}

pub async fn run(db: Option<&str>, instances: usize, concurrency: usize, overlays: usize) -> Result<ExitCode> {
    let (_tmp, store, schema) = scratch_store(db).await?;
    let backend = store.backend();
    let unit_row = |i: usize| Numbered {
        file: "bench".into(),
        line: i + 2,
        row: UnitRow {
            id: unit_id(i),
            parent: i.checked_sub(1).map(unit_id),
            kind: ["city", "district", "street", "community", "grid"][i.min(4)].into(),
            name: "基准".into(),
            name_en: None,
        },
    };
    let units: Vec<_> = (0..=overlays).map(unit_row).collect();
    let home = unit_id(overlays);
    let people = vec![Numbered {
        file: "bench".into(),
        line: 2,
        row: PersonRow {
            id: "p".into(),
            name: "基准".into(),
            unit: home.clone(),
            roles: vec![("clerk".into(), None)],
            phone: None,
            locale: None,
            attributes: Default::default(),
        },
    }];
    store.import_org(&units, &people, &|_| {}).await?;
    let runtime = Arc::new(Runtime::new(store.clone(), Arc::new(SystemClock), Arc::new(ExpressionRules)).await?);
    let wf = load("bench.yaml", WORKFLOW).workflow.expect("bench workflow is valid");
    runtime.publish(wf).await?;
    for level in 1..=overlays {
        let text = format!(
            "extends: bench\nunit: {}\nversion: 1\nstates:\n  review: {{due: {}d}}\n",
            unit_id(level),
            level + 1
        );
        let overlay = civicflow_engine::overlay::Overlay::load("bench.overlay.yaml", &text)
            .map_err(|d| anyhow::anyhow!("{}", d[0]))?;
        runtime.publish_overlay(overlay, "bench").await?;
    }
    let path = store.unit_path(&home).await?;
    let calls = 100_000u32;
    let t = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(runtime.registry.resolve("bench", &path)?);
    }
    let resolve = t.elapsed() / calls;

    let started = Instant::now();
    let mut workers = Vec::new();
    let per_worker = instances.div_ceil(concurrency);
    for w in 0..concurrency {
        let rt = runtime.clone();
        let home = home.clone();
        let n = per_worker.min(instances.saturating_sub(w * per_worker));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n * 3);
            for _ in 0..n {
                let t = Instant::now();
                let mut applied = rt.start("p", "bench", &home, json!({})).await?;
                latencies.push(t.elapsed());
                for _ in 0..2 {
                    let task = applied.new_tasks.pop().expect("the step opened a task");
                    let t = Instant::now();
                    applied = rt.complete("p", &task.id, json!({"ok": true})).await?;
                    latencies.push(t.elapsed());
                }
            }
            Ok::<_, civicflow_store::StoreError>(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    let wall = started.elapsed();
    latencies.sort();
    let transitions = latencies.len();
    let median = latencies[transitions / 2];
    let p99 = latencies[transitions * 99 / 100];
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    println!(
        "backend: {name} ({})",
        if db.is_some() {
            "given --db"
        } else {
            "temporary file, WAL, synchronous=FULL"
        }
    );
    println!("instances: {instances}, concurrency: {concurrency}, transitions: {transitions}, overlays: {overlays}");
    println!(
        "resolve: {:.2} µs per call (a unit {overlays} overlay(s) deep, composed and cached)",
        resolve.as_secs_f64() * 1e6
    );
    println!("wall: {:.2} s", wall.as_secs_f64());
    println!("transitions/s: {:.0}", transitions as f64 / wall.as_secs_f64());
    println!(
        "latency per transition: median {:.3} ms, p99 {:.3} ms",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    let (checked, broken) = store.verify_chains().await?;
    println!("audit: {checked} instance chains verified, {} broken", broken.len());
    drop_scratch(&store, &schema).await?;
    Ok(ExitCode::SUCCESS)
}

fn unit_id(level: usize) -> String {
    if level == 0 { "u".into() } else { format!("u{level}") }
}
