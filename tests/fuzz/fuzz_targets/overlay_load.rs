//! Any text as a locality's overlay, loaded and composed over the shipped ticket workflow.
#![no_main]
use libfuzzer_sys::fuzz_target;

const BASE: &str = include_str!("../../../workflows/ticket.yaml");

fuzz_target!(|text: &str| {
    // Expressions are compiled behind a catch of minijinja's lexer panics; libFuzzer's hook
    // would abort before the catch. A panic that escapes still ends the run.
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    if let Ok(overlay) = civicflow_engine::overlay::Overlay::load("fuzz.overlay.yaml", text) {
        let _ = civicflow_engine::validate::load_composed("ticket.yaml", BASE, &[&overlay]);
    }
});
