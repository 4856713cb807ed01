//! `civicflow crash-check`: the server killed with SIGKILL at random moments under load,
//! restarted, and then everything it acknowledged checked.
//!
//! Clients file reports over HTTP, each with its own Idempotency-Key, and retry a report
//! until it is answered (through every kill). Each report's workflow has a 2-second timer.
//! After the last restart the check asks: was every key answered, does a repeat of each key
//! give its first answer, is each report stored exactly once (none lost, none twice), did
//! each timer fire exactly once, and are all hash chains intact. Prints `name: value unit`
//! lines; exits non-zero on any failure.

use crate::bench::generated;
use crate::loopback::{Caller, Loopback};
use anyhow::{Context, Result, bail};
use civicflow_engine::validate::load;
use civicflow_engine::{Event, SystemClock};
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_store::org::{PersonRow, UnitRow};
use civicflow_store::{Runtime, Store};
use serde_json::json;
use std::collections::HashMap;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORKFLOW: &str = r#"
id: crash-report
version: 1
title: {zh-CN: 崩溃测试上报, en: Crash-test report}
roles:
  reporter: {title: {zh-CN: 上报人, en: Reporter}}
start: {roles: [reporter], form: report, to: waiting}
forms:
  report:
    schema: {type: object, required: [key], properties: {key: {type: string}}}
states:
  waiting:
    type: wait
    timers: [{after: 2s, to: lapsed}]
  lapsed: {type: end}
"#;

/// One task any reporter may complete: completed at once through every replica, it must
/// have exactly one winner.
const RACE: &str = r#"
id: crash-race
version: 1
title: {zh-CN: 并发办理, en: Race}
roles:
  reporter: {title: {zh-CN: 上报人, en: Reporter}}
start: {roles: [reporter], to: handle}
states:
  handle:
    type: task
    assign: {role: reporter}
    transitions: [{to: done}]
  done: {type: end}
"#;

/// A random number below `n` (kill moments).
fn below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("system randomness");
    u64::from_le_bytes(b) % n.max(1)
}

fn serve(db: &str, listen: &str, cache: &std::path::Path) -> Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["serve", "--db", db, "--listen", listen, "--plugin-cache"])
        .arg(cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the server")
}

async fn until_healthy(server: &Loopback) -> Result<()> {
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(30) {
        if let Ok((200, _)) = server.call("GET", "/healthz", None, None).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the server did not come up within 30 s")
}

/// The organisation, the workflow and one token per client, written before the server runs.
async fn prepare(db: &str, clients: usize) -> Result<Vec<Caller>> {
    let store = Store::connect(db, None).await?;
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None)?)));
    let rt = Runtime::new(store.clone(), Arc::new(SystemClock), rules).await?;
    let units = [generated(UnitRow {
        id: "grid".into(),
        parent: None,
        kind: "grid".into(),
        name: "网格".into(),
        name_en: None,
    })];
    let people: Vec<_> = (0..clients)
        .map(|i| {
            generated(PersonRow {
                id: format!("reporter-{i}"),
                name: format!("上报人 {i}"),
                unit: "grid".into(),
                roles: vec![("reporter".into(), None)],
                phone: None,
                locale: None,
                attributes: Default::default(),
            })
        })
        .collect();
    store.import_org(&units, &people, &|_| {}).await?;
    for (file, text) in [("crash-report.yaml", WORKFLOW), ("crash-race.yaml", RACE)] {
        rt.publish(load(file, text).workflow.context("the workflow is valid")?)
            .await?;
    }
    let mut callers = Vec::new();
    for i in 0..clients {
        callers.push(Caller::of(&rt, &format!("reporter-{i}")).await?);
    }
    Ok(callers)
}

/// A server process on its own port.
struct Replica {
    listen: String,
    child: Child,
}

pub async fn run(db: Option<&str>, kills: usize, clients: usize, reports: usize, replicas: usize) -> Result<ExitCode> {
    let tmp = tempfile::tempdir()?;
    let db = match db {
        Some(url) => url.to_string(),
        None => format!("sqlite://{}", tmp.path().join("crash.db").display()),
    };
    if replicas > 1 && db.starts_with("sqlite:") {
        bail!("replicas share a PostgreSQL database; SQLite has one server");
    }
    let callers = Arc::new(prepare(&db, clients.max(1)).await?);
    let cache = tmp.path().join("plugin-cache");
    let mut servers = Vec::new();
    let mut running = Vec::new();
    for _ in 0..replicas.max(1) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        running.push(Replica {
            child: serve(&db, &listen, &cache)?,
            listen: listen.clone(),
        });
        let server = Loopback::to(format!("http://{listen}"));
        until_healthy(&server).await?;
        servers.push(server);
    }
    let servers = Arc::new(servers);

    // Clients: report k of client c has the key "c-k", retried until answered; they file
    // at least `reports` in all, and go on until the last restart.
    let answers = Arc::new(Mutex::new(HashMap::<String, String>::new()));
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let per_client = reports.div_ceil(callers.len());
    let mut workers = Vec::new();
    for c in 0..callers.len() {
        let (servers, callers, answers, retries, stop) = (
            servers.clone(),
            callers.clone(),
            answers.clone(),
            retries.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            for k in 0.. {
                if k >= per_client && stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("{c}-{k}");
                let body = json!({"workflow": "crash-report", "unit": "grid", "data": {"key": key}});
                // Its own replica first; while that one is down, the next.
                let mut replica = c;
                loop {
                    let server = &servers[replica % servers.len()];
                    match server.keyed("POST", "/api/instances", &callers[c], &key, &body).await {
                        Ok((201 | 200, answer)) => {
                            let id = answer["instance"]["id"].as_str().unwrap_or_default().to_string();
                            answers.lock().expect("not poisoned").insert(key.clone(), id);
                            break;
                        }
                        Ok((status, answer)) if status < 500 => {
                            return Err(anyhow::anyhow!("report {key} refused: {status} {answer}"));
                        }
                        _ => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            replica += 1;
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(150 + below(600))).await;
        let victim = below(running.len() as u64) as usize;
        let r = &mut running[victim];
        r.child.kill()?;
        r.child.wait()?;
        r.child = serve(&db, &r.listen, &cache)?;
        until_healthy(&servers[victim]).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await??;
    }
    // Every timer is due 2 s after its report: wait (at most two minutes) until each
    // report has lapsed, the servers firing them between them.
    let store = Store::connect(&db, None).await?;
    let limit = (answers.lock().expect("not poisoned").len() * 2 + 100) as i64;
    let waiting_since = Instant::now();
    while waiting_since.elapsed() < Duration::from_secs(120) {
        let stored = store.instances_of("crash-report", limit).await?;
        if stored
            .iter()
            .all(|i| i.status == civicflow_engine::machine::Status::Completed)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let races = race(&servers, &callers).await?;
    let answers = answers.lock().expect("not poisoned").clone();
    let mut failures = Vec::new();
    // A repeat of every key gives its first answer.
    let mut repeated_differently = 0;
    for (key, id) in &answers {
        let c: usize = key.split('-').next().unwrap_or("0").parse()?;
        let body = json!({"workflow": "crash-report", "unit": "grid", "data": {"key": key}});
        let server = &servers[c % servers.len()];
        let (status, answer) = server.keyed("POST", "/api/instances", &callers[c], key, &body).await?;
        if status != 200 || answer["instance"]["id"].as_str() != Some(id.as_str()) {
            repeated_differently += 1;
        }
    }
    for r in &mut running {
        r.child.kill()?;
        r.child.wait()?;
    }
    let stored = store.instances_of("crash-report", limit).await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut not_once = 0;
    for instance in &stored {
        *seen
            .entry(instance.data["key"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
        let events = store.events(&instance.id).await?;
        if events
            .iter()
            .filter(|e| matches!(e.event, Some(Event::TimerFired { .. })))
            .count()
            != 1
        {
            not_once += 1;
        }
    }
    let lost = answers.keys().filter(|k| !seen.contains_key(*k)).count();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    let (checked, broken) = store.verify_chains().await?;
    println!("crash_replicas: {} servers", servers.len());
    println!("crash_kills: {kills} kills");
    println!("crash_acknowledged: {} requests", answers.len());
    println!(
        "crash_retries_through_kills: {} requests",
        retries.load(Ordering::Relaxed)
    );
    println!("crash_lost: {lost} requests");
    println!("crash_duplicated: {duplicated} requests");
    println!("crash_keys_answered_differently: {repeated_differently} keys");
    println!("crash_timers_not_fired_once: {not_once} timers");
    println!("crash_chains_checked: {checked} instances, {} broken", broken.len());
    println!("crash_races_without_one_winner: {races} tasks");
    if answers.len() < per_client * callers.len() {
        failures.push("not every report was answered");
    }
    if lost + duplicated + repeated_differently + not_once + races > 0 || !broken.is_empty() {
        failures.push("an acknowledged request was lost, duplicated or answered differently, or a timer misfired");
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Twenty tasks, each completed at once by every client through the replicas in turn: the
/// number that did not have exactly one winner with every other told 409.
async fn race(servers: &Arc<Vec<Loopback>>, callers: &Arc<Vec<Caller>>) -> Result<usize> {
    let mut without_one_winner = 0;
    for _ in 0..20 {
        let start = json!({"workflow": "crash-race", "unit": "grid", "data": {}});
        let started = servers[0]
            .json("POST", "/api/instances", Some(&callers[0]), Some(&start))
            .await?;
        let task = started["new_tasks"][0].as_str().context("no task")?.to_string();
        let mut tries = Vec::new();
        for c in 0..callers.len() {
            let (servers, callers, task) = (servers.clone(), callers.clone(), task.clone());
            tries.push(tokio::spawn(async move {
                let server = &servers[c % servers.len()];
                let path = format!("/api/tasks/{task}/complete");
                server
                    .call("POST", &path, Some(&callers[c]), Some(&json!({"data": {}})))
                    .await
            }));
        }
        let mut statuses = Vec::new();
        for t in tries {
            statuses.push(t.await??.0);
        }
        let wins = statuses.iter().filter(|s| **s == 200).count();
        let conflicts = statuses.iter().filter(|s| **s == 409).count();
        if wins != 1 || wins + conflicts != statuses.len() {
            println!("race: {statuses:?}");
            without_one_winner += 1;
        }
    }
    Ok(without_one_winner)
}
