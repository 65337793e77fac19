//! `--baseline DIR`: judge this run against an earlier report. With a baseline, a case
//! fails CI only when an `error` rule is violated above its allowed rate, or when its pass
//! rate dropped beyond what flakiness explains, judged over all cases at once so that an
//! unchanged chain fails at most a `significance` share of builds (see [`crate::gate`]).
//! A case that was already failing and did not get worse does not fail the gate: that is
//! what a baseline is for.

use crate::gate::{CasePair, judge_cases};
use crate::model::summary::{BaselineCase, Change, Gate, RetrievalChange, SuiteReport, SuiteStats};
use crate::suite::Suite;
use crate::suite::adaptive::min_effect;

/// The cases that fail the gate. Without a baseline: those below their thresholds. With
/// one: those over a rule's allowed rate or significantly worse than the baseline.
pub fn failing_cases(stats: &SuiteStats, baseline: Option<&[BaselineCase]>) -> Vec<String> {
    match baseline {
        Some(baseline_cases) => {
            let regressed: std::collections::HashSet<&str> = baseline_cases
                .iter()
                .filter(|b| b.change == Change::Regression)
                .map(|b| b.id.as_str())
                .collect();
            stats
                .cases
                .iter()
                .filter(|c| c.rules.iter().any(|r| r.exceeded) || regressed.contains(c.id.as_str()))
                .map(|c| c.id.clone())
                .collect()
        }
        None => stats.failed_cases().map(|c| c.id.clone()).collect(),
    }
}

/// Case by case, for the cases both runs have, judged together; the gated retrieval
/// measure in `retrieval` shares the budget.
pub fn compare(
    baseline: &SuiteReport,
    stats: &SuiteStats,
    suite: &Suite,
    retrieval: &mut [RetrievalChange],
) -> (Vec<BaselineCase>, Gate) {
    let before: std::collections::HashMap<&str, &crate::model::summary::CaseStats> = baseline
        .stats
        .cases
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let specs: std::collections::HashMap<&str, &crate::suite::schema::CaseSpec> = suite
        .spec
        .cases
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let pairs: Vec<CasePair> = stats
        .cases
        .iter()
        .filter_map(|case| {
            let before = before.get(case.id.as_str())?;
            let spec = specs.get(case.id.as_str());
            Some(CasePair {
                before,
                after: case,
                min_effect: spec.map_or(suite.spec.min_effect.0, |s| min_effect(suite, s)),
                significance: spec.and_then(|s| s.significance).map(|s| s.0),
            })
        })
        .collect();
    let (verdicts, drops, gate) = judge_cases(
        &pairs,
        suite.spec.significance.0,
        suite.spec.correction,
        retrieval,
    );
    let cases = pairs
        .iter()
        .zip(verdicts)
        .zip(drops)
        .map(|((pair, verdict), detectable_drop)| BaselineCase {
            id: pair.after.id.clone(),
            baseline_passed: pair.before.passed,
            baseline_evaluated: pair.before.evaluated,
            passed: pair.after.passed,
            evaluated: pair.after.evaluated,
            change: verdict.change,
            p_value: verdict.p_value,
            p_adjusted: verdict.p_adjusted,
            q_value: verdict.q_value,
            significance: verdict.significance,
            min_effect: pair.min_effect,
            test: verdict.test,
            detectable_drop,
        })
        .collect();
    (cases, gate)
}
