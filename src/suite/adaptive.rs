//! What `runs: auto` tests for a case of this suite: its pass rate against `min_pass_rate`
//! and each `error` rule against its allowed rate (`warn` rules never change a verdict),
//! and how one recorded run reads to those tests. Shared by the scheduler, which stops
//! cases, and the aggregation, which reports why they stopped, so both agree.

use crate::model::record::{RunRecord, RunStatus, Severity};
use crate::model::summary::SuiteReport;
use crate::sequential::{AdaptiveSettings, CaseTests, RunSignal};
use crate::suite::Suite;
use crate::suite::schema::{CaseSpec, RuleSpec};

/// A rule's own `max_rate`, else the case's, else the suite's `max_violation_rate`, else 0.
pub fn allowed_rate(suite: &Suite, case: &CaseSpec, rule: &RuleSpec) -> f64 {
    rule.max_rate
        .or(case.max_violation_rate)
        .or(suite.spec.max_violation_rate)
        .map_or(0.0, |rate| rate.0)
}

/// The case's tests, and the ids of the rules they gate on (in test order).
/// `baseline_fail_rate`: the share of the case's runs that failed in the `--baseline`.
fn case_tests(
    suite: &Suite,
    case: &CaseSpec,
    settings: AdaptiveSettings,
    baseline_fail_rate: Option<f64>,
) -> (CaseTests, Vec<String>) {
    let gated: Vec<&RuleSpec> = suite
        .spec
        .rules
        .iter()
        .filter(|r| r.severity == Severity::Error)
        .collect();
    let thresholds: Vec<f64> = gated
        .iter()
        .map(|rule| allowed_rate(suite, case, rule))
        .collect();
    let min_pass_rate = case.min_pass_rate.unwrap_or(suite.spec.min_pass_rate).0;
    let tests = CaseTests::new(settings, 1.0 - min_pass_rate, &thresholds);
    (
        match baseline_fail_rate {
            Some(rate) => tests.with_baseline(rate),
            None => tests,
        },
        gated.iter().map(|r| r.id.clone()).collect(),
    )
}

/// The case's tests after its recorded runs: those of `records` from run 0 on without a
/// gap, in run order, up to the run that decided it. The scheduler resumes from here; the
/// aggregation reports why the case stopped. Runs used: `tests.runs()`.
pub fn replayed(
    suite: &Suite,
    case: &CaseSpec,
    settings: AdaptiveSettings,
    baseline: Option<&SuiteReport>,
    records: &[RunRecord],
) -> (CaseTests, Vec<String>) {
    let (mut tests, gated) = case_tests(
        suite,
        case,
        settings,
        baseline_fail_rate(baseline, &case.id),
    );
    let mut mine: Vec<&RunRecord> = records.iter().filter(|r| r.case == case.id).collect();
    mine.sort_by_key(|r| r.run);
    for (expected, record) in mine.into_iter().enumerate() {
        if record.run as usize != expected || tests.stop().is_final() {
            break;
        }
        tests.push(&signal(record, &gated));
    }
    (tests, gated)
}

/// The share of the case's evaluated runs that failed in `baseline`, if it ran the case.
fn baseline_fail_rate(baseline: Option<&SuiteReport>, case: &str) -> Option<f64> {
    let before = baseline?.stats.cases.iter().find(|c| c.id == case)?;
    (before.evaluated > 0).then(|| 1.0 - f64::from(before.passed) / f64::from(before.evaluated))
}

/// How the tests see a recorded run: errors count toward `max_runs` only; a failed
/// expectation fails the pass-rate test; each gated rule it broke fails that rule's test.
pub fn signal(record: &RunRecord, gated: &[String]) -> RunSignal {
    let verdict = record.verdict.as_ref();
    RunSignal {
        error: record.status == RunStatus::Error,
        expect_failed: verdict.is_some_and(|v| !v.failed_expectations.is_empty()),
        violated: verdict
            .map(|v| {
                v.rules
                    .iter()
                    .filter(|r| !r.passed)
                    .filter_map(|r| gated.iter().position(|id| *id == r.id))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
