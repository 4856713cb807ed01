//! 北辰区派单表 — Beichen district's own table from ticket category to the department that
//! handles it. Other districts bind their own table; categories that need judgement (a
//! dispute) go to the street command centre for manual dispatch (the answer is null).

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

rules! { "ticket.route" => route }
