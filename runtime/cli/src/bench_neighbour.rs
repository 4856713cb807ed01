//! `civicflow bench-neighbour`: one community's hostile plugins against another community's
//! work, through the real server on loopback.
//!
//! Community c2 runs its own (well-behaved) plugin; clients start and complete its levies
//! over HTTP and every request's latency is kept. First alone, then beside community c1's
//! clients doing the same with c1's well-behaved rule (the baseline: the same load without
//! hostile plugins), then while c1 has, one after another, each misbehaving plugin of the
//! gallery bound and its clients keep completing levies that call it. Modules the host must refuse (wrong ABI, a forbidden
//! import, a compile bomb) are uploaded and must be refused with their reason, a binding
//! asking for absurd limits must be refused; every call of a bound one must be answered and
//! noted on its instance as a failed rule with its reason. Prints `name: value unit` lines
//! and exits non-zero if anything was not contained or a neighbour's request failed.

use crate::bench::generated;
use crate::loopback::{Caller, Loopback};
use anyhow::{Context, Result, bail};
use civicflow_engine::validate::load;
use civicflow_engine::{Event, SystemClock};
use civicflow_plugin_host::{Binding, Host, LimitsAsked, Manifest, PluginRules};
use civicflow_server::plugins::{self, Package};
use civicflow_store::org::{PersonRow, UnitRow};
use civicflow_store::{Registry, Runtime, Store};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WORKFLOW: &str = r#"
id: levy
version: 1
title: {zh-CN: 收费核定, en: Levy}
roles:
  member: {title: {zh-CN: 党员, en: Member}}
start: {roles: [member], to: confirm}
rules:
  levy.rate: {default: "0"}
states:
  confirm:
    type: task
    assign: {role: member}
    transitions: [{to: rate}]
  rate:
    type: auto
    set: {rate: {rule: levy.rate}}
    transitions: [{to: done}]
  done: {type: end}
"#;

/// How the server must stop a gallery plugin, and with which error code.
enum Stopped {
    Upload(&'static str),
    Bind,
    /// At each call; any of these codes.
    Call(&'static [&'static str]),
}

struct Hostile {
    name: &'static str,
    wasm: Vec<u8>,
    stopped: Stopped,
}

/// A module speaking the ABI at version `abi`, its call doing `body`.
fn module(abi: i32, body: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (import "civicflow" "log" (func $log (param i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "{{\"ok\":1}}")
          (data (i32.const 32) "not json")
          (func (export "civicflow_abi_version") (result i32) (i32.const {abi}))
          (func (export "civicflow_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "civicflow_call") (param i32 i32) (result i64) {body})
          {extra})"#
    ))
    .expect("gallery WAT parses")
}

/// `{"ok":1}` at offset 16, 8 bytes.
const ANSWER_ONE: &str = "(i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 8))";

/// One function of blocks nested 300,000 deep: seconds and gigabytes for Cranelift.
fn compile_bomb() -> Vec<u8> {
    let depth = 300_000;
    wat::parse_str(format!(
        "(module (func {}{}))",
        "block ".repeat(depth),
        "end ".repeat(depth)
    ))
    .expect("WAT parses")
}

fn gallery() -> Vec<Hostile> {
    let at_call = |name, wasm, codes| Hostile {
        name,
        wasm,
        stopped: Stopped::Call(codes),
    };
    vec![
        at_call(
            "endless-loop",
            module(1, "(loop (br 0)) (i64.const 0)", ""),
            &["out_of_fuel", "wall_time"],
        ),
        at_call(
            "memory-growth",
            module(1, "(loop (drop (memory.grow (i32.const 16))) (br 0)) (i64.const 0)", ""),
            &["memory_limit", "out_of_fuel", "wall_time"],
        ),
        at_call(
            "deep-recursion",
            module(
                1,
                "(drop (call $down (i32.const 0))) (i64.const 0)",
                "(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))",
            ),
            &["trap"],
        ),
        at_call(
            "huge-output",
            module(1, "(i64.const 16777216)", ""),
            &["output_too_large"],
        ),
        at_call(
            "bad-json",
            module(1, "(i64.or (i64.shl (i64.const 32) (i64.const 32)) (i64.const 8))", ""),
            &["bad_output"],
        ),
        at_call(
            "log-flood",
            module(
                1,
                "(loop (call $log (i32.const 16) (i32.const 8)) (br 0)) (i64.const 0)",
                "",
            ),
            &["out_of_fuel", "wall_time"],
        ),
        Hostile {
            name: "wrong-abi",
            wasm: module(99, ANSWER_ONE, ""),
            stopped: Stopped::Upload("abi_version"),
        },
        Hostile {
            name: "forbidden-import",
            wasm: wat::parse_str(
                r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#,
            )
            .expect("WAT parses"),
            stopped: Stopped::Upload("forbidden_import"),
        },
        Hostile {
            name: "compile-bomb",
            wasm: compile_bomb(),
            stopped: Stopped::Upload("too_complex"),
        },
        Hostile {
            name: "absurd-limits",
            wasm: module(1, "(loop (br 0)) (i64.const 0)", ""),
            stopped: Stopped::Bind,
        },
    ]
}

fn package(name: &str, wasm: Vec<u8>) -> Package {
    let description = [("zh-CN".to_string(), format!("测试插件 {name}"))].into();
    Package {
        manifest: Manifest {
            id: name.into(),
            version: "1".into(),
            abi: 1,
            hooks: vec!["levy.rate".into()],
            author_unit: "district".into(),
            description,
            module: "plugin.wasm".into(),
            limits: None,
        },
        wasm,
        signature: None,
    }
}

fn binding(unit: &str, plugin: &str, limits: LimitsAsked) -> Binding {
    Binding {
        unit_id: unit.into(),
        workflow: "levy".into(),
        hook: "levy.rate".into(),
        plugin: plugin.into(),
        version: "1".into(),
        limits,
    }
}

async fn bind(store: &Store, registry: &Registry, rules: &PluginRules, b: &Binding) -> Result<()> {
    plugins::bind(store, registry, b, "bench").await?;
    plugins::sync(store, rules, "").await?;
    Ok(())
}

/// A district of two communities, each with its members.
async fn organise(store: &Store, members: usize) -> Result<()> {
    let unit = |id: &str, parent: Option<&str>, kind: &str, name: &str| {
        generated(UnitRow {
            id: id.into(),
            parent: parent.map(Into::into),
            kind: kind.into(),
            name: name.into(),
            name_en: None,
        })
    };
    let units = [
        unit("city", None, "city", "市"),
        unit("district", Some("city"), "district", "区"),
        unit("c1", Some("district"), "community", "一社区"),
        unit("c2", Some("district"), "community", "二社区"),
    ];
    let people: Vec<_> = ["c1", "c2"]
        .iter()
        .flat_map(|c| (0..members).map(move |i| (c, i)))
        .map(|(c, i)| PersonRow {
            id: format!("{c}-m{i}"),
            name: format!("{c} 党员 {i}"),
            unit: c.to_string(),
            roles: vec![("member".into(), None)],
            phone: None,
            locale: None,
            attributes: Default::default(),
        })
        .map(generated)
        .collect();
    store.import_org(&units, &people, &|_| {}).await?;
    Ok(())
}

/// One levy started and completed by `who` at `unit`: the completion's status and, for
/// the instance, its id. Latencies of both requests go to `times`.
async fn levy(server: &Loopback, who: &Caller, unit: &str, times: &mut Vec<Duration>) -> Result<(u16, String)> {
    let began = Instant::now();
    let started = server
        .json(
            "POST",
            "/api/instances",
            Some(who),
            Some(&json!({"workflow": "levy", "unit": unit, "data": {}})),
        )
        .await?;
    times.push(began.elapsed());
    let id = started["instance"]["id"]
        .as_str()
        .context("no instance id")?
        .to_string();
    let task = started["new_tasks"][0].as_str().context("no task")?.to_string();
    let began = Instant::now();
    let (status, _) = server
        .call(
            "POST",
            &format!("/api/tasks/{task}/complete"),
            Some(who),
            Some(&json!({"data": {}})),
        )
        .await?;
    times.push(began.elapsed());
    Ok((status, id))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The neighbour's clients: `levies` levies at c2, `clients` at a time; every request's
/// latency, and how many failed.
async fn neighbour(
    server: &Arc<Loopback>,
    callers: &Arc<Vec<Caller>>,
    levies: usize,
) -> Result<(Vec<Duration>, usize)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for who in 0..callers.len() {
        let (server, callers, next) = (server.clone(), callers.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut times, mut failed) = (Vec::new(), 0usize);
            while next.fetch_add(1, Ordering::Relaxed) < levies {
                match levy(&server, &callers[who], "c2", &mut times).await {
                    Ok((200, _)) => {}
                    Ok((status, _)) => {
                        tracing::warn!(status, "a neighbour's completion failed");
                        failed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a neighbour's request failed");
                        failed += 1;
                    }
                }
            }
            (times, failed)
        }));
    }
    let (mut times, mut failed) = (Vec::new(), 0);
    for w in workers {
        let (t, f) = w.await?;
        times.extend(t);
        failed += f;
    }
    times.sort();
    Ok((times, failed))
}

pub async fn run(db: Option<&str>, levies: usize, clients: usize, hostile_clients: usize) -> Result<ExitCode> {
    let (_tmp, store, schema) = crate::bench::scratch_store(db).await?;
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None)?)));
    let rt = Arc::new(Runtime::new(store.clone(), Arc::new(SystemClock), rules.clone()).await?);
    organise(&store, clients.max(hostile_clients)).await?;
    rt.publish(
        load("levy.yaml", WORKFLOW)
            .workflow
            .context("the bench workflow is valid")?,
    )
    .await?;
    plugins::publish(&store, &rules, &package("fair", module(1, ANSWER_ONE, "")), "bench").await?;
    bind(
        &store,
        &rt.registry,
        &rules,
        &binding("c2", "fair", LimitsAsked::default()),
    )
    .await?;
    let server = Arc::new(Loopback::serve(rt.clone(), rules.clone()).await?);
    let mut neighbours = Vec::new();
    let mut hostiles = Vec::new();
    for i in 0..clients.max(1) {
        neighbours.push(Caller::of(&rt, &format!("c2-m{i}")).await?);
    }
    for i in 0..hostile_clients.max(1) {
        hostiles.push(Caller::of(&rt, &format!("c1-m{i}")).await?);
    }
    let (neighbours, hostiles) = (Arc::new(neighbours), Arc::new(hostiles));
    let mut contained = true;

    // Refused before they could ever run.
    let gallery = gallery();
    for h in &gallery {
        let outcome = match &h.stopped {
            Stopped::Upload(code) => match plugins::publish(&store, &rules, &package(h.name, h.wasm.clone()), "bench")
                .await
            {
                Err(plugins::PublishError::Plugin(e)) if e.code() == *code => format!("refused at upload: {code}: {e}"),
                other => {
                    contained = false;
                    format!("NOT CONTAINED: upload answered {:?}", other.map_err(|e| e.to_string()))
                }
            },
            Stopped::Bind => {
                plugins::publish(&store, &rules, &package(h.name, h.wasm.clone()), "bench").await?;
                let absurd = LimitsAsked {
                    fuel: Some(u64::MAX),
                    wall_ms: Some(u64::MAX),
                    ..LimitsAsked::default()
                };
                match bind(&store, &rt.registry, &rules, &binding("c1", h.name, absurd)).await {
                    Err(e) if e.to_string().contains("the most allowed") => format!("refused at bind: {e}"),
                    other => {
                        contained = false;
                        format!("NOT CONTAINED: binding answered {other:?}")
                    }
                }
            }
            Stopped::Call(_) => {
                plugins::publish(&store, &rules, &package(h.name, h.wasm.clone()), "bench").await?;
                continue;
            }
        };
        println!("contained_{}: {outcome}", h.name.replace('-', "_"));
    }

    let (alone, alone_failed) = neighbour(&server, &neighbours, levies).await?;

    // The same load again while c1's clients keep calling each hostile plugin in turn.
    let at_call: Vec<&Hostile> = gallery
        .iter()
        .filter(|h| matches!(h.stopped, Stopped::Call(_)))
        .collect();
    let rounds = at_call.len();
    let running = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(std::sync::Mutex::new(Vec::<(String, u16)>::new()));
    let mut attackers = Vec::new();
    let mut beside = Vec::new();
    let mut beside_busy = Vec::new();
    let mut beside_failed = 0;
    // First c1 as busy as it will be, with a well-behaved rule: what its load alone costs.
    let names = std::iter::once("fair").chain(at_call.iter().map(|h| h.name));
    for (round, name) in names.enumerate() {
        bind(
            &store,
            &rt.registry,
            &rules,
            &binding("c1", name, LimitsAsked::default()),
        )
        .await?;
        if round == 0 {
            for who in 0..hostiles.len() {
                let (server, hostiles, running, calls) =
                    (server.clone(), hostiles.clone(), running.clone(), calls.clone());
                attackers.push(tokio::spawn(async move {
                    let mut times = Vec::new();
                    let mut unanswered = 0usize;
                    while running.load(Ordering::Relaxed) {
                        match levy(&server, &hostiles[who], "c1", &mut times).await {
                            Ok((status, id)) => calls.lock().expect("not poisoned").push((id, status)),
                            Err(e) => {
                                tracing::warn!(error = %e, "a hostile community's request got no answer");
                                unanswered += 1;
                            }
                        }
                    }
                    unanswered
                }));
            }
        }
        let before = calls.lock().expect("not poisoned").len();
        let share = if round == 0 { levies } else { levies.div_ceil(rounds) };
        let (times, failed) = neighbour(&server, &neighbours, share).await?;
        let label = if round == 0 {
            "busy_fair".to_string()
        } else {
            name.replace('-', "_")
        };
        println!("neighbour_beside_{label}_p99: {:.2} ms", percentile(&times, 0.99));
        if round == 0 {
            beside_busy = times;
        } else {
            beside.extend(times);
        }
        beside_failed += failed;
        // Each plugin is called after its binding: a call begun before it may meet the last.
        while calls.lock().expect("not poisoned").len() < before + 2 * hostiles.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    running.store(false, Ordering::Relaxed);
    let mut unanswered = 0;
    for a in attackers {
        unanswered += a.await?;
    }
    beside.sort();

    // Every hostile call is answered and noted on its instance, with the plugin and why.
    let calls = calls.lock().expect("not poisoned").clone();
    let mut noted: std::collections::HashMap<String, usize> = Default::default();
    let (mut busy, mut ordinary) = (0, 0);
    for (id, status) in &calls {
        let events = store.events(id).await?;
        let failed = events.iter().rev().find_map(|e| match &e.event {
            Some(Event::RuleFailed { plugin, error, .. }) => Some((plugin.as_deref(), error)),
            _ => None,
        });
        let plugin = failed.and_then(|(p, _)| p).unwrap_or("");
        let why = failed.map_or("", |(_, why)| why.as_str());
        let expected = at_call.iter().find(|h| format!("{}@1", h.name) == plugin);
        match (status, expected.map(|h| &h.stopped)) {
            (422, Some(Stopped::Call(codes))) if codes.iter().any(|c| why.starts_with(c)) => {
                *noted.entry(plugin.trim_end_matches("@1").to_string()).or_default() += 1
            }
            (503, _) if failed.is_none() => busy += 1,
            (200, None) => ordinary += 1,
            _ => {
                contained = false;
                println!("NOT CONTAINED: instance {id} answered {status}, its failed rule: {plugin} {why}");
            }
        }
    }
    for h in &at_call {
        let Stopped::Call(codes) = &h.stopped else { continue };
        let n = noted.get(h.name).copied().unwrap_or(0);
        contained &= n > 0;
        println!(
            "contained_{}: {n} calls noted as failed rules ({})",
            h.name.replace('-', "_"),
            codes.join(" or ")
        );
    }
    println!("hostile_busy: {busy} calls turned away (503, Retry-After)");
    println!("c1_ordinary: {ordinary} calls answered by its well-behaved rule");
    let (a50, a99) = (percentile(&alone, 0.5), percentile(&alone, 0.99));
    let (b50, b99) = (percentile(&beside, 0.5), percentile(&beside, 0.99));
    beside_busy.sort();
    let (n50, n99) = (percentile(&beside_busy, 0.5), percentile(&beside_busy, 0.99));
    println!(
        "neighbour_requests: {} alone, {} beside a busy neighbour, {} beside hostile plugins",
        alone.len(),
        beside_busy.len(),
        beside.len()
    );
    println!("neighbour_alone_p50: {a50:.2} ms");
    println!("neighbour_alone_p99: {a99:.2} ms");
    println!("neighbour_beside_busy_p50: {n50:.2} ms");
    println!("neighbour_beside_busy_p99: {n99:.2} ms");
    println!("neighbour_beside_hostile_p50: {b50:.2} ms");
    println!("neighbour_beside_hostile_p99: {b99:.2} ms");
    // The goal's ratio: the same load from c1, with its hostile plugins against without
    // them (its well-behaved rule). Beside alone, c1's load itself shares the two cores.
    println!("neighbour_p99_ratio: {:.2} x", b99 / n99.max(0.001));
    println!("neighbour_p99_ratio_to_alone: {:.2} x", b99 / a99.max(0.001));
    println!("neighbour_failed_requests: {} requests", alone_failed + beside_failed);
    println!("hostile_calls: {} calls", calls.len());
    println!("hostile_unanswered: {unanswered} requests");
    let (_, broken) = store.verify_chains().await?;
    println!("audit_broken_chains: {} chains", broken.len());
    crate::bench::drop_scratch(&store, &schema).await?;
    if !contained || alone_failed + beside_failed > 0 || unanswered > 0 || !broken.is_empty() {
        bail!("a hostile plugin was not contained or the neighbour's work failed (see above)");
    }
    Ok(ExitCode::SUCCESS)
}
