//! The shape of a scenario file (`*.test.yaml`, docs/scenarios.md) before anything of it
//! runs: YAML, `schemas/scenario.schema.json` (an unknown key anywhere is an error at its
//! line, so a misspelt assertion never passes) and one action per step. `civicflow test`
//! runs what passes; the fuzz target `scenario_load` feeds it anything.

use crate::diagnostic::Diagnostic;
use crate::validate::schema_diagnostics;
use crate::yaml::SourceDoc;
use serde_json::Value;
use std::sync::LazyLock;

static SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(include_str!("../../../schemas/scenario.schema.json")).expect("scenario schema is JSON");
    jsonschema::validator_for(&schema).expect("scenario schema is valid")
});

/// The actions a step may take; a step takes at most one.
pub const VERBS: [&str; 9] = [
    "start", "complete", "claim", "withdraw", "signal", "find", "code", "advance", "publish",
];

/// The file parsed, or every problem of its shape, each at its line.
pub fn read(name: &str, text: &str) -> Result<SourceDoc, Vec<Diagnostic>> {
    let doc = SourceDoc::parse(name, text).map_err(|d| vec![d])?;
    let mut problems: Vec<_> = SCHEMA
        .iter_errors(&doc.value)
        .flat_map(|e| schema_diagnostics(&doc, &e))
        .collect();
    problems.extend(steps_with_two_actions(&doc));
    if problems.is_empty() { Ok(doc) } else { Err(problems) }
}

fn steps_with_two_actions(doc: &SourceDoc) -> Vec<Diagnostic> {
    let scenarios = doc
        .value
        .get("scenarios")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let lists = doc
        .value
        .get("background")
        .map(|b| ("/background".to_string(), b))
        .into_iter()
        .chain(
            scenarios
                .enumerate()
                .filter_map(|(i, s)| Some((format!("/scenarios/{i}/steps"), s.get("steps")?))),
        );
    let mut out = Vec::new();
    for (at, steps) in lists {
        for (i, step) in steps.as_array().into_iter().flatten().enumerate() {
            let verbs: Vec<&str> = VERBS.into_iter().filter(|v| step.get(*v).is_some()).collect();
            if verbs.len() > 1 {
                let message = format!("a step takes one action; this one has {}", verbs.join(" and "));
                out.push(doc.error(&format!("{at}/{i}"), message));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn a_step_with_two_actions_and_an_unknown_key_are_each_found_at_their_line() {
        let text = "scenarios:\n  - name: x\n    steps:\n      - advance: 1h\n        find: {workflow: w}\n      - expect: {statez: [a]}\n";
        let problems = read("t.test.yaml", text).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|d| d.line).collect();
        assert!(lines.contains(&4), "{problems:?}");
        assert!(lines.contains(&6), "{problems:?}");
        let shipped = include_str!("../../../workflows/tests/dues.test.yaml");
        assert!(read("dues.test.yaml", shipped).is_ok());
    }
}
