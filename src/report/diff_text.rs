//! The terminal summary of `ragprobe diff`.

use std::fmt::Write;

use crate::diff::{DiffReport, TextChange};
use crate::report::gate_text;
use crate::report::text::table;
use crate::stats::percent;

pub fn render(report: &DiffReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "diff {} ({}) → {} ({})",
        report.a.display(),
        report.a_suite,
        report.b.display(),
        report.b_suite
    );
    let tests: Vec<_> = report.cases.iter().filter_map(|c| c.test).collect();
    let _ = writeln!(
        out,
        "{}",
        gate_text::method_line(&report.gate, &tests, report.min_effect)
    );
    let _ = writeln!(out, "{}\n", gate_text::pass_rate_line(&report.gate, &tests));
    let mut rows = vec![vec![
        "case".to_owned(),
        "A".to_owned(),
        "B".to_owned(),
        "Δ pass rate".to_owned(),
        "p".to_owned(),
        "p adj".to_owned(),
        "q".to_owned(),
        "change".to_owned(),
    ]];
    let all = report.cases.len() <= gate_text::ROWS_MOST;
    let mut hidden = 0;
    for case in &report.cases {
        if !all && !shown(case, report.alpha) {
            hidden += 1;
            continue;
        }
        let cell = |side: &Option<crate::diff::Side>| match side {
            Some(s) => format!("{}/{} {}", s.passed, s.evaluated, percent(s.pass_rate)),
            None => "—".to_owned(),
        };
        let delta = match (&case.a, &case.b) {
            (Some(a), Some(b)) => gate_text::points(b.pass_rate - a.pass_rate),
            _ => "—".to_owned(),
        };
        rows.push(vec![
            case.id.clone(),
            cell(&case.a),
            cell(&case.b),
            delta,
            format!("{:.4}", case.p_value),
            format!("{:.4}", case.p_adjusted),
            format!("{:.3}", case.q_value),
            case.change.label().to_owned(),
        ]);
    }
    if rows.len() > 1 {
        table(&mut out, &rows, "");
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "({} unchanged cases not shown; --format json lists every case)",
            hidden
        );
    }
    for line in gate_text::power_lines(&report.gate) {
        let _ = writeln!(out, "{line}");
    }
    retrieval(&mut out, &report.retrieval);

    for case in report
        .cases
        .iter()
        .filter(|c| all || shown(c, report.alpha))
    {
        let _ = writeln!(
            out,
            "\n{} ({}): {}",
            case.id,
            case.change.label(),
            case.question
        );
        let moved: Vec<String> = case
            .documents
            .iter()
            .filter(|d| d.kind != "same")
            .map(|d| format!("{} {} ({} → {} runs)", d.id, d.kind, d.a_runs, d.b_runs))
            .collect();
        if moved.is_empty() {
            out.push_str("  retrieved documents: unchanged\n");
        } else {
            let _ = writeln!(out, "  retrieved documents: {}", moved.join("; "));
        }
        let rules: Vec<String> = case
            .rules
            .iter()
            .filter(|r| r.a_rate != r.b_rate)
            .map(|r| format!("{} {} → {}", r.id, rate(r.a_rate), rate(r.b_rate)))
            .collect();
        if !rules.is_empty() {
            let _ = writeln!(out, "  rule violations: {}", rules.join("; "));
        }
        if let (Some(a), Some(b)) = (&case.a, &case.b) {
            let _ = writeln!(
                out,
                "  latency p50 {:.2} → {:.2} ms, p95 {:.2} → {:.2} ms",
                a.p50_ms, b.p50_ms, a.p95_ms, b.p95_ms
            );
        }
        if let Some(answer) = &case.answer {
            text_change(&mut out, "answer", answer);
        }
        if let Some(prompt) = &case.prompt
            && prompt.changed
        {
            text_change(&mut out, "prompt", prompt);
        }
    }
    let retrieval = if crate::model::summary::retrieval_regressed(&report.retrieval) {
        ", retrieval REGRESSION"
    } else {
        ""
    };
    let regressed: Vec<String> = report
        .cases
        .iter()
        .filter(|c| c.change == crate::model::summary::Change::Regression)
        .map(|c| c.id.clone())
        .collect();
    let _ = writeln!(
        out,
        "\nresult: {}{}{retrieval}, {}, {} compared ({})",
        crate::text::count(report.regressions as u64, "regression"),
        if regressed.is_empty() {
            String::new()
        } else {
            format!(" ({})", gate_text::listed(&regressed))
        },
        crate::text::count(report.improvements as u64, "improvement"),
        crate::text::count(report.cases.len() as u64, "case"),
        report.gate.describe()
    );
    out
}

/// In a long diff, only the cases that changed or moved get a row and a section.
fn shown(case: &crate::diff::CaseDiff, alpha: f64) -> bool {
    gate_text::worth_a_row(case.change, case.q_value, alpha, false)
}

fn rate(value: Option<f64>) -> String {
    value.map_or("—".to_owned(), percent)
}

fn text_change(out: &mut String, what: &str, change: &TextChange) {
    if !change.changed {
        let _ = writeln!(
            out,
            "  most common {what} unchanged ({} and {} runs)",
            change.a_runs, change.b_runs
        );
        return;
    }
    let _ = writeln!(
        out,
        "  most common {what} (A: {} runs, B: {} runs), word diff [-removed-] {{+added+}}:",
        change.a_runs, change.b_runs
    );
    let mut line = String::from("    ");
    for edit in &change.edits {
        match edit.tag {
            "delete" => line.push_str(&format!("[-{}-]", edit.text)),
            "insert" => line.push_str(&format!("{{+{}+}}", edit.text)),
            _ => line.push_str(&edit.text),
        }
    }
    out.push_str(&line.replace('\n', "\n    "));
    out.push('\n');
}

/// The retrieval measures, paired over cases: means, the change, its effect size, both
/// tests' p-values, and the cases that moved most.
pub fn retrieval(out: &mut String, changes: &[crate::model::summary::RetrievalChange]) {
    let Some(first) = changes.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\nretrieval, paired over {} cases (two-sided: paired randomization test, paired t-test)",
        first.test.cases
    );
    let mut rows = vec![vec![
        "measure".to_owned(),
        "A".to_owned(),
        "B".to_owned(),
        "Δ".to_owned(),
        "effect d".to_owned(),
        "p (rand.)".to_owned(),
        "p (t)".to_owned(),
        "verdict".to_owned(),
        "moved most".to_owned(),
    ]];
    for change in changes {
        let t = &change.test;
        rows.push(vec![
            change.measure.clone(),
            format!("{:.3}", t.mean_a),
            format!("{:.3}", t.mean_b),
            format!("{:+.3}", t.mean_difference),
            format!("{:+.2}", t.effect_size),
            format!("{:.4}", t.p_randomization),
            format!("{:.4}", t.p_t),
            change
                .change
                .map_or("·".to_owned(), |c| c.label().to_owned()),
            change
                .moved_most
                .iter()
                .map(|(id, d)| format!("{id} {d:+.2}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    table(out, &rows, "  ");
    if let Some(gated) = changes.iter().find(|c| c.change.is_some()) {
        let _ = writeln!(
            out,
            "  a significant drop in {} fails (retrieval_gate; the others are reported only)",
            gated.measure
        );
    }
}
