use std::fmt;

/// Everything that can go wrong with a plugin, at upload or at a call. Each says which
/// plugin and why, so it can be recorded on the instance and shown to its author.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    #[error("not a valid WebAssembly module: {0}")]
    InvalidModule(String),
    #[error("the module is too complex to compile safely: {0}")]
    TooComplex(String),
    #[error("the module lacks the export `{name}` ({expected})")]
    MissingExport { name: &'static str, expected: &'static str },
    #[error("the module imports `{0}`; plugins may import only civicflow.log")]
    ForbiddenImport(String),
    #[error("plugin ABI version {found} is not supported: this host speaks version {expected}")]
    AbiVersion { expected: i32, found: i32 },
    #[error("ran out of fuel after {limit} instructions")]
    OutOfFuel { limit: u64 },
    #[error("exceeded the wall-time limit of {limit_ms} ms")]
    WallTime { limit_ms: u64 },
    #[error("exceeded the memory limit of {limit} bytes")]
    Memory { limit: usize },
    #[error("trapped: {0}")]
    Trap(String),
    #[error("input of {size} bytes exceeds the limit of {limit}")]
    InputTooLarge { size: usize, limit: usize },
    #[error("output of {size} bytes exceeds the limit of {limit}")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("output is not valid JSON of the form {{\"ok\": ...}} or {{\"error\": ...}}: {0}")]
    BadOutput(String),
    #[error("the rule reported an error: {code}: {message}")]
    Rule { code: String, message: String },
    #[error("plugin {0} is not loaded")]
    NotLoaded(String),
    #[error("{0}")]
    Manifest(String),
    #[error("signature: {0}")]
    Signature(String),
    #[error("compiled-module cache: {0}")]
    Cache(String),
}

impl PluginError {
    /// A short stable code for APIs, logs and the instance's event log.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::InvalidModule(_) => "invalid_module",
            PluginError::TooComplex(_) => "too_complex",
            PluginError::MissingExport { .. } => "missing_export",
            PluginError::ForbiddenImport(_) => "forbidden_import",
            PluginError::AbiVersion { .. } => "abi_version",
            PluginError::OutOfFuel { .. } => "out_of_fuel",
            PluginError::WallTime { .. } => "wall_time",
            PluginError::Memory { .. } => "memory_limit",
            PluginError::Trap(_) => "trap",
            PluginError::InputTooLarge { .. } => "input_too_large",
            PluginError::OutputTooLarge { .. } => "output_too_large",
            PluginError::BadOutput(_) => "bad_output",
            PluginError::Rule { .. } => "rule_error",
            PluginError::NotLoaded(_) => "not_loaded",
            PluginError::Manifest(_) => "manifest",
            PluginError::Signature(_) => "signature",
            PluginError::Cache(_) => "cache",
        }
    }
}

/// Marker raised from the resource limiter so a memory bomb is told apart from other traps.
#[derive(Debug)]
pub(crate) struct MemoryLimitHit(pub usize);

impl fmt::Display for MemoryLimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memory limit of {} bytes", self.0)
    }
}

impl std::error::Error for MemoryLimitHit {}
