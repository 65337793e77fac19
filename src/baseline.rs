//! `--baseline DIR`: judge this run against an earlier report. With a baseline, a case
//! fails CI only when an `error` rule is violated above its allowed rate, or when its pass
//! rate dropped beyond what flakiness explains (one-sided Fisher exact test at the case's
//! or suite's `significance`). A case that was already failing and did not get worse does
//! not fail the gate: that is what a baseline is for.

use crate::diff::classify;
use crate::model::summary::{BaselineCase, Change, SuiteReport, SuiteStats};
use crate::suite::Suite;

/// The cases that fail the gate. Without a baseline: those below their thresholds. With
/// one: those over a rule's allowed rate or significantly worse than the baseline.
pub fn failing_cases(stats: &SuiteStats, baseline: Option<&[BaselineCase]>) -> Vec<String> {
    match baseline {
        Some(baseline_cases) => stats
            .cases
            .iter()
            .filter(|c| {
                c.rules.iter().any(|r| r.exceeded)
                    || baseline_cases
                        .iter()
                        .any(|b| b.id == c.id && b.change == Change::Regression)
            })
            .map(|c| c.id.clone())
            .collect(),
        None => stats.failed_cases().map(|c| c.id.clone()).collect(),
    }
}

/// Case by case, for the cases both runs have.
pub fn compare(baseline: &SuiteReport, stats: &SuiteStats, suite: &Suite) -> Vec<BaselineCase> {
    stats
        .cases
        .iter()
        .filter_map(|case| {
            let before = baseline.stats.cases.iter().find(|c| c.id == case.id)?;
            let significance = suite
                .spec
                .cases
                .iter()
                .find(|c| c.id == case.id)
                .and_then(|c| c.significance)
                .unwrap_or(suite.spec.significance)
                .0;
            let (change, p_value) = classify(before, case, significance);
            Some(BaselineCase {
                id: case.id.clone(),
                baseline_passed: before.passed,
                baseline_evaluated: before.evaluated,
                passed: case.passed,
                evaluated: case.evaluated,
                change,
                p_value,
                significance,
            })
        })
        .collect()
}
