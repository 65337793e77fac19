//! The gate's lines, in words, for the terminal, summary.md and the diff summary: which
//! procedure judged the cases, the suite's pass rate on both sides with its clustered
//! interval, what the gate could detect, and long lists of case ids cut short.

use crate::model::summary::{CaseTest, Change, Gate, SuiteReport};
use crate::stats::percent;

/// At most this many case ids on a result line, then "and N more".
pub const LIST_MOST: usize = 5;

/// Below this many compared cases every case gets a row; above it, only the cases that
/// changed, moved or failed (summary.json lists them all).
pub const ROWS_MOST: usize = 20;

/// `a, b, c, d, e and 195 more`.
pub fn listed(ids: &[String]) -> String {
    if ids.len() <= LIST_MOST {
        return ids.join(", ");
    }
    format!(
        "{} and {} more",
        ids[..LIST_MOST].join(", "),
        ids.len() - LIST_MOST
    )
}

/// A share as signed percentage points: `-0.3 pp`.
pub fn points(share: f64) -> String {
    format!("{:+.1} pp", share * 100.0)
}

/// `44.5 pp`, or `—` when no drop can be detected.
pub fn detectable(drop: Option<f64>) -> String {
    drop.map_or_else(|| "—".to_owned(), |d| format!("{:.1} pp", d * 100.0))
}

/// How the gate judged: "discrete Holm over 200 cases, family-wise error 0.05; one-sided
/// Fisher exact test per case".
pub fn method_line(gate: &Gate, tests: &[CaseTest], min_effect: f64) -> String {
    let mut kinds = Vec::new();
    if tests
        .iter()
        .any(|t| matches!(t, CaseTest::Fisher | CaseTest::FisherAndScore))
    {
        kinds.push("one-sided Fisher exact test per case".to_owned());
    }
    if tests.contains(&CaseTest::FisherAndScore) || (min_effect > 0.0 && !tests.is_empty()) {
        kinds.push(format!(
            "a drop must exceed min_effect ({}; Farrington–Manning score test)",
            points(min_effect).trim_start_matches('+')
        ));
    }
    if tests.contains(&CaseTest::AlwaysValid) {
        kinds.push("always-valid test for cases that stopped adaptively".to_owned());
    }
    format!("gate: {}; {}", gate.describe(), kinds.join("; "))
}

/// A report's gate in two lines (method, pass rate), if it has a baseline.
pub fn report_header(report: &SuiteReport) -> Option<[String; 2]> {
    let gate = report.gate.as_ref()?;
    let tests: Vec<CaseTest> = report.baseline_cases.iter().map(|b| b.test).collect();
    let min_effect = report
        .baseline_cases
        .iter()
        .map(|b| b.min_effect)
        .fold(0.0, f64::max);
    Some([
        method_line(gate, &tests, min_effect),
        pass_rate_line(gate, &tests),
    ])
}

/// "pass rate 76.1% → 75.8% (-0.3 pp, 95% CI -1.2 to +0.6 pp; runs clustered by case)".
/// With adaptive cases among `tests`, a note that stopping when a case looked decided
/// biases its rate.
pub fn pass_rate_line(gate: &Gate, tests: &[CaseTest]) -> String {
    let adaptive = tests.contains(&CaseTest::AlwaysValid);
    let rate = &gate.pass_rate;
    format!(
        "pass rate {} → {} ({}, 95% CI {} to {}; mean of {} cases, runs clustered by case{})",
        percent(rate.before.mean),
        percent(rate.after.mean),
        points(rate.change.mean),
        points(rate.change.ci95[0]).replace(" pp", ""),
        points(rate.change.ci95[1]),
        rate.cases,
        if adaptive {
            "; cases that stopped when they looked decided bias these rates: the verdicts use always-valid tests"
        } else {
            ""
        }
    )
}

/// What the gate could see, and the cases it could not gate at all.
pub fn power_lines(gate: &Gate) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(median) = gate.power.median_drop {
        lines.push(format!(
            "power: at these run counts a case's drop of {} is caught with 80% power (median over cases; the hardest case needs {}), at the level one regressed case faces ({:.2e})",
            detectable(Some(median)),
            detectable(gate.power.largest_drop),
            gate.power.level
        ));
    }
    if !gate.power.ungateable.is_empty() {
        lines.push(format!(
            "warning: {} cannot be gated at {} run counts (a baseline at 0%, or too few runs for even a drop to 0% to be caught with 80% power): {}; `ragprobe plan` says how many runs it would take",
            crate::text::count(gate.power.ungateable.len() as u64, "case"),
            if gate.power.ungateable.len() == 1 { "its" } else { "their" },
            listed(&gate.power.ungateable)
        ));
    }
    lines
}

/// Whether a case gets a row in a long table: it changed, moved at the false discovery
/// rate, or fails the build for another reason.
pub fn worth_a_row(change: Change, q_value: f64, significance: f64, failed: bool) -> bool {
    failed || change != Change::Unchanged || q_value <= significance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_cut_short() {
        let ids: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
        assert_eq!(listed(&ids), "c0, c1, c2, c3, c4 and 3 more");
        assert_eq!(listed(&ids[..2]), "c0, c1");
        assert_eq!(points(-0.003), "-0.3 pp");
        assert_eq!(detectable(None), "—");
    }
}
