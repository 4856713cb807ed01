//! What the compile limits buy: the time and peak memory of compiling the costliest modules
//! that pass `COMPILE_LIMITS` (each as large as an upload may be), the time to refuse the
//! compile bomb, and the shipped plugins for scale. Prints `name: value unit` lines.
//!
//!     cargo run --release -p civicflow-plugin-host --example compile_cost

use civicflow_plugin_host::{COMPILE_LIMITS, Host, PluginError, manifest::MAX_MODULE_BYTES};
use std::time::Instant;

fn leb(mut n: usize, out: &mut Vec<u8>) {
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

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len(), out);
    out.extend_from_slice(body);
}

/// A module of `count` functions of type `[] -> []`, each with `locals` i32 locals and the
/// given code (without its final `end`).
fn module(count: usize, locals: usize, code: &[u8]) -> Vec<u8> {
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut out);
    let mut funcs = Vec::new();
    leb(count, &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, count));
    section(3, &funcs, &mut out);
    let mut body = Vec::new();
    if locals == 0 {
        body.push(0);
    } else {
        body.push(1);
        leb(locals, &mut body);
        body.push(0x7f);
    }
    body.extend_from_slice(code);
    body.push(0x0b);
    let mut entry = Vec::new();
    leb(body.len(), &mut entry);
    entry.extend_from_slice(&body);
    let mut codes = Vec::new();
    leb(count, &mut codes);
    for _ in 0..count {
        codes.extend_from_slice(&entry);
    }
    section(10, &codes, &mut out);
    out
}

/// Fill `bytes` with copies of `unit`.
fn repeat(unit: &[u8], bytes: usize) -> Vec<u8> {
    unit.iter()
        .copied()
        .cycle()
        .take(bytes / unit.len() * unit.len())
        .collect()
}

/// Blocks nested `depth` deep, closed, again and again.
fn nested(depth: usize, bytes: usize) -> Vec<u8> {
    let mut unit = [0x02, 0x40].repeat(depth);
    unit.extend(std::iter::repeat_n(0x0b, depth));
    repeat(&unit, bytes)
}

/// Arithmetic over many locals: every value live across the function, for the allocator.
fn shuffled_locals(locals: usize, bytes: usize) -> Vec<u8> {
    let mut code = Vec::new();
    let mut i = 0usize;
    while code.len() + 12 < bytes {
        for (op, n) in [
            (0x20, i % locals),
            (0x20, (i * 7 + 3) % locals),
            (0x6a, 0),
            (0x21, (i * 13 + 5) % locals),
        ] {
            code.push(op);
            if op != 0x6a {
                leb(n, &mut code);
            }
        }
        i += 1;
    }
    code
}

/// `depth` blocks, then branch tables that jump to any of them.
fn branch_tables(depth: usize, targets: usize, bytes: usize) -> Vec<u8> {
    let mut code = [0x02, 0x40].repeat(depth);
    let mut table = vec![0x41, 0x00, 0x0e];
    leb(targets, &mut table);
    for t in 0..targets {
        leb(t % depth, &mut table);
    }
    table.push(0);
    while code.len() + table.len() + depth < bytes {
        code.extend_from_slice(&table);
    }
    code.extend(std::iter::repeat_n(0x0b, depth));
    code
}

/// Peak resident memory since the last reset, in MiB (Linux).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() {
    let host = Host::new(None).expect("host");
    let caps = COMPILE_LIMITS;
    let per = caps.function_bytes as usize - 64;
    let fill = (MAX_MODULE_BYTES - 1024) / (per + 8);
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        ("nested_at_cap", module(fill, 0, &nested(caps.nesting as usize, per))),
        (
            "locals_at_cap",
            module(fill, caps.locals as usize, &shuffled_locals(caps.locals as usize, per)),
        ),
        (
            "branch_tables",
            module(fill, 0, &branch_tables(caps.nesting as usize, 4096, per)),
        ),
        (
            "many_functions",
            module(
                caps.functions as usize,
                32,
                &shuffled_locals(32, MAX_MODULE_BYTES / caps.functions as usize - 16),
            ),
        ),
        ("bomb_1_3m_nested", module(1, 0, &nested(1_300_000, 3_900_000))),
    ];
    let baseline = peak_mib();
    for (name, wasm) in &shapes {
        reset_peak();
        let before = peak_mib();
        let started = Instant::now();
        let result = host.load(name, "1", wasm);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let outcome = match result {
            // These modules export no ABI: being refused for that means they compiled.
            Err(PluginError::MissingExport { .. }) => "compiled".to_string(),
            Err(PluginError::TooComplex(why)) => format!("refused ({why})"),
            Err(e) => format!("error ({e})"),
            Ok(_) => "loaded".into(),
        };
        println!("{name}_bytes: {} B", wasm.len());
        println!("{name}_ms: {ms:.0} ms  # {outcome}");
        println!("{name}_peak_rss: {:.0} MiB (from {before:.0})", peak_mib());
    }
    println!("baseline_rss: {baseline:.0} MiB");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins");
    for entry in std::fs::read_dir(shipped).expect("plugins folder").flatten() {
        let Ok(wasm) = std::fs::read(entry.path().join("plugin.wasm")) else {
            continue;
        };
        let has = civicflow_plugin_host::compile_limits::measure(&wasm).expect("shipped plugin parses");
        println!(
            "shipped_{}: {} functions, largest {} B, {} locals, nesting {}",
            entry.file_name().to_string_lossy(),
            has.functions,
            has.function_bytes,
            has.locals,
            has.nesting
        );
    }
}
