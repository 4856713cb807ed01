//! `civicflow bench-startup`: how long `civicflow serve` takes from process start to its
//! first `200` on `/healthz`, with 50 published workflows and 50 stored plugins, first with
//! the compiled-module cache empty (every plugin compiled) and then warm. Prints
//! `name: value unit` lines.

use anyhow::{Context, Result, bail};
use civicflow_engine::SystemClock;
use civicflow_plugin_host::{Host, PluginRules};
use civicflow_server::plugins::{self, Package};
use civicflow_store::{Runtime, Store};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `wasm` with a custom section named `name` appended: the same code under another hash, so
/// each copy is compiled (and cached) on its own.
fn distinct(wasm: &[u8], name: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    leb128(&mut payload, name.len());
    payload.extend_from_slice(name.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    leb128(&mut out, payload.len());
    out.extend(payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The demo (organisation, shipped workflows, overlays, plugins and bindings) plus copies of
/// the workflows and plugins under other ids, up to `count` of each.
async fn prepare(db: &str, count: usize, workflows: &Path, plugins_dir: &Path) -> Result<(usize, usize)> {
    let store = Store::connect(db, None).await?;
    let rules = Arc::new(PluginRules::new(Arc::new(Host::new(None)?)));
    let rt = Runtime::new(store.clone(), Arc::new(SystemClock), rules.clone()).await?;
    civicflow_server::demo::load(&rt, &rules, workflows, plugins_dir).await?;
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(workflows)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            bases.push(std::fs::read_to_string(&path)?);
        }
    }
    bases.sort();
    let mut published = bases.len();
    for n in 0..count.saturating_sub(bases.len()) {
        let text = &bases[n % bases.len()];
        let copy = text
            .lines()
            .map(|l| match l.strip_prefix("id: ") {
                Some(id) => format!("id: {id}-copy{n}"),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let loaded = civicflow_engine::validate::load(&format!("copy{n}.yaml"), &copy);
        let wf = loaded.workflow.with_context(|| format!("copy {n} does not load"))?;
        rt.publish(wf).await?;
        published += 1;
    }
    let mut packages = Vec::new();
    for entry in std::fs::read_dir(plugins_dir)? {
        let dir = entry?.path();
        if dir.join("plugin.yaml").exists() {
            packages.push(Package::read(&dir)?);
        }
    }
    packages.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
    let mut stored = packages.len();
    for n in 0..count.saturating_sub(packages.len()) {
        let base = &packages[n % packages.len()];
        let mut copy = Package {
            manifest: base.manifest.clone(),
            wasm: distinct(&base.wasm, &format!("copy{n}")),
            signature: None,
        };
        copy.manifest.id = format!("{}-copy{n}", base.manifest.id);
        plugins::publish(&store, &rules, &copy, "bench").await?;
        stored += 1;
    }
    store.close().await;
    Ok((published, stored))
}

/// Start `civicflow serve` and time it to its first `200` on `/healthz`.
fn time_start(db: &str, cache: &Path, port: u16) -> Result<Duration> {
    let exe = std::env::current_exe()?;
    let began = Instant::now();
    let mut child = Command::new(exe)
        .args(["serve", "--db", db, "--insecure-cookies", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--plugin-cache")
        .arg(cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let answered = loop {
        if healthy(port) {
            break Ok(began.elapsed());
        }
        if began.elapsed() > Duration::from_secs(60) {
            break Err(anyhow::anyhow!("no answer on /healthz within 60 s"));
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!("civicflow serve exited: {status}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    child.kill()?;
    child.wait()?;
    answered
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let mut answer = String::new();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

pub async fn run(count: usize, runs: usize, workflows: &Path, plugins_dir: &Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = format!("sqlite://{}", tmp.path().join("startup.db").display());
    let (published, stored) = prepare(&db, count, workflows, plugins_dir).await?;
    println!("startup_dataset: {published} workflows, {stored} plugins");
    let cache = tmp.path().join("cache");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    for (name, cold) in [("startup_cold_cache", true), ("startup_warm_cache", false)] {
        let mut times = Vec::new();
        for _ in 0..runs.max(1) {
            if cold {
                let _ = std::fs::remove_dir_all(&cache);
            }
            times.push(time_start(&db, &cache, port)?);
        }
        if !cache.exists() {
            bail!("the server wrote no module cache at {}", cache.display());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("{name}_p50: {:.0} ms", ms(times[times.len() / 2]));
        println!("{name}_max: {:.0} ms", ms(times[times.len() - 1]));
    }
    Ok(())
}
