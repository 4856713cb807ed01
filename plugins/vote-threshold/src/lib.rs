//! 业主共同决定 — Civil Code art. 278. Owners holding at least two thirds of the floor area
//! and at least two thirds of the headcount must take part. Ordinary matters then pass with
//! more than half of the participating area and headcount; raising or using the building
//! maintenance fund, rebuilding, or changing the use of common parts need at least three
//! quarters of both. Integer arithmetic (square centimetres, people), so edges are exact.

use civicflow_plugin_sdk::{RuleError, rules};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    data: Tally,
}

#[derive(Deserialize)]
struct Tally {
    /// ordinary | maintenance_fund | rebuild | change_of_use
    matter: String,
    eligible: Share,
    participated: Share,
    approved: Share,
}

#[derive(Deserialize, Clone, Copy)]
struct Share {
    /// Square metres.
    area: f64,
    owners: u64,
}

#[derive(Serialize)]
struct Result_ {
    quorum: bool,
    passed: bool,
    /// The approval needed, as a fraction of participants: "1/2" (more than) or "3/4" (at least).
    threshold: &'static str,
    reason: String,
}

fn cm2(m2: f64) -> u128 {
    (m2 * 10_000.0).round().max(0.0) as u128
}

/// `part / whole >= num / den`, exactly.
fn at_least(part: u128, whole: u128, num: u128, den: u128) -> bool {
    part * den >= whole * num
}

/// `part / whole > num / den`, exactly.
fn more_than(part: u128, whole: u128, num: u128, den: u128) -> bool {
    part * den > whole * num
}

fn decide(input: Input) -> Result<Result_, RuleError> {
    let t = input.data;
    let major = match t.matter.as_str() {
        "ordinary" => false,
        "maintenance_fund" | "rebuild" | "change_of_use" => true,
        other => {
            return Err(RuleError::new(
                "unknown_matter",
                format!("unknown matter type \"{other}\""),
            ));
        }
    };
    if t.eligible.owners == 0 || t.eligible.area <= 0.0 {
        return Err(RuleError::new("empty_roll", "the voter roll is empty"));
    }
    let (ea, pa, aa) = (cm2(t.eligible.area), cm2(t.participated.area), cm2(t.approved.area));
    let (eo, po, ao) = (
        u128::from(t.eligible.owners),
        u128::from(t.participated.owners),
        u128::from(t.approved.owners),
    );
    let quorum = at_least(pa, ea, 2, 3) && at_least(po, eo, 2, 3);
    let (passed, threshold) = if major {
        (quorum && at_least(aa, pa, 3, 4) && at_least(ao, po, 3, 4), "3/4")
    } else {
        (quorum && more_than(aa, pa, 1, 2) && more_than(ao, po, 1, 2), "1/2")
    };
    let reason = match (quorum, passed) {
        (false, _) => "participation below two thirds of area or headcount".to_string(),
        (true, true) => format!("passed: approval meets {threshold} of participating area and headcount"),
        (true, false) => format!("rejected: approval below {threshold} of participating area or headcount"),
    };
    Ok(Result_ {
        quorum,
        passed,
        threshold,
        reason,
    })
}

rules! { "vote.threshold" => decide }
