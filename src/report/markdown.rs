//! `summary.md`: short enough for a CI job summary (GitHub's `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write;

use crate::model::summary::{CaseOutcome, SuiteReport, SuiteResult};
use crate::stats::percent;

pub fn render(report: &SuiteReport) -> String {
    let stats = &report.stats;
    let mut out = String::new();
    let verdict = match report.result {
        SuiteResult::Pass => "✅ PASS",
        SuiteResult::Fail => "❌ FAIL",
        SuiteResult::Error => "⚠️ ERROR",
        SuiteResult::Interrupted => "⏸️ INTERRUPTED",
    };
    let _ = writeln!(out, "## ragprobe · {} — {verdict}\n", escape(&report.suite));
    let failed = report.failed.len();
    let _ = writeln!(
        out,
        "{} of {} cases failed · {} runs ({} per case) · {} errors · seed {} · exit {}\n",
        failed,
        stats.cases.len(),
        stats.runs,
        report.runs_per_case,
        stats.errors,
        report.seed,
        report.exit_code
    );
    if let Some(baseline) = &report.baseline {
        let _ = writeln!(
            out,
            "Compared with the baseline `{}`:\n",
            escape(&baseline.display().to_string())
        );
        for case in &report.baseline_cases {
            let _ = writeln!(
                out,
                "- `{}` {}/{} → {}/{}: {} (p {:.4})",
                escape(&case.id),
                case.baseline_passed,
                case.baseline_evaluated,
                case.passed,
                case.evaluated,
                case.change.label(),
                case.p_value
            );
        }
        out.push('\n');
    }
    out.push_str("| case | outcome | passed | 95% CI | rule violations |\n");
    out.push_str("|---|---|---|---|---|\n");
    for case in &stats.cases {
        let outcome = match case.outcome {
            CaseOutcome::Pass => "✅ pass",
            CaseOutcome::Flaky => "🟡 flaky",
            CaseOutcome::Fail => "❌ fail",
            CaseOutcome::Error => "⚠️ error",
        };
        let violations: Vec<String> = case
            .rules
            .iter()
            .filter(|r| r.violations > 0)
            .map(|r| format!("`{}` {}", escape(&r.id), percent(r.rate)))
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {outcome} | {}/{} ({}) | {}–{} | {} |",
            escape(&case.id),
            case.passed,
            case.evaluated,
            percent(case.pass_rate),
            percent(case.pass_rate_ci95[0]),
            percent(case.pass_rate_ci95[1]),
            if violations.is_empty() {
                "—".to_owned()
            } else {
                violations.join(", ")
            }
        );
    }
    for case in stats.cases.iter().filter(|c| !c.reasons.is_empty()) {
        let _ = writeln!(
            out,
            "\n### `{}`: {}\n",
            escape(&case.id),
            escape(&case.question)
        );
        for reason in &case.reasons {
            let _ = writeln!(out, "- {}", escape(reason));
        }
        if let Some(run) = &case.example_failure {
            let retrieved: Vec<String> = run
                .retrieved
                .iter()
                .map(|d| {
                    let metadata = serde_json::Value::Object(d.metadata.clone()).to_string();
                    format!("`{}` {}", escape(&d.id), escape(&metadata))
                })
                .collect();
            let _ = writeln!(
                out,
                "\nExample: run {} retrieved {}; answer:\n\n> {}",
                run.run,
                retrieved.join(", "),
                escape(&run.answer)
            );
        }
    }
    out
}

/// Markdown tables break on `|`; GitHub renders raw HTML; keep both inert.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace('`', "'")
        .replace('\n', " ")
}
