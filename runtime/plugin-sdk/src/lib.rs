//! Write a civicflow rule plugin as plain Rust functions, one per hook:
//!
//! ```ignore
//! use civicflow_plugin_sdk::{RuleError, rules};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Input { data: Data }
//! #[derive(Deserialize)]
//! struct Data { income: f64 }
//!
//! fn rate(input: Input) -> Result<f64, RuleError> {
//!     Ok(input.data.income * 0.01)
//! }
//!
//! rules! { "dues.rate" => rate }
//! ```
//!
//! Build with `cargo build --release --target wasm32-unknown-unknown` (crate type
//! `cdylib`). The macro exports the ABI (`docs/plugin-abi.md`): the version marker, the
//! allocator and the entry point that decodes `{"hook", "input"}`, calls your function and
//! encodes `{"ok": ...}` or `{"error": {"code", "message"}}`. Keep the crate type `rlib` too
//! and the same functions can be unit-tested and benchmarked natively.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use serde;
pub use serde_json;

#[cfg(target_arch = "wasm32")]
mod arena;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ARENA: arena::Arena = arena::Arena::new();

/// The ABI version this SDK speaks.
pub const ABI_VERSION: i32 = 1;

/// A refusal the rule gives on purpose, e.g. a missing income.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub code: String,
    pub message: String,
}

impl RuleError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// Not an error: this rule has nothing to say for this input, so the binding above its
    /// unit answers (or the workflow's default). A community changes one case of its
    /// district's table: `return Err(RuleError::inherit())` for every other case.
    pub fn inherit() -> Self {
        Self::new(INHERIT, "")
    }
}

const INHERIT: &str = "inherit";

/// Decode the input straight into the rule's type, run the rule, encode its answer as
/// `{"ok": ...}`. No intermediate `serde_json::Value`: inside the sandbox every instruction
/// is paid for on every call.
pub fn call<I: DeserializeOwned, O: Serialize>(
    rule: fn(I) -> Result<O, RuleError>,
    input: &str,
) -> Result<Vec<u8>, RuleError> {
    let input = serde_json::from_str(input).map_err(|e| RuleError::new("bad_input", e.to_string()))?;
    let output = rule(input)?;
    serde_json::to_vec(&Answer { ok: output }).map_err(|e| RuleError::new("bad_output", e.to_string()))
}

#[derive(Serialize)]
struct Answer<O> {
    ok: O,
}

/// The request the host sends: the hook's name and its input, left undecoded until the
/// hook's function says what type it wants.
#[derive(serde::Deserialize)]
struct Request<'a> {
    hook: &'a str,
    #[serde(borrow)]
    input: &'a serde_json::value::RawValue,
}

/// Write a message to the host's log for this call (bounded by the host).
pub fn log(message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        #[link(wasm_import_module = "civicflow")]
        unsafe extern "C" {
            #[link_name = "log"]
            fn host_log(ptr: i32, len: i32);
        }
        // SAFETY: the host only reads `len` bytes at `ptr` from this module's memory.
        unsafe { host_log(message.as_ptr() as i32, message.len() as i32) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = message;
}

/// For the macro: reserve `len` bytes for the host to write the request into. Every call
/// runs in a fresh instance, so nothing is ever freed.
#[doc(hidden)]
pub fn alloc(len: i32) -> i32 {
    let mut buf = Vec::<u8>::with_capacity(len.max(0) as usize);
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr as usize as i32
}

/// For the macro: decode the request at `ptr`, dispatch, and return the packed answer.
#[doc(hidden)]
pub fn dispatch(ptr: i32, len: i32, route: impl FnOnce(&str, &str) -> Result<Vec<u8>, RuleError>) -> i64 {
    // SAFETY: the host wrote exactly `len` bytes at `ptr`, which `alloc` reserved.
    let request = unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len.max(0) as usize) };
    let answer = match serde_json::from_slice::<Request>(request) {
        Ok(r) => route(r.hook, r.input.get()),
        Err(e) => Err(RuleError::new("bad_request", e.to_string())),
    };
    let bytes = answer
        .unwrap_or_else(|e| {
            let answer = if e.code == INHERIT {
                json!({ "inherit": true })
            } else {
                json!({ "error": { "code": e.code, "message": e.message } })
            };
            serde_json::to_vec(&answer).unwrap_or_default()
        })
        .into_boxed_slice();
    let (out_ptr, out_len) = (bytes.as_ptr() as usize as i64, bytes.len() as i64);
    std::mem::forget(bytes);
    (out_ptr << 32) | out_len
}

/// Export the plugin ABI for the given hooks: `rules! { "dues.rate" => rate }`.
#[macro_export]
macro_rules! rules {
    ($($hook:literal => $rule:path),+ $(,)?) => {
        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn civicflow_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn civicflow_alloc(len: i32) -> i32 {
            $crate::alloc(len)
        }

        #[cfg(target_arch = "wasm32")]
        #[unsafe(no_mangle)]
        pub extern "C" fn civicflow_call(ptr: i32, len: i32) -> i64 {
            $crate::dispatch(ptr, len, |hook, input| match hook {
                $($hook => $crate::call($rule, input),)+
                other => Err($crate::RuleError::new("unknown_hook", format!("this plugin does not answer \"{other}\""))),
            })
        }
    };
}
