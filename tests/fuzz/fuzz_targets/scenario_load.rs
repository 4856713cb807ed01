//! Any text as a scenario file (`*.test.yaml`): its shape checked (YAML, the scenario
//! schema, one action per step) with located problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Err(problems) = civicflow_engine::scenario_file::read("fuzz.test.yaml", text) {
        assert!(!problems.is_empty());
        for p in problems {
            let _ = p.to_string();
        }
    }
});
