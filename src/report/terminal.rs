//! The summary printed when a suite finishes: a table per case, rule violation rates, why
//! each failing case failed with one offending run, and the result line.

use std::fmt::Write;

use serde::Serialize;

use crate::model::record::{RunRecord, Severity};
use crate::model::summary::{CaseStats, SuiteReport, SuiteResult, SuiteStats};
use crate::report::gate_text;
use crate::report::text::{retrieved_lines, row, table};
use crate::stats::percent;
use crate::text::count;

/// Renders the full summary; with `quiet`, only the result line.
pub fn render_text(report: &SuiteReport, quiet: bool) -> String {
    let mut out = String::new();
    if quiet {
        out.push_str(&result_line(report));
        out.push('\n');
        return out;
    }
    header(&mut out, report);
    case_table(&mut out, &report.stats);
    adaptive(&mut out, report);
    turns(&mut out, &report.stats);
    violations(&mut out, &report.stats);
    retrieval(&mut out, &report.stats);
    usage(&mut out, &report.stats);
    failures(&mut out, &report.stats);
    baseline(&mut out, report);
    out.push('\n');
    out.push_str(&result_line(report));
    out.push('\n');
    let _ = writeln!(
        out,
        "results: {}",
        report.out_dir.join(crate::store::RUNS_FILE).display()
    );
    out
}

fn header(out: &mut String, report: &SuiteReport) {
    let _ = writeln!(
        out,
        "suite {} · {} × {} · seed {}",
        report.suite,
        count(report.stats.cases.len() as u64, "case"),
        report.runs_label(),
        report.seed
    );
    let _ = writeln!(out, "chain: {}", report.chain);
    if let Some(rate) = report
        .stats
        .pass_rate
        .filter(|_| report.stats.cases.len() > 1)
    {
        let _ = writeln!(
            out,
            "pass rate {} (95% CI {}–{}; mean of {} cases, runs clustered by case)",
            percent(rate.mean),
            percent(rate.ci95[0]),
            percent(rate.ci95[1]),
            report
                .stats
                .cases
                .iter()
                .filter(|c| c.evaluated > 0)
                .count()
        );
    }
    out.push('\n');
}

fn case_table(out: &mut String, stats: &SuiteStats) {
    let mut rows = vec![row(&[
        "case", "outcome", "passed", "rate", "95% CI", "pass^k", "flaky", "p50", "p95",
    ])];
    for case in &stats.cases {
        rows.push(vec![
            case.id.clone(),
            case.outcome.label().to_owned(),
            format!("{}/{}", case.passed, case.evaluated),
            percent(case.pass_rate),
            format!(
                "[{}, {}]",
                percent(case.pass_rate_ci95[0]),
                percent(case.pass_rate_ci95[1])
            ),
            // With no run evaluated there is no k to speak of, and no chance to state.
            if case.k == 0 {
                "—".to_owned()
            } else {
                format!("{:.2} (k={})", case.pass_all_k, case.k)
            },
            if case.flaky { "yes" } else { "no" }.to_owned(),
            format!("{:.1} ms", case.latency.p50_ms),
            format!("{:.1} ms", case.latency.p95_ms),
        ]);
    }
    table(out, &rows, "");
}

/// `runs: auto`: per case, the runs used, why it stopped and the runs saved.
fn adaptive(out: &mut String, report: &SuiteReport) {
    let Some(runs) = &report.adaptive else {
        return;
    };
    let s = &runs.settings;
    let _ = writeln!(
        out,
        "\nruns: auto (sequential probability ratio test per threshold, always-valid test against a baseline: tolerance {}, significance {}, {}–{} runs; undecided: {})",
        percent(s.tolerance),
        s.alpha,
        s.min_runs,
        s.max_runs,
        serde_plain(&s.undecided)
    );
    let mut rows = vec![row(&["  case", "runs", "stopped", "saved"])];
    for case in &report.stats.cases {
        if let Some(a) = case.adaptive {
            rows.push(vec![
                format!("  {}", case.id),
                format!("{}/{}", a.runs_used, a.max_runs),
                a.stop.label().to_owned(),
                a.runs_saved.to_string(),
            ]);
        }
    }
    table(out, &rows, "");
    let saved: u32 = report
        .stats
        .cases
        .iter()
        .filter_map(|c| c.adaptive.map(|a| a.runs_saved))
        .sum();
    if let Some(fixed) = &runs.fixed_design {
        let _ = writeln!(
            out,
            "  against the baseline: {} runs where a fixed design with the same guarantees (family-wise error, 80% power at a {:.0}-point drop) needs {}{}",
            fixed.adaptive_runs,
            fixed.detect * 100.0,
            fixed.runs,
            if fixed.unreachable > 0 {
                format!(
                    "; {} no fixed design could size against this baseline",
                    count(fixed.unreachable as u64, "case")
                )
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "  {} runs of at most {} ({} saved{})",
        runs.runs_used,
        runs.max_runs_total,
        saved,
        if runs.dropped > 0 {
            format!(
                "; {} more finished after their case was decided, not recorded",
                runs.dropped
            )
        } else {
            String::new()
        }
    );
}

fn violations(out: &mut String, stats: &SuiteStats) {
    let mut rows = Vec::new();
    for case in &stats.cases {
        for rule in case.rules.iter().filter(|r| {
            r.violations > 0
                || r.judge_flip_rate.is_some_and(|f| f > 0.0)
                || r.judge_corrected.is_some()
        }) {
            let mut row = vec![
                case.id.clone(),
                rule.id.clone(),
                serde_plain(&rule.severity),
                format!("{}/{} runs", rule.violations, case.evaluated),
                percent(rule.rate),
                if rule.severity == Severity::Warn {
                    "warning only".to_owned()
                } else {
                    format!("allowed {}", percent(rule.max_rate))
                },
            ];
            // Beside the violation rate: how often the judge disagreed with itself.
            if let Some(flips) = rule.judge_flip_rate {
                row.push(format!("judge flips {}", percent(flips)));
            }
            if let Some(corrected) = &rule.judge_corrected {
                row.push(judge_corrected(corrected));
            }
            rows.push(row);
        }
    }
    if !rows.is_empty() {
        out.push_str("\nrule violations\n");
        table(out, &rows, "  ");
    }
}

/// "passes 57.1% [40.2%, 74.0%] corrected for the judge (Se 0.80, Sp 0.90)".
pub fn judge_corrected(c: &crate::model::summary::JudgeCorrected) -> String {
    match (c.pass_rate, c.ci95) {
        (Some(rate), Some([low, high])) => format!(
            "passes {} [{}, {}] corrected for the judge (judged {}; sensitivity {:.2}, specificity {:.2})",
            percent(rate),
            percent(low),
            percent(high),
            percent(c.observed),
            c.sensitivity,
            c.specificity
        ),
        _ => format!(
            "not corrected for the judge: {}",
            c.note.as_deref().unwrap_or("no calibration")
        ),
    }
}

/// Model calls, tokens and cost per case and for the suite, when any model was called.
fn usage(out: &mut String, stats: &SuiteStats) {
    let Some(total) = &stats.usage else {
        return;
    };
    out.push_str("\nmodel usage\n");
    let mut rows = vec![row(&[
        "case",
        "calls",
        "model tokens in/out",
        "judge tokens in/out",
        "cost",
    ])];
    let line = |id: &str, u: &crate::model::record::Usage| {
        vec![
            id.to_owned(),
            u.calls.to_string(),
            format!("{}/{}", u.model_input_tokens, u.model_output_tokens),
            format!("{}/{}", u.judge_input_tokens, u.judge_output_tokens),
            crate::report::text::cost(u.cost_usd),
        ]
    };
    for case in &stats.cases {
        if let Some(u) = &case.usage {
            rows.push(line(&case.id, u));
        }
    }
    rows.push(line("(suite)", total));
    table(out, &rows, "  ");
}

/// `0.71`, or `0.71 ±0.12` when the retriever gave different rankings across runs.
fn with_spread(mean: f64, sd: f64) -> String {
    if sd >= 0.005 {
        format!("{mean:.2} ±{sd:.2}")
    } else {
        format!("{mean:.2}")
    }
}

fn retrieval(out: &mut String, stats: &SuiteStats) {
    let cases: Vec<&CaseStats> = stats.cases.iter().filter(|c| c.sources.is_some()).collect();
    if cases.is_empty() {
        return;
    }
    out.push_str("\nexpected sources (mean over runs; trec_eval's measures at the case's k)\n");
    if cases.iter().any(|c| !c.turns.is_empty()) {
        out.push_str("  (a conversation's run: the mean over its turns that expect sources)\n");
    }
    let mut rows = vec![row(&[
        "case", "k", "P@k", "R@k", "hit@k", "MRR", "nDCG@k", "AP@k",
    ])];
    for case in cases {
        if let Some(s) = &case.sources {
            rows.push(vec![
                case.id.clone(),
                if s.k == 0 {
                    "—".to_owned()
                } else {
                    s.k.to_string()
                },
                format!("{:.2}", s.precision),
                with_spread(s.recall, s.recall_sd),
                percent(s.hit_rate),
                format!("{:.2}", s.mrr),
                with_spread(s.ndcg, s.ndcg_sd),
                with_spread(s.average_precision, s.average_precision_sd),
            ]);
        }
    }
    if let Some(m) = stats.sources.as_ref().filter(|m| m.cases > 1) {
        let cell = |x: &crate::model::summary::MeanCi| {
            format!("{:.2} [{:.2}, {:.2}]", x.mean, x.ci95[0], x.ci95[1])
        };
        rows.push(vec![
            format!("mean of {} cases (95% CI)", m.cases),
            String::new(),
            cell(&m.precision),
            cell(&m.recall),
            format!(
                "{} [{}, {}]",
                percent(m.hit_rate.mean),
                percent(m.hit_rate.ci95[0]),
                percent(m.hit_rate.ci95[1])
            ),
            cell(&m.mrr),
            cell(&m.ndcg),
            cell(&m.average_precision),
        ]);
    }
    table(out, &rows, "  ");
}

/// Conversation cases, turn by turn: which turn broke which check.
fn turns(out: &mut String, stats: &SuiteStats) {
    if stats.cases.iter().all(|c| c.turns.is_empty()) {
        return;
    }
    let _ = writeln!(
        out,
        "\nturns (each conversation's runs, turn by turn; a scripted turn is history, not asked)"
    );
    let mut rows = vec![row(&["case", "turn", "question", "passed", "broken"])];
    for case in &stats.cases {
        for turn in &case.turns {
            // Nothing asked, nothing to break: a dash; asked and clean: `none`.
            let broken = if turn.scripted || turn.asked == 0 {
                "—".to_owned()
            } else if turn.broken.is_empty() {
                "none".to_owned()
            } else {
                turn.describe_broken()
            };
            rows.push(vec![
                case.id.clone(),
                turn.turn.to_string(),
                crate::report::text::cut(&turn.question, 40),
                turn_passed(turn),
                broken,
            ]);
        }
    }
    table(out, &rows, "  ");
}

/// A turn's "passed" cell: a scripted turn is history; a turn no run reached (an earlier
/// turn errored) says so; errors are counted beside the passes.
pub fn turn_passed(turn: &crate::model::summary::TurnStats) -> String {
    if turn.scripted {
        return "scripted".into();
    }
    if turn.asked == 0 {
        return "not reached".into();
    }
    let mut passed = format!("{}/{}", turn.passed, turn.asked - turn.errors);
    if turn.errors > 0 {
        passed.push_str(&format!(" +{} errors", turn.errors));
    }
    passed
}

/// Why each failing case failed, with one offending run; then the flaky cases.
fn failures(out: &mut String, stats: &SuiteStats) {
    for case in stats.cases.iter().filter(|c| !c.reasons.is_empty()) {
        let _ = writeln!(
            out,
            "\n{} {}: {}",
            case.outcome.label(),
            case.id,
            case.question
        );
        for reason in &case.reasons {
            let _ = writeln!(out, "  ✗ {reason}");
        }
        if let Some(example) = &case.example_failure {
            example_run(out, example);
        }
    }
    for case in stats
        .cases
        .iter()
        .filter(|c| c.reasons.is_empty() && c.flaky)
    {
        let _ = writeln!(
            out,
            "\nFLAKY {}: {} of {} runs failed, within min_pass_rate {}",
            case.id,
            case.evaluated - case.passed,
            case.evaluated,
            percent(case.min_pass_rate)
        );
    }
}

fn baseline(out: &mut String, report: &SuiteReport) {
    let Some(baseline) = &report.baseline else {
        return;
    };
    let _ = writeln!(out, "\nagainst baseline {baseline}");
    for line in gate_text::report_header(report).into_iter().flatten() {
        let _ = writeln!(out, "  {line}");
    }
    let failed: std::collections::HashSet<&str> =
        report.failed.iter().map(String::as_str).collect();
    let all = report.baseline_cases.len() <= gate_text::ROWS_MOST;
    let mut rows = vec![row(&[
        "case",
        "baseline → now",
        "Δ",
        "p",
        "p adj",
        "q",
        "80% power at",
        "change",
    ])];
    let mut hidden = 0;
    for b in &report.baseline_cases {
        if !all
            && !gate_text::worth_a_row(
                b.change,
                b.q_value,
                b.significance,
                failed.contains(b.id.as_str()),
            )
        {
            hidden += 1;
            continue;
        }
        rows.push(vec![
            b.id.clone(),
            format!(
                "{}/{} → {}/{}",
                b.baseline_passed, b.baseline_evaluated, b.passed, b.evaluated
            ),
            gate_text::points(
                crate::stats::ratio(b.passed, b.evaluated)
                    - crate::stats::ratio(b.baseline_passed, b.baseline_evaluated),
            ),
            format!("{:.4}", b.p_value),
            format!("{:.4}", b.p_adjusted),
            format!("{:.3}", b.q_value),
            gate_text::detectable(b.detectable_drop),
            b.change.label().to_owned(),
        ]);
    }
    if rows.len() > 1 {
        table(out, &rows, "  ");
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "  ({} not shown: summary.json lists every case)",
            count(hidden as u64, "unchanged case")
        );
    }
    if let Some(gate) = &report.gate {
        for line in gate_text::power_lines(gate) {
            let _ = writeln!(out, "  {line}");
        }
    }
    // Reported beside the gate, not part of it.
    crate::report::diff_text::retrieval(out, &report.baseline_retrieval);
}

fn example_run(out: &mut String, run: &RunRecord) {
    let _ = writeln!(out, "  example: run {} (seed {})", run.run, run.seed);
    let Some(verdict) = &run.verdict else { return };
    if let Some(turn) = run.deciding_turn() {
        let _ = writeln!(
            out,
            "    turn {} of {}: {}",
            turn.turn,
            run.turns.len(),
            turn.question
        );
    }
    let _ = writeln!(out, "    retrieved:");
    // A conversation's documents are marked by the rules of their own turn (not by one a
    // turn skipped).
    let turn_view = run.deciding_turn().map(|t| run.turn_as_run(t, None));
    retrieved_lines(out, turn_view.as_ref().unwrap_or(run), "      ");
    let _ = writeln!(out, "    answer: {}", run.answer);
    let _ = writeln!(out, "    broken:");
    for rule in verdict.rules.iter().filter(|r| !r.passed) {
        let _ = writeln!(
            out,
            "      {} ({}): {}",
            rule.id,
            serde_plain(&rule.severity),
            rule.detail.as_deref().unwrap_or("violated")
        );
    }
    for failure in &verdict.failed_expectations {
        let _ = writeln!(out, "      {}: {}", failure.check, failure.detail);
    }
}

pub fn result_line(report: &SuiteReport) -> String {
    let line = verdict_line(report);
    match &report.trace_export {
        Some(export) if export.all_failed() => format!(
            "{line}\nno trace reached {}: all {} failed ({}); the runs and their traces are in runs.jsonl",
            export.endpoint,
            export.failed + export.dropped,
            export.first_error.as_deref().unwrap_or("dropped")
        ),
        _ => line,
    }
}

fn verdict_line(report: &SuiteReport) -> String {
    let stats = &report.stats;
    let failed = &report.failed;
    let errors = format!(
        "{}, {} ({})",
        count(stats.runs, "run"),
        count(stats.errors, "error"),
        percent(stats.error_rate)
    );
    match report.result {
        SuiteResult::Pass if report.baseline.is_some() => format!(
            "result: PASS · no rule over its allowed rate, no regression against the baseline · {errors}"
        ),
        SuiteResult::Pass => format!(
            "result: PASS · {} passed · {errors}",
            count(stats.cases.len() as u64, "case")
        ),
        SuiteResult::Fail if failed.is_empty() => format!(
            "result: FAIL · the retrieval measure regressed against the baseline · {errors}"
        ),
        SuiteResult::Fail => format!(
            "result: FAIL · {} of {} cases failed: {} · {errors}",
            failed.len(),
            stats.cases.len(),
            gate_text::listed(failed)
        ),
        SuiteResult::Error => format!(
            "result: ERROR · the chain could not be evaluated: errors on {} of runs, {} allowed · {errors}",
            percent(stats.error_rate),
            percent(stats.max_error_rate)
        ),
        SuiteResult::Incomplete if report.budget_spent.is_some() => format!(
            "result: INCOMPLETE · the budget stopped it: {} · {} of {} runs recorded · complete them with: ragprobe run --resume {}",
            report.budget_spent.as_deref().unwrap_or_default(),
            stats.runs,
            report.planned_runs,
            report.out_dir.display()
        ),
        SuiteResult::Incomplete => format!(
            "result: INCOMPLETE · {} of {} planned runs are recorded; finish each shard with `ragprobe run --resume SHARD` and merge again · {errors}",
            stats.runs, report.planned_runs
        ),
        SuiteResult::Interrupted => format!(
            "result: INTERRUPTED · {} of {} runs recorded · resume with: ragprobe run --resume {}",
            stats.runs,
            report.planned_runs,
            report.out_dir.display()
        ),
    }
}

fn serde_plain<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
