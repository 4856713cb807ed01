//! Any text as a plugin manifest, and any bytes as its module's shape: refused with a
//! reason, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(manifest) = civicflow_plugin_host::Manifest::parse("plugin.yaml", text)
    {
        let _ = manifest.limits().check();
    }
    let _ = civicflow_plugin_host::compile_limits::check(bytes, &civicflow_plugin_host::COMPILE_LIMITS);
});
