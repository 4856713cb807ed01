//! 北辰区发展对象培训要求 — Beichen district asks more of a development target's training
//! than the national minimum of three days or 24 hours: at least 32 class hours, of which
//! at least 8 in practice (community service, a visit to a red education site).

use civicflow_plugin_sdk::{RuleError, rules};
use serde::Deserialize;

const MIN_HOURS: u32 = 32;
const MIN_PRACTICE_HOURS: u32 = 8;

#[derive(Deserialize)]
struct Input {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    training: Training,
}

#[derive(Deserialize)]
struct Training {
    hours: u32,
    #[serde(default)]
    practice_hours: u32,
}

fn enough(input: Input) -> Result<bool, RuleError> {
    let t = input.data.training;
    if t.practice_hours > t.hours {
        return Err(RuleError::new(
            "bad_training",
            "practice hours cannot exceed the total hours",
        ));
    }
    Ok(t.hours >= MIN_HOURS && t.practice_hours >= MIN_PRACTICE_HOURS)
}

rules! { "member.training" => enough }
