//! 北辰区派单表 — Beichen district's own table from ticket category to the department that
//! handles it. Other districts bind their own table; categories that need judgement (a
//! dispute) go to the street command centre for manual dispatch (the answer is null).
//! Since 1.1.0 also the district's time limits by category (`ticket.deadline`).

use civicflow_plugin_sdk::{RuleError, rules};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    data: Ticket,
}

#[derive(Deserialize)]
struct Ticket {
    category: String,
}

const TABLE: &[(&str, &str)] = &[
    ("road", "beichen-cgj"),
    ("sanitation", "beichen-cgj"),
    ("safety", "beichen-cgj"),
    ("water", "beichen-swj"),
];

fn route(input: Input) -> Result<Option<&'static str>, RuleError> {
    Ok(TABLE
        .iter()
        .find(|(category, _)| *category == input.data.category)
        .map(|(_, department)| *department))
}

/// 北辰区办理时限: urgent safety hazards within 2 hours, sanitation within 3 days, the rest
/// within 5 working days (on the district's calendar).
const LIMITS: &[(&str, &str)] = &[("safety", "2h"), ("sanitation", "3d")];

fn deadline(input: Input) -> Result<&'static str, RuleError> {
    Ok(LIMITS
        .iter()
        .find(|(category, _)| *category == input.data.category)
        .map_or("5wd", |(_, limit)| *limit))
}

rules! { "ticket.route" => route, "ticket.deadline" => deadline }
