//! The summary printed when a suite finishes: a table per case, rule violation rates, why
//! each failing case failed with one offending run, and the result line.

use std::fmt::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::baseline::BaselineCase;
use crate::stats::{CaseStats, SuiteStats, percent};
use crate::store::RunRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuiteResult {
    Pass,
    Fail,
    Error,
    Interrupted,
}

/// Everything the summary shows about one suite run.
#[derive(Debug, Serialize, Deserialize)]
pub struct SuiteReport {
    pub suite: String,
    pub suite_path: PathBuf,
    pub out_dir: PathBuf,
    pub chain: String,
    pub seed: u64,
    pub runs_per_case: u32,
    pub planned_runs: u32,
    pub result: SuiteResult,
    pub exit_code: i32,
    /// The report folder compared against, with `--baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<PathBuf>,
    /// Each case against the baseline, with `--baseline`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_cases: Vec<BaselineCase>,
    /// Cases that fail the gate: below their thresholds, or (with a baseline) over a rule's
    /// allowed rate or significantly worse than the baseline.
    #[serde(default)]
    pub failed: Vec<String>,
    pub stats: SuiteStats,
}

/// Renders the full summary; with `quiet`, only the result line.
pub fn render_text(report: &SuiteReport, quiet: bool) -> String {
    let mut out = String::new();
    if quiet {
        out.push_str(&result_line(report));
        out.push('\n');
        return out;
    }
    let stats = &report.stats;
    let _ = writeln!(
        out,
        "suite {} · {} cases × {} runs · seed {}",
        report.suite,
        stats.cases.len(),
        report.runs_per_case,
        report.seed
    );
    let _ = writeln!(out, "chain: {}", report.chain);
    out.push('\n');

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
            format!("{:.2} (k={})", case.pass_all_k, case.k),
            if case.flaky { "yes" } else { "no" }.to_owned(),
            format!("{:.1} ms", case.latency.p50_ms),
            format!("{:.1} ms", case.latency.p95_ms),
        ]);
    }
    table(&mut out, &rows, "");

    let mut violation_rows = Vec::new();
    for case in &stats.cases {
        for rule in case.rules.iter().filter(|r| r.violations > 0) {
            violation_rows.push(vec![
                case.id.clone(),
                rule.id.clone(),
                serde_plain(&rule.severity),
                format!("{}/{} runs", rule.violations, case.evaluated),
                percent(rule.rate),
                if rule.severity == crate::suite::schema::Severity::Warn {
                    "warning only".to_owned()
                } else {
                    format!("allowed {}", percent(rule.max_rate))
                },
            ]);
        }
    }
    if !violation_rows.is_empty() {
        out.push_str("\nrule violations\n");
        table(&mut out, &violation_rows, "  ");
    }

    let retrieval: Vec<&CaseStats> = stats.cases.iter().filter(|c| c.sources.is_some()).collect();
    if !retrieval.is_empty() {
        out.push_str("\nexpected sources (mean over runs)\n");
        let mut rows = vec![row(&[
            "case",
            "precision",
            "recall",
            "hit rate",
            "MRR",
            "nDCG",
        ])];
        for case in retrieval {
            if let Some(s) = &case.sources {
                rows.push(vec![
                    case.id.clone(),
                    format!("{:.2}", s.precision),
                    format!("{:.2}", s.recall),
                    percent(s.hit_rate),
                    format!("{:.2}", s.mrr),
                    format!("{:.2}", s.ndcg),
                ]);
            }
        }
        table(&mut out, &rows, "  ");
    }

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
            example_run(&mut out, example);
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

    if let Some(baseline) = &report.baseline {
        let _ = writeln!(
            out,
            "\nagainst baseline {} (one-sided Fisher exact test on run counts)",
            baseline.display()
        );
        let rows: Vec<Vec<String>> = report
            .baseline_cases
            .iter()
            .map(|b| {
                vec![
                    b.id.clone(),
                    format!(
                        "{}/{} → {}/{}",
                        b.baseline_passed, b.baseline_evaluated, b.passed, b.evaluated
                    ),
                    crate::report::diff_text::label(b.change).to_owned(),
                    format!("p {:.4} (alpha {})", b.p_value, b.significance),
                ]
            })
            .collect();
        table(&mut out, &rows, "  ");
    }

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

fn example_run(out: &mut String, run: &RunRecord) {
    let _ = writeln!(out, "  example: run {} (seed {})", run.run, run.seed);
    let Some(verdict) = &run.verdict else { return };
    let _ = writeln!(out, "    retrieved:");
    retrieved_lines(out, run, "      ");
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

/// One line per retrieved document: id, score, metadata, and the rules it broke.
pub(crate) fn retrieved_lines(out: &mut String, run: &RunRecord, indent: &str) {
    for doc in &run.retrieved {
        let broken: Vec<&str> = run
            .verdict
            .iter()
            .flat_map(|v| v.rules.iter())
            .filter(|r| r.offending_documents.contains(&doc.id))
            .map(|r| r.id.as_str())
            .collect();
        let mark = if broken.is_empty() {
            String::new()
        } else {
            format!("  ✗ {}", broken.join(", "))
        };
        let _ = writeln!(
            out,
            "{indent}{}  score {:.4}  {}{mark}",
            doc.id,
            doc.score,
            serde_json::Value::Object(doc.metadata.clone())
        );
    }
}

pub fn result_line(report: &SuiteReport) -> String {
    let stats = &report.stats;
    let failed = &report.failed;
    let errors = format!(
        "{} runs, {} errors ({})",
        stats.runs,
        stats.errors,
        percent(stats.error_rate)
    );
    match report.result {
        SuiteResult::Pass if report.baseline.is_some() => format!(
            "result: PASS · no rule over its allowed rate, no regression against the baseline · {errors}"
        ),
        SuiteResult::Pass => format!(
            "result: PASS · {} cases passed · {errors}",
            stats.cases.len()
        ),
        SuiteResult::Fail => format!(
            "result: FAIL · {} of {} cases failed: {} · {errors}",
            failed.len(),
            stats.cases.len(),
            failed.join(", ")
        ),
        SuiteResult::Error => format!(
            "result: ERROR · the chain could not be evaluated: errors on {} of runs, {} allowed · {errors}",
            percent(stats.error_rate),
            percent(stats.max_error_rate)
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

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub(crate) fn table(out: &mut String, rows: &[Vec<String>], indent: &str) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        out.push_str(indent);
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    }
}
