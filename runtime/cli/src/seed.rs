//! `civicflow seed --city`: a city-sized dataset for the scale benchmark, written the way
//! production writes it. The organisation goes through the register import (one
//! transaction, the same checks as a CSV import); every ticket is reported, dispatched,
//! accepted, handled, verified and rated through the runtime, so each instance, task,
//! event and hash chain is exactly what the server would have stored, and the dataset
//! cannot drift from the schema.
//!
//! At `--scale 1`: 10 districts, 100 streets, 1,000 communities, 10,000 grids, 1 million
//! residents, 200,000 party members, 2 million closed and 100,000 open tickets. Smaller
//! scales shrink every count but the districts (at least one unit of each kind per parent).

use anyhow::{Context, Result};
use civicflow_engine::SystemClock;
use civicflow_engine::files::load_all;
use civicflow_engine::machine::ExpressionRules;
use civicflow_store::org::{Numbered, PersonRow, UnitRow};
use civicflow_store::{Backend, Runtime, Store};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Departments of every district: id suffix and name.
const DEPARTMENTS: [(&str, &str); 3] = [("cgj", "城市管理委员会"), ("swj", "水务局"), ("jtj", "交通运输局")];

/// What to do with each ticket (`tests/fixtures/city-tickets.yaml`): the engine names no
/// process, so the workflow and its steps come from a file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub workflow: String,
    pub categories: Vec<String>,
    pub start: Action,
    pub steps: Vec<Action>,
}

/// Who acts (a role of the generated city) and the data or form they send.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub by: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub form: Value,
}

impl Plan {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc = civicflow_engine::yaml::SourceDoc::parse(&path.display().to_string(), &text)
            .map_err(|d| anyhow::anyhow!("{d}"))?;
        serde_json::from_value(doc.value).with_context(|| format!("{}: not a ticket plan", path.display()))
    }
}

/// The people and units one ticket involves, and what its placeholders stand for.
pub struct Ticket {
    pub grid: String,
    pub street: String,
    pub department: String,
    pub vars: Vec<(&'static str, Value)>,
}

impl Ticket {
    /// Who plays `role` for this ticket.
    pub fn person(&self, role: &str) -> Result<String> {
        Ok(match role {
            "grid_worker" => grid_worker(&self.grid),
            "dispatcher" => dispatcher(&self.street),
            "handler" => handler(&self.department),
            other => anyhow::bail!("the generated city has no one for the role \"{other}\""),
        })
    }

    /// `v` with every `{name}` replaced; a string that is one placeholder takes its value.
    pub fn fill(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => {
                if let Some((_, value)) = self.vars.iter().find(|(k, _)| *s == format!("{{{k}}}")) {
                    return value.clone();
                }
                let mut out = s.clone();
                for (k, value) in &self.vars {
                    let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
                    out = out.replace(&format!("{{{k}}}"), &text);
                }
                Value::String(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|i| self.fill(i)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.fill(v))).collect()),
            other => other.clone(),
        }
    }
}

/// Ticket `n` of a city: where it is reported and what it is about.
pub fn ticket_at(s: &Sizes, plan: &Plan, n: usize) -> Ticket {
    let r = mix(n);
    // Busy grids report more: a quarter of the grids get half the tickets.
    let g = if r.is_multiple_of(2) {
        r % s.grids().div_ceil(4)
    } else {
        (r >> 8) % s.grids()
    };
    let (d, st, c, gi) = place(s, g);
    let grid = grid_id(d, st, c, gi);
    let department = format!("{}-{}", district_id(d), DEPARTMENTS[(r >> 20) % DEPARTMENTS.len()].0);
    let category = plan
        .categories
        .get((r >> 16) % plan.categories.len().max(1))
        .cloned()
        .unwrap_or_default();
    Ticket::new(
        grid,
        street_id(d, st),
        department,
        json!(n),
        &category,
        3 + (r >> 24) % 3,
    )
}

impl Ticket {
    /// A ticket at `grid` of `street` for `department`, with the plan's placeholders.
    pub fn new(grid: String, street: String, department: String, n: Value, category: &str, score: usize) -> Self {
        let vars = vec![
            ("n", n),
            ("category", json!(category)),
            ("grid", json!(grid)),
            ("department", json!(department)),
            ("score", json!(score)),
        ];
        Self {
            grid,
            street,
            department,
            vars,
        }
    }
}

/// How many of each thing at a scale.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub districts: usize,
    pub streets_per_district: usize,
    pub communities_per_street: usize,
    pub grids_per_community: usize,
    pub residents: usize,
    pub members: usize,
    pub closed_tickets: usize,
    pub open_tickets: usize,
}

impl Sizes {
    pub fn at(scale: f64) -> Self {
        let n = |full: f64| ((full * scale).round() as usize).max(1);
        let streets = n(100.0).div_ceil(10).max(1);
        let communities = n(1000.0).div_ceil(10 * streets).max(1);
        let grids = n(10_000.0).div_ceil(10 * streets * communities).max(1);
        Self {
            districts: 10,
            streets_per_district: streets,
            communities_per_street: communities,
            grids_per_community: grids,
            residents: n(1_000_000.0),
            members: n(200_000.0),
            closed_tickets: n(2_000_000.0),
            open_tickets: n(100_000.0),
        }
    }

    pub fn grids(&self) -> usize {
        self.districts * self.streets_per_district * self.communities_per_street * self.grids_per_community
    }
}

/// Where grid number `g` is: (district, street, community, grid) indices.
fn place(s: &Sizes, g: usize) -> (usize, usize, usize, usize) {
    let grid = g % s.grids_per_community;
    let c = g / s.grids_per_community;
    let community = c % s.communities_per_street;
    let st = c / s.communities_per_street;
    (
        st / s.streets_per_district,
        st % s.streets_per_district,
        community,
        grid,
    )
}

fn district_id(d: usize) -> String {
    format!("d{d}")
}
fn street_id(d: usize, s: usize) -> String {
    format!("d{d}-s{s}")
}
fn community_id(d: usize, s: usize, c: usize) -> String {
    format!("d{d}-s{s}-c{c}")
}
fn grid_id(d: usize, s: usize, c: usize, g: usize) -> String {
    format!("d{d}-s{s}-c{c}-g{g}")
}
/// The grid worker of a grid.
pub fn grid_worker(grid: &str) -> String {
    format!("gw-{grid}")
}
/// The dispatcher of a street.
pub fn dispatcher(street: &str) -> String {
    format!("dp-{street}")
}
/// The first handler of a department.
pub fn handler(department: &str) -> String {
    format!("hd-{department}")
}

/// The units and people of a city of `sizes`.
pub fn organisation(s: &Sizes) -> (Vec<Numbered<UnitRow>>, Vec<Numbered<PersonRow>>) {
    let mut units = Vec::new();
    let mut people = Vec::new();
    let mut unit = |id: String, parent: Option<String>, kind: &str, name: String| {
        units.push(Numbered {
            file: "seed".into(),
            line: units.len() + 2,
            row: UnitRow {
                id,
                parent,
                kind: kind.into(),
                name,
                name_en: None,
            },
        })
    };
    let mut person = |id: String, name: String, unit: String, roles: &[&str]| {
        people.push(Numbered {
            file: "seed".into(),
            line: people.len() + 2,
            row: PersonRow {
                id,
                name,
                unit,
                roles: roles.iter().map(|r| (r.to_string(), None)).collect(),
                phone: None,
                locale: None,
                attributes: Default::default(),
            },
        })
    };
    unit("city".into(), None, "city", "演示市".into());
    person(
        "mayor-office".into(),
        "市指挥中心".into(),
        "city".into(),
        &["supervisor"],
    );
    for d in 0..s.districts {
        let di = district_id(d);
        unit(di.clone(), Some("city".into()), "district", format!("第{}区", d + 1));
        person(
            format!("sv-{di}"),
            format!("区督办{}", d + 1),
            di.clone(),
            &["supervisor"],
        );
        for (suffix, name) in DEPARTMENTS {
            let dep = format!("{di}-{suffix}");
            unit(
                dep.clone(),
                Some(di.clone()),
                "department",
                format!("第{}区{name}", d + 1),
            );
            person(
                handler(&dep),
                format!("{name}承办员{}", d + 1),
                dep.clone(),
                &["handler"],
            );
            person(
                format!("{}-2", handler(&dep)),
                format!("{name}承办员{}乙", d + 1),
                dep,
                &["handler"],
            );
        }
        for st in 0..s.streets_per_district {
            let si = street_id(d, st);
            unit(
                si.clone(),
                Some(di.clone()),
                "street",
                format!("第{}区第{}街道", d + 1, st + 1),
            );
            person(dispatcher(&si), format!("调度员{d}-{st}"), si.clone(), &["dispatcher"]);
            person(
                format!("sv-{si}"),
                format!("街道督办{d}-{st}"),
                si.clone(),
                &["supervisor"],
            );
            for c in 0..s.communities_per_street {
                let ci = community_id(d, st, c);
                unit(
                    ci.clone(),
                    Some(si.clone()),
                    "community",
                    format!("{}社区{d}-{st}-{c}", c + 1),
                );
                person(
                    format!("bs-{ci}"),
                    format!("支部书记{d}-{st}-{c}"),
                    ci.clone(),
                    &["branch_secretary"],
                );
                for g in 0..s.grids_per_community {
                    let gi = grid_id(d, st, c, g);
                    unit(gi.clone(), Some(ci.clone()), "grid", format!("第{}网格", g + 1));
                    person(
                        grid_worker(&gi),
                        format!("网格员{d}-{st}-{c}-{g}"),
                        gi,
                        &["grid_worker"],
                    );
                }
            }
        }
    }
    let grids = s.grids();
    let grid_at = |n: usize| {
        let (d, st, c, g) = place(s, n % grids);
        grid_id(d, st, c, g)
    };
    for r in 0..s.residents {
        // Party members are residents too: the first `members` of them.
        let roles: &[&str] = if r < s.members {
            &["resident", "party_member"]
        } else {
            &["resident"]
        };
        person(
            format!("r{r}"),
            format!("居民{r}"),
            grid_at(r.wrapping_mul(7919)),
            roles,
        );
    }
    (units, people)
}

/// A small deterministic generator, so two seeds of one scale are the same city.
fn mix(n: usize) -> usize {
    let mut x = n as u64 ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as usize
}

/// Ticket `n` through its start and the first `steps` of the plan's steps.
pub async fn ticket(rt: &Runtime, s: &Sizes, plan: &Plan, n: usize, steps: usize) -> Result<()> {
    let t = ticket_at(s, plan, n);
    let mut applied = rt
        .start(
            &t.person(&plan.start.by)?,
            &plan.workflow,
            &t.grid,
            t.fill(&plan.start.data),
        )
        .await?;
    for step in plan.steps.iter().take(steps) {
        let who = t.person(&step.by)?;
        let task = applied
            .new_tasks
            .first()
            .with_context(|| format!("ticket {n}: no open task for {who}"))?
            .id
            .clone();
        applied = rt.complete(&who, &task, t.fill(&step.form)).await?;
    }
    Ok(())
}

/// The city's organisation at `sizes` imported into `store`, and the workflows of
/// `workflows` published; prints what it imported.
pub async fn organise(store: &Store, rt: &Runtime, sizes: &Sizes, workflows: &Path) -> Result<()> {
    let started = Instant::now();
    let (units, people) = organisation(sizes);
    let summary = store
        .import_org(&units, &people, &|_| {})
        .await
        .context("importing the organisation")?;
    println!(
        "seed_org: {} units, {} people in {:.1} s ({summary:?})",
        units.len(),
        people.len(),
        started.elapsed().as_secs_f64()
    );
    // The runtime read the unit levels and calendars when it opened; read them again.
    rt.sync_places().await?;
    let (loaded, diagnostics) = load_all(&[workflows.to_path_buf()])?;
    if let Some(d) = diagnostics.iter().find(|d| d.is_error()) {
        anyhow::bail!("{d}");
    }
    for wf in loaded {
        rt.publish(wf).await?;
    }
    Ok(())
}

/// Tickets `0..total`, `concurrency` at a time, ticket `n` taken through `steps(n)` steps.
pub async fn drive(
    rt: &Arc<Runtime>,
    sizes: &Sizes,
    plan: &Arc<Plan>,
    total: usize,
    concurrency: usize,
    steps: fn(&Sizes, &Plan, usize) -> usize,
) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (rt, next, plan, sizes) = (rt.clone(), next.clone(), plan.clone(), *sizes);
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                ticket(&rt, &sizes, &plan, n, steps(&sizes, &plan, n)).await?;
                if n > 0 && n.is_multiple_of(50_000) {
                    eprintln!("  {n} of {total} tickets");
                }
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// Open tickets stand at every step (waiting for dispatch, acceptance, work, verification or
/// the reporter's rating); the others go to their end.
fn city_steps(sizes: &Sizes, plan: &Plan, n: usize) -> usize {
    let all = plan.steps.len();
    if n < sizes.closed_tickets {
        all
    } else {
        mix(n) % all.max(1)
    }
}

/// Seed `db` with the city at `scale`, `concurrency` tickets at a time; prints what it did.
pub async fn run(db: &str, scale: f64, concurrency: usize, workflows: &Path, plan: &Path) -> Result<()> {
    let sizes = Sizes::at(scale);
    let plan = Arc::new(Plan::read(plan)?);
    let started = Instant::now();
    let store = Store::connect(db, None).await?;
    let rt = Arc::new(Runtime::new(store.clone(), Arc::new(SystemClock), Arc::new(ExpressionRules)).await?);
    organise(&store, &rt, &sizes, workflows).await?;
    let total = sizes.closed_tickets + sizes.open_tickets;
    let tickets_started = Instant::now();
    drive(&rt, &sizes, &plan, total, concurrency, city_steps).await?;
    let ticket_secs = tickets_started.elapsed().as_secs_f64();
    println!(
        "seed_tickets: {} closed + {} open in {ticket_secs:.1} s ({:.0} tickets/s)",
        sizes.closed_tickets,
        sizes.open_tickets,
        total as f64 / ticket_secs
    );
    // Without PostgreSQL's statistics (autovacuum off, as on this project's CI server, or
    // behind a bulk load) a dispatcher's list took 259 ms instead of 3 ms on the 10 % city.
    store.analyze().await?;
    println!("seed_time: {:.1} s", started.elapsed().as_secs_f64());
    println!("seed_size: {:.1} MB", store_size(&store, db).await? as f64 / 1e6);
    store.close().await;
    Ok(())
}

/// Bytes the database takes: the SQLite file and its WAL, or PostgreSQL's database size.
async fn store_size(store: &Store, url: &str) -> Result<u64> {
    Ok(match store.backend() {
        Backend::Sqlite => {
            let file = url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap_or_default();
            let size = |p: String| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            size(file.to_string()) + size(format!("{file}-wal"))
        }
        Backend::Postgres => store.database_size().await? as u64,
    })
}
