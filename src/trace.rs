//! The span model every run records. Ids follow W3C trace context / OTLP: a 16-byte trace
//! id and 8-byte span ids, lower-case hex. Times are Unix nanoseconds.
//!
//! Spans carry the small attributes (k, filter, model parameters, document ids); the large
//! texts (documents, prompt, answer) live once in the run record beside the trace, and the
//! exporters join them back when a backend needs them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SpanKind {
    Chain,
    Retriever,
    Embedding,
    Prompt,
    Llm,
    /// A judge's verdict on the run's answer.
    Evaluator,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "lowercase")]
pub enum SpanStatus {
    Ok,
    Error { message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Span {
    pub span_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status: SpanStatus,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    /// For a span the service sent to ragprobe's OTLP receiver: its `service.name`. Such
    /// spans keep their attributes as the service's instrumentation wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl Span {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trace {
    pub trace_id: String,
    pub spans: Vec<Span>,
}

impl SpanKind {
    /// Lower case, for people and CSS classes.
    pub fn label(self) -> &'static str {
        match self {
            SpanKind::Chain => "chain",
            SpanKind::Retriever => "retriever",
            SpanKind::Embedding => "embedding",
            SpanKind::Prompt => "prompt",
            SpanKind::Llm => "llm",
            SpanKind::Evaluator => "evaluator",
        }
    }
}

impl Trace {
    /// The span `root` and every span below it, root first, each once: one pass to index
    /// children, one walk down (a span that is its own ancestor is not followed twice).
    pub fn subtree(&self, root: &str) -> Vec<Span> {
        let mut children: std::collections::HashMap<&str, Vec<&Span>> =
            std::collections::HashMap::new();
        for span in &self.spans {
            if let Some(parent) = span.parent_span_id.as_deref() {
                children.entry(parent).or_default().push(span);
            }
        }
        let mut out: Vec<Span> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<&Span> = self
            .spans
            .iter()
            .filter(|s| s.span_id == root)
            .take(1)
            .collect();
        while let Some(span) = stack.pop() {
            if !seen.insert(span.span_id.as_str()) {
                continue;
            }
            out.push(span.clone());
            stack.extend(children.get(span.span_id.as_str()).into_iter().flatten());
        }
        out
    }

    /// How many ancestors `span` has in this trace (at most 16: a service could send spans
    /// that are their own ancestors).
    pub fn depth(&self, span: &Span) -> usize {
        let mut depth = 0;
        let mut parent = span.parent_span_id.as_deref();
        while let Some(id) = parent
            && depth < 16
        {
            match self.spans.iter().find(|s| s.span_id == id) {
                Some(p) => {
                    depth += 1;
                    parent = p.parent_span_id.as_deref();
                }
                None => break,
            }
        }
        depth
    }
}

/// Builds one run's trace. Its ids are random for every execution, never derived from the
/// run's seed: the seed makes a run's answer reproducible, but two executions of the same
/// run (every CI build of a suite with `seed: 42`) are two traces, and a backend such as
/// MLflow keeps one trace per id — equal ids would overwrite the earlier build's traces.
pub struct TraceBuilder {
    trace_id: String,
    rng: fastrand::Rng,
    spans: Vec<Span>,
}

/// A span that has started and not yet ended.
pub struct OpenSpan {
    span_id: String,
    parent_span_id: Option<String>,
    name: String,
    kind: SpanKind,
    start_ns: u64,
    attributes: Map<String, Value>,
}

impl OpenSpan {
    pub fn id(&self) -> &str {
        &self.span_id
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.attributes.insert(key.to_owned(), value.into());
    }
}

impl Default for TraceBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceBuilder {
    pub fn new() -> Self {
        // Seeded from the process's entropy-seeded generator: unique across processes and
        // across the runs of one process.
        let mut rng = fastrand::Rng::new();
        let trace_id = format!("{:016x}{:016x}", rng.u64(1..), rng.u64(..));
        TraceBuilder {
            trace_id,
            rng,
            spans: Vec::new(),
        }
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// Takes in a span recorded elsewhere (a service that joined the trace through
    /// `traceparent`); one without a parent hangs under `parent`, one without an id gets one.
    pub fn adopt(&mut self, mut span: Span, parent: &str) {
        if span.span_id.len() != 16 || span.span_id.chars().any(|c| !c.is_ascii_hexdigit()) {
            span.span_id = format!("{:016x}", self.rng.u64(1..));
        }
        if span.parent_span_id.is_none() {
            span.parent_span_id = Some(parent.to_owned());
        }
        self.spans.push(span);
    }

    pub fn start(&mut self, name: &str, kind: SpanKind, parent: Option<&OpenSpan>) -> OpenSpan {
        // A span id of all zeroes is invalid in W3C trace context.
        let id = self.rng.u64(1..);
        OpenSpan {
            span_id: format!("{id:016x}"),
            parent_span_id: parent.map(|p| p.span_id.clone()),
            name: name.to_owned(),
            kind,
            start_ns: now_ns(),
            attributes: Map::new(),
        }
    }

    pub fn end(&mut self, span: OpenSpan, status: SpanStatus) {
        self.spans.push(Span {
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            name: span.name,
            kind: span.kind,
            start_ns: span.start_ns,
            end_ns: now_ns().max(span.start_ns),
            status,
            attributes: span.attributes,
            service: None,
        });
    }

    /// Root span first, children in the order they ended.
    pub fn finish(mut self) -> Trace {
        self.spans.sort_by_key(|s| s.parent_span_id.is_some());
        Trace {
            trace_id: self.trace_id,
            spans: self.spans,
        }
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_w3c_shaped_and_unique_per_execution() {
        let build = |_run: u32| {
            let mut t = TraceBuilder::new();
            let root = t.start("chain", SpanKind::Chain, None);
            let child = t.start("retrieve", SpanKind::Retriever, Some(&root));
            t.end(child, SpanStatus::Ok);
            t.end(root, SpanStatus::Ok);
            t.finish()
        };
        let a = build(7);
        let b = build(7);
        assert_eq!(a.trace_id.len(), 32);
        assert!(a.trace_id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.spans[0].span_id.len(), 16);
        assert_ne!(
            a.trace_id, b.trace_id,
            "the same run executed twice is two traces"
        );
        // The root comes first, and the child points at it.
        assert_eq!(a.spans[0].kind, SpanKind::Chain);
        assert_eq!(a.spans[0].parent_span_id, None);
        assert_eq!(
            a.spans[1].parent_span_id.as_deref(),
            Some(a.spans[0].span_id.as_str())
        );
    }
}
