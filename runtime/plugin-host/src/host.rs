//! The wasmtime host: one engine, a pooling allocator, a fresh sandboxed instance per call.

use crate::abi::*;
use crate::cache::Cache;
use crate::error::{MemoryLimitHit, PluginError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{
    Caller, Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module, ModuleExport,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, TypedFunc, ValType,
};

/// How often the epoch advances; wall-time limits are counted in these ticks.
const TICK: Duration = Duration::from_millis(10);
/// The largest memory any binding may allow; per-call limits are enforced below this.
const MAX_MEMORY: usize = 64 << 20;
/// Deep recursion traps cleanly at this wasm stack depth.
const MAX_WASM_STACK: usize = 512 << 10;
/// Bytes of each memory slot kept mapped between calls and reset by memset: a Rust plugin
/// built with the SDK uses one or two 64 KiB pages.
const KEEP_RESIDENT: usize = 128 << 10;
/// Instances alive at once (one per call in flight).
const POOL_INSTANCES: u32 = 128;

/// Per-call budgets. Defaults suit a rule; a manifest or a binding may ask for others, up
/// to [`MAX_LIMITS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Fuel: roughly one unit per WebAssembly instruction.
    pub fuel: u64,
    /// Wall time in milliseconds, a backstop for what fuel does not count.
    pub wall_ms: u64,
    pub memory_bytes: usize,
    pub input_bytes: usize,
    pub output_bytes: usize,
    pub log_bytes: usize,
    /// Calls of the `log` import recorded; later ones are dropped (each costs host memory
    /// outside the plugin's own).
    pub log_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000,
            wall_ms: 100,
            memory_bytes: 16 << 20,
            input_bytes: 256 << 10,
            output_bytes: 64 << 10,
            log_bytes: 4 << 10,
            log_entries: 64,
        }
    }
}

/// The most any manifest or binding may ask for (SECURITY.md). A rule runs while a person
/// waits for their action: a second of wall time is already long, and what a locality asks
/// beyond these would only let its rules hold the server's threads for everyone.
pub const MAX_LIMITS: Limits = Limits {
    fuel: 500_000_000,
    wall_ms: 1_000,
    memory_bytes: MAX_MEMORY,
    input_bytes: 1 << 20,
    output_bytes: 1 << 20,
    log_bytes: 64 << 10,
    log_entries: 1_000,
};

impl Limits {
    fn fields(&self) -> [(&'static str, u64); 7] {
        [
            ("fuel", self.fuel),
            ("wall_ms", self.wall_ms),
            ("memory_bytes", self.memory_bytes as u64),
            ("input_bytes", self.input_bytes as u64),
            ("output_bytes", self.output_bytes as u64),
            ("log_bytes", self.log_bytes as u64),
            ("log_entries", self.log_entries as u64),
        ]
    }

    /// Every limit held to its maximum: what a call runs under, whatever was stored.
    pub fn capped(self) -> Self {
        let m = MAX_LIMITS;
        Self {
            fuel: self.fuel.min(m.fuel),
            wall_ms: self.wall_ms.min(m.wall_ms),
            memory_bytes: self.memory_bytes.min(m.memory_bytes),
            input_bytes: self.input_bytes.min(m.input_bytes),
            output_bytes: self.output_bytes.min(m.output_bytes),
            log_bytes: self.log_bytes.min(m.log_bytes),
            log_entries: self.log_entries.min(m.log_entries),
        }
    }

    /// Refuse limits above the maxima, naming each one, so whoever asked learns why.
    pub fn check(&self) -> Result<(), String> {
        let over: Vec<String> = self
            .fields()
            .into_iter()
            .zip(MAX_LIMITS.fields())
            .filter(|((_, asked), (_, max))| asked > max)
            .map(|((name, asked), (_, max))| format!("limits.{name} is {asked}; the most allowed is {max}"))
            .collect();
        if over.is_empty() { Ok(()) } else { Err(over.join("; ")) }
    }
}

/// Limits a binding (or `civicflow plugin run`) asks for: each one it names replaces the
/// plugin's own (its manifest's); the others stay as the manifest has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsAsked {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_entries: Option<usize>,
}

impl LimitsAsked {
    /// `own` with the limits asked for here put in.
    pub fn over(self, own: Limits) -> Limits {
        Limits {
            fuel: self.fuel.unwrap_or(own.fuel),
            wall_ms: self.wall_ms.unwrap_or(own.wall_ms),
            memory_bytes: self.memory_bytes.unwrap_or(own.memory_bytes),
            input_bytes: self.input_bytes.unwrap_or(own.input_bytes),
            output_bytes: self.output_bytes.unwrap_or(own.output_bytes),
            log_bytes: self.log_bytes.unwrap_or(own.log_bytes),
            log_entries: self.log_entries.unwrap_or(own.log_entries),
        }
    }
}

/// What one call did, for authors (`civicflow plugin run`) and for metrics.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub output: Value,
    /// The plugin had nothing to say for this input (`{"inherit": true}`): the binding above
    /// its unit, or the workflow's default, answers instead. `output` is null then.
    pub inherit: bool,
    pub fuel_used: u64,
    pub memory_peak: usize,
    pub elapsed: Duration,
    pub logs: Vec<String>,
}

/// A loaded plugin version, ready to instantiate.
pub struct Plugin {
    pub id: String,
    pub version: String,
    pub sha256: String,
    pre: InstancePre<CallState>,
    exports: Exports,
}

/// The ABI exports, resolved once per module so a call does not look them up by name.
struct Exports {
    memory: ModuleExport,
    alloc: ModuleExport,
    call: ModuleExport,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plugin({}@{})", self.id, self.version)
    }
}

struct Limiter {
    limit: usize,
    peak: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitHit(self.limit)));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct CallState {
    limiter: Limiter,
    logs: Vec<String>,
    log_left: usize,
    log_entries_left: usize,
}

pub struct Host {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<Cache>,
    /// One compilation at a time (and each on one thread: wasmtime is built without its
    /// `parallel-compilation` feature), so uploads and start-up leave the other cores serving.
    compiling: std::sync::Mutex<()>,
    stop: Arc<AtomicBool>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Host {
    /// A host; with `cache_dir`, compiled modules are kept there across restarts.
    pub fn new(cache_dir: Option<&Path>) -> Result<Self, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(POOL_INSTANCES)
            .total_memories(POOL_INSTANCES)
            .total_tables(POOL_INSTANCES)
            .max_memory_size(MAX_MEMORY)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            // Reset a slot's first pages with memset instead of returning them to the OS:
            // every call gets a fresh instance, and faulting its memory back in each time
            // (page faults, TLB shootdowns) cost more than the rule itself.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 << 10);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::InvalidModule(format!("engine: {e}")))?;
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(
                IMPORT_MODULE,
                IMPORT_LOG,
                |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| {
                    let (entries_left, bytes_left) = (caller.data().log_entries_left, caller.data().log_left);
                    if entries_left == 0 || bytes_left == 0 {
                        return;
                    }
                    let Some(memory) = caller.get_export(EXPORT_MEMORY).and_then(|e| e.into_memory()) else {
                        return;
                    };
                    let mut buf = vec![0u8; (len.max(0) as usize).min(bytes_left)];
                    if memory.read(&caller, ptr as u32 as usize, &mut buf).is_ok() {
                        let state = caller.data_mut();
                        state.log_left -= buf.len();
                        state.log_entries_left -= 1;
                        state.logs.push(String::from_utf8_lossy(&buf).into_owned());
                    }
                },
            )
            .map_err(|e| PluginError::InvalidModule(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticker, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| PluginError::InvalidModule(format!("epoch thread: {e}")))?;
        let cache = cache_dir.map(|d| Cache::new(d, &engine)).transpose()?;
        Ok(Self {
            engine,
            linker,
            cache,
            compiling: std::sync::Mutex::new(()),
            stop,
        })
    }

    /// Compile and check a module: within the compile limits, a valid core module,
    /// importing only `civicflow.log`, exporting the ABI, and reporting the ABI version this
    /// host speaks. Blocks while another module compiles: call it off the async runtime.
    pub fn load(&self, id: &str, version: &str, wasm: &[u8]) -> Result<Plugin, PluginError> {
        crate::compile_limits::check(wasm, &crate::COMPILE_LIMITS)?;
        let sha256 = hex::encode(Sha256::digest(wasm));
        let module = {
            let _one_at_a_time = self.compiling.lock().unwrap_or_else(|e| e.into_inner());
            match &self.cache {
                Some(cache) => cache.module(&self.engine, wasm, &sha256)?.0,
                None => Module::new(&self.engine, wasm).map_err(|e| PluginError::InvalidModule(format!("{e:#}")))?,
            }
        };
        check_shape(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| PluginError::InvalidModule(e.to_string()))?;
        let export = |name: &'static str| module.get_export_index(name).ok_or(missing(name));
        let exports = Exports {
            memory: export(EXPORT_MEMORY)?,
            alloc: export(EXPORT_ALLOC)?,
            call: export(EXPORT_CALL)?,
        };
        let plugin = Plugin {
            id: id.to_string(),
            version: version.to_string(),
            sha256,
            pre,
            exports,
        };
        let found = self.abi_version(&plugin)?;
        if found != ABI_VERSION {
            return Err(PluginError::AbiVersion {
                expected: ABI_VERSION,
                found,
            });
        }
        Ok(plugin)
    }

    fn store(&self, limits: &Limits) -> Store<CallState> {
        let state = CallState {
            limiter: Limiter {
                limit: limits.memory_bytes,
                peak: 0,
            },
            logs: Vec::new(),
            log_left: limits.log_bytes,
            log_entries_left: limits.log_entries,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.fuel).expect("fuel is enabled");
        store.set_epoch_deadline(limits.wall_ms.div_ceil(TICK.as_millis() as u64) + 1);
        store.epoch_deadline_trap();
        store
    }

    fn abi_version(&self, plugin: &Plugin) -> Result<i32, PluginError> {
        let limits = Limits::default();
        let mut store = self.store(&limits);
        let instance = plugin.pre.instantiate(&mut store).map_err(|e| classify(e, &limits))?;
        let f: TypedFunc<(), i32> = instance
            .get_typed_func(&mut store, EXPORT_VERSION)
            .map_err(|_| missing(EXPORT_VERSION))?;
        f.call(&mut store, ()).map_err(|e| classify(e, &limits))
    }

    /// Call `hook` with `input` in a fresh instance under `limits` (held to [`MAX_LIMITS`]).
    pub fn call(&self, plugin: &Plugin, hook: &str, input: &Value, limits: &Limits) -> Result<CallReport, PluginError> {
        let started = Instant::now();
        let limits = &limits.capped();
        let request = request_bytes(hook, input);
        if request.len() > limits.input_bytes {
            return Err(PluginError::InputTooLarge {
                size: request.len(),
                limit: limits.input_bytes,
            });
        }
        let mut store = self.store(limits);
        let fail = |e: wasmtime::Error| classify(e, limits);
        let instance = plugin.pre.instantiate(&mut store).map_err(fail)?;
        let x = &plugin.exports;
        let memory = instance
            .get_module_export(&mut store, &x.memory)
            .and_then(|e| e.into_memory())
            .ok_or(missing(EXPORT_MEMORY))?;
        let func = |store: &mut Store<CallState>, e: &ModuleExport, name| {
            instance
                .get_module_export(store, e)
                .and_then(|e| e.into_func())
                .ok_or(missing(name))
        };
        // Shapes were checked at load; `typed` only confirms them.
        let alloc: TypedFunc<i32, i32> = func(&mut store, &x.alloc, EXPORT_ALLOC)?
            .typed(&store)
            .map_err(|_| missing(EXPORT_ALLOC))?;
        let call: TypedFunc<(i32, i32), i64> = func(&mut store, &x.call, EXPORT_CALL)?
            .typed(&store)
            .map_err(|_| missing(EXPORT_CALL))?;

        let len = request.len() as i32;
        let ptr = alloc.call(&mut store, len).map_err(fail)?;
        memory
            .write(&mut store, ptr as u32 as usize, &request)
            .map_err(|_| PluginError::Trap(format!("civicflow_alloc returned {ptr}, outside memory")))?;
        let (out_ptr, out_len) = split_packed(call.call(&mut store, (ptr, len)).map_err(fail)?);
        let out_len = out_len as usize;
        if out_len > limits.output_bytes {
            return Err(PluginError::OutputTooLarge {
                size: out_len,
                limit: limits.output_bytes,
            });
        }
        let mut output = vec![0u8; out_len];
        memory
            .read(&store, out_ptr as usize, &mut output)
            .map_err(|_| PluginError::BadOutput(format!("output range {out_ptr}+{out_len} is outside memory")))?;
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let state = store.into_data();
        let (output, inherit) = parse_output(&output)?;
        Ok(CallReport {
            output,
            inherit,
            fuel_used,
            memory_peak: state.limiter.peak,
            elapsed: started.elapsed(),
            logs: state.logs,
        })
    }
}

/// `{"hook": ..., "input": ...}` written straight to bytes, without copying the input.
fn request_bytes(hook: &str, input: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"hook\":");
    serde_json::to_writer(&mut out, hook).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b",\"input\":");
    serde_json::to_writer(&mut out, input).expect("writing to a Vec cannot fail");
    out.push(b'}');
    out
}

fn missing(name: &'static str) -> PluginError {
    let expected = match name {
        EXPORT_MEMORY => "memory",
        EXPORT_VERSION => "func () -> i32",
        EXPORT_ALLOC => "func (i32) -> i32",
        _ => "func (i32, i32) -> i64",
    };
    PluginError::MissingExport { name, expected }
}

/// Imports and exports, checked before the first instantiation so that a bad upload is
/// refused with a reason rather than failing at its first call.
fn check_shape(module: &Module) -> Result<(), PluginError> {
    for import in module.imports() {
        let allowed = import.module() == IMPORT_MODULE
            && import.name() == IMPORT_LOG
            && matches!(import.ty(), ExternType::Func(_));
        if !allowed {
            return Err(PluginError::ForbiddenImport(format!(
                "{}.{}",
                import.module(),
                import.name()
            )));
        }
    }
    let func = |name: &'static str, params: &[ValType], results: &[ValType]| -> Result<(), PluginError> {
        match module.get_export(name) {
            Some(ExternType::Func(f)) if same(f.params(), params) && same(f.results(), results) => Ok(()),
            _ => Err(missing(name)),
        }
    };
    if !matches!(module.get_export(EXPORT_MEMORY), Some(ExternType::Memory(_))) {
        return Err(missing(EXPORT_MEMORY));
    }
    func(EXPORT_VERSION, &[], &[ValType::I32])?;
    func(EXPORT_ALLOC, &[ValType::I32], &[ValType::I32])?;
    func(EXPORT_CALL, &[ValType::I32, ValType::I32], &[ValType::I64])
}

fn same(got: impl ExactSizeIterator<Item = ValType>, want: &[ValType]) -> bool {
    got.len() == want.len() && got.zip(want).all(|(g, w)| ValType::eq(&g, w))
}

fn classify(e: wasmtime::Error, limits: &Limits) -> PluginError {
    if let Some(hit) = e.downcast_ref::<MemoryLimitHit>() {
        return PluginError::Memory { limit: hit.0 };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::OutOfFuel { limit: limits.fuel },
        Some(Trap::Interrupt) => PluginError::WallTime {
            limit_ms: limits.wall_ms,
        },
        Some(trap) => PluginError::Trap(trap.to_string()),
        None => PluginError::Trap(format!("{e:#}")),
    }
}

/// The answer, and whether the plugin deferred to the binding above it.
fn parse_output(bytes: &[u8]) -> Result<(Value, bool), PluginError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| PluginError::BadOutput(e.to_string()))?;
    if let Some(ok) = v.get("ok") {
        return Ok((ok.clone(), false));
    }
    if v.get("inherit") == Some(&Value::Bool(true)) {
        return Ok((Value::Null, true));
    }
    if let Some(err) = v.get("error") {
        let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Err(PluginError::Rule {
            code: field("code"),
            message: field("message"),
        });
    }
    Err(PluginError::BadOutput(
        "none of \"ok\", \"error\" or \"inherit\" present".into(),
    ))
}
