//! `civicflow bench-tickets`: durable tickets per second on the city's ticket process
//! (`tests/fixtures/city-tickets.yaml`: a start and five human steps, each acknowledged only
//! once committed), either in-process through the runtime, over HTTP through the real server
//! on loopback, or against a peer engine's HTTP server (`tests/peers`) with the same client.
//! Prints one `name: value unit` line; `tests/peers/run` puts them side by side.

use crate::loopback::{Caller, Loopback};
use crate::seed::{self, Plan, Sizes, ticket_at};
use anyhow::{Context, Result};
use civicflow_engine::SystemClock;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_store::Runtime;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

pub enum Target {
    /// Tickets through `Runtime` calls in this process.
    InProcess,
    /// Tickets through the JSON API of the server, served on loopback in this process.
    Http,
    /// Tickets through a peer's server: `POST /tickets` with the start data answers
    /// `{"id": ...}`, `POST /tickets/ID/TASK` with the form completes that task.
    Peer { name: String, url: String, steps: PathBuf },
}

/// The peer's version of the plan (`tests/peers/steps.json`).
#[derive(serde::Deserialize)]
struct PeerSteps {
    start: Value,
    steps: Vec<(String, Value)>,
}

/// A ticket takes every step of the plan.
fn all_steps(_: &Sizes, plan: &Plan, _: usize) -> usize {
    plan.steps.len()
}

pub async fn run(
    target: Target,
    db: Option<&str>,
    tickets: usize,
    concurrency: usize,
    plan: &Path,
    workflows: &Path,
) -> Result<()> {
    let clients = concurrency.max(1);
    if let Target::Peer { name, url, steps } = &target {
        let steps: PeerSteps = serde_json::from_str(&std::fs::read_to_string(steps)?)
            .with_context(|| format!("{}: not a peer's steps file", steps.display()))?;
        let rate = peer(url, &Arc::new(steps), tickets, clients).await?;
        println!("{name}_http_{clients}_clients: {rate:.1} tickets/s");
        return Ok(());
    }
    let (_tmp, store, schema) = crate::bench::scratch_store(db).await?;
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None)?)));
    let rt = Arc::new(Runtime::new(store.clone(), Arc::new(SystemClock), rules.clone()).await?);
    // Ten grids, each with its worker, its street's dispatcher and three departments.
    let sizes = Sizes::at(0.0001);
    seed::organise(&store, &rt, &sizes, workflows).await?;
    let plan = Arc::new(Plan::read(plan)?);
    let (mode, rate) = match target {
        Target::InProcess => {
            let began = Instant::now();
            seed::drive(&rt, &sizes, &plan, tickets, clients, all_steps).await?;
            ("inprocess", tickets as f64 / began.elapsed().as_secs_f64())
        }
        _ => {
            let server = Arc::new(Loopback::serve(rt.clone(), rules).await?);
            ("http", over_http(&server, &rt, &sizes, &plan, tickets, clients).await?)
        }
    };
    println!("civicflow_{mode}_{clients}_clients: {rate:.1} tickets/s");
    crate::bench::drop_scratch(&store, &schema).await?;
    Ok(())
}

/// `tickets` tickets started and stepped through the JSON API, `clients` at a time, each
/// step by its own person's token.
async fn over_http(
    server: &Arc<Loopback>,
    rt: &Runtime,
    sizes: &Sizes,
    plan: &Arc<Plan>,
    tickets: usize,
    clients: usize,
) -> Result<f64> {
    let mut callers = HashMap::new();
    for n in 0..tickets {
        let t = ticket_at(sizes, plan, n);
        for role in std::iter::once(&plan.start.by).chain(plan.steps.iter().map(|s| &s.by)) {
            let person = t.person(role)?;
            if let std::collections::hash_map::Entry::Vacant(e) = callers.entry(person) {
                let caller = Caller::of(rt, e.key()).await?;
                e.insert(caller);
            }
        }
    }
    let callers = Arc::new(callers);
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (server, callers, plan, next, sizes) =
            (server.clone(), callers.clone(), plan.clone(), next.clone(), *sizes);
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= tickets {
                    break;
                }
                let t = ticket_at(&sizes, &plan, n);
                let who = &callers[&t.person(&plan.start.by)?];
                let start = json!({"workflow": plan.workflow, "unit": t.grid, "data": t.fill(&plan.start.data)});
                let mut answer = server.json("POST", "/api/instances", Some(who), Some(&start)).await?;
                for step in &plan.steps {
                    let task = answer["new_tasks"][0].as_str().context("no open task")?.to_string();
                    let who = &callers[&t.person(&step.by)?];
                    let form = json!({"data": t.fill(&step.form)});
                    answer = server
                        .json("POST", &format!("/api/tasks/{task}/complete"), Some(who), Some(&form))
                        .await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(tickets as f64 / began.elapsed().as_secs_f64())
}

/// The same tickets through a peer's server.
async fn peer(url: &str, steps: &Arc<PeerSteps>, tickets: usize, clients: usize) -> Result<f64> {
    let server = Arc::new(Loopback::to(url.to_string()));
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (server, steps, next) = (server.clone(), steps.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < tickets {
                let started = server.json("POST", "/tickets", None, Some(&steps.start)).await?;
                let id = match &started["id"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                for (task, form) in &steps.steps {
                    server
                        .json("POST", &format!("/tickets/{id}/{task}"), None, Some(form))
                        .await?;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(tickets as f64 / began.elapsed().as_secs_f64())
}
