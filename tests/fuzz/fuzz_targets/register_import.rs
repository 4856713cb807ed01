//! Any bytes as a units or people register, as CSV or as a spreadsheet (the first byte
//! picks): per-row errors, never a panic or an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // The import catches a panic inside the spreadsheet library and refuses the file;
    // libFuzzer's hook would abort at the panic itself, before it is caught. A panic that
    // escapes the import still ends the run (the harness aborts on it).
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    let Some((&pick, content)) = bytes.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let ext = ["csv", "xlsx"][(pick & 1) as usize];
    let path = dir.path().join(format!("register.{ext}"));
    std::fs::write(&path, content).expect("write");
    if pick & 2 == 0 {
        let _ = civicflow_store::org_files::read_units(&path);
    } else {
        let _ = civicflow_store::org_files::read_people(&path);
    }
});
