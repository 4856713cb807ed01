//! What a module may hold before Cranelift sees it. Compiling cannot be interrupted and its
//! cost is not linear in the module's size: 3.9 MB of a million nested blocks took 10 s and
//! 3.3 GB. A single pass over the code (milliseconds) refuses such a module with the reason,
//! so the worst module that does get compiled is one measured in BENCHMARKS.md.

use crate::error::PluginError;
use wasmparser::{Operator, Parser, Payload};

/// Caps on a module's code, chosen well above what compiled Rust and AssemblyScript rules
/// use (the shipped plugins: at most 345 functions, the largest 6 KB, 35 locals, nesting 42).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    pub functions: u32,
    pub function_bytes: u32,
    pub locals: u32,
    pub nesting: u32,
}

pub const COMPILE_LIMITS: CompileLimits = CompileLimits {
    functions: 10_000,
    function_bytes: 256 << 10,
    locals: 2_000,
    nesting: 256,
};

/// Refuse a module whose code exceeds a cap, saying which and by how much.
pub fn check(wasm: &[u8], caps: &CompileLimits) -> Result<(), PluginError> {
    let has = measure(wasm)?;
    let over = [
        (has.functions, caps.functions, "functions"),
        (has.function_bytes, caps.function_bytes, "bytes in its largest function"),
        (has.locals, caps.locals, "locals in one function"),
        (has.nesting, caps.nesting, "levels of nested blocks in one function"),
    ]
    .into_iter()
    .filter(|(has, cap, _)| has > cap)
    .map(|(has, cap, what)| format!("{has} {what} (at most {cap})"))
    .collect::<Vec<_>>();
    if over.is_empty() {
        Ok(())
    } else {
        Err(PluginError::TooComplex(over.join(", ")))
    }
}

/// The module's figures against the caps: its function count and, over its functions, the
/// largest body, the most locals and the deepest nesting.
pub fn measure(wasm: &[u8]) -> Result<CompileLimits, PluginError> {
    let invalid = |e: wasmparser::BinaryReaderError| PluginError::InvalidModule(e.to_string());
    let mut most = CompileLimits {
        functions: 0,
        function_bytes: 0,
        locals: 0,
        nesting: 0,
    };
    for payload in Parser::new(0).parse_all(wasm) {
        let Payload::CodeSectionEntry(body) = payload.map_err(invalid)? else {
            continue;
        };
        most.functions += 1;
        most.function_bytes = most.function_bytes.max(body.range().len() as u32);
        let mut locals = 0u32;
        for group in body.get_locals_reader().map_err(invalid)? {
            locals = locals.saturating_add(group.map_err(invalid)?.0);
        }
        most.locals = most.locals.max(locals);
        let (mut depth, mut deepest) = (0u32, 0u32);
        let mut ops = body.get_operators_reader().map_err(invalid)?;
        while !ops.eof() {
            match ops.read().map_err(invalid)? {
                Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } | Operator::TryTable { .. } => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                Operator::End => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        most.nesting = most.nesting.max(deepest);
    }
    Ok(most)
}
