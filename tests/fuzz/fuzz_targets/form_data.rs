//! Any JSON as the data of each form of the shipped ticket workflow: problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static TICKET: LazyLock<civicflow_engine::Workflow> = LazyLock::new(|| {
    civicflow_engine::validate::load("ticket.yaml", include_str!("../../../workflows/ticket.yaml"))
        .workflow
        .expect("the shipped ticket workflow is valid")
});

fuzz_target!(|bytes: &[u8]| {
    let Ok(data) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    for form in TICKET.def.forms.keys() {
        let _ = TICKET.check_form(form, &data);
        let _ = TICKET.undeclared_fields(form, &data);
    }
});
