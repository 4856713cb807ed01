//! `civicflow bench-scale`: how the lists and steps people use answer on a seeded city
//! (`civicflow seed --city`), over HTTP on loopback against the real server (router, session
//! and token checks, store), with one client and then 16 clients mixing reads and writes.
//! Prints `name: value unit` lines; BENCHMARKS.md is written from them.

use crate::loopback::{Caller, Loopback};
use crate::seed::{Plan, Sizes, Ticket, handler};
use anyhow::{Context, Result};
use civicflow_engine::SystemClock;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_store::{Runtime, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and p99 of `times`, printed as `{name}_p50` and `{name}_p99` in ms.
fn report(name: &str, times: &mut [Duration]) {
    if times.is_empty() {
        println!("{name}: no requests (ask for more with --requests)");
        return;
    }
    times.sort();
    let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
    println!("{name}_p50: {:.2} ms", ms(at(50)));
    println!("{name}_p99: {:.2} ms", ms(at(99)));
}

/// Run `n` times one after another, timing each.
async fn timed<F, Fut>(n: usize, mut f: F) -> Result<Vec<Duration>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await?;
        out.push(t.elapsed());
    }
    Ok(out)
}

pub async fn run(db: &str, scale: f64, requests: usize, plan: &std::path::Path) -> Result<()> {
    let sizes = Sizes::at(scale);
    let plan = Plan::read(plan)?;
    let store = Store::connect(db, None).await?;
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None)?)));
    let runtime = Arc::new(Runtime::new(store.clone(), Arc::new(SystemClock), rules.clone()).await?);
    let bench = Arc::new(Loopback::serve(runtime.clone(), rules).await?);
    let caller = async |person: &str| Caller::of(&runtime, person).await;
    // Lists are read as the first street's dispatcher, its first grid's worker (the first
    // quarter of the grids gets half the tickets) and the first district's first
    // department's handler. Tickets are reported and dispatched in the last district, so
    // the lists measured hold the same tasks however often the benchmark runs.
    let category = plan.categories.first().cloned().unwrap_or_default();
    let at = |district: usize, n: usize, text: &str| {
        let d = format!("d{district}");
        let (grid, street, department) = (format!("{d}-s0-c0-g0"), format!("{d}-s0"), format!("{d}-cgj"));
        Ticket::new(grid, street, department, json!(format!("{text}{n}")), &category, 5)
    };
    let (here, there) = (at(0, 0, ""), at(sizes.districts - 1, 0, ""));
    let first_step = &plan.steps.first().context("a plan step")?.by;
    let disp = caller(&here.person(first_step)?)
        .await
        .context("the first step's person (seed the city first)")?;
    let worker = caller(&here.person(&plan.start.by)?).await?;
    let hand = caller(&handler("d0-cgj")).await?;
    let (reporter, dispatcher) = (
        caller(&there.person(&plan.start.by)?).await?,
        caller(&there.person(first_step)?).await?,
    );
    let start_body = |n: usize, text: &str| {
        let t = at(sizes.districts - 1, n, text);
        json!({"workflow": plan.workflow, "unit": t.grid, "data": t.fill(&plan.start.data)})
    };
    let first_form = json!({"data": there.fill(&plan.steps[0].form)});
    // The instance page shows a ticket the benchmark reports first (a seeded street may
    // have none open), read by its street's dispatcher.
    let shown = bench
        .json(
            "POST",
            "/api/instances",
            Some(&reporter),
            Some(&start_body(0, "实例页")),
        )
        .await?;
    let instance = shown["instance"]["id"].as_str().unwrap_or_default().to_string();
    println!(
        "scale_dataset: {} grids, {} residents, {} closed + {} open tickets",
        sizes.grids(),
        sizes.residents,
        sizes.closed_tickets,
        sizes.open_tickets
    );
    for (name, who, path) in [
        ("scale_api_tasks_dispatcher", &disp, "/api/tasks".to_string()),
        ("scale_api_tasks_grid_worker", &worker, "/api/tasks".to_string()),
        ("scale_api_tasks_handler", &hand, "/api/tasks".to_string()),
        ("scale_page_tasks_dispatcher", &disp, "/tasks".to_string()),
        ("scale_page_instance", &dispatcher, format!("/instances/{instance}")),
    ] {
        let b = bench.clone();
        let mut times = timed(requests, |_| {
            let (b, who, path) = (b.clone(), who.clone(), path.clone());
            async move {
                let (status, _) = b.call("GET", &path, Some(&who), None).await?;
                anyhow::ensure!(status == 200, "GET {path}: {status}");
                Ok(())
            }
        })
        .await?;
        report(name, &mut times);
    }
    let mut started = Vec::new();
    let mut times = Vec::new();
    for i in 0..requests {
        let t = Instant::now();
        let out = bench
            .json("POST", "/api/instances", Some(&reporter), Some(&start_body(i, "基准")))
            .await?;
        times.push(t.elapsed());
        started.push(out["new_tasks"][0].as_str().unwrap_or_default().to_string());
    }
    report("scale_api_start_ticket", &mut times);
    let mut times = timed(requests, |i| {
        let (b, who, task, form) = (
            bench.clone(),
            dispatcher.clone(),
            started[i].clone(),
            first_form.clone(),
        );
        async move {
            let path = format!("/api/tasks/{task}/complete");
            b.json("POST", &path, Some(&who), Some(&form)).await?;
            Ok(())
        }
    })
    .await?;
    report("scale_api_complete_task", &mut times);

    // 16 clients at once: 4 report tickets; 12 read task lists and pages, a third each as
    // the dispatcher, the grid worker and the handler, the API and the page in turn.
    let t = Instant::now();
    let mut clients = Vec::new();
    for c in 0..16 {
        let reader = [&disp, &worker, &hand][c % 3].clone();
        let (b, reporter) = (bench.clone(), reporter.clone());
        let bodies: Vec<Value> = (0..requests / 4).map(|i| start_body(i, &format!("并发{c}-"))).collect();
        clients.push(tokio::spawn(async move {
            let (mut api, mut pages, mut writes) = (Vec::new(), Vec::new(), Vec::new());
            for (i, body) in bodies.into_iter().enumerate() {
                let t = Instant::now();
                if c < 4 {
                    b.json("POST", "/api/instances", Some(&reporter), Some(&body)).await?;
                    writes.push(t.elapsed());
                } else {
                    let path = if i.is_multiple_of(2) { "/api/tasks" } else { "/tasks" };
                    let (status, _) = b.call("GET", path, Some(&reader), None).await?;
                    anyhow::ensure!(status == 200, "GET {path}: {status}");
                    if i.is_multiple_of(2) { &mut api } else { &mut pages }.push(t.elapsed());
                }
            }
            Ok::<_, anyhow::Error>((api, pages, writes))
        }));
    }
    let (mut api, mut pages, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    for c in clients {
        let (a, p, w) = c.await??;
        api.extend(a);
        pages.extend(p);
        writes.extend(w);
    }
    let wall = t.elapsed();
    let total = api.len() + pages.len() + writes.len();
    report("scale_16_clients_api_tasks", &mut api);
    report("scale_16_clients_page_tasks", &mut pages);
    report("scale_16_clients_write", &mut writes);
    println!(
        "scale_16_clients_throughput: {:.0} requests/s",
        total as f64 / wall.as_secs_f64()
    );
    Ok(())
}
