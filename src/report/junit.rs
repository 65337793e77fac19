//! `junit.xml`: one testcase per case, so CI systems list cases like tests. Flaky cases
//! pass with their failing runs recorded as flaky reruns; failing cases carry their reasons
//! and their first failing runs in the failure text.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use crate::model::summary::{CaseOutcome, CaseStats, FailingRun, SuiteReport};

pub fn render(report: &SuiteReport) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new(report.suite.as_str());
    for case in &report.stats.cases {
        let status = match case.outcome {
            CaseOutcome::Pass => TestCaseStatus::success(),
            CaseOutcome::Flaky => {
                let mut status = TestCaseStatus::success();
                for run in &case.failing_runs {
                    let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                    rerun.set_message(format!("run {} failed", run.run));
                    rerun.set_description(describe_run(run));
                    status.add_rerun(rerun);
                }
                status
            }
            CaseOutcome::Fail => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(case.reasons.join("; "));
                status.set_description(failure_text(case));
                status
            }
            CaseOutcome::Error => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status.set_message(case.reasons.join("; "));
                status
            }
        };
        let mut test_case = TestCase::new(case.id.as_str(), status);
        test_case.set_classname(format!("ragprobe.{}", report.suite));
        test_case.set_assertions(case.evaluated as usize);
        suite.add_test_case(test_case);
    }
    let mut junit = Report::new("ragprobe");
    junit.add_test_suite(suite);
    junit.to_string()
}

fn failure_text(case: &CaseStats) -> String {
    let mut text = format!(
        "{}\npassed {}/{} runs; 95% CI [{:.3}, {:.3}]\n",
        case.question, case.passed, case.evaluated, case.pass_rate_ci95[0], case.pass_rate_ci95[1]
    );
    for reason in &case.reasons {
        text.push_str(&format!("- {reason}\n"));
    }
    for run in &case.failing_runs {
        text.push('\n');
        text.push_str(&describe_run(run));
    }
    text
}

fn describe_run(run: &FailingRun) -> String {
    let mut text = format!(
        "run {} (seed {}): retrieved [{}]\n  answer: {}\n",
        run.run,
        run.seed,
        run.retrieved.join(", "),
        run.answer
    );
    for broken in &run.broken {
        text.push_str(&format!("  broken: {broken}\n"));
    }
    text
}
