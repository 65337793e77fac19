//! Charts for report.html and diff.html, drawn here as inline SVG: no chart library, nothing
//! fetched, nothing run (they show with scripts off and under the pages' CSP). Every text
//! that comes from a suite, a document or a service is escaped here; colours are CSS
//! classes, so the pages' light and dark schemes apply. Each mark carries a `<title>` with
//! its numbers (the tables beside the charts hold them too), and each chart an `aria-label`.

use std::fmt::Write;

use crate::diff::CaseDiff;
use crate::model::record::RunRecord;
use crate::model::summary::{CaseOutcome, CaseStats, Change};
use crate::stats::percent;
use crate::trace::SpanKind;

const WIDTH: f64 = 640.0;
const LABEL: f64 = 200.0;
const PLOT: f64 = 410.0;
const ROW: f64 = 16.0;
const TOP: f64 = 6.0;
const AXIS: f64 = 22.0;
/// Labels longer than this are cut (the whole text is in the mark's title).
const LABEL_CHARS: usize = 30;

/// Text for SVG content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML text.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn short(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        esc(text)
    } else {
        let cut: String = text.chars().take(LABEL_CHARS - 1).collect();
        esc(&format!("{cut}…"))
    }
}

/// A chart of `rows` rows over an x axis from `from` to `to` with `ticks`.
struct Frame {
    out: String,
    from: f64,
    to: f64,
}

impl Frame {
    fn new(class: &str, label: &str, rows: usize, from: f64, to: f64) -> Frame {
        let height = TOP + rows as f64 * ROW + AXIS;
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg class="chart {class}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
            esc(label)
        );
        Frame { out, from, to }
    }

    fn x(&self, value: f64) -> f64 {
        let span = (self.to - self.from).max(f64::EPSILON);
        LABEL + ((value - self.from) / span).clamp(0.0, 1.0) * PLOT
    }

    fn y(row: usize) -> f64 {
        TOP + row as f64 * ROW + ROW / 2.0
    }

    fn label(&mut self, row: usize, text: &str) {
        let _ = write!(
            self.out,
            r#"<text class="label" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL - 6.0,
            Self::y(row) + 4.0,
            short(text)
        );
    }

    /// Grid lines and tick labels under the rows.
    fn axis(&mut self, rows: usize, ticks: &[(f64, String)]) {
        let bottom = TOP + rows as f64 * ROW;
        for (value, text) in ticks {
            let x = self.x(*value);
            let _ = write!(
                self.out,
                r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{bottom:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                bottom + 14.0,
                esc(text)
            );
        }
    }

    /// One element a line, so a changed chart reviews as a readable diff (text never
    /// holds a raw `><`: it is escaped).
    fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out.replace("><", ">\n<")
    }
}

fn percent_ticks() -> Vec<(f64, String)> {
    [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|v| (*v, percent(*v)))
        .collect()
}

/// Per case, the pass rate with its 95% Wilson interval against `min_pass_rate`; cases
/// sorted by their distance from it, those below first.
pub fn pass_rates(cases: &[CaseStats]) -> Option<String> {
    let mut rows: Vec<&CaseStats> = cases.iter().filter(|c| c.evaluated > 0).collect();
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| {
        (a.pass_rate - a.min_pass_rate)
            .total_cmp(&(b.pass_rate - b.min_pass_rate))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut f = Frame::new(
        "pass-rates",
        "Pass rate per case with its 95% interval, against the required rate",
        rows.len(),
        0.0,
        1.0,
    );
    f.axis(rows.len(), &percent_ticks());
    for (row, case) in rows.iter().enumerate() {
        let y = Frame::y(row);
        let [low, high] = case.pass_rate_ci95;
        let _ = write!(
            f.out,
            r#"<g class="mark {}"><title>{}: {}/{} passed ({}), 95% CI {}–{}, required {}</title><rect class="hit" x="0" y="{:.1}" width="{WIDTH}" height="{ROW}"/><line class="ci" x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><line class="threshold" x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><circle class="point" cx="{:.1}" cy="{y:.1}" r="3.5"/></g>"#,
            outcome_class(case.outcome),
            esc(&case.id),
            case.passed,
            case.evaluated,
            percent(case.pass_rate),
            percent(low),
            percent(high),
            percent(case.min_pass_rate),
            y - ROW / 2.0,
            f.x(low),
            f.x(high),
            f.x(case.min_pass_rate),
            f.x(case.min_pass_rate),
            y - 6.0,
            y + 6.0,
            f.x(case.pass_rate),
        );
        f.label(row, &case.id);
    }
    Some(f.finish())
}

fn outcome_class(outcome: CaseOutcome) -> &'static str {
    match outcome {
        CaseOutcome::Pass => "pass",
        CaseOutcome::Flaky => "flaky",
        CaseOutcome::Fail => "fail",
        CaseOutcome::Error => "error",
    }
}

/// Each violated rule's rate per case as a bar, with a tick at its allowed rate.
pub fn violations(cases: &[CaseStats]) -> Option<String> {
    let rows: Vec<(&CaseStats, &crate::model::summary::RuleStats)> = cases
        .iter()
        .flat_map(|c| {
            c.rules
                .iter()
                .filter(|r| r.violations > 0)
                .map(move |r| (c, r))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut f = Frame::new(
        "violations",
        "Rule violation rate per case against the rule's allowed rate",
        rows.len(),
        0.0,
        1.0,
    );
    f.axis(rows.len(), &percent_ticks());
    for (row, (case, rule)) in rows.iter().enumerate() {
        let y = Frame::y(row);
        let _ = write!(
            f.out,
            r#"<g class="mark {}"><title>{} · {}: violated on {}/{} runs ({}), allowed {}</title><rect class="bar" x="{LABEL}" y="{:.1}" width="{:.1}" height="10"/><line class="threshold" x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/></g>"#,
            if rule.exceeded { "fail" } else { "within" },
            esc(&case.id),
            esc(&rule.id),
            rule.violations,
            case.evaluated,
            percent(rule.rate),
            percent(rule.max_rate),
            y - 5.0,
            (f.x(rule.rate) - LABEL).max(1.0),
            f.x(rule.max_rate),
            f.x(rule.max_rate),
            y - 7.0,
            y + 7.0,
        );
        f.label(row, &format!("{} · {}", case.id, rule.id));
    }
    Some(f.finish())
}

/// Per case, its run durations as a histogram on a shared axis, with p50 (dot) and p95
/// (tick) marks.
pub fn latency(cases: &[CaseStats]) -> Option<String> {
    let rows: Vec<&CaseStats> = cases.iter().filter(|c| c.runs > 0).collect();
    let top = ms_top(rows.iter().map(|c| c.latency.max_ms.max(c.latency.p95_ms)))?;
    let mut f = Frame::new(
        "latency",
        "Run durations per case: histogram, median and 95th percentile",
        rows.len(),
        0.0,
        top,
    );
    f.axis(rows.len(), &ms_ticks(top));
    for (row, case) in rows.iter().enumerate() {
        let y = Frame::y(row);
        let _ = write!(
            f.out,
            r#"<g class="mark"><title>{}: p50 {:.1} ms, p95 {:.1} ms, slowest {:.1} ms over {} runs</title><rect class="hit" x="0" y="{:.1}" width="{WIDTH}" height="{ROW}"/>"#,
            esc(&case.id),
            case.latency.p50_ms,
            case.latency.p95_ms,
            case.latency.max_ms,
            case.runs,
            y - ROW / 2.0,
        );
        let bins = &case.latency.histogram;
        let tallest = bins.iter().copied().max().unwrap_or(0).max(1);
        let width = case.latency.max_ms / bins.len().max(1) as f64;
        for (i, count) in bins.iter().enumerate().filter(|(_, c)| **c > 0) {
            let h = 12.0 * f64::from(*count) / f64::from(tallest);
            let x0 = f.x(width * i as f64);
            let x1 = f.x(width * (i + 1) as f64);
            let _ = write!(
                f.out,
                r#"<rect class="bin" x="{x0:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"/>"#,
                y + 6.0 - h,
                (x1 - x0).max(1.0)
            );
        }
        let _ = write!(
            f.out,
            r#"<line class="threshold" x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><circle class="point" cx="{:.1}" cy="{y:.1}" r="3"/></g>"#,
            f.x(case.latency.p95_ms),
            f.x(case.latency.p95_ms),
            y - 7.0,
            y + 7.0,
            f.x(case.latency.p50_ms),
        );
        f.label(row, &case.id);
    }
    Some(f.finish())
}

/// nDCG@k per case (mean over runs) with its spread across runs (± one standard
/// deviation) where the retriever is not deterministic.
pub fn retrieval(cases: &[CaseStats]) -> Option<String> {
    let rows: Vec<(&CaseStats, &crate::model::summary::SourceSummary)> = cases
        .iter()
        .filter_map(|c| Some((c, c.sources.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut f = Frame::new(
        "retrieval",
        "nDCG@k per case, mean over runs with its spread",
        rows.len(),
        0.0,
        1.0,
    );
    let ticks: Vec<(f64, String)> = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|v| (*v, format!("{v:.2}")))
        .collect();
    f.axis(rows.len(), &ticks);
    for (row, (case, s)) in rows.iter().enumerate() {
        let y = Frame::y(row);
        let _ = write!(
            f.out,
            r#"<g class="mark"><title>{}: nDCG@{} {:.3} ± {:.3}, AP@k {:.3}, R@k {:.3}, P@k {:.3}, MRR {:.3}</title><rect class="bar" x="{LABEL}" y="{:.1}" width="{:.1}" height="10"/>"#,
            esc(&case.id),
            s.k,
            s.ndcg,
            s.ndcg_sd,
            s.average_precision,
            s.recall,
            s.precision,
            s.mrr,
            y - 5.0,
            (f.x(s.ndcg) - LABEL).max(1.0),
        );
        if s.ndcg_sd > 0.0 {
            let _ = write!(
                f.out,
                r#"<line class="ci" x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/>"#,
                f.x(s.ndcg - s.ndcg_sd),
                f.x(s.ndcg + s.ndcg_sd)
            );
        }
        f.out.push_str("</g>");
        f.label(row, &case.id);
    }
    Some(f.finish())
}

/// A run's spans on a time axis, nested by parent, coloured by kind; the retriever's row
/// lists its documents (and the rules each broke) in its title and under the chart.
pub fn waterfall(record: &RunRecord) -> Option<String> {
    let trace = record.trace.as_ref()?;
    if trace.spans.is_empty() {
        return None;
    }
    let origin = trace.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = trace
        .spans
        .iter()
        .map(|s| s.start_ns + s.duration_ns())
        .max()
        .unwrap_or(origin);
    let total_ms = ((end - origin) as f64 / 1e6).max(0.001);
    let marks: std::collections::BTreeMap<&str, Vec<&str>> = record
        .verdict
        .iter()
        .flat_map(|v| v.rules.iter().filter(|r| !r.passed))
        .flat_map(|r| {
            r.offending_documents
                .iter()
                .map(move |d| (d.as_str(), r.id.as_str()))
        })
        .fold(Default::default(), |mut m, (d, r)| {
            m.entry(d).or_insert_with(Vec::new).push(r);
            m
        });
    let mut spans: Vec<&crate::trace::Span> = trace.spans.iter().collect();
    spans.sort_by_key(|s| s.start_ns);
    let mut f = Frame::new(
        "waterfall",
        "Spans of the run on a time axis",
        spans.len(),
        0.0,
        total_ms,
    );
    f.axis(spans.len(), &ms_ticks(total_ms));
    for (row, span) in spans.iter().enumerate() {
        let y = Frame::y(row);
        let start = (span.start_ns - origin) as f64 / 1e6;
        let length = span.duration_ns() as f64 / 1e6;
        let kind = span.kind.label();
        let mut title = format!(
            "{} {}: starts at {:.2} ms, takes {:.2} ms",
            kind, span.name, start, length
        );
        if span.kind == SpanKind::Retriever {
            for doc in &record.retrieved {
                let _ = write!(title, "\n{}", doc.id);
                if let Some(rules) = marks.get(doc.id.as_str()) {
                    let _ = write!(title, " ✗ {}", rules.join(", "));
                }
            }
        }
        let x0 = f.x(start);
        let _ = write!(
            f.out,
            r#"<g class="mark span {kind}{}"><title>{}</title><rect class="hit" x="0" y="{:.1}" width="{WIDTH}" height="{ROW}"/><rect class="bar" x="{x0:.1}" y="{:.1}" width="{:.1}" height="10"/></g>"#,
            if span.status == crate::trace::SpanStatus::Ok {
                ""
            } else {
                " failed"
            },
            esc(&title),
            y - ROW / 2.0,
            y - 5.0,
            (f.x(start + length) - x0).max(1.5),
        );
        let indent = "  ".repeat(trace.depth(span));
        let _ = write!(
            f.out,
            r#"<text class="label" x="6" y="{:.1}" xml:space="preserve">{}{}</text>"#,
            y + 4.0,
            indent,
            short(&format!("{kind} {}", span.name))
        );
    }
    Some(f.finish())
}

/// diff: Δ pass rate (B − A) per case with Newcombe's 95% interval for a difference of
/// proportions (from the two Wilson intervals), marked as the Fisher test called it.
pub fn forest(cases: &[CaseDiff]) -> Option<String> {
    let rows: Vec<(&CaseDiff, f64, f64, f64)> = cases
        .iter()
        .filter_map(|c| {
            let (a, b) = (c.a.as_ref()?, c.b.as_ref()?);
            if a.evaluated == 0 || b.evaluated == 0 {
                return None;
            }
            let delta = b.pass_rate - a.pass_rate;
            let [low, high] = crate::stats::newcombe(a.passed, a.evaluated, b.passed, b.evaluated);
            Some((c, delta, low, high))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut f = Frame::new(
        "forest",
        "Change in pass rate per case, B minus A, with its 95% interval",
        rows.len(),
        -1.0,
        1.0,
    );
    let ticks: Vec<(f64, String)> = [-1.0, -0.5, 0.0, 0.5, 1.0]
        .iter()
        .map(|v| (*v, format!("{:+.0} pp", v * 100.0)))
        .collect();
    f.axis(rows.len(), &ticks);
    for (row, (case, delta, low, high)) in rows.iter().enumerate() {
        let y = Frame::y(row);
        let class = match case.change {
            Change::Regression => "fail",
            Change::Improvement => "pass",
            _ => "unchanged",
        };
        let _ = write!(
            f.out,
            r#"<g class="mark {class}"><title>{}: {:+.1} pp (95% CI {:+.1} to {:+.1}), {} (p {:.4})</title><rect class="hit" x="0" y="{:.1}" width="{WIDTH}" height="{ROW}"/><line class="ci" x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><rect class="point" x="{:.1}" y="{:.1}" width="7" height="7"/></g>"#,
            esc(&case.id),
            delta * 100.0,
            low * 100.0,
            high * 100.0,
            case.change.label(),
            case.p_value,
            y - ROW / 2.0,
            f.x(*low),
            f.x(*high),
            f.x(*delta) - 3.5,
            y - 3.5,
        );
        f.label(row, &case.id);
    }
    Some(f.finish())
}

/// diff: documents that left (A's side, left of centre) or entered (B's side, right) each
/// case's retrieved set, as a share of the side's runs.
pub fn documents_moved(cases: &[CaseDiff]) -> Option<String> {
    let rows: Vec<(&CaseDiff, &crate::diff::DocumentChange)> = cases
        .iter()
        .flat_map(|c| {
            c.documents
                .iter()
                .filter(|d| d.kind == "entered" || d.kind == "left")
                .map(move |d| (c, d))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut f = Frame::new(
        "documents",
        "Documents that left (A, left) or entered (B, right) the retrieved set, share of runs",
        rows.len(),
        -1.0,
        1.0,
    );
    let ticks = vec![
        (-1.0, "A: all runs".to_owned()),
        (0.0, "0".to_owned()),
        (1.0, "B: all runs".to_owned()),
    ];
    f.axis(rows.len(), &ticks);
    for (row, (case, doc)) in rows.iter().enumerate() {
        let y = Frame::y(row);
        let runs =
            |side: Option<&crate::diff::Side>| side.map_or(1, |s| (s.evaluated + s.errors).max(1));
        let share = if doc.kind == "left" {
            -f64::from(doc.a_runs) / f64::from(runs(case.a.as_ref()))
        } else {
            f64::from(doc.b_runs) / f64::from(runs(case.b.as_ref()))
        };
        let (x0, x1) = (f.x(share.min(0.0)), f.x(share.max(0.0)));
        let _ = write!(
            f.out,
            r#"<g class="mark {}"><title>{} · document {} {} ({} → {} runs)</title><rect class="bar" x="{x0:.1}" y="{:.1}" width="{:.1}" height="10"/></g>"#,
            doc.kind,
            esc(&case.id),
            esc(&doc.id),
            doc.kind,
            doc.a_runs,
            doc.b_runs,
            y - 5.0,
            (x1 - x0).max(1.0),
        );
        f.label(row, &format!("{} · {}", case.id, doc.id));
    }
    Some(f.finish())
}

/// diff: p50 and p95 latency per case, A to B.
pub fn latency_shift(cases: &[CaseDiff]) -> Option<String> {
    let rows: Vec<(&CaseDiff, &crate::diff::Side, &crate::diff::Side)> = cases
        .iter()
        .filter_map(|c| Some((c, c.a.as_ref()?, c.b.as_ref()?)))
        .collect();
    let top = ms_top(rows.iter().map(|(_, a, b)| a.p95_ms.max(b.p95_ms)))?;
    let mut f = Frame::new(
        "latency-shift",
        "Median and 95th percentile latency per case, A (hollow) to B (filled)",
        rows.len(),
        0.0,
        top,
    );
    f.axis(rows.len(), &ms_ticks(top));
    for (row, (case, a, b)) in rows.iter().enumerate() {
        let y = Frame::y(row);
        let _ = write!(
            f.out,
            r#"<g class="mark"><title>{}: p50 {:.1} → {:.1} ms, p95 {:.1} → {:.1} ms</title><rect class="hit" x="0" y="{:.1}" width="{WIDTH}" height="{ROW}"/><line class="ci" x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><line class="ci p95" x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><circle class="point hollow" cx="{:.1}" cy="{:.1}" r="3"/><circle class="point" cx="{:.1}" cy="{:.1}" r="3"/><circle class="point hollow p95" cx="{:.1}" cy="{:.1}" r="2.5"/><circle class="point p95" cx="{:.1}" cy="{:.1}" r="2.5"/></g>"#,
            esc(&case.id),
            a.p50_ms,
            b.p50_ms,
            a.p95_ms,
            b.p95_ms,
            y - ROW / 2.0,
            f.x(a.p50_ms),
            f.x(b.p50_ms),
            y - 3.0,
            y - 3.0,
            f.x(a.p95_ms),
            f.x(b.p95_ms),
            y + 3.0,
            y + 3.0,
            f.x(a.p50_ms),
            y - 3.0,
            f.x(b.p50_ms),
            y - 3.0,
            f.x(a.p95_ms),
            y + 3.0,
            f.x(b.p95_ms),
            y + 3.0,
        );
        f.label(row, &case.id);
    }
    Some(f.finish())
}

/// Five ticks from 0 to `top` milliseconds.
fn ms_ticks(top: f64) -> Vec<(f64, String)> {
    (0..=4)
        .map(|i| {
            let v = top * f64::from(i) / 4.0;
            (v, format!("{} ms", trim_number(v)))
        })
        .collect()
}

/// The slowest of `values` rounded up for an axis, or `None` when nothing took time.
fn ms_top(values: impl Iterator<Item = f64>) -> Option<f64> {
    let most = values.fold(0.0, f64::max);
    (most > 0.0).then(|| nice_ceiling(most))
}

/// The smallest 1, 2 or 5 × 10^n at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= value)
        .unwrap_or(value)
}

fn trim_number(value: f64) -> String {
    if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_long_labels_cut() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{1b}[31mb"), "a\u{fffd}[31mb");
        let long = "a".repeat(40);
        assert_eq!(short(&long).chars().count(), LABEL_CHARS);
        assert!(short(&long).ends_with('…'));
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(13.0), 20.0);
        assert_eq!(nice_ceiling(260.0), 500.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
    }

    /// A recorded run and two cases' statistics, with their times as they were recorded:
    /// the charts drawn from them are reviewed as snapshots.
    fn fixture_cases() -> Vec<CaseStats> {
        serde_json::from_str(include_str!("../../tests/fixtures/charts/cases.json"))
            .expect("the fixture parses")
    }

    #[test]
    fn charts_of_a_report_are_reviewed() {
        let cases = fixture_cases();
        insta::assert_snapshot!("pass_rates", pass_rates(&cases).expect("drawn"));
        insta::assert_snapshot!("violations", violations(&cases).expect("drawn"));
        insta::assert_snapshot!("latency", latency(&cases).expect("drawn"));
        insta::assert_snapshot!("retrieval", retrieval(&cases).expect("drawn"));
        let run: RunRecord =
            serde_json::from_str(include_str!("../../tests/fixtures/charts/run.json"))
                .expect("the fixture parses");
        let drawn = waterfall(&run).expect("drawn");
        // The retriever's row lists its documents and the rule document 4 broke.
        assert!(drawn.contains("\n4 ✗ only-databricks-docs"), "{drawn}");
        insta::assert_snapshot!("waterfall", drawn);
    }

    #[test]
    fn cases_nearest_their_threshold_come_first() {
        let mut cases = fixture_cases();
        let drawn = pass_rates(&cases).expect("drawn");
        // cost (0% of 100%) is further below its threshold than storage (100% of 100%).
        assert!(drawn.find(">cost<") < drawn.find(">storage<"));
        cases
            .iter_mut()
            .for_each(|c| c.id = format!("<b>{}</b>", c.id));
        let drawn = pass_rates(&cases).expect("drawn");
        assert!(drawn.contains("&lt;b&gt;cost&lt;/b&gt;") && !drawn.contains("<b>"));
        assert!(pass_rates(&[]).is_none());
    }
}
