//! Any text as a workflow file: diagnostics or a workflow, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // Expressions are compiled behind a catch of minijinja's lexer panics; libFuzzer's hook
    // would abort before the catch. A panic that escapes still ends the run.
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    let loaded = civicflow_engine::validate::load("fuzz.yaml", text);
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
});
