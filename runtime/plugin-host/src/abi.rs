//! The guest ABI, version 1 (documented in `docs/plugin-abi.md`).

/// The ABI version this host speaks; a plugin reports its own from `civicflow_abi_version`.
pub const ABI_VERSION: i32 = 1;

pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_VERSION: &str = "civicflow_abi_version";
pub const EXPORT_ALLOC: &str = "civicflow_alloc";
pub const EXPORT_CALL: &str = "civicflow_call";
pub const IMPORT_MODULE: &str = "civicflow";
pub const IMPORT_LOG: &str = "log";

/// `civicflow_call` returns the output's pointer in the high 32 bits and its length in the
/// low 32 bits.
pub fn split_packed(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    ((bits >> 32) as u32, bits as u32)
}
