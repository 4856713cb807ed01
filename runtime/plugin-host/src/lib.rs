//! Locality rule plugins: core WebAssembly modules run by wasmtime in a sandbox. The only
//! crate that knows wasmtime.
//!
//! A plugin is a pure function of its input: it imports nothing but an optional log
//! function, so it has no clock, no network, no files. Every call gets a fresh instance
//! from the pooling allocator with its own budget of fuel, wall time (epoch interruption),
//! memory, input, output and log bytes. Whatever a plugin does, the host gets a
//! [`PluginError`] back and keeps serving. See `docs/plugin-abi.md`.

mod abi;
mod bindings;
mod cache;
pub mod compile_limits;
mod error;
mod host;
pub mod manifest;

pub use abi::ABI_VERSION;
pub use compile_limits::{COMPILE_LIMITS, CompileLimits};

pub use bindings::{Binding, BindingTable, PluginRules};
pub use error::PluginError;
pub use host::{CallReport, Host, Limits, LimitsAsked, MAX_LIMITS, Plugin};
pub use manifest::{Manifest, stored_limits, verify_signature};
