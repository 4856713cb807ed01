//! Microseconds per rule call: the shipped `dues-rate-national` plugin through the host
//! (fresh pooled instance, fuel, epoch deadline, JSON in and out, every call) beside the
//! same Rust function called natively with the same JSON in and out.
//!
//! `cargo run --release -p civicflow-plugin-host --example plugin_bench` (build the plugins
//! first with `plugins/build`).

use civicflow_plugin_host::{Host, Limits};
use serde_json::{Value, json};
use std::time::Instant;

const CALLS: usize = 20_000;
const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugins/dues-rate-national/plugin.wasm"
    );
    let wasm = std::fs::read(path).expect("plugins/dues-rate-national/plugin.wasm: run plugins/build first");
    let host = Host::new(None).expect("host");
    let plugin = host.load("dues-rate-national", "1.0.0", &wasm).expect("plugin loads");
    let limits = Limits::default();
    let inputs: Vec<Value> = (0..64).map(|i| json!({"data": {"income": 2000 + i * 250, "category": if i % 5 == 0 { "retired" } else { "employed" }}})).collect();

    let native = |input: &Value| -> Value {
        let parsed: dues_rate_national::Input = serde_json::from_value(input.clone()).expect("input");
        serde_json::to_value(dues_rate_national::rate(parsed).expect("rate")).expect("output")
    };
    // The two must agree before their speed means anything.
    for input in &inputs {
        assert_eq!(
            host.call(&plugin, "dues.rate", input, &limits).unwrap().output,
            native(input)
        );
    }

    let (mut wasm_us, mut native_us, mut fuel) = (Vec::new(), Vec::new(), 0);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for i in 0..CALLS {
            fuel = host
                .call(&plugin, "dues.rate", &inputs[i % inputs.len()], &limits)
                .unwrap()
                .fuel_used;
        }
        wasm_us.push(t.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
        let t = Instant::now();
        for i in 0..CALLS {
            std::hint::black_box(native(std::hint::black_box(&inputs[i % inputs.len()])));
        }
        native_us.push(t.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
    }
    let (w, n) = (median(wasm_us), median(native_us));
    println!("dues-rate-national, {CALLS} calls x {ROUNDS} rounds, medians:");
    println!("  plugin (fresh pooled instance per call): {w:.2} us/call  ({fuel} instructions of fuel)");
    println!("  native Rust function:                    {n:.2} us/call");
    println!("  ratio plugin/native:                     {:.1}x", w / n);
}
