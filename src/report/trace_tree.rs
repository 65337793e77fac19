//! One run's trace as a tree in the terminal: each span's kind, name, duration and
//! status, with the inputs and outputs that explain the answer (for the retriever, every
//! document with its metadata, rule-violating ones marked).

use crate::model::record::RunRecord;
use crate::trace::{Span, SpanKind, SpanStatus, Trace};

pub fn render(record: &RunRecord, suite: &str) -> String {
    let mut out = String::new();
    let trace_id = record
        .trace
        .as_ref()
        .map_or("none", |t| t.trace_id.as_str());
    push_line(
        &mut out,
        &format!(
            "trace {trace_id} · suite {suite} · case {} · run {} · seed {} · {}",
            record.case,
            record.run,
            record.seed,
            record.status.label()
        ),
    );
    match &record.trace {
        Some(trace) => {
            let mut seen = std::collections::HashSet::new();
            for root in trace.spans.iter().filter(|s| s.parent_span_id.is_none()) {
                seen.insert(root.span_id.as_str());
                span_line(&mut out, root, "", false);
                details(&mut out, record, trace, root, "│ ");
                children(&mut out, record, trace, root, "", &mut seen);
            }
            // Spans no root reaches: a parent missing from the trace, or a parent cycle.
            // Shown, marked, never hidden.
            let ids: std::collections::HashSet<&str> =
                trace.spans.iter().map(|s| s.span_id.as_str()).collect();
            for span in &trace.spans {
                if seen.contains(span.span_id.as_str()) {
                    continue;
                }
                let parent = span.parent_span_id.as_deref().unwrap_or_default();
                push_line(
                    &mut out,
                    &if ids.contains(parent) {
                        format!("(in a parent cycle: span {} under {parent})", span.span_id)
                    } else {
                        format!(
                            "(span {} names parent {parent}, which is not in the trace)",
                            span.span_id
                        )
                    },
                );
                seen.insert(span.span_id.as_str());
                span_line(&mut out, span, "", false);
                details(&mut out, record, trace, span, "│ ");
                children(&mut out, record, trace, span, "", &mut seen);
            }
        }
        None => {
            push_line(
                &mut out,
                &format!(
                    "(no trace recorded: {})",
                    record.error.as_deref().unwrap_or("unknown")
                ),
            );
        }
    }
    if let Some(verdict) = &record.verdict {
        push_line(&mut out, &format!("verdict: {}", record.status.label()));
        for rule in verdict.rules.iter().filter(|r| !r.passed) {
            let severity = match rule.severity {
                crate::model::record::Severity::Error => "error",
                crate::model::record::Severity::Warn => "warn",
            };
            push_line(
                &mut out,
                &format!(
                    "  ✗ {} ({severity}): {}",
                    rule.id,
                    rule.detail.as_deref().unwrap_or("violated")
                ),
            );
        }
        for failure in &verdict.failed_expectations {
            push_line(
                &mut out,
                &format!("  ✗ {}: {}", failure.check, failure.detail),
            );
        }
    } else if let Some(error) = &record.error {
        push_line(&mut out, &format!("error: {error}"));
    }
    out
}

/// Appends one line: a newline or carriage return inside the text (a span name, a
/// document id, a server's message) is shown as `\n`, never started, so no text can forge
/// a line such as `verdict: passed`.
fn push_line(out: &mut String, line: &str) {
    out.push_str(&crate::report::text::inline(line));
    out.push('\n');
}

/// Columns of the waterfall's time axis.
const WATERFALL_WIDTH: usize = 40;

/// The spans on a time axis, one line each in start order, indented by depth: `░` before a
/// span starts, `█` while it runs (at least one cell), then its duration.
pub fn waterfall(record: &RunRecord) -> String {
    let mut out = String::new();
    let Some(trace) = record.trace.as_ref().filter(|t| !t.spans.is_empty()) else {
        return out;
    };
    let origin = trace.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let end = trace.spans.iter().map(|s| s.end_ns).max().unwrap_or(origin);
    let total = (end - origin).max(1) as f64;
    let mut spans: Vec<&Span> = trace.spans.iter().collect();
    spans.sort_by_key(|s| s.start_ns);
    let labels: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{}{} {}",
                "  ".repeat(trace.depth(s)),
                s.kind.label(),
                crate::out::printable(&s.name)
            )
        })
        .collect();
    let width = crate::report::text::widest(&labels).min(40);
    out.push('\n');
    push_line(&mut out, &format!("waterfall (0 → {:.2} ms)", total / 1e6));
    for (span, label) in spans.iter().zip(&labels) {
        let cell =
            |ns: u64| (((ns - origin) as f64 / total) * WATERFALL_WIDTH as f64).round() as usize;
        let from = cell(span.start_ns).min(WATERFALL_WIDTH - 1);
        let to = cell(span.end_ns).clamp(from + 1, WATERFALL_WIDTH);
        let label: String = label.chars().take(width).collect();
        push_line(
            &mut out,
            &format!(
                "  {label:<width$}  {}{}{}  {:.2} ms{}",
                "░".repeat(from),
                "█".repeat(to - from),
                " ".repeat(WATERFALL_WIDTH - to),
                span.duration_ns() as f64 / 1e6,
                if span.status == SpanStatus::Ok {
                    ""
                } else {
                    "  ✗"
                }
            ),
        );
    }
    out
}

/// The spans under `parent`, in start order, each with its details and its own children.
/// `seen` stops a malformed trace (a span that is its own ancestor) from looping.
fn children<'a>(
    out: &mut String,
    record: &RunRecord,
    trace: &'a Trace,
    parent: &'a Span,
    prefix: &str,
    seen: &mut std::collections::HashSet<&'a str>,
) {
    let mut kids: Vec<&Span> = trace
        .spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref() == Some(parent.span_id.as_str()))
        .filter(|s| !seen.contains(s.span_id.as_str()))
        .collect();
    kids.sort_by_key(|s| s.start_ns);
    for (i, child) in kids.iter().enumerate() {
        seen.insert(child.span_id.as_str());
        let last = i + 1 == kids.len();
        // The service's top span says which service recorded what is below it.
        let top_of_service = child.service.is_some() && parent.service.is_none();
        span_line(
            out,
            child,
            &format!("{prefix}{}", if last { "└─ " } else { "├─ " }),
            top_of_service,
        );
        let inner = format!("{prefix}{}", if last { "   " } else { "│  " });
        // Under a conversation's turn span, the turn's question, documents and answer.
        let turn_view;
        let record = match record
            .turns
            .iter()
            .find(|t| t.span_id.as_deref() == Some(child.span_id.as_str()))
        {
            Some(turn) => {
                turn_view = record.turn_as_run(turn, None);
                &turn_view
            }
            None => record,
        };
        details(
            out,
            record,
            trace,
            child,
            &format!("{prefix}{}", if last { "     " } else { "│    " }),
        );
        children(out, record, trace, child, &inner, seen);
    }
}

fn span_line(out: &mut String, span: &Span, branch: &str, name_service: bool) {
    let kind = match span.kind {
        SpanKind::Chain => "CHAIN",
        SpanKind::Retriever => "RETRIEVER",
        SpanKind::Embedding => "EMBEDDING",
        SpanKind::Prompt => "PROMPT",
        SpanKind::Llm => "LLM",
        SpanKind::Evaluator => "EVALUATOR",
    };
    let status = match &span.status {
        SpanStatus::Ok => "ok".to_owned(),
        SpanStatus::Error { message } => format!("error: {message}"),
    };
    let service = match (&span.service, name_service) {
        (Some(service), true) => format!("  · from {service}"),
        _ => String::new(),
    };
    push_line(
        out,
        &format!(
            "{branch}{kind} {}  {:.3} ms  {status}{service}",
            span.name,
            span.duration_ns() as f64 / 1e6
        ),
    );
}

fn details(out: &mut String, record: &RunRecord, trace: &Trace, span: &Span, indent: &str) {
    if span.service.is_some() {
        return received_details(out, record, span, indent);
    }
    let attr = |key: &str| span.attributes.get(key);
    match span.kind {
        SpanKind::Chain => {
            push_line(out, &format!("{indent}question: {}", record.question));
            if attr("scripted").is_some() {
                push_line(
                    out,
                    &format!("{indent}answer (scripted): {}", record.answer),
                );
                return;
            }
            // A conversation's turn: what it broke, before the spans that show why.
            if span.name.starts_with("turn ")
                && let Some(verdict) = record.verdict.as_ref().filter(|v| !v.passed)
            {
                let broken: Vec<&str> = verdict
                    .rules
                    .iter()
                    .filter(|r| !r.passed)
                    .map(|r| r.id.as_str())
                    .chain(verdict.failed_expectations.iter().map(|f| f.check.as_str()))
                    .collect();
                push_line(out, &format!("{indent}turn failed: {}", broken.join(", ")));
            }
            // A service's spans carry no answer line of ragprobe's own: say it here.
            let own_llm = trace
                .spans
                .iter()
                .any(|s| s.kind == SpanKind::Llm && s.service.is_none());
            if span.parent_span_id.is_none() && !own_llm && !record.answer.is_empty() {
                push_line(out, &format!("{indent}answer: {}", record.answer));
            }
        }
        SpanKind::Retriever => {
            let filter = attr("filter").map_or("none".to_owned(), |f| f.to_string());
            let k = attr("k").map_or("?".to_owned(), |k| k.to_string());
            // The query as the retriever got it: in a conversation, what its history
            // setting built from the turn.
            let query = attr("query")
                .and_then(|q| q.as_str())
                .unwrap_or(&record.question);
            push_line(
                out,
                &format!("{indent}query: {query}  k={k}  filter: {filter}"),
            );
            crate::report::text::retrieved_lines(out, record, indent);
        }
        SpanKind::Prompt => {
            let template = attr("template").and_then(|t| t.as_str()).unwrap_or("?");
            push_line(
                out,
                &format!(
                    "{indent}template: {template} · {} chars",
                    record.prompt.chars().count()
                ),
            );
        }
        SpanKind::Llm => {
            // What the span recorded, in a fixed order; nothing is shown as unknown.
            let mut parts = vec![
                attr("generator")
                    .or_else(|| attr("model"))
                    .and_then(|g| g.as_str())
                    .unwrap_or("generator")
                    .to_owned(),
            ];
            if let Some(t) = attr("temperature") {
                parts.push(format!("temperature {t}"));
            }
            if let (Some(input), Some(output)) = (attr("input_tokens"), attr("output_tokens")) {
                parts.push(format!("tokens {input} in, {output} out"));
            }
            if let Some(finish) = attr("finish_reason").and_then(|f| f.as_str()) {
                parts.push(format!("finish {finish}"));
            }
            if let Some(attempts) = attr("attempts").and_then(|a| a.as_u64()).filter(|a| *a > 1) {
                parts.push(format!("{attempts} attempts"));
            }
            push_line(out, &format!("{indent}{}", parts.join(" · ")));
            push_line(out, &format!("{indent}answer: {}", record.answer));
        }
        SpanKind::Embedding => {
            let model = attr("model").and_then(|m| m.as_str()).unwrap_or("embedder");
            let dims = attr("dims").map_or(String::new(), |d| format!(" · {d} dims"));
            push_line(out, &format!("{indent}{model}{dims}"));
        }
        SpanKind::Evaluator => {
            let text = |key: &str| attr(key).and_then(|v| v.as_str()).unwrap_or("?");
            let votes = attr("votes").and_then(|v| v.as_array()).map_or(0, Vec::len);
            let agreement = attr("agreement").and_then(|a| a.as_f64()).unwrap_or(1.0);
            let repeats = if votes > 1 {
                format!(" · {votes} repeats, {:.0}% agree", agreement * 100.0)
            } else {
                String::new()
            };
            push_line(
                out,
                &format!(
                    "{indent}{} · {} · {}{repeats}",
                    text("criterion"),
                    text("model"),
                    text("verdict")
                ),
            );
            push_line(out, &format!("{indent}reason: {}", text("reason")));
        }
    }
}

/// What a service's own span says, in the conventions its instrumentation wrote: a
/// retriever's documents (rule-breaking ones marked), a model's name and tokens.
fn received_details(out: &mut String, record: &RunRecord, span: &Span, indent: &str) {
    let attr = |key: &str| span.attributes.get(key);
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match span.kind {
        SpanKind::Retriever => {
            if let Some(query) = attr("input.value") {
                push_line(
                    out,
                    &format!(
                        "{indent}query: {}",
                        crate::report::text::one_line(&text(query), 200)
                    ),
                );
            }
            let documents = crate::receiver::retrieved_documents(std::slice::from_ref(span))
                .unwrap_or_default();
            for doc in documents {
                let id = doc.get("id").map_or("(no id)".to_owned(), text);
                let mark = crate::report::text::broken_mark(record, &id);
                let score = crate::report::text::score(doc.get("score").and_then(|s| s.as_f64()));
                let metadata = doc
                    .get("metadata")
                    .map_or("{}".to_owned(), |m| m.to_string());
                push_line(
                    out,
                    &format!("{indent}{id}  score {score}  {metadata}{mark}"),
                );
            }
        }
        SpanKind::Llm => {
            let mut parts = Vec::new();
            if let Some(model) = attr("llm.model_name").or_else(|| attr("gen_ai.request.model")) {
                parts.push(text(model));
            }
            if let (Some(input), Some(output)) = (
                attr("llm.token_count.prompt"),
                attr("llm.token_count.completion"),
            ) {
                parts.push(format!("tokens {input} in, {output} out"));
            }
            if !parts.is_empty() {
                push_line(out, &format!("{indent}{}", parts.join(" · ")));
            }
        }
        SpanKind::Chain | SpanKind::Prompt | SpanKind::Embedding | SpanKind::Evaluator => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::RunStatus;

    fn span(id: &str, parent: Option<&str>, name: &str) -> Span {
        Span {
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            name: name.into(),
            kind: SpanKind::Prompt,
            start_ns: 0,
            end_ns: 1_000,
            status: SpanStatus::Ok,
            attributes: Default::default(),
            service: None,
        }
    }

    fn record(spans: Vec<Span>) -> RunRecord {
        RunRecord {
            question: "q".into(),
            trace: Some(Trace {
                trace_id: "t".into(),
                spans,
            }),
            ..RunRecord::blank("c", 0, RunStatus::Failed)
        }
    }

    /// Found by a hostile tester: a span name with a newline printed a `verdict: passed`
    /// line of its own under a failed run.
    #[test]
    fn show_cannot_be_made_to_print_a_forged_verdict_line() {
        let text = render(&record(vec![span("a", None, "root\nverdict: passed")]), "s");
        assert!(
            !text.lines().any(|l| l.starts_with("verdict: passed")),
            "{text}"
        );
        assert!(text.contains("root\\nverdict: passed"), "{text}");
    }

    /// Found by a hostile tester: spans in a parent cycle were not shown at all.
    #[test]
    fn show_marks_spans_in_a_cycle_instead_of_hiding_them() {
        let text = render(
            &record(vec![
                span("root", None, "root"),
                span("x", Some("y"), "cycle-x"),
                span("y", Some("x"), "cycle-y"),
                span("z", Some("gone"), "orphan"),
            ]),
            "s",
        );
        for name in ["cycle-x", "cycle-y", "orphan"] {
            assert!(text.contains(name), "{name} hidden:\n{text}");
        }
        assert!(text.contains("in a parent cycle"), "{text}");
        assert!(
            text.contains("names parent gone, which is not in the trace"),
            "{text}"
        );
    }
}
