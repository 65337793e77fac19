//! How big a pass-rate drop the gate can see: the power of the one-sided Fisher exact
//! test, exactly, by summing over every pair of outcomes, and the run counts it needs.
//!
//! For `a_n` baseline runs passing at rate `p` and `b_n` new runs passing at `p − drop`,
//! the chance that the test's p-value is at or below `level` is
//!
//!   Σ_{x_A, x_B} Bin(x_A; a_n, p) · Bin(x_B; b_n, p − drop) · [fisher(x_A, x_B) ≤ level].
//!
//! Fisher's p-value falls as A's share of the passes rises, so for each total T of passes
//! the rejected tables are those with x_A at or above a critical count: one table of
//! critical counts per (a_n, b_n, level), then each power is a double sum.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::distributions::{Hypergeometric, binomial_pmf, ln_factorials};

/// The critical counts of one design: for each total number of passes T, the smallest
/// count of A's passes whose p-value is at or below the level (`u32::MAX`: none is).
struct Design {
    a_n: u32,
    b_n: u32,
    critical: Vec<u32>,
    ln_fact: Vec<f64>,
}

impl Design {
    fn new(a_n: u32, b_n: u32, level: f64) -> Design {
        let ln_fact = ln_factorials((a_n + b_n) as usize);
        let critical = (0..=a_n + b_n)
            .map(|passes| {
                if passes == 0 || passes == a_n + b_n {
                    return u32::MAX;
                }
                let h = Hypergeometric::new(a_n, b_n, passes, &ln_fact);
                // Walk down from the top, summing the upper tail.
                let mut tail = 0.0;
                let mut critical = u32::MAX;
                for x in (h.low..=h.high()).rev() {
                    tail += h.pmf[(x - h.low) as usize];
                    if tail <= level * (1.0 + 1e-12) {
                        critical = x;
                    } else {
                        break;
                    }
                }
                critical
            })
            .collect();
        Design {
            a_n,
            b_n,
            critical,
            ln_fact,
        }
    }

    /// The chance of a rejection when A passes at `a_rate` and B at `b_rate`.
    fn power(&self, a_rate: f64, b_rate: f64) -> f64 {
        let a = binomial_pmf(self.a_n, a_rate, &self.ln_fact);
        let b = binomial_pmf(self.b_n, b_rate, &self.ln_fact);
        let mut total = 0.0;
        for (x_a, pa) in a.iter().enumerate() {
            if *pa < 1e-300 {
                continue;
            }
            for (x_b, pb) in b.iter().enumerate() {
                if x_a as u32 >= self.critical[x_a + x_b] {
                    total += pa * pb;
                }
            }
        }
        total.min(1.0)
    }
}

/// Designs already built, by (a_n, b_n, level bits): a 2,000-case suite has few distinct
/// run counts, and each design costs O((a_n + b_n)²).
type Designs = HashMap<(u32, u32, u64), std::sync::Arc<Design>>;
static DESIGNS: Mutex<Option<Designs>> = Mutex::new(None);

fn design(a_n: u32, b_n: u32, level: f64) -> std::sync::Arc<Design> {
    let key = (a_n, b_n, level.to_bits());
    let mut guard = DESIGNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let designs = guard.get_or_insert_with(HashMap::new);
    if designs.len() > 256 {
        designs.clear();
    }
    std::sync::Arc::clone(
        designs
            .entry(key)
            .or_insert_with(|| std::sync::Arc::new(Design::new(a_n, b_n, level))),
    )
}

/// The chance that Fisher's one-sided test at `level` calls a drop from `rate` to
/// `rate − drop` a regression, with `a_n` baseline and `b_n` new runs.
pub fn power(rate: f64, drop: f64, a_n: u32, b_n: u32, level: f64) -> f64 {
    if a_n == 0 || b_n == 0 {
        return 0.0;
    }
    design(a_n, b_n, level).power(rate, (rate - drop).max(0.0))
}

/// The smallest drop (to 0.001) detected with at least `target` power, or `None` when even
/// a drop to a 0% pass rate is not.
pub fn detectable_drop(rate: f64, a_n: u32, b_n: u32, level: f64, target: f64) -> Option<f64> {
    if rate <= 0.0 || power(rate, rate, a_n, b_n, level) < target {
        return None;
    }
    let (mut low, mut high) = (0.0, rate);
    while high - low > 5e-4 {
        let mid = (low + high) / 2.0;
        if power(rate, mid, a_n, b_n, level) >= target {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some((high * 1000.0).ceil() / 1000.0)
}

/// The fewest runs per case, the same on both sides, at which a drop of `drop` from
/// `rate` is detected with at least `target` power; `None` beyond `most`. Power does not
/// rise strictly with n (the test is discrete): the answer is where a doubling search and a
/// bisection first find the target reached, with one run fewer short of it.
pub fn runs_needed(rate: f64, drop: f64, level: f64, target: f64, most: u32) -> Option<u32> {
    if drop <= 0.0 || rate - drop < 0.0 {
        return None;
    }
    let enough = |n: u32| power(rate, drop, n, n, level) >= target;
    let mut high = 2;
    while !enough(high) {
        if high >= most {
            return None;
        }
        high = (high * 2).min(most);
    }
    Some(first_enough(high / 2, high, enough))
}

/// Bisection between `low` (not enough) and `high` (enough): the first n that is enough.
fn first_enough(mut low: u32, mut high: u32, enough: impl Fn(u32) -> bool) -> u32 {
    while high - low > 1 {
        let mid = (low + high) / 2;
        if enough(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
}

/// The fewest new runs, against a baseline of `a_n` runs already made, at which a drop of
/// `drop` from `rate` is detected with `target` power; `None` when even `most` are not
/// enough (a small baseline limits what any number of new runs can show).
pub fn runs_needed_against(
    rate: f64,
    drop: f64,
    a_n: u32,
    level: f64,
    target: f64,
    most: u32,
) -> Option<u32> {
    if drop <= 0.0 || rate - drop < 0.0 || a_n == 0 {
        return None;
    }
    let enough = |n: u32| power(rate, drop, a_n, n, level) >= target;
    if !enough(most) {
        return None;
    }
    Some(first_enough(0, most, enough))
}

/// One case of a sizing: its baseline rate, the drop to detect, and the runs per case
/// (both sides) that give the wanted power, or why none do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseSize {
    pub id: String,
    pub baseline_passed: u32,
    pub baseline_evaluated: u32,
    /// The drop to catch (`detect`).
    pub drop: f64,
    pub level: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<u32>,
    /// Why no run count is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The per-case level a single regressed case faces under each correction, before any run:
/// α for none, α/m for Holm, α over the cases that can move at all (a baseline rate
/// strictly between 0 and 1, plus this one) for the discrete Holm.
pub fn planning_level(
    correction: crate::model::summary::Correction,
    alpha: f64,
    rates: &[f64],
    this: f64,
) -> f64 {
    use crate::model::summary::Correction;
    match correction {
        Correction::None => alpha,
        Correction::Holm => alpha / rates.len().max(1) as f64,
        Correction::DiscreteHolm => {
            let movable = rates.iter().filter(|r| **r > 0.0 && **r < 1.0).count();
            let this_counted = this > 0.0 && this < 1.0;
            alpha / (movable + usize::from(!this_counted)).max(1) as f64
        }
    }
}

/// Sizes every case: the runs per case, the same on both sides, at which the gate catches
/// a drop of `drop` from the case's baseline rate with `target` power. With a `min_effect`
/// the drop must exceed it: the score test sees a drop d beyond the margin about as
/// Fisher's sees d − margin, so Fisher's power is taken at `drop − min_effect`.
#[allow(clippy::too_many_arguments)]
pub fn size_cases(
    cases: &[(String, u32, u32)],
    drop: f64,
    min_effect: f64,
    alpha: f64,
    correction: crate::model::summary::Correction,
    target: f64,
    most: u32,
) -> Vec<CaseSize> {
    let rates: Vec<f64> = cases
        .iter()
        .map(|(_, passed, n)| {
            if *n == 0 {
                0.0
            } else {
                f64::from(*passed) / f64::from(*n)
            }
        })
        .collect();
    cases
        .iter()
        .zip(&rates)
        .map(|((id, passed, evaluated), rate)| {
            let level = planning_level(correction, alpha, &rates, *rate);
            let (runs, note) = if *evaluated == 0 {
                (
                    None,
                    Some("the baseline has no evaluated run of this case".to_owned()),
                )
            } else if *rate < drop {
                (
                    None,
                    Some(format!(
                        "cannot drop by {:.0} points: the baseline passes {:.0}% of runs",
                        drop * 100.0,
                        rate * 100.0
                    )),
                )
            } else {
                match runs_needed(*rate, drop - min_effect, level, target, most) {
                    Some(n) => (Some(n), None),
                    None => (None, Some(format!("more than {most} runs"))),
                }
            };
            CaseSize {
                id: id.clone(),
                baseline_passed: *passed,
                baseline_evaluated: *evaluated,
                drop,
                level,
                runs,
                note,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power by brute force over every table, for a check of the critical-count shortcut.
    fn brute_power(rate: f64, drop: f64, a_n: u32, b_n: u32, level: f64) -> f64 {
        let ln_fact = ln_factorials((a_n + b_n) as usize);
        let a = binomial_pmf(a_n, rate, &ln_fact);
        let b = binomial_pmf(b_n, rate - drop, &ln_fact);
        let mut total = 0.0;
        for x_a in 0..=a_n {
            for x_b in 0..=b_n {
                if crate::stats::fisher_worse(x_a, a_n, x_b, b_n) <= level {
                    total += a[x_a as usize] * b[x_b as usize];
                }
            }
        }
        total
    }

    #[test]
    fn power_matches_summing_every_table() {
        for (rate, drop, n, level) in [
            (0.76, 0.44, 20, 0.05 / 200.0),
            (0.76, 0.44, 40, 0.05 / 200.0),
            (0.9, 0.2, 30, 0.05),
            (0.5, 0.3, 15, 0.01),
        ] {
            let fast = power(rate, drop, n, n, level);
            let slow = brute_power(rate, drop, n, n, level);
            assert!(
                (fast - slow).abs() < 1e-12,
                "{rate} {drop} {n}: {fast} vs {slow}"
            );
        }
    }

    #[test]
    fn the_issue_figures_for_fisher_and_bonferroni() {
        // The issue's figures: with 200 cases at 0.05 (α/m = 0.00025), a 44-point drop from
        // 76% is found about 18% of the time at 20 runs and 62% at 40.
        let at_20 = power(0.76, 0.44, 20, 20, 0.05 / 200.0);
        let at_40 = power(0.76, 0.44, 40, 40, 0.05 / 200.0);
        assert!((at_20 - 0.18).abs() < 0.03, "{at_20}");
        assert!((at_40 - 0.62).abs() < 0.03, "{at_40}");
        // No drop: at most the level.
        assert!(power(0.76, 0.0, 20, 20, 0.05) <= 0.05);
    }

    #[test]
    fn detectable_drops_and_run_counts_agree() {
        let level = 0.05 / 200.0;
        let drop = detectable_drop(0.76, 40, 40, level, 0.8).expect("40 runs can see some drop");
        assert!(power(0.76, drop, 40, 40, level) >= 0.8);
        assert!(power(0.76, drop - 0.01, 40, 40, level) < 0.8);
        // A 0% baseline cannot drop; 3 runs cannot reach α/m at all.
        assert_eq!(detectable_drop(0.0, 20, 20, level, 0.8), None);
        assert_eq!(detectable_drop(0.76, 3, 3, level, 0.8), None);
        let n = runs_needed(0.76, 0.44, level, 0.8, 10_000).expect("reachable");
        assert!(power(0.76, 0.44, n, n, level) >= 0.8);
        assert!(power(0.76, 0.44, n - 1, n - 1, level) < 0.8);
        assert_eq!(runs_needed(0.1, 0.2, level, 0.8, 10_000), None);
    }
}
