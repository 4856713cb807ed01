//! `plugin.yaml`: what a plugin package says about itself, checked against
//! `schemas/plugin-manifest.schema.json` with located diagnostics.

use crate::abi::ABI_VERSION;
use crate::error::PluginError;
use crate::host::Limits;
use base64::Engine as _;
use civicflow_engine::Diagnostic;
use civicflow_engine::yaml::SourceDoc;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::LazyLock;

pub const MANIFEST_SCHEMA: &str = include_str!("../../../schemas/plugin-manifest.schema.json");

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(MANIFEST_SCHEMA).expect("manifest schema is JSON");
    jsonschema::validator_for(&schema).expect("manifest schema is valid")
});

/// The largest module accepted at upload.
pub const MAX_MODULE_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub version: String,
    pub abi: i32,
    pub hooks: Vec<String>,
    pub author_unit: String,
    pub description: BTreeMap<String, String>,
    #[serde(default = "default_module")]
    pub module: String,
    #[serde(default)]
    pub limits: Option<Limits>,
}

fn default_module() -> String {
    "plugin.wasm".into()
}

impl Manifest {
    /// Parse and check a manifest; every problem is reported at its line.
    pub fn parse(file: &str, text: &str) -> Result<Self, Vec<Diagnostic>> {
        let doc = SourceDoc::parse(file, text).map_err(|d| vec![d])?;
        let diags: Vec<Diagnostic> = SCHEMA
            .iter_errors(&doc.value)
            .map(|e| {
                let at = e.instance_path().to_string();
                let what = if at.is_empty() {
                    "top level".to_string()
                } else {
                    at.trim_start_matches('/').replace('/', ".")
                };
                let message = if at == "/abi" {
                    format!("abi: this host speaks plugin ABI version {ABI_VERSION}; {e}")
                } else {
                    format!("{what}: {e}")
                };
                doc.error(&at, message)
            })
            .collect();
        if !diags.is_empty() {
            return Err(diags);
        }
        serde_json::from_value(doc.value.clone()).map_err(|e| vec![doc.error("", e.to_string())])
    }

    pub fn plugin_ref(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    pub fn limits(&self) -> Limits {
        self.limits.unwrap_or_default()
    }
}

/// The limits a stored manifest (as JSON) asks for; the defaults where it names none.
pub fn stored_limits(manifest: &Value) -> Limits {
    serde_json::from_value(manifest["limits"].clone()).unwrap_or_default()
}

/// Check an ed25519 signature (base64) of the module bytes against the keys (base64) the
/// author unit trusts. Returns the key that verified it. A unit that trusts keys accepts
/// only signed plugins; a unit that trusts none accepts unsigned ones.
pub fn verify_signature(
    wasm: &[u8],
    signature: Option<&str>,
    trusted: &[String],
) -> Result<Option<String>, PluginError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(signature) = signature else {
        return if trusted.is_empty() {
            Ok(None)
        } else {
            Err(PluginError::Signature(
                "the author unit trusts signing keys, so the plugin must be signed".into(),
            ))
        };
    };
    let bytes = b64
        .decode(signature.trim())
        .map_err(|e| PluginError::Signature(format!("not base64: {e}")))?;
    let signature =
        Signature::from_slice(&bytes).map_err(|e| PluginError::Signature(format!("not an ed25519 signature: {e}")))?;
    for key in trusted {
        let Ok(raw) = b64.decode(key.trim()) else { continue };
        let Ok(raw): Result<[u8; 32], _> = raw.try_into() else {
            continue;
        };
        let Ok(verifying) = VerifyingKey::from_bytes(&raw) else {
            continue;
        };
        if verifying.verify(wasm, &signature).is_ok() {
            return Ok(Some(key.clone()));
        }
    }
    Err(PluginError::Signature(
        "the signature matches no key trusted by the author unit or its ancestors".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest schema states the host's maxima; they must be the ones calls run under.
    #[test]
    fn the_schema_states_the_hosts_maximum_limits() {
        let schema: Value = serde_json::from_str(MANIFEST_SCHEMA).unwrap();
        let stated: serde_json::Map<String, Value> = schema["properties"]["limits"]["properties"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v["maximum"].clone()))
            .collect();
        assert_eq!(
            Value::Object(stated),
            serde_json::to_value(crate::host::MAX_LIMITS).unwrap()
        );
    }

    #[test]
    fn a_manifest_with_mistakes_is_located() {
        let text =
            "id: Dues_Rate\nversion: 1.0\nabi: 2\nhooks: [dues.rate]\nauthor_unit: city\ndescription: {zh-CN: 党费}\n";
        let errs = Manifest::parse("plugin.yaml", text).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![1, 2, 3], "{errs:?}");
        assert!(errs[2].message.contains("ABI version 1"), "{}", errs[2]);
    }

    #[test]
    fn signatures_verify_against_trusted_keys_only() {
        use ed25519_dalek::{Signer, SigningKey};
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let public = b64.encode(key.verifying_key().to_bytes());
        let sig = b64.encode(key.sign(b"module").to_bytes());
        assert_eq!(
            verify_signature(b"module", Some(&sig), std::slice::from_ref(&public)).unwrap(),
            Some(public.clone())
        );
        assert!(verify_signature(b"tampered", Some(&sig), std::slice::from_ref(&public)).is_err());
        assert!(
            verify_signature(b"module", None, std::slice::from_ref(&public)).is_err(),
            "unsigned refused where keys are trusted"
        );
        assert_eq!(verify_signature(b"module", None, &[]).unwrap(), None);
    }
}
