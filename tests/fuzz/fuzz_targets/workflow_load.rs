//! Any text as a workflow file: diagnostics or a workflow, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let loaded = civicflow_engine::validate::load("fuzz.yaml", text);
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
});
