//! A village's own dues rule, bound at that village to override the district's national
//! rule: rural members pay a flat 1 yuan a month (the national range is 0.2 to 1), and a
//! member whose hardship exemption the branch approved pays nothing. Everyone else pays
//! by the national rule.

use civicflow_plugin_sdk::{RuleError, rules};
use dues_rate_national::{Dues, Input, Member};
use serde::Deserialize;

#[derive(Deserialize)]
struct VillageInput {
    data: VillageMember,
}

#[derive(Deserialize)]
struct VillageMember {
    #[serde(default)]
    income: Option<f64>,
    #[serde(default)]
    category: Option<String>,
    /// Set by the dues workflow from the member register: an exemption the branch approved,
    /// up to and including the month it named.
    #[serde(default)]
    hardship_exempt: bool,
}

const RURAL_FLAT: f64 = 1.0;

fn rate(input: VillageInput) -> Result<Dues, RuleError> {
    let m = input.data;
    if m.hardship_exempt {
        return Ok(Dues {
            amount: 0.0,
            rate: None,
            basis: "hardship exemption approved by the branch".into(),
        });
    }
    match m.category.as_deref() {
        Some("rural") => Ok(Dues {
            amount: RURAL_FLAT,
            rate: None,
            basis: "village rule: rural members 1 yuan".into(),
        }),
        category => dues_rate_national::rate(Input {
            data: Member {
                income: m.income,
                category: category.unwrap_or("employed").into(),
            },
        }),
    }
}

rules! { "dues.rate" => rate }
