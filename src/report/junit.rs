//! `junit.xml`: one testcase per case, so CI systems list cases like tests. Flaky cases
//! pass with their failing runs recorded as flaky reruns; failing cases carry their reasons
//! and their first failing runs in the failure text.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use crate::model::summary::{
    BaselineCase, CaseOutcome, CaseStats, Change, FailingRun, SuiteReport,
};

pub fn render(report: &SuiteReport) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new(xml_text(&report.suite));
    if let Some(gate) = &report.gate {
        suite.add_property(("ragprobe.gate", gate.describe().as_str()));
        suite.add_property((
            "ragprobe.gate.pass_rate",
            crate::report::gate_text::pass_rate_line(
                gate,
                &report
                    .baseline_cases
                    .iter()
                    .map(|b| b.test)
                    .collect::<Vec<_>>(),
            )
            .as_str(),
        ));
    }
    let against: std::collections::HashMap<&str, &BaselineCase> = report
        .baseline_cases
        .iter()
        .map(|b| (b.id.as_str(), b))
        .collect();
    for case in &report.stats.cases {
        let baseline = against.get(case.id.as_str()).copied();
        let regressed = baseline.is_some_and(|b| b.change == Change::Regression);
        let status = match case.outcome {
            // With a baseline the gate decides: a regression fails whatever the thresholds
            // said, and a case failing as before (no regression, no rule over its rate) does
            // not fail the build.
            _ if regressed => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let b = baseline.expect("regressed implies a baseline case");
                status.set_message(xml_text(&regression_message(b)));
                status.set_description(xml_text(&failure_text(case)));
                status
            }
            CaseOutcome::Fail if report.baseline.is_some() && !report.failed.contains(&case.id) => {
                TestCaseStatus::success()
            }
            CaseOutcome::Pass => TestCaseStatus::success(),
            CaseOutcome::Flaky => {
                let mut status = TestCaseStatus::success();
                for run in &case.failing_runs {
                    let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                    rerun.set_message(format!("run {} failed", run.run));
                    rerun.set_description(xml_text(&describe_run(run)));
                    status.add_rerun(rerun);
                }
                status
            }
            CaseOutcome::Fail => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let turns = case
                    .turns
                    .iter()
                    .filter(|t| !t.broken.is_empty())
                    .map(|t| format!("turn {} broke {}", t.turn, t.describe_broken()));
                let message: Vec<String> = case.reasons.iter().cloned().chain(turns).collect();
                status.set_message(xml_text(&message.join("; ")));
                status.set_description(xml_text(&failure_text(case)));
                status
            }
            CaseOutcome::Error => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status.set_message(xml_text(&case.reasons.join("; ")));
                status
            }
        };
        let mut test_case = TestCase::new(xml_text(&case.id), status);
        test_case.set_classname(xml_text(&format!("ragprobe.{}", report.suite)));
        test_case.set_assertions(case.evaluated as usize);
        for turn in &case.turns {
            let passed = crate::report::terminal::turn_passed(turn);
            let key = |what: &str| format!("turn.{}.{what}", turn.turn);
            test_case.add_property((key("question").as_str(), xml_text(&turn.question).as_str()));
            test_case.add_property((key("passed").as_str(), passed.as_str()));
            if !turn.broken.is_empty() {
                let broken = xml_text(&turn.describe_broken());
                test_case.add_property((key("broken").as_str(), broken.as_str()));
            }
        }
        if let Some(b) = baseline {
            for (name, value) in [
                ("baseline.change", serde_label(&b.change)),
                ("baseline.p_value", format!("{:.6}", b.p_value)),
                ("baseline.p_adjusted", format!("{:.6}", b.p_adjusted)),
                ("baseline.q_value", format!("{:.6}", b.q_value)),
                (
                    "baseline.counts",
                    format!(
                        "{}/{} -> {}/{}",
                        b.baseline_passed, b.baseline_evaluated, b.passed, b.evaluated
                    ),
                ),
            ] {
                test_case.add_property((name, value.as_str()));
            }
        }
        suite.add_test_case(test_case);
    }
    let mut junit = Report::new("ragprobe");
    junit.add_test_suite(suite);
    junit.to_string()
}

fn regression_message(b: &BaselineCase) -> String {
    format!(
        "pass rate dropped against the baseline: {}/{} -> {}/{} (p {:.4}, adjusted {:.4} at {})",
        b.baseline_passed,
        b.baseline_evaluated,
        b.passed,
        b.evaluated,
        b.p_value,
        b.p_adjusted,
        b.significance
    )
}

fn serde_label<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
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

/// XML 1.0 has no way to write most control characters, U+FFFE or U+FFFF (not even as
/// `&#x…;`): they become U+FFFD, so junit.xml stays a document every CI parser reads.
fn xml_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c.is_control() && u32::from(c) < 0x20 => '\u{fffd}',
            '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_xml_cannot_hold_are_replaced() {
        assert_eq!(
            xml_text("a\u{1}b\u{fffe}c\u{ffff}\td\n"),
            "a\u{fffd}b\u{fffd}c\u{fffd}\td\n"
        );
    }
}
