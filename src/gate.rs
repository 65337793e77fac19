//! The verdict over many cases: each case's pass rate against the baseline's, judged so
//! that a chain that did not change fails at most a `significance` share of builds however
//! many cases the suite has. `--baseline` and `diff` both come here.
//!
//! Per case, one-sided tests in each direction:
//! - fixed run counts: Fisher's exact test on the counts (conditional on the margins, so
//!   its exact null distribution is known); with `min_effect` > 0, also the
//!   Farrington–Manning score test of a drop beyond it, and both must call it;
//! - a side stopped adaptively (`runs: auto`): the always-valid p-value of
//!   [`crate::sequential::BaselineTest`], valid at whatever run the case stopped.
//!
//! The cases then share the budget by the chosen [`Correction`] (default: Holm's step-down
//! with each Fisher test's exact null distribution, see [`crate::multiple`]); a gated
//! retrieval measure joins the same family as one more test. Benjamini–Hochberg q-values of
//! the two-sided p-values say which cases moved either way, for diagnosis.

use crate::distributions::TwoSamples;
use crate::model::summary::{
    CaseStats, CaseTest, Change, Correction, Gate, GatePower, RetrievalChange, SuitePassRate,
};
use crate::multiple::{Null, benjamini_hochberg, discrete_holm, first_step_threshold, holm};
use crate::power::detectable_drop;
use crate::sequential::always_valid_worse;
use crate::stats::{
    farrington_manning_worse, fisher_worse, fisher_worse_attainable, paired_pass_rate_change,
    ratio, suite_pass_rate,
};

/// The power the detectable drops are quoted at.
pub const TARGET_POWER: f64 = 0.8;

/// One side of a case's comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub passed: u32,
    pub evaluated: u32,
    /// The side's run count was decided by its results (`runs: auto`).
    pub adaptive: bool,
}

/// A case to judge: the baseline (`before`) and this run (`after`).
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub before: Counts,
    pub after: Counts,
    /// The smallest drop (or rise) that counts.
    pub min_effect: f64,
    /// A stricter level for this case alone, if it sets one.
    pub significance: Option<f64>,
}

/// What the gate says about one case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaseVerdict {
    pub change: Change,
    /// Raw and adjusted p-values in the direction the pass rate moved.
    pub p_value: f64,
    pub p_adjusted: f64,
    pub q_value: f64,
    /// The level `p_adjusted` was held to.
    pub significance: f64,
    pub test: CaseTest,
}

/// The gate's verdicts, in the order of the comparisons.
#[derive(Debug, Clone)]
pub struct Verdicts {
    pub cases: Vec<CaseVerdict>,
    /// The gated retrieval measure's adjusted p-value, when one was given.
    pub retrieval_adjusted: Option<f64>,
    /// The p-value at or below which a case is a regression whatever the others do (the
    /// procedure's first step): the level a single regressed case faces.
    pub threshold: f64,
}

/// One case of two reports: the baseline's statistics, this run's, its `min_effect` and its
/// own stricter significance, if any.
pub struct CasePair<'a> {
    pub before: &'a CaseStats,
    pub after: &'a CaseStats,
    pub min_effect: f64,
    pub significance: Option<f64>,
}

/// Judges the cases both reports have, and the gated retrieval measure among
/// `retrieval` (its `change` is set from its adjusted p-value): each case's verdict, its
/// detectable drop, and the gate's summary.
pub fn judge_cases(
    pairs: &[CasePair],
    alpha: f64,
    correction: Correction,
    retrieval: &mut [RetrievalChange],
) -> (Vec<CaseVerdict>, Vec<Option<f64>>, Gate) {
    let counts = |c: &CaseStats| Counts {
        passed: c.passed,
        evaluated: c.evaluated,
        adaptive: c.adaptive.is_some(),
    };
    let comparisons: Vec<Comparison> = pairs
        .iter()
        .map(|p| Comparison {
            before: counts(p.before),
            after: counts(p.after),
            min_effect: p.min_effect,
            significance: p.significance,
        })
        .collect();
    let gated = retrieval.iter_mut().find(|r| r.change.is_some());
    let retrieval_p = gated
        .as_ref()
        .map(|r| one_sided_drop(r.test.p_randomization, r.test.mean_difference));
    let verdicts = judge(&comparisons, alpha, correction, retrieval_p);
    if let (Some(gated), Some(adjusted)) = (gated, verdicts.retrieval_adjusted) {
        gated.change = Some(if adjusted <= alpha && gated.test.mean_difference < 0.0 {
            Change::Regression
        } else if gated.test.p_randomization < alpha && gated.test.mean_difference > 0.0 {
            Change::Improvement
        } else {
            Change::Unchanged
        });
    }
    let drops = detectable_drops(&comparisons, &verdicts, correction);
    let count = |change: Change| verdicts.cases.iter().filter(|v| v.change == change).count();
    let rates: Vec<(u32, u32, u32, u32)> = pairs
        .iter()
        .map(|p| {
            (
                p.before.passed,
                p.before.evaluated,
                p.after.passed,
                p.after.evaluated,
            )
        })
        .collect();
    let gate = Gate {
        correction,
        significance: alpha,
        compared: pairs.len(),
        regressions: count(Change::Regression),
        improvements: count(Change::Improvement),
        moved: verdicts.cases.iter().filter(|v| v.q_value <= alpha).count(),
        threshold: verdicts.threshold,
        pass_rate: SuitePassRate {
            cases: rates.iter().filter(|r| r.1 > 0 && r.3 > 0).count(),
            before: suite_pass_rate(&rates.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>()),
            after: suite_pass_rate(&rates.iter().map(|r| (r.2, r.3)).collect::<Vec<_>>()),
            change: paired_pass_rate_change(&rates),
        },
        power: summarize_power(
            pairs.iter().map(|p| p.after.id.as_str()),
            &comparisons,
            &drops,
            verdicts.threshold,
        ),
    };
    (verdicts.cases, drops, gate)
}

/// One direction's tests of one case: with no change as the null, and with `min_effect`
/// as the null (the same test when it is 0).
struct OneWay {
    exact: (f64, Null),
    margin: (f64, Null),
}

/// "`b` passes less often than `a`" (by more than `margin` for the second test).
fn one_way(a: Counts, b: Counts, margin: f64) -> OneWay {
    if a.adaptive || b.adaptive {
        let samples = TwoSamples {
            a_pass: a.passed,
            a_n: a.evaluated,
            b_pass: b.passed,
            b_n: b.evaluated,
        };
        return OneWay {
            exact: (always_valid_worse(&samples, 0.0), Null::Uniform),
            margin: (always_valid_worse(&samples, margin), Null::Uniform),
        };
    }
    let p = fisher_worse(a.passed, a.evaluated, b.passed, b.evaluated);
    let exact = (
        p,
        Null::Attainable(fisher_worse_attainable(
            a.evaluated,
            b.evaluated,
            a.passed + b.passed,
        )),
    );
    let margin = if margin > 0.0 {
        (
            farrington_manning_worse(a.passed, a.evaluated, b.passed, b.evaluated, margin),
            Null::Uniform,
        )
    } else {
        exact.clone()
    };
    OneWay { exact, margin }
}

fn adjust(correction: Correction, p: &[f64], nulls: &[Null]) -> Vec<f64> {
    match correction {
        Correction::DiscreteHolm => discrete_holm(p, nulls),
        Correction::Holm => holm(p),
        Correction::None => p.to_vec(),
    }
}

/// The adjusted p-values of one direction: each case's larger of its two tests' adjusted
/// p-values (both must call it), and the extra test's (appended last in both families).
fn adjusted(
    correction: Correction,
    tests: &[OneWay],
    extra: Option<f64>,
) -> (Vec<f64>, Option<f64>) {
    let family = |pick: fn(&OneWay) -> &(f64, Null)| {
        let mut p: Vec<f64> = tests.iter().map(|t| pick(t).0).collect();
        let mut nulls: Vec<Null> = tests.iter().map(|t| pick(t).1.clone()).collect();
        if let Some(extra) = extra {
            p.push(extra);
            nulls.push(Null::Uniform);
        }
        adjust(correction, &p, &nulls)
    };
    let exact = family(|t| &t.exact);
    let margin = family(|t| &t.margin);
    let cases = (0..tests.len()).map(|i| exact[i].max(margin[i])).collect();
    (
        cases,
        extra.map(|_| exact[tests.len()].max(margin[tests.len()])),
    )
}

/// Judges every case at family-wise level `alpha`. `retrieval`: the gated retrieval
/// measure's one-sided p-value for a drop, if it is gated.
pub fn judge(
    comparisons: &[Comparison],
    alpha: f64,
    correction: Correction,
    retrieval: Option<f64>,
) -> Verdicts {
    let worse: Vec<OneWay> = comparisons
        .iter()
        .map(|c| one_way(c.before, c.after, c.min_effect))
        .collect();
    let better: Vec<OneWay> = comparisons
        .iter()
        .map(|c| one_way(c.after, c.before, c.min_effect))
        .collect();
    let (worse_adjusted, retrieval_adjusted) = adjusted(correction, &worse, retrieval);
    let (better_adjusted, _) = adjusted(correction, &better, None);
    let two_sided: Vec<f64> = worse
        .iter()
        .zip(&better)
        .map(|(w, b)| (2.0 * w.exact.0.min(b.exact.0)).min(1.0))
        .collect();
    let q = benjamini_hochberg(&two_sided);

    // The level one regressed case faces: the first step's critical value.
    let mut nulls: Vec<Null> = worse.iter().map(|w| w.exact.1.clone()).collect();
    if retrieval.is_some() {
        nulls.push(Null::Uniform);
    }
    let threshold = match correction {
        Correction::DiscreteHolm => first_step_threshold(&nulls, alpha),
        Correction::Holm => alpha / nulls.len().max(1) as f64,
        Correction::None => alpha,
    };

    let cases: Vec<CaseVerdict> = comparisons
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let level = match (correction, c.significance) {
                (Correction::None, Some(own)) => own,
                (_, Some(own)) => own.min(alpha),
                (_, None) => alpha,
            };
            let dropped = ratio(c.after.passed, c.after.evaluated)
                < ratio(c.before.passed, c.before.evaluated);
            let raw = |t: &OneWay| t.exact.0.max(t.margin.0);
            let (p_value, p_adjusted) = if dropped {
                (raw(&worse[i]), worse_adjusted[i])
            } else {
                (raw(&better[i]), better_adjusted[i])
            };
            let change = if worse_adjusted[i] <= level {
                Change::Regression
            } else if better_adjusted[i] <= level {
                Change::Improvement
            } else {
                Change::Unchanged
            };
            let adaptive = c.before.adaptive || c.after.adaptive;
            let test = if adaptive {
                CaseTest::AlwaysValid
            } else if c.min_effect > 0.0 {
                CaseTest::FisherAndScore
            } else {
                CaseTest::Fisher
            };
            CaseVerdict {
                change,
                p_value,
                p_adjusted,
                q_value: q[i],
                significance: level,
                test,
            }
        })
        .collect();
    Verdicts {
        cases,
        retrieval_adjusted,
        threshold,
    }
}

/// Per case, the smallest drop from the baseline's pass rate that the gate detects with
/// 80% power at these run counts: Fisher's power at the level a single regressed case
/// faces (the case's own, if stricter). A `min_effect` adds itself on top (the score test
/// sees a drop d beyond the margin about as Fisher sees d). `None` for adaptive cases
/// (their run counts were chosen by their results) and for cases no drop would fail.
pub fn detectable_drops(
    comparisons: &[Comparison],
    verdicts: &Verdicts,
    correction: Correction,
) -> Vec<Option<f64>> {
    let mut known: std::collections::HashMap<(u32, u32, u32, u64), Option<f64>> =
        std::collections::HashMap::new();
    comparisons
        .iter()
        .zip(&verdicts.cases)
        .map(|(c, v)| {
            if c.before.adaptive || c.after.adaptive {
                return None;
            }
            let level = match correction {
                Correction::None => v.significance,
                _ => verdicts.threshold.min(v.significance),
            };
            let key = (
                c.before.passed,
                c.before.evaluated,
                c.after.evaluated,
                level.to_bits(),
            );
            let drop = *known.entry(key).or_insert_with(|| {
                detectable_drop(
                    ratio(c.before.passed, c.before.evaluated),
                    c.before.evaluated,
                    c.after.evaluated,
                    level,
                    TARGET_POWER,
                )
            });
            drop.map(|d| (d + c.min_effect).min(1.0))
        })
        .collect()
}

/// The median and largest detectable drop, and the cases (by id) that cannot be gated.
pub fn summarize_power<'a>(
    ids: impl Iterator<Item = &'a str>,
    comparisons: &[Comparison],
    drops: &[Option<f64>],
    level: f64,
) -> GatePower {
    let mut sorted: Vec<f64> = drops.iter().flatten().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let ungateable = ids
        .zip(comparisons.iter().zip(drops))
        .filter(|(_, (c, d))| d.is_none() && !(c.before.adaptive || c.after.adaptive))
        .map(|(id, _)| id.to_owned())
        .collect();
    GatePower {
        level,
        median_drop: (!sorted.is_empty()).then(|| sorted[sorted.len() / 2]),
        largest_drop: sorted.last().copied(),
        ungateable,
    }
}

/// The one-sided p-value for a drop in a paired randomization test's mean, from its
/// two-sided p-value (the sign-flip distribution is symmetric).
pub fn one_sided_drop(p_two_sided: f64, mean_difference: f64) -> f64 {
    if mean_difference < 0.0 {
        p_two_sided / 2.0
    } else {
        (1.0 - p_two_sided / 2.0).max(0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(passed: u32, evaluated: u32) -> Counts {
        Counts {
            passed,
            evaluated,
            adaptive: false,
        }
    }

    fn case(before: (u32, u32), after: (u32, u32)) -> Comparison {
        Comparison {
            before: fixed(before.0, before.1),
            after: fixed(after.0, after.1),
            min_effect: 0.0,
            significance: None,
        }
    }

    #[test]
    fn one_clear_regression_among_unchanged_cases() {
        // 199 cases that barely moved and one that fell from 20/20 to 5/20.
        let mut cases: Vec<Comparison> = (0..199).map(|_| case((15, 20), (14, 20))).collect();
        cases.push(case((20, 20), (5, 20)));
        let v = judge(&cases, 0.05, Correction::DiscreteHolm, None);
        assert_eq!(v.cases[199].change, Change::Regression);
        assert!(v.cases[199].p_adjusted <= 0.05);
        assert!(v.cases[..199].iter().all(|c| c.change == Change::Unchanged));
        // Without a correction the raw p-values are what is judged.
        let none = judge(&cases, 0.05, Correction::None, None);
        assert_eq!(none.cases[0].p_adjusted, none.cases[0].p_value);
    }

    #[test]
    fn a_drop_smaller_than_min_effect_does_not_count() {
        // 100/100 → 90/100: Fisher calls it (p ≈ 0.0007), but a 10-point drop is not
        // beyond a 15-point min_effect.
        let mut c = case((100, 100), (90, 100));
        assert_eq!(
            judge(&[c], 0.05, Correction::DiscreteHolm, None).cases[0].change,
            Change::Regression
        );
        c.min_effect = 0.15;
        let v = judge(&[c], 0.05, Correction::DiscreteHolm, None);
        assert_eq!(v.cases[0].change, Change::Unchanged);
        assert_eq!(v.cases[0].test, CaseTest::FisherAndScore);
        // 100/100 → 50/100 is well beyond it.
        c.after = fixed(50, 100);
        assert_eq!(
            judge(&[c], 0.05, Correction::DiscreteHolm, None).cases[0].change,
            Change::Regression
        );
    }

    #[test]
    fn a_case_significance_only_tightens() {
        let mut c = case((20, 20), (12, 20));
        let loose = judge(&[c], 0.05, Correction::DiscreteHolm, None);
        assert_eq!(loose.cases[0].change, Change::Regression);
        c.significance = Some(0.5);
        assert_eq!(
            judge(&[c], 0.05, Correction::DiscreteHolm, None).cases[0].significance,
            0.05
        );
        c.significance = Some(0.001);
        let strict = judge(&[c], 0.05, Correction::DiscreteHolm, None);
        assert_eq!(
            strict.cases[0].change,
            Change::Unchanged,
            "{:?}",
            strict.cases[0]
        );
    }

    #[test]
    fn adaptive_sides_use_the_always_valid_test() {
        let mut c = case((20, 20), (5, 20));
        c.after.adaptive = true;
        let v = judge(&[c], 0.05, Correction::DiscreteHolm, None);
        assert_eq!(v.cases[0].test, CaseTest::AlwaysValid);
        assert_eq!(v.cases[0].change, Change::Regression);
        assert!(v.cases[0].p_value > fisher_worse(20, 20, 5, 20));
        assert_eq!(
            detectable_drops(&[c], &v, Correction::DiscreteHolm),
            vec![None]
        );
    }

    #[test]
    fn the_retrieval_gate_shares_the_budget() {
        let cases: Vec<Comparison> = (0..9).map(|_| case((20, 20), (20, 20))).collect();
        // Alone at 0.05 a retrieval p of 0.02 would fail the build; in a family of cases
        // that cannot reach small p-values it still does, and Holm charges it ten times.
        let discrete = judge(&cases, 0.05, Correction::DiscreteHolm, Some(0.02));
        assert!(discrete.retrieval_adjusted.is_some_and(|p| p <= 0.05));
        let holm = judge(&cases, 0.05, Correction::Holm, Some(0.02));
        assert!(
            holm.retrieval_adjusted
                .is_some_and(|p| (p - 0.2).abs() < 1e-12)
        );
    }

    /// The guarantee itself, by simulation: 1,000 A/A families of 200 cases at 76% and 20
    /// runs each side. Without a correction nearly every build fails; with Holm or the
    /// discrete Holm at most 5% do. (bench/verdicts.py does the same on the real chain.)
    /// Then 10 of the 200 cases drop by 44 points: discrete Holm finds more than Holm.
    #[test]
    fn family_wise_error_and_power_by_simulation() {
        let mut rng = fastrand::Rng::with_seed(2024);
        let draw = |rng: &mut fastrand::Rng, rate: f64, n: u32| {
            (0..n).filter(|_| rng.f64() < rate).count() as u32
        };
        let builds = 1000;
        let mut failed = [0u32; 3];
        for _ in 0..builds {
            let cases: Vec<Comparison> = (0..200)
                .map(|_| {
                    case(
                        (draw(&mut rng, 0.76, 20), 20),
                        (draw(&mut rng, 0.76, 20), 20),
                    )
                })
                .collect();
            for (i, correction) in [Correction::None, Correction::Holm, Correction::DiscreteHolm]
                .into_iter()
                .enumerate()
            {
                let v = judge(&cases, 0.05, correction, None);
                if v.cases.iter().any(|c| c.change == Change::Regression) {
                    failed[i] += 1;
                }
            }
        }
        let rate = |x: u32| f64::from(x) / f64::from(builds);
        eprintln!(
            "A/A builds failed: none {} holm {} discrete holm {}",
            rate(failed[0]),
            rate(failed[1]),
            rate(failed[2])
        );
        assert!(rate(failed[0]) > 0.9, "uncorrected: {}", rate(failed[0]));
        assert!(rate(failed[1]) <= 0.05, "holm: {}", rate(failed[1]));
        assert!(
            rate(failed[2]) <= 0.05,
            "discrete holm: {}",
            rate(failed[2])
        );

        let mut found = [0u32; 2];
        let mut false_alarms = [0u32; 2];
        let trials = 200;
        for _ in 0..trials {
            let cases: Vec<Comparison> = (0..200)
                .map(|i| {
                    let after = if i < 10 { 0.32 } else { 0.76 };
                    case(
                        (draw(&mut rng, 0.76, 40), 40),
                        (draw(&mut rng, after, 40), 40),
                    )
                })
                .collect();
            for (i, correction) in [Correction::Holm, Correction::DiscreteHolm]
                .into_iter()
                .enumerate()
            {
                let v = judge(&cases, 0.05, correction, None);
                for (k, c) in v.cases.iter().enumerate() {
                    if c.change == Change::Regression {
                        if k < 10 {
                            found[i] += 1;
                        } else {
                            false_alarms[i] += 1;
                        }
                    }
                }
            }
        }
        let per_case = |x: u32| f64::from(x) / f64::from(trials * 10);
        eprintln!(
            "power: holm {} discrete holm {}; builds with a false alarm {false_alarms:?} of {trials}",
            per_case(found[0]),
            per_case(found[1])
        );
        assert!(
            per_case(found[0]) > 0.5,
            "holm power {}",
            per_case(found[0])
        );
        assert!(per_case(found[1]) >= per_case(found[0]), "{found:?}");
        // At most 5% of builds with a false alarm, within two standard errors of 200 builds.
        let allowed = 0.05 + 2.0 * (0.05f64 * 0.95 / f64::from(trials)).sqrt();
        assert!(
            false_alarms
                .iter()
                .all(|f| f64::from(*f) / f64::from(trials) <= allowed),
            "{false_alarms:?}"
        );
    }
}
