//! `summary.md`: short enough for a CI job summary (GitHub's `$GITHUB_STEP_SUMMARY`).

use std::fmt::Write;

use crate::model::summary::{CaseOutcome, SuiteReport, SuiteResult};
use crate::report::gate_text;
use crate::stats::percent;

pub fn render(report: &SuiteReport) -> String {
    let stats = &report.stats;
    let mut out = String::new();
    let verdict = match report.result {
        SuiteResult::Pass => "✅ PASS",
        SuiteResult::Fail => "❌ FAIL",
        SuiteResult::Error => "⚠️ ERROR",
        SuiteResult::Interrupted => "⏸️ INTERRUPTED",
        SuiteResult::Incomplete => "⚠️ INCOMPLETE",
    };
    let _ = writeln!(out, "## ragprobe · {} — {verdict}\n", code(&report.suite));
    let failed = report.failed.len();
    let _ = writeln!(
        out,
        "{} of {} cases failed · {} runs ({}) · {} errors · seed {} · exit {}\n",
        failed,
        stats.cases.len(),
        stats.runs,
        match &report.adaptive {
            Some(_) => report.runs_label(),
            None => format!("{} per case", report.runs_per_case),
        },
        stats.errors,
        report.seed,
        report.exit_code
    );
    if let Some(baseline) = &report.baseline {
        baseline_section(&mut out, report, baseline);
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
            .filter(|r| r.violations > 0 || r.judge_corrected.is_some())
            .map(|r| {
                let mut text = match r.judge_flip_rate {
                    Some(flips) => format!(
                        "{} {} (judge flips {})",
                        cell(&r.id),
                        percent(r.rate),
                        percent(flips)
                    ),
                    None => format!("{} {}", cell(&r.id), percent(r.rate)),
                };
                if let Some(c) = &r.judge_corrected {
                    text.push_str(&format!(
                        "; {}",
                        cell(&crate::report::terminal::judge_corrected(c))
                    ));
                }
                text
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {outcome} | {}/{} ({}) | {}–{} | {} |",
            cell(&case.id),
            case.passed,
            case.evaluated,
            percent(case.pass_rate),
            percent(case.pass_rate_ci95[0]),
            percent(case.pass_rate_ci95[1]),
            if let Some(a) = case.adaptive {
                format!(
                    "{} · {} of {} runs, {}",
                    a.stop.label(),
                    a.runs_used,
                    a.max_runs,
                    if violations.is_empty() {
                        "no violations".to_owned()
                    } else {
                        violations.join(", ")
                    }
                )
            } else if violations.is_empty() {
                "—".to_owned()
            } else {
                violations.join(", ")
            }
        );
    }
    if let Some(m) = &stats.sources {
        let cell = |x: &crate::model::summary::MeanCi| {
            format!("{:.2} ({:.2}–{:.2})", x.mean, x.ci95[0], x.ci95[1])
        };
        let _ = writeln!(
            out,
            "\nRetrieval over {} cases (mean, 95% CI): nDCG@k {} · AP@k {} · R@k {} · P@k {} · MRR {}",
            m.cases,
            cell(&m.ndcg),
            cell(&m.average_precision),
            cell(&m.recall),
            cell(&m.precision),
            cell(&m.mrr)
        );
    }
    if let Some(u) = &stats.usage {
        let _ = writeln!(
            out,
            "\nModel usage: {} calls · chain model {} tokens in, {} out · judge {} in, {} out · cost {}",
            u.calls,
            u.model_input_tokens,
            u.model_output_tokens,
            u.judge_input_tokens,
            u.judge_output_tokens,
            crate::report::text::cost(u.cost_usd)
        );
    }
    turns_table(&mut out, stats);
    for case in stats.cases.iter().filter(|c| !c.reasons.is_empty()) {
        let _ = writeln!(out, "\n### {}: {}\n", code(&case.id), code(&case.question));
        for reason in &case.reasons {
            let _ = writeln!(out, "- {}", code(reason));
        }
        if let Some(run) = &case.example_failure {
            let retrieved: Vec<String> = run
                .retrieved
                .iter()
                .map(|d| {
                    let metadata = serde_json::Value::Object(d.metadata.clone()).to_string();
                    format!("{} {}", code(&d.id), code(&metadata))
                })
                .collect();
            let turn = run
                .deciding_turn()
                .map(|t| format!(" on turn {} ({})", t.turn, code(&t.question)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "\nExample: run {}{turn} retrieved {}; answer:\n\n{}",
                run.run,
                retrieved.join(", "),
                fenced(&run.answer)
            );
        }
    }
    out
}

/// Conversation cases turn by turn: which turn broke which check.
fn turns_table(out: &mut String, stats: &crate::model::summary::SuiteStats) {
    if stats.cases.iter().all(|c| c.turns.is_empty()) {
        return;
    }
    out.push_str("\n#### Conversations, turn by turn\n\n");
    out.push_str("| case | turn | question | passed | broken |\n");
    out.push_str("|---|---|---|---|---|\n");
    for case in &stats.cases {
        for turn in &case.turns {
            let passed = crate::report::terminal::turn_passed(turn);
            let broken = if turn.broken.is_empty() {
                "—".to_owned()
            } else {
                cell(&turn.describe_broken())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {passed} | {broken} |",
                cell(&case.id),
                turn.turn,
                cell(&turn.question)
            );
        }
    }
}

/// Text from suites, documents and models (and ragprobe's sentences quoting it), shown as
/// an inline code span: in a code span markdown renders no link, image, emphasis or HTML,
/// and GitHub does not autolink a bare URL. A
/// backtick would end the span, a newline the line: both are replaced.
fn code(text: &str) -> String {
    let clean: String = crate::out::printable(text)
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    if clean.trim().is_empty() {
        return "(empty)".to_owned();
    }
    format!("`{clean}`")
}

/// [`code`] for a table cell, where `|` would end the cell even inside a code span.
fn cell(text: &str) -> String {
    code(text).replace('|', "\\|")
}

/// A block of text (an answer) as a fenced code block, with a fence longer than any run of
/// backticks inside it, so nothing in it can close the block.
pub fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{}\n{fence}", crate::out::printable(text))
}

/// The comparison with the baseline: the method, the suite's pass rate on both sides, a row
/// per case that changed (every case in a small suite), and what the gate could detect.
fn baseline_section(out: &mut String, report: &SuiteReport, baseline: &str) {
    let _ = writeln!(out, "Compared with the baseline {}:\n", code(baseline));
    if let (Some(header), Some(gate)) = (gate_text::report_header(report), &report.gate) {
        for line in header {
            let _ = writeln!(out, "- {line}");
        }
        for line in gate_text::power_lines(gate) {
            let _ = writeln!(out, "- {}", code(&line));
        }
        out.push('\n');
    }
    let failed: std::collections::HashSet<&str> =
        report.failed.iter().map(String::as_str).collect();
    let all = report.baseline_cases.len() <= gate_text::ROWS_MOST;
    out.push_str("| case | baseline → now | Δ | p | p adj | q | 80% power at | change |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    let mut hidden = 0;
    for case in &report.baseline_cases {
        if !all
            && !gate_text::worth_a_row(
                case.change,
                case.q_value,
                case.significance,
                failed.contains(case.id.as_str()),
            )
        {
            hidden += 1;
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {}/{} → {}/{} | {} | {:.4} | {:.4} | {:.3} | {} | {} |",
            cell(&case.id),
            case.baseline_passed,
            case.baseline_evaluated,
            case.passed,
            case.evaluated,
            gate_text::points(
                crate::stats::ratio(case.passed, case.evaluated)
                    - crate::stats::ratio(case.baseline_passed, case.baseline_evaluated)
            ),
            case.p_value,
            case.p_adjusted,
            case.q_value,
            gate_text::detectable(case.detectable_drop),
            case.change.label()
        );
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "\n{} unchanged cases not shown (summary.json lists every case).",
            hidden
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_text_renders_as_text() {
        assert_eq!(
            code("[x](http://evil) ![i](http://e/i.png)"),
            "`[x](http://evil) ![i](http://e/i.png)`"
        );
        assert_eq!(code("a`b\nc"), "`a'b c`");
        assert_eq!(cell("a|b"), "`a\\|b`");
        assert_eq!(code(""), "(empty)");
        let block = fenced("x ```` y");
        assert!(block.starts_with("`````text\n"), "{block}");
        assert!(block.ends_with("\n`````"), "{block}");
    }
}
