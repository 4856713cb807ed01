//! `civicflow plugin ...`: what a locality admin needs to write, test, sign, publish and
//! bind a rule plugin.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use civicflow_plugin_host::{Binding, Host, Limits, LimitsAsked, PluginRules};
use civicflow_server::plugins::{self, Package};
use civicflow_store::Store;
use clap::Subcommand;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Run one call of a module and print its output, instructions used, memory peak and time.
    Run {
        module: PathBuf,
        #[arg(long)]
        hook: String,
        /// JSON file with the hook's input.
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        fuel: Option<u64>,
        #[arg(long)]
        memory_bytes: Option<usize>,
        #[arg(long)]
        wall_ms: Option<u64>,
    },
    /// Run every cases/*.json beside each plugin (folders with plugin.yaml) under the paths.
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Check and publish a plugin package folder (plugin.yaml, module, optional signature).
    Publish {
        dir: PathBuf,
        #[arg(long, env = "CIVICFLOW_DB", default_value = "sqlite://data/civicflow.db")]
        db: String,
    },
    /// Bind a rule hook at a unit (and its subtree) to a published plugin version.
    Bind {
        #[arg(long)]
        unit: String,
        #[arg(long)]
        workflow: String,
        #[arg(long)]
        hook: String,
        /// id@version
        #[arg(long)]
        plugin: String,
        #[arg(long)]
        fuel: Option<u64>,
        #[arg(long)]
        wall_ms: Option<u64>,
        #[arg(long)]
        memory_bytes: Option<usize>,
        #[arg(long, env = "CIVICFLOW_DB", default_value = "sqlite://data/civicflow.db")]
        db: String,
    },
    /// Trust a signing key (base64 ed25519 public key) for plugins authored in a unit's subtree.
    Trust {
        #[arg(long)]
        unit: String,
        #[arg(long)]
        key: String,
        #[arg(long, env = "CIVICFLOW_DB", default_value = "sqlite://data/civicflow.db")]
        db: String,
    },
    /// Make a signing key pair: writes the secret key to FILE and prints the public key.
    Keygen { file: PathBuf },
    /// Sign a package's module with a secret key file (writes <module>.sig).
    Sign {
        dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
}

pub async fn run(command: PluginCommand) -> Result<ExitCode> {
    match command {
        PluginCommand::Run {
            module,
            hook,
            input,
            fuel,
            memory_bytes,
            wall_ms,
        } => {
            let wasm = std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let input: Value = serde_json::from_str(
                &std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?,
            )
            .with_context(|| format!("{} is not JSON", input.display()))?;
            let limits = LimitsAsked {
                fuel,
                wall_ms,
                memory_bytes,
                ..LimitsAsked::default()
            }
            .over(Limits::default());
            limits.check().map_err(anyhow::Error::msg)?;
            let host = Host::new(None)?;
            let plugin = host.load("local", "0", &wasm)?;
            match host.call(&plugin, &hook, &input, &limits) {
                Ok(r) => {
                    println!("{}", serde_json::to_string_pretty(&shown(&r))?);
                    for line in &r.logs {
                        eprintln!("log: {line}");
                    }
                    eprintln!(
                        "instructions (fuel) used: {}  memory peak: {} KiB  time: {:.3} ms",
                        r.fuel_used,
                        r.memory_peak / 1024,
                        r.elapsed.as_secs_f64() * 1e3
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("error: {}: {e}", e.code());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        PluginCommand::Test { paths } => test(&paths),
        PluginCommand::Publish { dir, db } => {
            let store = Store::connect(&db, None).await?;
            let rules = PluginRules::new(Arc::new(Host::new(None)?));
            let package = Package::read(&dir)?;
            let fresh = plugins::publish(&store, &rules, &package, "cli").await?;
            println!(
                "{}: {}",
                package.manifest.plugin_ref(),
                if fresh { "published" } else { "already published" }
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Bind {
            unit,
            workflow,
            hook,
            plugin,
            fuel,
            wall_ms,
            memory_bytes,
            db,
        } => {
            let Some((id, version)) = plugin.split_once('@') else {
                bail!("--plugin takes id@version, e.g. dues-rate-national@1.0.0")
            };
            let store = Store::connect(&db, None).await?;
            let limits = LimitsAsked {
                fuel,
                wall_ms,
                memory_bytes,
                ..LimitsAsked::default()
            };
            let binding = Binding {
                unit_id: unit,
                workflow,
                hook,
                plugin: id.into(),
                version: version.into(),
                limits,
            };
            plugins::bind(&store, &store.registry().await?, &binding, "cli").await?;
            println!(
                "bound {} {} at {} and below to {}",
                binding.workflow,
                binding.hook,
                binding.unit_id,
                binding.plugin_ref()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Trust { unit, key, db } => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .context("the key must be base64")?;
            if raw.len() != 32 {
                bail!("an ed25519 public key is 32 bytes; this one is {}", raw.len());
            }
            Store::connect(&db, None).await?.trust_key(&unit, key.trim()).await?;
            println!("unit {unit} and its subtree now accept plugins signed with this key, and only signed ones");
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Keygen { file } => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let key = SigningKey::from_bytes(&secret);
            let b64 = base64::engine::general_purpose::STANDARD;
            std::fs::write(&file, b64.encode(secret)).with_context(|| format!("writing {}", file.display()))?;
            println!("{}", b64.encode(key.verifying_key().to_bytes()));
            eprintln!(
                "secret key written to {}; keep it private. The line above is the public key to trust.",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Sign { dir, key } => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let secret = b64
                .decode(std::fs::read_to_string(&key)?.trim())
                .context("the key file must hold a base64 secret key")?;
            let secret: [u8; 32] = secret
                .try_into()
                .map_err(|_| anyhow::anyhow!("a secret key is 32 bytes"))?;
            let package = Package::read(&dir)?;
            let signature = SigningKey::from_bytes(&secret).sign(&package.wasm);
            let out = dir.join(format!("{}.sig", package.manifest.module));
            std::fs::write(&out, b64.encode(signature.to_bytes()))?;
            println!("signed {} → {}", package.manifest.plugin_ref(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Plugin folders (with plugin.yaml) at or under the paths.
fn plugin_dirs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.join("plugin.yaml").exists() {
            out.push(p.clone());
        } else if p.is_dir() {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|d| d.join("plugin.yaml").exists())
                .collect();
            subs.sort();
            out.extend(subs);
        } else {
            bail!("{}: no plugin.yaml here", p.display());
        }
    }
    Ok(out)
}

/// A case: `{"hook": ..., "input": {...}, "expect": value}` or `"expect_error": "code"`.
fn test(paths: &[PathBuf]) -> Result<ExitCode> {
    let host = Host::new(None)?;
    let (mut passed, mut failed) = (0, 0);
    for dir in plugin_dirs(paths)? {
        let package = match Package::read(&dir) {
            Ok(p) => p,
            Err(e) => {
                println!("FAIL {}: {e}", dir.display());
                failed += 1;
                continue;
            }
        };
        let limits = package.manifest.limits();
        let plugin = match host.load(&package.manifest.id, &package.manifest.version, &package.wasm) {
            Ok(p) => p,
            Err(e) => {
                println!("FAIL {}: {e}", dir.display());
                failed += 1;
                continue;
            }
        };
        for case in cases(&dir)? {
            let name = case.display().to_string();
            match run_case(&host, &plugin, &case, &limits) {
                Ok(()) => {
                    println!("ok   {name}");
                    passed += 1;
                }
                Err(message) => {
                    println!("FAIL {name}: {message}");
                    failed += 1;
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cases(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir.join("cases")) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

fn run_case(host: &Host, plugin: &civicflow_plugin_host::Plugin, file: &Path, limits: &Limits) -> Result<(), String> {
    let case: Value = serde_json::from_str(&std::fs::read_to_string(file).map_err(|e| e.to_string())?)
        .map_err(|e| format!("not JSON: {e}"))?;
    let hook = case["hook"].as_str().ok_or("the case needs \"hook\"")?;
    let result = host.call(plugin, hook, &case["input"], limits);
    match (
        result,
        case.get("expect"),
        case.get("expect_error").and_then(Value::as_str),
    ) {
        // A case expects `{"inherit": true}` as the plugin sends it.
        (Ok(r), Some(want), None) if r.inherit && *want == serde_json::json!({"inherit": true}) => Ok(()),
        (Ok(r), Some(want), None) if !r.inherit && numbers_equal(&r.output, want) => Ok(()),
        (Ok(r), Some(want), None) => Err(format!("expected {want}, got {}", shown(&r))),
        (Err(e), None, Some(code)) if e.code() == code || e.to_string().contains(code) => Ok(()),
        (Err(e), _, _) => Err(format!("{}: {e}", e.code())),
        (Ok(r), _, Some(code)) => Err(format!("expected error {code}, got {}", shown(&r))),
        (Ok(_), None, None) => Err("the case needs \"expect\" or \"expect_error\"".into()),
    }
}

/// JSON equality where 6 and 6.0 are the same amount.
fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| numbers_equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| numbers_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The answer as the plugin gave it: its value, or `{"inherit": true}`.
fn shown(r: &civicflow_plugin_host::CallReport) -> Value {
    if r.inherit {
        serde_json::json!({"inherit": true})
    } else {
        r.output.clone()
    }
}
