//! Compiled modules on disk, keyed by the module's SHA-256 and the engine's compatibility
//! hash, so a restart (or a second server) skips Cranelift and an engine upgrade simply
//! misses the cache instead of loading incompatible code.

use crate::error::PluginError;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

pub(crate) struct Cache {
    dir: PathBuf,
    compat: u64,
}

impl Cache {
    pub fn new(dir: &Path, engine: &Engine) -> Result<Self, PluginError> {
        std::fs::create_dir_all(dir).map_err(|e| PluginError::Cache(format!("{}: {e}", dir.display())))?;
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            dir: dir.to_path_buf(),
            compat: h.finish(),
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{:016x}.cwasm", self.compat))
    }

    /// The cached compilation if there is one; otherwise compile and store it.
    pub fn module(&self, engine: &Engine, wasm: &[u8], sha256: &str) -> Result<(Module, bool), PluginError> {
        let path = self.path(sha256);
        if path.exists() {
            // SAFETY: wasmtime requires that deserialized bytes come from `Module::serialize`
            // of a compatible engine. This file is written only by `store` below, into our own
            // cache folder, under a name that carries the source's SHA-256 and this engine's
            // compatibility hash; wasmtime also checks the version and settings header and
            // refuses a mismatch (we then recompile).
            #[allow(unsafe_code)]
            let loaded = unsafe { Module::deserialize_file(engine, &path) };
            match loaded {
                Ok(m) => return Ok((m, true)),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "ignoring unusable cached module"),
            }
        }
        let module = Module::new(engine, wasm).map_err(|e| PluginError::InvalidModule(format!("{e:#}")))?;
        self.store(&path, &module);
        Ok((module, false))
    }

    /// Best effort: a cache that cannot be written only costs a recompilation later.
    fn store(&self, path: &Path, module: &Module) {
        let result = module.serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| e.to_string())
        });
        if let Err(e) = result {
            tracing::warn!(file = %path.display(), error = %e, "could not cache compiled module");
        }
    }
}
