//! The sandbox holds: each misbehaving module is stopped with its own typed error, and the
//! next call of a good plugin on the same host succeeds. WAT fixtures, no guest toolchain.

use civicflow_plugin_host::{Host, Limits, PluginError};
use serde_json::json;

/// A module speaking the ABI: `abi` is what it reports, `call` the body of
/// `civicflow_call` (which must leave an i64), `extra` more module fields.
fn module(abi: i32, call: &str, extra: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
          (import "civicflow" "log" (func $log (param i32 i32)))
          (memory (export "memory") 1)
          (global $heap (mut i32) (i32.const 1024))
          (data (i32.const 16) "{{\"ok\":42}}")
          (data (i32.const 32) "hello")
          (func (export "civicflow_abi_version") (result i32) (i32.const {abi}))
          (func (export "civicflow_alloc") (param $n i32) (result i32)
            (local $p i32)
            (local.set $p (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (local.get $n)))
            (local.get $p))
          (func (export "civicflow_call") (param $ptr i32) (param $len i32) (result i64) {call})
          {extra})"#
    );
    wat::parse_str(&wat).expect("fixture WAT parses")
}

const OK_42: &str =
    "(call $log (i32.const 32) (i32.const 5)) (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 9))";

fn good() -> Vec<u8> {
    module(1, OK_42, "")
}

fn assert_good_still_works(host: &Host) {
    let plugin = host.load("good", "1", &good()).unwrap();
    let report = host.call(&plugin, "x.y", &json!({}), &Limits::default()).unwrap();
    assert_eq!(report.output, json!(42));
    assert_eq!(report.logs, vec!["hello"]);
}

fn run(host: &Host, wasm: &[u8], limits: &Limits) -> PluginError {
    let plugin = host.load("bad", "1", wasm).expect("loads");
    let err = host.call(&plugin, "x.y", &json!({"a": 1}), limits).unwrap_err();
    assert_good_still_works(host);
    err
}

#[test]
fn a_good_plugin_answers_and_reports_its_costs() {
    let host = Host::new(None).unwrap();
    let plugin = host.load("good", "1", &good()).unwrap();
    let r = host.call(&plugin, "x.y", &json!({"n": 1}), &Limits::default()).unwrap();
    assert_eq!(r.output, json!(42));
    assert!(r.fuel_used > 0 && r.fuel_used < 1000, "{}", r.fuel_used);
    assert_eq!(r.memory_peak, 65536);
}

#[test]
fn an_infinite_loop_stops_on_fuel() {
    let host = Host::new(None).unwrap();
    let err = run(&host, &module(1, "(loop (br 0)) (i64.const 0)", ""), &Limits::default());
    assert_eq!(err, PluginError::OutOfFuel { limit: 10_000_000 });
}

#[test]
fn an_infinite_loop_stops_on_wall_time_when_fuel_would_last() {
    let host = Host::new(None).unwrap();
    let limits = Limits {
        fuel: u64::MAX / 2,
        wall_ms: 30,
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let err = run(&host, &module(1, "(loop (br 0)) (i64.const 0)", ""), &limits);
    assert_eq!(err, PluginError::WallTime { limit_ms: 30 });
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn a_memory_bomb_stops_at_the_memory_limit() {
    let host = Host::new(None).unwrap();
    let bomb = "(loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i64.const 0)";
    let limits = Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    };
    assert_eq!(
        run(&host, &module(1, bomb, ""), &limits),
        PluginError::Memory { limit: 4 << 20 }
    );
}

#[test]
fn deep_recursion_traps_cleanly() {
    let host = Host::new(None).unwrap();
    let deep = module(
        1,
        "(call $down (i32.const 0)) (i64.const 0)",
        "(func $down (param i32) (call $down (i32.add (local.get 0) (i32.const 1))))",
    );
    let err = run(&host, &deep, &Limits::default());
    assert!(
        matches!(&err, PluginError::Trap(m) if m.contains("call stack exhausted")),
        "{err:?}"
    );
}

#[test]
fn oversize_output_is_refused() {
    let host = Host::new(None).unwrap();
    let huge = "(i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 10485760))";
    assert_eq!(
        run(&host, &module(1, huge, ""), &Limits::default()),
        PluginError::OutputTooLarge {
            size: 10 << 20,
            limit: 64 << 10
        }
    );
}

#[test]
fn output_that_is_not_the_protocol_is_refused() {
    let host = Host::new(None).unwrap();
    let hello = "(i64.or (i64.shl (i64.const 32) (i64.const 32)) (i64.const 5))";
    assert!(matches!(
        run(&host, &module(1, hello, ""), &Limits::default()),
        PluginError::BadOutput(_)
    ));
}

#[test]
fn oversize_input_is_refused_before_running() {
    let host = Host::new(None).unwrap();
    let plugin = host.load("good", "1", &good()).unwrap();
    let limits = Limits {
        input_bytes: 100,
        ..Limits::default()
    };
    let err = host
        .call(&plugin, "x.y", &json!({"big": "x".repeat(200)}), &limits)
        .unwrap_err();
    assert!(matches!(err, PluginError::InputTooLarge { limit: 100, .. }), "{err:?}");
}

#[test]
fn a_wrong_abi_version_is_refused_at_upload() {
    let host = Host::new(None).unwrap();
    let err = host.load("v2", "1", &module(2, OK_42, "")).unwrap_err();
    assert_eq!(err, PluginError::AbiVersion { expected: 1, found: 2 });
    assert_eq!(
        err.to_string(),
        "plugin ABI version 2 is not supported: this host speaks version 1"
    );
    assert_good_still_works(&host);
}

#[test]
fn bad_modules_are_refused_at_upload_with_a_reason() {
    let host = Host::new(None).unwrap();
    assert!(matches!(
        host.load("junk", "1", b"not wasm at all").unwrap_err(),
        PluginError::InvalidModule(_)
    ));
    let wasi = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#,
    )
    .unwrap();
    assert_eq!(
        host.load("wasi", "1", &wasi).unwrap_err(),
        PluginError::ForbiddenImport("wasi_snapshot_preview1.fd_write".into())
    );
    let no_call = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "civicflow_abi_version") (result i32) (i32.const 1)) (func (export "civicflow_alloc") (param i32) (result i32) (i32.const 0)))"#).unwrap();
    let err = host.load("partial", "1", &no_call).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the module lacks the export `civicflow_call` (func (i32, i32) -> i64)"
    );
    assert_good_still_works(&host);
}

#[test]
fn compiled_modules_are_cached_on_disk_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(Some(dir.path())).unwrap();
    let first = host.load("good", "1", &good()).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(
        files[0].starts_with(&first.sha256) && files[0].ends_with(".cwasm"),
        "{files:?}"
    );
    drop(host);
    // A new host (a restart) loads from the cache and still runs it.
    let host = Host::new(Some(dir.path())).unwrap();
    let again = host.load("good", "1", &good()).unwrap();
    assert_eq!(
        host.call(&again, "x.y", &json!({}), &Limits::default()).unwrap().output,
        json!(42)
    );
}

/// Limits far above the maxima (a binding stored before they were checked) run under the
/// maxima: an endless loop asking for 2^64-1 fuel and milliseconds stops within a second.
#[test]
fn absurd_limits_are_held_to_the_maxima() {
    let host = Host::new(None).unwrap();
    let absurd = Limits {
        fuel: u64::MAX,
        wall_ms: u64::MAX,
        memory_bytes: usize::MAX,
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let err = run(&host, &module(1, "(loop (br 0)) (i64.const 0)", ""), &absurd);
    assert!(
        matches!(
            err,
            PluginError::WallTime { limit_ms: 1_000 } | PluginError::OutOfFuel { limit: 500_000_000 }
        ),
        "{err:?}"
    );
    assert!(started.elapsed().as_secs() < 5);
    let refused = absurd.check().unwrap_err();
    assert!(
        refused.contains("limits.fuel is 18446744073709551615; the most allowed is 500000000"),
        "{refused}"
    );
    assert!(refused.contains("limits.wall_ms"), "{refused}");
    assert!(Limits::default().check().is_ok());
    assert_good_still_works(&host);
}

/// A plugin calling `log` in a loop keeps at most `log_entries` entries of at most
/// `log_bytes` in all: host memory outside its sandbox stays bounded.
#[test]
fn a_log_flood_keeps_only_the_allowed_entries() {
    let host = Host::new(None).unwrap();
    let flood = "(local $i i32) (loop (call $log (i32.const 32) (i32.const 0)) \
                 (local.set $i (i32.add (local.get $i) (i32.const 1))) \
                 (br_if 0 (i32.lt_u (local.get $i) (i32.const 100000)))) \
                 (call $log (i32.const 32) (i32.const 5)) \
                 (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 9))";
    let plugin = host.load("flood", "1", &module(1, flood, "")).unwrap();
    let report = host.call(&plugin, "x.y", &json!({}), &Limits::default()).unwrap();
    assert_eq!(report.output, json!(42));
    assert_eq!(report.logs.len(), Limits::default().log_entries);
}

#[test]
fn a_compile_bomb_is_refused_before_compiling() {
    // One function of 300,000 nested blocks: Cranelift would take seconds and gigabytes.
    let depth = 300_000;
    let wasm = wat::parse_str(format!(
        "(module (func {}{}))",
        "block ".repeat(depth),
        "end ".repeat(depth)
    ))
    .unwrap();
    let host = Host::new(None).unwrap();
    let err = host.load("bomb", "1", &wasm).unwrap_err();
    assert_eq!(err.code(), "too_complex");
    assert!(
        err.to_string()
            .contains("300000 levels of nested blocks in one function (at most 256)"),
        "{err}"
    );
    assert_good_still_works(&host);
}
