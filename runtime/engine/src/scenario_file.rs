//! The shape of a scenario file (`*.test.yaml`, docs/scenarios.md) before anything of it
//! runs: YAML, `schemas/scenario.schema.json` (an unknown key anywhere is an error at its
//! line, so a misspelt assertion never passes) and one action per step. `civicflow test`
//! runs what passes; the fuzz target `scenario_load` feeds it anything.

use crate::Event;
use crate::diagnostic::Diagnostic;
use crate::validate::schema_diagnostics;
use crate::yaml::SourceDoc;
use serde_json::Value;
use std::sync::LazyLock;
use strum::IntoEnumIterator;

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
    problems.extend(unknown_event_kinds(&doc));
    if problems.is_empty() { Ok(doc) } else { Err(problems) }
}

/// Every step of the file with its JSON pointer, background first.
fn steps(doc: &SourceDoc) -> Vec<(String, &Value)> {
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
    for (at, list) in lists {
        for (i, step) in list.as_array().into_iter().flatten().enumerate() {
            out.push((format!("{at}/{i}"), step));
        }
    }
    out
}

fn steps_with_two_actions(doc: &SourceDoc) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (at, step) in steps(doc) {
        let verbs: Vec<&str> = VERBS.into_iter().filter(|v| step.get(*v).is_some()).collect();
        if verbs.len() > 1 {
            let message = format!("a step takes one action; this one has {}", verbs.join(" and "));
            out.push(doc.error(&at, message));
        }
    }
    out
}

/// An expected event kind the engine never writes would make `events_absent` always pass
/// and `events` always fail, so it is an error at its line, naming the kinds there are.
fn unknown_event_kinds(doc: &SourceDoc) -> Vec<Diagnostic> {
    let known: Vec<&str> = Event::iter().map(|e| e.kind()).collect();
    let mut out = Vec::new();
    for (at, step) in steps(doc) {
        for key in ["events", "events_absent"] {
            let kinds = step.get("expect").and_then(|e| e.get(key)).and_then(Value::as_array);
            for (i, kind) in kinds.into_iter().flatten().enumerate() {
                let Some(kind) = kind.as_str() else { continue };
                if !known.contains(&kind) {
                    let message = format!("no event is of kind \"{kind}\"; the kinds are {}", known.join(", "));
                    out.push(doc.error(&format!("{at}/expect/{key}/{i}"), message));
                }
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
        let text = "scenarios:\n  - name: x\n    steps:\n      - advance: 1h\n        find: {workflow: w}\n      - expect: {statez: [a]}\n      - expect:\n          events_absent: [escalated, escalatd]\n";
        let problems = read("t.test.yaml", text).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|d| d.line).collect();
        assert!(lines.contains(&4), "{problems:?}");
        assert!(lines.contains(&6), "{problems:?}");
        let misspelt: Vec<_> = problems.iter().filter(|d| d.message.contains("escalatd")).collect();
        assert_eq!(misspelt.len(), 1, "{problems:?}");
        assert_eq!(misspelt[0].line, 8, "{problems:?}");
        let shipped = include_str!("../../../workflows/tests/dues.test.yaml");
        assert!(read("dues.test.yaml", shipped).is_ok());
    }
}
