//! `civicflow test`: scenario files (`*.test.yaml`) run against workflows on an in-memory
//! SQLite store with a virtual clock, through the same runtime the server uses. Failures
//! point at the scenario line.
//!
//! ```yaml
//! workflows: [../ticket.yaml]        # relative to this file
//! org: {units: ../org/units.csv, people: ../org/people.csv}
//! start_time: 2026-03-02T09:00:00+08:00
//! scenarios:
//!   - name: happy path
//!     steps:
//!       - start: {workflow: ticket, unit: g1, as: wang, data: {...}}
//!       - complete: {state: dispatch, as: li, data: {department: d1}}
//!       - advance: 25h                # then due timers and schedules fire
//!       - expect: {states: [accept], status: running, data: {...}, tasks: [accept], events: [escalated]}
//!       - complete: {state: accept, as: zhou, data: {}}
//!         error: forbidden            # the step must fail with this code
//!       - withdraw: {state: signup, as: wu}   # take back an entry in a collect state
//!       - signal: {workflow: dues, name: payment, body: {order: $instance, id: T1}}   # signed
//!         outcome: applied            # or duplicate, ignored; the file's `secrets:` signs it
//!       - find: {workflow: volunteer-stars, data: {person: wu}}   # an instance a schedule started
//!       - code: {state: check_in, as: feng}   # the organiser shows a check-in code...
//!       - complete: {state: check_in, as: wu, data: {code: $code}}   # ...a volunteer scans it
//! ```
//!
//! Steps under a top-level `background:` run before each scenario's own steps (YAML anchors
//! are not supported, so this is how scenarios share a long start).
//!
//! A file may also load plugin packages and bind them, to test a locality's rule:
//! `plugins: [../../plugins/ticket-route]` and
//! `bindings: [{unit_id: beichen, workflow: ticket, hook: ticket.route, plugin: ticket-route-beichen, version: 1.1.0}]`,
//! and upload working-day tables: `calendars: [{unit: demo-city, file: ../calendars/cn-2026.calendar.yaml}]`.
//!
//! The file's shape is checked first (`civicflow_engine::scenario_file`).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use civicflow_engine::calendar::YearTable;
use civicflow_engine::duration::Span;
use civicflow_engine::files::{load_all, load_overlays, scenario_files};
use civicflow_engine::yaml::SourceDoc;
use civicflow_engine::{Event, ManualClock, TaskStatus};
use civicflow_plugin_host::{Binding, BindingTable, Host, PluginRules};
use civicflow_server::plugins::Package;
use civicflow_store::org_files::{read_people, read_units};
use civicflow_store::{Runtime, Store, StoreError};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub async fn run(paths: &[PathBuf]) -> Result<ExitCode> {
    let files = scenario_files(paths)?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let (p, f) = run_file(file).await?;
        passed += p;
        failed += f;
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A failure located in the scenario file.
struct Failure {
    pointer: String,
    message: String,
}

fn fail(pointer: &str, message: impl Into<String>) -> Failure {
    Failure {
        pointer: pointer.to_string(),
        message: message.into(),
    }
}

async fn run_file(file: &Path) -> Result<(usize, usize)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let doc = match civicflow_engine::scenario_file::read(&name, &text) {
        Ok(d) => d,
        Err(problems) => {
            for d in &problems {
                println!("FAIL {d}");
            }
            return Ok((0, 1));
        }
    };
    let setup = match Setup::read(&doc, file) {
        Ok(s) => s,
        Err(f) => {
            println!("FAIL {}", doc.error(&f.pointer, f.message));
            return Ok((0, 1));
        }
    };
    let Some(scenarios) = doc.value.get("scenarios").and_then(Value::as_array) else {
        println!("FAIL {}", doc.error("", "a scenario file needs a `scenarios` list"));
        return Ok((0, 1));
    };
    let (mut passed, mut failed) = (0, 0);
    for (i, scenario) in scenarios.iter().enumerate() {
        let title = scenario
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
            .to_string();
        match run_scenario(&setup, &doc.value, scenario, &format!("/scenarios/{i}")).await {
            Ok(()) => {
                println!("ok   {name}: {title}");
                passed += 1;
            }
            Err(f) => {
                let d = doc.error(&f.pointer, format!("scenario \"{title}\": {}", f.message));
                println!("FAIL {d}");
                failed += 1;
            }
        }
    }
    Ok((passed, failed))
}

/// The items of the list at `key` (none when absent: the schema has checked the shape).
fn items<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = &'v Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

struct Setup {
    /// The scenario file's folder, which its paths are relative to.
    dir: PathBuf,
    workflow_paths: Vec<PathBuf>,
    /// `calendars:` of the file: tables to upload at units, read and checked once.
    calendars: Vec<(String, YearTable)>,
    units: Option<PathBuf>,
    people: Option<PathBuf>,
    start: DateTime<Utc>,
    /// Plugins the file loads and the bindings it makes, shared by its scenarios.
    rules: Arc<PluginRules>,
    /// `secrets:` of the file, e.g. a payment provider's signing key, given to the runtime.
    secrets: BTreeMap<String, String>,
}

impl Setup {
    fn read(doc: &SourceDoc, file: &Path) -> Result<Self, Failure> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let rel = |v: &Value, at: &str| {
            v.as_str()
                .map(|s| dir.join(s))
                .ok_or_else(|| fail(at, "expected a path"))
        };
        let workflow_paths = match doc.value.get("workflows") {
            None => vec![dir.parent().unwrap_or(dir).to_path_buf()],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| rel(v, &format!("/workflows/{i}")))
                .collect::<Result<_, _>>()?,
            Some(v) => vec![rel(v, "/workflows")?],
        };
        let org = doc.value.get("org");
        let units = org
            .and_then(|o| o.get("units"))
            .map(|v| rel(v, "/org/units"))
            .transpose()?;
        let people = org
            .and_then(|o| o.get("people"))
            .map(|v| rel(v, "/org/people"))
            .transpose()?;
        let start = match doc.value.get("start_time") {
            None => DateTime::parse_from_rfc3339("2026-03-02T01:00:00Z")
                .expect("constant")
                .with_timezone(&Utc),
            Some(v) => v
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc))
                .ok_or_else(|| fail("/start_time", "start_time must be an RFC 3339 time"))?,
        };
        let mut hooks: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let rules = Arc::new(PluginRules::new(Arc::new(
            Host::new(None).map_err(|e| fail("", e.to_string()))?,
        )));
        for (i, v) in items(&doc.value, "plugins").enumerate() {
            let at = format!("/plugins/{i}");
            let package = Package::read(&rel(v, &at)?).map_err(|e| fail(&at, e.to_string()))?;
            let m = &package.manifest;
            let plugin = rules
                .host()
                .load(&m.id, &m.version, &package.wasm)
                .map_err(|e| fail(&at, e.to_string()))?;
            rules.add_plugin(plugin, m.limits());
            hooks.insert(m.plugin_ref(), m.hooks.clone());
        }
        if let Some(b) = doc.value.get("bindings") {
            let bindings: Vec<Binding> =
                serde_json::from_value(b.clone()).map_err(|e| fail("/bindings", format!("bindings: {e}")))?;
            let (workflows, _) = load_all(&workflow_paths).map_err(|e| fail("/workflows", e.to_string()))?;
            for (i, b) in bindings.iter().enumerate() {
                let Some(plugin_hooks) = hooks.get(&b.plugin_ref()) else {
                    return Err(fail(
                        &format!("/bindings/{i}/plugin"),
                        format!("plugin {} is not among this file's `plugins`", b.plugin_ref()),
                    ));
                };
                let wf = workflows.iter().find(|w| w.id() == b.workflow);
                civicflow_server::plugins::check_binding(wf, b, plugin_hooks)
                    .map_err(|m| fail(&format!("/bindings/{i}"), m))?;
            }
            rules.set_bindings(BindingTable::new(bindings));
        }
        let mut calendars = Vec::new();
        for (i, c) in items(&doc.value, "calendars").enumerate() {
            let at = format!("/calendars/{i}");
            let path = rel(&c["file"], &format!("{at}/file"))?;
            let text = std::fs::read_to_string(&path).map_err(|e| fail(&at, format!("{}: {e}", path.display())))?;
            let table = YearTable::parse(&path.display().to_string(), &text).map_err(|problems| {
                let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
                fail(&at, all.join("; "))
            })?;
            calendars.push((c["unit"].as_str().unwrap_or_default().to_string(), table));
        }
        let secrets = match doc.value.get("secrets") {
            None => BTreeMap::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| fail("/secrets", format!("secrets: a map of names to strings: {e}")))?,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            rules,
            calendars,
            workflow_paths,
            units,
            people,
            start,
            secrets,
        })
    }

    async fn runtime(&self) -> Result<(Runtime, Arc<ManualClock>), Failure> {
        let clock = Arc::new(ManualClock::new(self.start));
        let store = Store::connect("sqlite::memory:", None)
            .await
            .map_err(|e| fail("", e.to_string()))?;
        let units = self
            .units
            .as_deref()
            .map(read_units)
            .transpose()
            .map_err(|e| fail("/org/units", e.to_string()))?
            .unwrap_or_default();
        let people = self
            .people
            .as_deref()
            .map(read_people)
            .transpose()
            .map_err(|e| fail("/org/people", e.to_string()))?
            .unwrap_or_default();
        store
            .import_org(&units, &people, &|_| {})
            .await
            .map_err(|e| fail("/org", format!("{e}: {}", describe_import(&e))))?;
        for (i, (unit, table)) in self.calendars.iter().enumerate() {
            store
                .upload_calendar(unit, table, "scenario", self.start)
                .await
                .map_err(|e| fail(&format!("/calendars/{i}/unit"), e.to_string()))?;
        }
        let runtime = Runtime::new(store, clock.clone(), self.rules.clone())
            .await
            .map_err(|e| fail("", e.to_string()))?;
        for (name, value) in &self.secrets {
            runtime.provide_secret(name, value);
        }
        let (workflows, diagnostics) = load_all(&self.workflow_paths).map_err(|e| fail("/workflows", e.to_string()))?;
        if let Some(d) = diagnostics.iter().find(|d| d.is_error()) {
            return Err(fail("/workflows", format!("workflow does not validate: {d}")));
        }
        for wf in workflows {
            runtime
                .publish(wf)
                .await
                .map_err(|e| fail("/workflows", e.to_string()))?;
        }
        let (overlays, problems) =
            load_overlays(&self.workflow_paths).map_err(|e| fail("/workflows", e.to_string()))?;
        if let Some(d) = problems.first() {
            return Err(fail("/workflows", format!("overlay does not load: {d}")));
        }
        let ordered = runtime
            .in_tree_order(overlays)
            .await
            .map_err(|e| fail("/workflows", e.to_string()))?;
        for o in ordered {
            runtime
                .publish_overlay(o, "scenario")
                .await
                .map_err(|e| fail("/workflows", e.to_string()))?;
        }
        Ok((runtime, clock))
    }

    /// A `publish:` step: a new base version or overlay file, as its publisher would.
    async fn publish(&self, runtime: &Runtime, file: &str) -> Result<Result<(), StoreError>, Failure> {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| fail("", format!("{}: {e}", path.display())))?;
        let name = path.display().to_string();
        if civicflow_engine::files::is_overlay(&path) {
            let overlay = match civicflow_engine::overlay::Overlay::load(&name, &text) {
                Ok(o) => o,
                Err(d) => return Ok(Err(StoreError::Refused("the overlay does not load".into(), d))),
            };
            return Ok(runtime.publish_overlay(overlay, "scenario").await.map(|_| ()));
        }
        let loaded = civicflow_engine::validate::load(&name, &text);
        let Some(wf) = loaded.workflow else {
            return Ok(Err(StoreError::Refused(
                "the workflow does not load".into(),
                loaded.diagnostics,
            )));
        };
        Ok(runtime.publish(wf).await.map(|_| ()))
    }
}

fn describe_import(e: &civicflow_store::org::ImportError) -> String {
    match e {
        civicflow_store::org::ImportError::Rows(rows) => {
            rows.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}

/// Run the file's `background` steps, then the scenario's own, on a fresh store.
async fn run_scenario(setup: &Setup, file: &Value, scenario: &Value, at: &str) -> Result<(), Failure> {
    let (runtime, clock) = setup.runtime().await?;
    let steps = scenario
        .get("steps")
        .and_then(Value::as_array)
        .ok_or_else(|| fail(at, "a scenario needs `steps`"))?;
    let background = items(file, "background");
    let located = background
        .enumerate()
        .map(|(i, s)| (format!("/background/{i}"), s))
        .chain(steps.iter().enumerate().map(|(i, s)| (format!("{at}/steps/{i}"), s)));
    let mut current: Option<String> = None;
    let mut named: std::collections::HashMap<String, String> = Default::default();
    for (sat, step) in located {
        let expected_error = step.get("error").and_then(Value::as_str);
        let outcome = match step.get("publish").and_then(Value::as_str) {
            Some(file) => setup
                .publish(&runtime, file)
                .await
                .map_err(|f| fail(&format!("{sat}/publish"), f.message))?,
            None => perform(&runtime, &clock, step, &sat, &mut current, &mut named, &setup.secrets).await?,
        };
        match (outcome, expected_error) {
            (Ok(()), None) => {}
            (Ok(()), Some(code)) => {
                return Err(fail(
                    &format!("{sat}/error"),
                    format!("expected the step to fail with \"{code}\", but it succeeded"),
                ));
            }
            // The code, or words of the message (a form error's field messages included).
            (Err(e), Some(code)) if e.code() == code || detail(&e).contains(code) => {}
            (Err(e), Some(code)) => {
                return Err(fail(
                    &format!("{sat}/error"),
                    format!("expected error \"{code}\", got {}: {}", e.code(), detail(&e)),
                ));
            }
            (Err(e), None) => return Err(fail(&sat, format!("step failed: {}: {}", e.code(), detail(&e)))),
        }
        if let Some(expect) = step.get("expect") {
            let id = current
                .as_deref()
                .ok_or_else(|| fail(&sat, "expect before any instance was started"))?;
            check_expect(&runtime, id, expect, &format!("{sat}/expect")).await?;
        }
    }
    Ok(())
}

fn detail(e: &StoreError) -> String {
    match e {
        StoreError::Engine(civicflow_engine::EngineError::InvalidForm(fields)) => fields
            .iter()
            .map(|(p, m)| format!("{}: {m}", if p.is_empty() { "/" } else { p }))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn str_field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str, Failure> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| fail(at, format!("needs `{key}`")))
}

/// Run one step's action. The outer error is a malformed step; the inner one is the
/// action's own result, which the step may expect.
async fn perform(
    runtime: &Runtime,
    clock: &ManualClock,
    step: &Value,
    at: &str,
    current: &mut Option<String>,
    named: &mut std::collections::HashMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Result<Result<(), StoreError>, Failure> {
    if let Some(s) = step.get("start") {
        let at = format!("{at}/start");
        let person = str_field(s, "as", &at)?;
        let workflow = str_field(s, "workflow", &at)?;
        let unit = str_field(s, "unit", &at)?;
        let data = s.get("data").cloned().unwrap_or(Value::Null);
        return Ok(match runtime.start(person, workflow, unit, data).await {
            Ok(applied) => {
                if let Some(n) = s.get("name").and_then(Value::as_str) {
                    named.insert(n.to_string(), applied.id.clone());
                }
                *current = Some(applied.instance.id);
                Ok(())
            }
            Err(e) => Err(e),
        });
    }
    for verb in ["complete", "claim", "withdraw"] {
        if let Some(s) = step.get(verb) {
            let at = format!("{at}/{verb}");
            if let Some(n) = s.get("instance").and_then(Value::as_str) {
                *current = Some(
                    named
                        .get(n)
                        .cloned()
                        .ok_or_else(|| fail(&format!("{at}/instance"), format!("no instance named \"{n}\"")))?,
                );
            }
            let id = current.as_deref().ok_or_else(|| fail(&at, "no instance started yet"))?;
            let person = str_field(s, "as", &at)?;
            let state = str_field(s, "state", &at)?;
            let tasks = runtime
                .store
                .instance_tasks(id)
                .await
                .map_err(|e| fail(&at, e.to_string()))?;
            // The open task of the state, else its latest closed one, so that acting after
            // the state closed is refused by the runtime for its own reason.
            let open = tasks
                .iter()
                .rev()
                .find(|t| t.task.state == state && t.status == TaskStatus::Open);
            let Some(task) = open.or_else(|| tasks.iter().rev().find(|t| t.task.state == state)) else {
                let open: Vec<&str> = tasks
                    .iter()
                    .filter(|t| t.status == TaskStatus::Open)
                    .map(|t| t.task.state.as_str())
                    .collect();
                // Refused like any action, so a step can expect it (`error: not_found`).
                return Ok(Err(StoreError::NotFound(format!(
                    "no task in state \"{state}\"; open tasks: {open:?}"
                ))));
            };
            let result = match verb {
                "claim" => runtime.claim(person, &task.task.id).await,
                "withdraw" => runtime.withdraw(person, &task.task.id).await,
                _ => {
                    let mut data = s.get("data").cloned().unwrap_or(Value::Null);
                    if let Some(code) = data.get_mut("code")
                        && code == "$code"
                    {
                        *code = Value::String(named.get("$code").cloned().unwrap_or_default());
                    }
                    runtime.complete(person, &task.task.id, data).await
                }
            };
            return Ok(result.map(|_| ()));
        }
    }
    if let Some(s) = step.get("signal") {
        // A callback as a provider would send it: the body signed with the file's secret
        // (or `signature` as given), `$instance` standing for the current instance's id.
        let at = format!("{at}/signal");
        let workflow = str_field(s, "workflow", &at)?;
        let name = str_field(s, "name", &at)?;
        let id = current.clone().unwrap_or_default();
        let mut body = s.get("body").cloned().unwrap_or(Value::Null);
        if let Some(map) = body.as_object_mut() {
            for v in map.values_mut().filter(|v| *v == "$instance") {
                *v = Value::String(id.clone());
            }
        }
        let body = serde_json::to_vec(&body).expect("JSON serializes");
        let signature = match s.get("signature").and_then(Value::as_str) {
            Some(given) => given.to_string(),
            None => {
                let secret_name = runtime
                    .registry
                    .latest(workflow)
                    .and_then(|wf| wf.def.signals.get(name).map(|d| d.secret.clone()))
                    .ok_or_else(|| fail(&at, format!("workflow \"{workflow}\" declares no signal \"{name}\"")))?;
                let secret = secrets
                    .get(&secret_name)
                    .ok_or_else(|| fail(&at, format!("the file's `secrets` has no {secret_name} to sign with")))?;
                civicflow_store::signals::sign(secret, &body)
            }
        };
        let outcome = runtime.signal(workflow, name, &body, &signature).await;
        if let (Ok(o), Some(want)) = (&outcome, s.get("outcome").and_then(Value::as_str))
            && o.as_str() != want
        {
            let message = format!("expected the signal to be {want}, it was {}", o.as_str());
            return Err(fail(&format!("{at}/outcome"), message));
        }
        return Ok(outcome.map(|_| ()));
    }
    if let Some(s) = step.get("find") {
        // Switch to an instance a schedule started: the newest of `workflow` whose data
        // contains `data`.
        let at = format!("{at}/find");
        let workflow = str_field(s, "workflow", &at)?;
        let want = s
            .get("data")
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let all = runtime
            .store
            .instances_of(workflow, 10_000)
            .await
            .map_err(|e| fail(&at, e.to_string()))?;
        let found = all.iter().rev().find(|i| subset(&want, &i.data, "data").is_none());
        *current = Some(
            found
                .ok_or_else(|| fail(&at, format!("no instance of \"{workflow}\" has data like {want}")))?
                .id
                .clone(),
        );
        return Ok(Ok(()));
    }
    if let Some(s) = step.get("code") {
        let at = format!("{at}/code");
        let id = current.as_deref().ok_or_else(|| fail(&at, "no instance started yet"))?;
        let person = str_field(s, "as", &at)?;
        let state = str_field(s, "state", &at)?;
        return Ok(match runtime.check_in_code(person, id, state).await {
            Ok((code, _)) => {
                named.insert("$code".into(), code);
                Ok(())
            }
            Err(e) => Err(e),
        });
    }
    if let Some(d) = step.get("advance") {
        let at = format!("{at}/advance");
        let text = d
            .as_str()
            .ok_or_else(|| fail(&at, "advance needs a duration like 25h or P1Y"))?;
        let span = Span::parse(text).map_err(|e| fail(&at, e.0))?;
        let to = span
            .after(civicflow_engine::Clock::now(clock), None)
            .map_err(|e| fail(&at, format!("advance by a span without working days: {e}")))?;
        clock.set(to);
        // Fire until quiet: a timer's transition may arm another timer that is already due.
        loop {
            let fired = runtime
                .fire_due_timers(1000)
                .await
                .map_err(|e| fail(&at, e.to_string()))?;
            let started = runtime
                .run_due_schedules()
                .await
                .map_err(|e| fail(&at, e.to_string()))?;
            if fired + started == 0 {
                break;
            }
        }
        return Ok(Ok(()));
    }
    if step.get("expect").is_some() {
        return Ok(Ok(()));
    }
    Err(fail(
        at,
        "a step needs one of start, complete, claim, withdraw, code, find, advance, expect",
    ))
}

async fn check_expect(runtime: &Runtime, id: &str, expect: &Value, at: &str) -> Result<(), Failure> {
    let instance = runtime.store.instance(id).await.map_err(|e| fail(at, e.to_string()))?;
    if let Some(states) = expect.get("states") {
        let want = string_set(states, &format!("{at}/states"))?;
        let got: BTreeSet<String> = instance.position.tokens.iter().cloned().collect();
        if want != got {
            return Err(fail(
                &format!("{at}/states"),
                format!("expected states {want:?}, got {got:?}"),
            ));
        }
    }
    if let Some(parts) = expect.get("composition") {
        let want: Vec<String> = parts
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        let mut got = vec![format!("{}@{}", instance.workflow, instance.workflow_version)];
        got.extend(instance.overlays.iter().map(ToString::to_string));
        if want != got {
            return Err(fail(
                &format!("{at}/composition"),
                format!("expected the instance to run {want:?}, it runs {got:?}"),
            ));
        }
    }
    if let Some(status) = expect.get("status").and_then(Value::as_str)
        && status != instance.status.as_str()
    {
        let message = format!("expected status {status}, got {}", instance.status.as_str());
        return Err(fail(&format!("{at}/status"), message));
    }
    if let Some(data) = expect.get("data")
        && let Some(problem) = subset(data, &instance.data, "data")
    {
        return Err(fail(&format!("{at}/data"), problem));
    }
    if let Some(tasks) = expect.get("tasks") {
        let want = string_set(tasks, &format!("{at}/tasks"))?;
        let all = runtime
            .store
            .instance_tasks(id)
            .await
            .map_err(|e| fail(at, e.to_string()))?;
        let got: BTreeSet<String> = all
            .iter()
            .filter(|t| t.status == TaskStatus::Open)
            .map(|t| t.task.state.clone())
            .collect();
        if want != got {
            return Err(fail(
                &format!("{at}/tasks"),
                format!("expected open tasks {want:?}, got {got:?}"),
            ));
        }
    }
    if let Some(states) = expect.get("no_task") {
        let unwanted = string_set(states, &format!("{at}/no_task"))?;
        let all = runtime
            .store
            .instance_tasks(id)
            .await
            .map_err(|e| fail(at, e.to_string()))?;
        if let Some(t) = all
            .iter()
            .find(|t| t.status == TaskStatus::Open && unwanted.contains(&t.task.state))
        {
            return Err(fail(
                &format!("{at}/no_task"),
                format!("state \"{}\" has an open task", t.task.state),
            ));
        }
    }
    if let Some(due) = expect.get("due").and_then(Value::as_object) {
        for (state, want) in due {
            let here = format!("{at}/due/{state}");
            let want = want
                .as_str()
                .and_then(civicflow_engine::time::parse_instant)
                .ok_or_else(|| fail(&here, "expected an RFC 3339 time"))?;
            match instance.position.due.get(state) {
                Some(got) if *got == want => {}
                Some(got) => {
                    let message = format!(
                        "the limit of \"{state}\" is {}, expected {}",
                        civicflow_engine::time::canonical(*got),
                        civicflow_engine::time::canonical(want)
                    );
                    return Err(fail(&here, message));
                }
                None => return Err(fail(&here, format!("state \"{state}\" has no time limit"))),
            }
        }
    }
    if let Some(absent) = expect.get("events_absent") {
        let unwanted = string_set(absent, &format!("{at}/events_absent"))?;
        let log = runtime.store.events(id).await.map_err(|e| fail(at, e.to_string()))?;
        if let Some(e) = log.iter().find(|e| unwanted.contains(&e.kind)) {
            return Err(fail(
                &format!("{at}/events_absent"),
                format!("event \"{}\" is in the log (event {})", e.kind, e.seq),
            ));
        }
    }
    if let Some(events) = expect.get("events") {
        let want: Vec<String> = string_set(events, &format!("{at}/events"))?.into_iter().collect();
        let want_ordered: Vec<&str> = events
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let log = runtime.store.events(id).await.map_err(|e| fail(at, e.to_string()))?;
        let kinds: Vec<&str> = log.iter().map(|e| e.kind.as_str()).collect();
        let mut rest = kinds.iter();
        for w in &want_ordered {
            if !rest.any(|k| k == w) {
                return Err(fail(
                    &format!("{at}/events"),
                    format!("expected events {want:?} in this order; the log is {kinds:?}"),
                ));
            }
        }
    }
    if let Some(notified) = expect.get("notified").and_then(Value::as_object) {
        let log = runtime.store.events(id).await.map_err(|e| fail(at, e.to_string()))?;
        for (template, people) in notified {
            let here = format!("{at}/notified/{template}");
            let want = string_set(people, &here)?;
            let got: BTreeSet<String> = log
                .iter()
                .filter_map(|e| match &e.event {
                    Some(Event::Notified {
                        template: t,
                        recipients,
                        ..
                    }) if t == template => recipients.clone(),
                    _ => None,
                })
                .flatten()
                .collect();
            if want != got {
                return Err(fail(
                    &here,
                    format!("expected \"{template}\" to reach {want:?}, it reached {got:?}"),
                ));
            }
        }
    }
    Ok(())
}

fn string_set(v: &Value, at: &str) -> Result<BTreeSet<String>, Failure> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .ok_or_else(|| fail(at, "expected a list of names"))
}

/// Every key in `want` has the same value in `got` (objects compared recursively). A list
/// matches when each wanted item matches some item of it (`[]` wants an empty list), so a
/// scenario can look for one ballot among many.
fn subset(want: &Value, got: &Value, path: &str) -> Option<String> {
    match (want, got) {
        (Value::Array(w), Value::Array(g)) => {
            if w.is_empty() && !g.is_empty() {
                return Some(format!("{path} has {} item(s), expected none", g.len()));
            }
            w.iter().enumerate().find_map(|(i, wv)| {
                let found = g.iter().any(|gv| subset(wv, gv, path).is_none());
                (!found).then(|| format!("{path} has no item like {wv} (wanted item {i}); it is {got}"))
            })
        }
        (Value::Object(w), Value::Object(g)) => w.iter().find_map(|(k, wv)| match g.get(k) {
            None => Some(format!("{path}.{k} is missing (expected {wv})")),
            Some(gv) => subset(wv, gv, &format!("{path}.{k}")),
        }),
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => None,
        (w, g) if w == g => None,
        (w, g) => Some(format!("{path} is {g}, expected {w}")),
    }
}
