//! End-to-end tests of the `civicflow` binary: validate, test, import, audit, serve.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn civicflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_civicflow"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run civicflow")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn shipped_workflows_validate() {
    let out = civicflow(&["validate", "workflows/"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("0 error(s)"));
}

#[test]
fn three_mistakes_give_three_located_diagnostics() {
    let out = civicflow(&["validate", "tests/fixtures/three-mistakes.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 3, "{text}");
    assert!(
        errors[0].starts_with(
            "tests/fixtures/three-mistakes.yaml:11:20: error: undefined role \"clerck\"; did you mean \"clerk\"?"
        ),
        "{text}"
    );
    assert!(
        errors[1].starts_with("tests/fixtures/three-mistakes.yaml:12:10: error: bad duration \"3 days\""),
        "{text}"
    );
    assert!(
        errors[2].starts_with(
            "tests/fixtures/three-mistakes.yaml:16:13: error: unknown state \"rejectd\"; did you mean \"rejected\"?"
        ),
        "{text}"
    );
    // A schema error does not hide a meaning error in the same file.
    let out = civicflow(&["validate", "tests/fixtures/schema-and-meaning.yaml"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("schema-and-meaning.yaml:11:5: error:") && text.contains("colour"),
        "{text}"
    );
    assert!(
        text.contains("schema-and-meaning.yaml:12:") && text.contains("undefined role \"reviewer\""),
        "{text}"
    );
}

#[test]
fn form_hints_naming_missing_fields_are_errors_at_their_line() {
    let out = civicflow(&["validate", "tests/fixtures/ui-typos.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let at = |line: &str| format!("tests/fixtures/ui-typos.yaml:{line}: error: ");
    for expected in [
        format!(
            "{}no field \"reasn\" in this form's schema; did you mean \"reason\"?",
            at("22:21")
        ),
        format!(
            "{}no field \"day\" in this form's schema; did you mean \"days\"?",
            at("25:14")
        ),
        format!(
            "{}no field \"nam\" in this form's schema; did you mean \"name\"?",
            at("29:20")
        ),
    ] {
        assert!(text.contains(&expected), "{expected}\n{text}");
    }
}

#[test]
fn shipped_scenarios_pass_and_failures_point_at_the_line() {
    let out = civicflow(&["test", "workflows/"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.trim_end().ends_with(" passed, 0 failed"), "{text}");

    let out = civicflow(&["test", "tests/fixtures/failing.test.yaml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("tests/fixtures/failing.test.yaml:7:26: error: scenario \"expects the wrong state\": expected states {\"closed\"}, got {\"dispatch\"}"), "{text}");
    assert!(text.trim_end().ends_with("0 passed, 1 failed"), "{text}");

    // Keys the runner does not know are errors at their line, every one of them.
    let out = civicflow(&["test", "tests/fixtures/typos.test.yaml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for (line, what) in [(8, "expct"), (10, "stats"), (12, "kind")] {
        assert!(
            text.contains(&format!("typos.test.yaml:{line}:")),
            "line {line}: {text}"
        );
        assert!(text.contains(what) || line == 12, "{what}: {text}");
    }
    // Values a locality decides by rule: role, unit, limit, escalation, amount; null is "off".
    let out = civicflow(&["test", "tests/fixtures/locality-rules.test.yaml"]);
    assert!(out.status.success(), "{}", stdout(&out));
    // A binding to a hook the workflow does not have is refused before anything runs.
    let out = civicflow(&["test", "tests/fixtures/bad-binding.test.yaml"]);
    let text = stdout(&out);
    assert!(
        text.contains("bad-binding.test.yaml:5:5: error: workflow \"ticket\" has no rule hook \"ticket.rout\""),
        "{text}"
    );
}

#[test]
fn import_rejects_bad_rows_whole_then_accepts_spreadsheets() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("org.db").display());
    let out = civicflow(&["import", "--units", "tests/fixtures/bad-units.csv", "--db", &db]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad-units.csv:4: unknown unit kind \"planet\""), "{text}");
    assert!(
        text.contains("bad-units.csv:5: unknown parent unit \"nowhere\""),
        "{text}"
    );
    assert!(text.contains("nothing was imported"), "{text}");

    let out = civicflow(&[
        "import",
        "--units",
        "tests/fixtures/units.xlsx",
        "--people",
        "tests/fixtures/people.xlsx",
        "--db",
        &db,
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("imported 3 unit(s), 2 person(s), 3 role grant(s)"),
        "{}",
        stdout(&out)
    );

    // One cell at XFD1048576 in a 5 KB workbook: refused at its row, not 17 billion cells
    // allocated (it was OOM-killed at 20.9 GB).
    let out = civicflow(&["import", "--units", "tests/fixtures/bomb-units.xlsx", "--db", &db]);
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("bomb-units.xlsx:1048576: a cell in column 16384 is beyond the 100 columns an import reads"),
        "{text}"
    );
    // A cell name long enough to overflow the spreadsheet library's column arithmetic (found
    // by fuzzing): the file is refused, the import does not panic.
    let out = civicflow(&[
        "import",
        "--units",
        "tests/fixtures/overflow-cell-name.xlsx",
        "--db",
        &db,
    ]);
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the file is damaged and cannot be read"), "{text}");
    // An 830-byte .ods whose row repeats 6,000 times across 16,384 columns: its reader builds
    // the whole range first (before: out of memory at 8 GB). Only CSV and XLSX are read.
    let out = civicflow(&["import", "--units", "tests/fixtures/bomb-units.ods", "--db", &db]);
    let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("unsupported file type \".ods\": save it as .xlsx or .csv"),
        "{text}"
    );
}

#[test]
fn bad_command_lines_are_refused_clearly() {
    let out = civicflow(&["import"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to import"));
    let out = civicflow(&["validate", "no/such/file.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file or folder"));
    let out = civicflow(&["audit", "verify", "--db", "mysql://x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
    let out = civicflow(&["serve", "--listen", "not-an-address", "--db", "sqlite::memory:"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on not-an-address"));
}

/// Kill the server when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        buf.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

#[test]
fn serve_demo_answers_health_and_lists_workflows_then_audit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("demo.db").display());
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_civicflow"))
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}"), "--db", &db])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Some(r) = get(port, "/healthz") {
            break r;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health.0, 200);
    let (status, body) = get(port, "/api/workflows").unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("\"id\":\"ticket\"") && body.contains("事件上报与闭环"),
        "{body}"
    );

    let out = civicflow(&["audit", "verify", "--db", &db]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("0 broken"));
}

#[test]
fn shipped_plugins_pass_their_cases() {
    let out = civicflow(&["plugin", "test", "plugins/"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.trim_end().ends_with(" passed, 0 failed"), "{text}");
}

/// A locality admin's path: trust a key for the district, sign, publish, bind.
#[test]
fn locality_admin_signs_publishes_and_binds_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    let run = |args: &[&str]| {
        let out = civicflow(args);
        (
            out.status.success(),
            format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = run(&[
        "import",
        "--units",
        "workflows/org/units.csv",
        "--people",
        "workflows/org/people.csv",
        "--db",
        &db,
    ]);
    assert!(ok, "{text}");

    // A copy of the package, so signing does not touch the repository.
    let package = dir.path().join("ticket-route");
    std::fs::create_dir_all(&package).unwrap();
    for f in ["plugin.yaml", "plugin.wasm"] {
        std::fs::copy(root().join("plugins/ticket-route").join(f), package.join(f)).unwrap();
    }
    let package = package.display().to_string();
    let key_file = dir.path().join("beichen.key").display().to_string();
    let out = civicflow(&["plugin", "keygen", &key_file]);
    let public = stdout(&out).trim().to_string();
    let (ok, text) = run(&["plugin", "trust", "--unit", "beichen", "--key", &public, "--db", &db]);
    assert!(ok, "{text}");

    let (ok, text) = run(&["plugin", "publish", &package, "--db", &db]);
    assert!(
        !ok && text.contains("must be signed"),
        "unsigned is refused once the district trusts a key: {text}"
    );
    let (ok, text) = run(&["plugin", "sign", &package, "--key", &key_file]);
    assert!(ok, "{text}");
    let (ok, text) = run(&["plugin", "publish", &package, "--db", &db]);
    assert!(ok && text.contains("ticket-route-beichen@1.1.0: published"), "{text}");

    let bind = |workflow: &str, hook: &str| {
        run(&[
            "plugin",
            "bind",
            "--unit",
            "beichen",
            "--workflow",
            workflow,
            "--hook",
            hook,
            "--plugin",
            "ticket-route-beichen@1.1.0",
            "--db",
            &db,
        ])
    };
    let (ok, text) = bind("ticket", "ticket.route");
    assert!(!ok && text.contains("no workflow \"ticket\" is published"), "{text}");
    let (ok, text) = run(&["publish", "workflows/ticket.yaml", "--db", &db]);
    assert!(ok, "{text}");
    let (ok, text) = bind("ticket", "ticket.rout");
    assert!(
        !ok && text.contains("has no rule hook \"ticket.rout\"") && text.contains("ticket.route"),
        "{text}"
    );
    let (ok, text) = run(&[
        "plugin",
        "bind",
        "--unit",
        "beichen",
        "--workflow",
        "ticket",
        "--hook",
        "ticket.route",
        "--plugin",
        "ticket-route-beichen@1.1.0",
        "--db",
        &db,
    ]);
    assert!(ok, "{text}");
}

/// `seed --city` at 0.0001: ten grids, 210 tickets.
fn seed_tiny_city(db: &str) -> Output {
    let workflows = root().join("workflows");
    civicflow(&[
        "seed",
        "--city",
        "--scale",
        "0.0001",
        "--workflows",
        workflows.to_str().unwrap(),
        "--db",
        db,
    ])
}

/// The city generator and the scale benchmark run end to end on a tiny city and print
/// `name: value unit` lines (the figures themselves are read, not asserted).
#[test]
fn a_tiny_city_seeds_and_the_scale_benchmark_prints_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("city.db").display());
    let seeded = seed_tiny_city(&db);
    let out = stdout(&seeded);
    assert!(
        seeded.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    assert!(out.contains("seed_tickets: 200 closed + 10 open"), "{out}");
    let bench = civicflow(&["bench-scale", "--scale", "0.0001", "--requests", "8", "--db", &db]);
    let out = stdout(&bench);
    assert!(
        bench.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    for name in [
        "scale_api_tasks_dispatcher_p99",
        "scale_page_tasks_dispatcher_p50",
        "scale_api_complete_task_p99",
        "scale_16_clients_write_p99",
        "scale_16_clients_page_tasks_p99",
    ] {
        assert!(figure(&out, name, "ms") > 0.0, "{name} in {out}");
    }
}

/// The value of a benchmark's `name: value unit` line in `out`, which must be in `unit`.
fn figure(out: &str, name: &str, unit: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("{name} in {out}"));
    assert!(line.ends_with(&format!(" {unit}")), "{line}");
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_ticket_benchmark_runs_in_process_over_http_and_against_a_peer() {
    let workflows = root().join("workflows");
    let plan = root().join("tests/fixtures/city-tickets.yaml");
    let steps = root().join("tests/peers/steps.json");
    let rate = |args: &[&str], name: &str| {
        let mut all = vec!["bench-tickets", "--tickets", "4", "--concurrency", "2"];
        all.extend_from_slice(args);
        all.extend([
            "--workflows",
            workflows.to_str().unwrap(),
            "--plan",
            plan.to_str().unwrap(),
        ]);
        all.extend(["--peer-steps", steps.to_str().unwrap()]);
        let run = civicflow(&all);
        let out = stdout(&run);
        assert!(run.status.success(), "{out}{}", String::from_utf8_lossy(&run.stderr));
        assert!(figure(&out, name, "tickets/s") > 0.0, "{name} in {out}");
    };
    rate(&[], "civicflow_inprocess_2_clients");
    rate(&["--http"], "civicflow_http_2_clients");

    // A peer that answers every call and notes what it was asked: each ticket is one start
    // and the five steps of steps.json in order.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let notes = asked.clone();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        for stream in listener.incoming() {
            let notes = notes.clone();
            std::thread::spawn(move || {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut request = String::new();
                    if reader.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let path = request.split(' ').nth(1).unwrap().to_string();
                    notes.lock().unwrap().push(path);
                    let answer = r#"{"id":"t1"}"#;
                    write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    )
                    .unwrap();
                }
            });
        }
    });
    rate(&["--peer", &url, "--peer-name", "echo"], "echo_http_2_clients");
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 4 * 6, "{asked:?}");
    for task in ["dispatch", "accept", "handle", "verify", "rate"] {
        let path = format!("/tickets/t1/{task}");
        assert_eq!(asked.iter().filter(|p| **p == path).count(), 4, "{path} in {asked:?}");
    }
    assert_eq!(asked.iter().filter(|p| *p == "/tickets").count(), 4);
}

/// A new empty PostgreSQL database `name` on the server of `url`; its URL.
fn fresh_pg_database(url: &str, name: &str) -> String {
    let made = std::process::Command::new("psql")
        .args([
            url,
            "-qc",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    format!("{}/{name}", url.rsplit_once('/').unwrap().0)
}

fn drop_pg_database(url: &str, name: &str) {
    let _ = std::process::Command::new("psql")
        .args([url, "-qc", &format!("DROP DATABASE IF EXISTS {name}")])
        .output();
}

/// A city's database backed up while it is open and restored into a fresh one keeps every
/// instance, every hash chain intact; SQLite always, PostgreSQL when `CIVICFLOW_TEST_PG` is
/// set (into databases of its own, dropped after).
#[test]
fn a_backup_restores_into_a_fresh_database_with_every_chain_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = vec![(
        format!("sqlite://{}", dir.path().join("city.db").display()),
        format!("sqlite://{}", dir.path().join("restored.db").display()),
    )];
    let pg = std::env::var("CIVICFLOW_TEST_PG").ok().map(|url| {
        let names = [
            format!("cf_backup_src_{}", std::process::id()),
            format!("cf_backup_dst_{}", std::process::id()),
        ];
        let dbs = names.iter().map(|n| fresh_pg_database(&url, n)).collect::<Vec<_>>();
        (url, dbs, names)
    });
    if let Some((_, dbs, _)) = &pg {
        pairs.push((dbs[0].clone(), dbs[1].clone()));
    }
    for (i, (source, target)) in pairs.iter().enumerate() {
        let seeded = seed_tiny_city(source);
        assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
        let file = dir.path().join(format!("backup-{i}"));
        let file = file.to_str().unwrap();
        let backup = civicflow(&["backup", "--to", file, "--db", source]);
        assert!(
            backup.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&backup.stderr)
        );
        let again = civicflow(&["backup", "--to", file, "--db", source]);
        assert!(!again.status.success(), "an existing file was overwritten");
        let restore = civicflow(&["restore", "--from", file, "--db", target]);
        let out = stdout(&restore);
        assert!(
            restore.status.success(),
            "{target}: {out}{}",
            String::from_utf8_lossy(&restore.stderr)
        );
        // 210 tickets, and the seed's own instances if any: every one checked, none broken.
        let source_count = stdout(&civicflow(&["audit", "verify", "--db", source]));
        let checked = source_count.split(' ').next().unwrap();
        assert!(checked.parse::<usize>().unwrap() >= 210, "{source_count}");
        assert!(
            out.contains(&format!(": {checked} instance(s) checked, 0 broken")),
            "{out} against {source_count}"
        );
        let twice = civicflow(&["restore", "--from", file, "--db", target]);
        assert!(!twice.status.success(), "{target}: restored over data");
    }
    if let Some((url, _, names)) = pg {
        for name in names {
            drop_pg_database(&url, &name);
        }
    }
}

/// The hostile gallery bound at one community while another works (a short run of
/// `bench-neighbour`; its full figures are in BENCHMARKS.md): each module the host must
/// refuse is refused with its reason, each bound one's every call is answered and noted on
/// its instance as a failed rule with its reason, and the neighbour's requests all succeed.
#[test]
fn hostile_plugins_at_one_community_are_contained_while_another_works() {
    let run = civicflow(&[
        "bench-neighbour",
        "--levies",
        "60",
        "--clients",
        "2",
        "--hostile-clients",
        "2",
    ]);
    let out = stdout(&run);
    assert!(run.status.success(), "{out}");
    for (name, how) in [
        ("wrong_abi", "refused at upload: abi_version"),
        ("forbidden_import", "refused at upload: forbidden_import"),
        ("compile_bomb", "refused at upload: too_complex"),
        ("absurd_limits", "refused at bind: limits.fuel"),
    ] {
        assert!(out.contains(&format!("contained_{name}: {how}")), "{name} in {out}");
    }
    for name in [
        "endless_loop",
        "memory_growth",
        "deep_recursion",
        "huge_output",
        "bad_json",
        "log_flood",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("contained_{name}: ")))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        let noted: usize = line.split(' ').nth(1).unwrap().parse().unwrap();
        assert!(noted > 0, "{line}");
    }
    assert!(!out.contains("NOT CONTAINED"), "{out}");
    assert_eq!(figure(&out, "neighbour_failed_requests", "requests"), 0.0);
    assert_eq!(figure(&out, "hostile_unanswered", "requests"), 0.0);
    assert_eq!(figure(&out, "audit_broken_chains", "chains"), 0.0);
    assert!(figure(&out, "neighbour_p99_ratio", "x") > 0.0);
}

/// `kill -9` at random moments under load with Idempotency-Keys, then everything checked
/// (`crash-check`; its long runs are in the README): on SQLite, and on PostgreSQL when
/// `CIVICFLOW_TEST_PG` is set (in a database of its own, dropped after).
#[test]
fn killed_servers_lose_and_duplicate_nothing_they_acknowledged() {
    let mut dbs = vec![None];
    let pg = std::env::var("CIVICFLOW_TEST_PG").ok().map(|url| {
        let name = format!("cf_crash_{}", std::process::id());
        (url.clone(), fresh_pg_database(&url, &name), name)
    });
    if let Some((_, db, _)) = &pg {
        dbs.push(Some(db.clone()));
    }
    for db in dbs {
        let mut args = vec!["crash-check", "--kills", "4", "--clients", "4", "--reports", "100"];
        if let Some(db) = &db {
            args.extend(["--db", db]);
        }
        let run = civicflow(&args);
        let out = stdout(&run);
        assert!(
            run.status.success(),
            "{db:?}: {out}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(figure(&out, "crash_kills", "kills"), 4.0);
        assert!(figure(&out, "crash_acknowledged", "requests") >= 100.0, "{out}");
        for zero in ["crash_lost", "crash_duplicated"] {
            assert_eq!(figure(&out, zero, "requests"), 0.0, "{out}");
        }
        assert_eq!(figure(&out, "crash_keys_answered_differently", "keys"), 0.0, "{out}");
        assert_eq!(figure(&out, "crash_timers_not_fired_once", "timers"), 0.0, "{out}");
        assert!(out.contains(" instances, 0 broken"), "{out}");
    }
    if let Some((url, _, name)) = pg {
        drop_pg_database(&url, &name);
    }
}
