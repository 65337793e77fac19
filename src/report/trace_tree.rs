//! One run's trace as a tree in the terminal: each span's kind, name, duration and
//! status, with the inputs and outputs that explain the answer (for the retriever, every
//! document with its metadata, rule-violating ones marked).

use std::fmt::Write;

use crate::export::otlp::verdict_label;
use crate::model::record::RunRecord;
use crate::trace::{Span, SpanKind, SpanStatus};

pub fn render(record: &RunRecord, suite: &str) -> String {
    let mut out = String::new();
    let trace_id = record
        .trace
        .as_ref()
        .map_or("none", |t| t.trace_id.as_str());
    let _ = writeln!(
        out,
        "trace {trace_id} · suite {suite} · case {} · run {} · seed {} · {}",
        record.case,
        record.run,
        record.seed,
        verdict_label(record)
    );
    match &record.trace {
        Some(trace) => {
            let roots: Vec<&Span> = trace
                .spans
                .iter()
                .filter(|s| s.parent_span_id.is_none())
                .collect();
            for root in roots {
                span_line(&mut out, root, "");
                details(&mut out, record, root, "│ ");
                let mut children: Vec<&Span> = trace
                    .spans
                    .iter()
                    .filter(|s| s.parent_span_id.as_deref() == Some(root.span_id.as_str()))
                    .collect();
                children.sort_by_key(|s| s.start_ns);
                for (i, child) in children.iter().enumerate() {
                    let last = i + 1 == children.len();
                    span_line(&mut out, child, if last { "└─ " } else { "├─ " });
                    details(
                        &mut out,
                        record,
                        child,
                        if last { "     " } else { "│    " },
                    );
                }
            }
        }
        None => {
            let _ = writeln!(
                out,
                "(no trace recorded: {})",
                record.error.as_deref().unwrap_or("unknown")
            );
        }
    }
    if let Some(verdict) = &record.verdict {
        let _ = writeln!(out, "verdict: {}", verdict_label(record));
        for rule in verdict.rules.iter().filter(|r| !r.passed) {
            let severity = match rule.severity {
                crate::model::record::Severity::Error => "error",
                crate::model::record::Severity::Warn => "warn",
            };
            let _ = writeln!(
                out,
                "  ✗ {} ({severity}): {}",
                rule.id,
                rule.detail.as_deref().unwrap_or("violated")
            );
        }
        for failure in &verdict.failed_expectations {
            let _ = writeln!(out, "  ✗ {}: {}", failure.check, failure.detail);
        }
    } else if let Some(error) = &record.error {
        let _ = writeln!(out, "error: {error}");
    }
    out
}

fn span_line(out: &mut String, span: &Span, branch: &str) {
    let kind = match span.kind {
        SpanKind::Chain => "CHAIN",
        SpanKind::Retriever => "RETRIEVER",
        SpanKind::Embedding => "EMBEDDING",
        SpanKind::Prompt => "PROMPT",
        SpanKind::Llm => "LLM",
    };
    let status = match &span.status {
        SpanStatus::Ok => "ok".to_owned(),
        SpanStatus::Error { message } => format!("error: {message}"),
    };
    let _ = writeln!(
        out,
        "{branch}{kind} {}  {:.3} ms  {status}",
        span.name,
        span.duration_ns() as f64 / 1e6
    );
}

fn details(out: &mut String, record: &RunRecord, span: &Span, indent: &str) {
    let attr = |key: &str| span.attributes.get(key);
    match span.kind {
        SpanKind::Chain => {
            let _ = writeln!(out, "{indent}question: {}", record.question);
        }
        SpanKind::Retriever => {
            let filter = attr("filter").map_or("none".to_owned(), |f| f.to_string());
            let k = attr("k").map_or("?".to_owned(), |k| k.to_string());
            let _ = writeln!(
                out,
                "{indent}query: {}  k={k}  filter: {filter}",
                record.question
            );
            crate::report::text::retrieved_lines(out, record, indent);
        }
        SpanKind::Prompt => {
            let template = attr("template").and_then(|t| t.as_str()).unwrap_or("?");
            let _ = writeln!(
                out,
                "{indent}template: {template} · {} chars",
                record.prompt.chars().count()
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
            let _ = writeln!(out, "{indent}{}", parts.join(" · "));
            let _ = writeln!(out, "{indent}answer: {}", record.answer);
        }
        SpanKind::Embedding => {
            let model = attr("model").and_then(|m| m.as_str()).unwrap_or("embedder");
            let dims = attr("dims").map_or(String::new(), |d| format!(" · {d} dims"));
            let _ = writeln!(out, "{indent}{model}{dims}");
        }
    }
}
