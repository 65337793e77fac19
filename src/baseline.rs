//! `--baseline DIR`: judge this run against an earlier report. With a baseline, a case
//! fails CI only when an `error` rule is violated above its allowed rate, or when its pass
//! rate dropped beyond what flakiness explains (one-sided Fisher exact test at the case's
//! or suite's `significance`). A case that was already failing and did not get worse does
//! not fail the gate: that is what a baseline is for.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diff::{Change, SUMMARY_FILE, classify, read_summary};
use crate::report::terminal::SuiteReport;
use crate::stats::SuiteStats;
use crate::suite::Suite;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineCase {
    pub id: String,
    pub baseline_passed: u32,
    pub baseline_evaluated: u32,
    pub passed: u32,
    pub evaluated: u32,
    pub change: Change,
    pub p_value: f64,
    pub significance: f64,
}

/// The folder holding this suite's baseline summary: `dir` itself, or `dir/<slug>` when
/// the baseline is a multi-suite report.
pub fn locate(dir: &Path, suite_slug: &str) -> Option<PathBuf> {
    [dir.to_owned(), dir.join(suite_slug)]
        .into_iter()
        .find(|candidate| candidate.join(SUMMARY_FILE).exists())
}

pub fn load(dir: &Path) -> Result<SuiteReport, crate::diff::DiffError> {
    read_summary(dir)
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
