//! What `runs: auto` tests for a case of this suite: its pass rate against `min_pass_rate`
//! and each `error` rule against its allowed rate (`warn` rules never change a verdict),
//! and how one recorded run reads to those tests. Shared by the scheduler, which stops
//! cases, and the aggregation, which reports why they stopped, so both agree.

use crate::model::record::{RunRecord, RunStatus, Severity};
use crate::model::summary::SuiteReport;
use crate::sequential::{AdaptiveSettings, BaselineTest, CaseTests, RunSignal};
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
fn case_tests(
    suite: &Suite,
    case: &CaseSpec,
    settings: AdaptiveSettings,
    baseline: Option<BaselineTest>,
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
        match baseline {
            Some(test) => tests.with_baseline(test),
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
    baseline: Option<&Against>,
    records: &[RunRecord],
) -> (CaseTests, Vec<String>) {
    let (mut tests, gated) = case_tests(
        suite,
        case,
        settings,
        baseline.and_then(|b| baseline_test(suite, case, settings, b)),
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

/// A `--baseline` as the adaptive tests see it: its summary, and how many of the suite's
/// cases it also has (they share the family-wise budget).
pub struct Against<'a> {
    pub report: &'a SuiteReport,
    pub family: usize,
}

impl<'a> Against<'a> {
    pub fn new(suite: &Suite, report: &'a SuiteReport) -> Against<'a> {
        let known: std::collections::HashSet<&str> =
            report.stats.cases.iter().map(|c| c.id.as_str()).collect();
        let family = suite
            .spec
            .cases
            .iter()
            .filter(|c| known.contains(c.id.as_str()))
            .count();
        Against { report, family }
    }
}

/// The test of the case against the baseline, if the baseline ran it: the suite's
/// significance shared by every case both have.
fn baseline_test(
    suite: &Suite,
    case: &CaseSpec,
    settings: AdaptiveSettings,
    baseline: &Against,
) -> Option<BaselineTest> {
    let before = baseline
        .report
        .stats
        .cases
        .iter()
        .find(|c| c.id == case.id)?;
    (before.evaluated > 0).then(|| {
        BaselineTest::new(
            before.passed,
            before.evaluated,
            min_effect(suite, case),
            suite.spec.detect.0,
            settings.alpha,
            baseline.family,
        )
    })
}

/// A case's `min_effect`, else the suite's.
pub fn min_effect(suite: &Suite, case: &CaseSpec) -> f64 {
    case.min_effect.unwrap_or(suite.spec.min_effect).0
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
