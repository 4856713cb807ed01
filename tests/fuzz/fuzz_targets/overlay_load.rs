//! Any text as a locality's overlay, loaded and composed over the shipped ticket workflow.
#![no_main]
use libfuzzer_sys::fuzz_target;

const BASE: &str = include_str!("../../../workflows/ticket.yaml");

fuzz_target!(|text: &str| {
    if let Ok(overlay) = civicflow_engine::overlay::Overlay::load("fuzz.overlay.yaml", text) {
        let _ = civicflow_engine::validate::load_composed("ticket.yaml", BASE, &[&overlay]);
    }
});
