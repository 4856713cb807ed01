//! 党费收缴基准 — the national base rule for monthly party dues.
//!
//! By monthly after-tax income: up to 3,000 yuan 0.5%; 3,000–5,000 1%; 5,000–10,000 1.5%;
//! above 10,000 2%. Retired members: up to 5,000 0.5%, above 1%. Students, unemployed and
//! rural members pay a small fixed amount (0.2 yuan here, the national minimum; localities
//! bind their own plugin to change it).

use civicflow_plugin_sdk::RuleError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct Input {
    pub data: Member,
}

#[derive(Debug, Deserialize)]
pub struct Member {
    /// Monthly after-tax income in yuan.
    #[serde(default)]
    pub income: Option<f64>,
    /// employed | retired | student | unemployed | rural
    #[serde(default = "employed")]
    pub category: String,
}

fn employed() -> String {
    "employed".into()
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Dues {
    /// Yuan, rounded to the fen.
    pub amount: f64,
    /// The rate applied to the income, or null for a fixed amount.
    pub rate: Option<f64>,
    /// Which band applied, in words, for the member's receipt.
    pub basis: String,
}

pub const FIXED_AMOUNT: f64 = 0.2;

fn fen(yuan: f64) -> f64 {
    (yuan * 100.0).round() / 100.0
}

fn by_rate(income: f64, rate: f64, basis: &str) -> Dues {
    Dues {
        amount: fen(income * rate),
        rate: Some(rate),
        basis: basis.into(),
    }
}

/// The national rule as a plain function (also what `dues.rate` calls).
pub fn rate(input: Input) -> Result<Dues, RuleError> {
    let m = input.data;
    let needs_income = || {
        m.income.filter(|i| i.is_finite() && *i >= 0.0).ok_or_else(|| {
            RuleError::new(
                "missing_income",
                "monthly after-tax income is required for this category",
            )
        })
    };
    Ok(match m.category.as_str() {
        "student" | "unemployed" | "rural" => Dues {
            amount: FIXED_AMOUNT,
            rate: None,
            basis: format!("{} fixed amount", m.category),
        },
        "retired" => {
            let income = needs_income()?;
            if income <= 5000.0 {
                by_rate(income, 0.005, "retired, up to 5,000: 0.5%")
            } else {
                by_rate(income, 0.01, "retired, above 5,000: 1%")
            }
        }
        "employed" => {
            let income = needs_income()?;
            match income {
                i if i <= 3000.0 => by_rate(i, 0.005, "up to 3,000: 0.5%"),
                i if i <= 5000.0 => by_rate(i, 0.01, "3,000 to 5,000: 1%"),
                i if i <= 10000.0 => by_rate(i, 0.015, "5,000 to 10,000: 1.5%"),
                i => by_rate(i, 0.02, "above 10,000: 2%"),
            }
        }
        other => {
            return Err(RuleError::new(
                "unknown_category",
                format!("unknown member category \"{other}\""),
            ));
        }
    })
}

#[cfg(feature = "export")]
civicflow_plugin_sdk::rules! { "dues.rate" => rate }

#[cfg(test)]
mod tests {
    use super::*;

    fn dues(income: f64, category: &str) -> f64 {
        rate(Input {
            data: Member {
                income: Some(income),
                category: category.into(),
            },
        })
        .unwrap()
        .amount
    }

    #[test]
    fn bands_and_their_edges() {
        assert_eq!(dues(3000.0, "employed"), 15.0);
        assert_eq!(dues(3000.01, "employed"), 30.0);
        assert_eq!(dues(10000.0, "employed"), 150.0);
        assert_eq!(dues(12000.0, "employed"), 240.0);
        assert_eq!(dues(5000.0, "retired"), 25.0);
        assert_eq!(dues(6000.0, "retired"), 60.0);
        assert_eq!(dues(0.0, "student"), 0.2);
    }
}
