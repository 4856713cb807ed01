//! 北辰区派单表 — Beichen district's own table from ticket category to the department that
//! handles it. Other districts bind their own table; categories that need judgement (a
//! dispute) go to the street command centre for manual dispatch (the answer is null).
//! Since 1.1.0 also the district's time limits by category (`ticket.deadline`).

use civicflow_plugin_sdk::{RuleError, rules};
use serde::{Deserialize, Serialize};

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

/// The departments a dispatcher may send a ticket to, by name (the dispatch form's choices).
#[derive(Serialize)]
struct Department {
    value: &'static str,
    title: Title,
}

#[derive(Serialize)]
struct Title {
    #[serde(rename = "zh-CN")]
    zh: &'static str,
    en: &'static str,
}

const DEPARTMENTS: &[(&str, &str, &str)] = &[
    ("beichen-cgj", "区城市管理委员会", "Urban Management Committee"),
    ("beichen-swj", "区水务局", "Water Bureau"),
];

fn departments(_: serde::de::IgnoredAny) -> Result<Vec<Department>, RuleError> {
    Ok(DEPARTMENTS
        .iter()
        .map(|(value, zh, en)| Department {
            value,
            title: Title { zh, en },
        })
        .collect())
}

rules! { "ticket.route" => route, "ticket.deadline" => deadline, "ticket.departments" => departments }
