//! A run's trace as OpenTelemetry spans, with the attributes three kinds of backends read:
//! MLflow (`mlflow.spanType`, `mlflow.spanInputs`/`mlflow.spanOutputs` as structured values,
//! `mlflow.traceTag.*` on the root span), OpenInference (`openinference.span.kind`,
//! `input.value`, `output.value`, `retrieval.documents.N.document.*`) and the OpenTelemetry
//! GenAI conventions (`gen_ai.*`). Encoders in `json.rs` and `proto.rs` write these out.
//!
//! MLflow JSON-encodes every attribute value it receives, once. Structured inputs and
//! outputs therefore travel as OTLP key-value lists and arrays (they come back as objects),
//! and `mlflow.spanType` as a plain string (a JSON-quoted one would break span-type search).

use serde_json::{Map, Value, json};

use crate::model::record::RunRecord;
use crate::trace::{Span, SpanKind, SpanStatus};

/// An OTLP attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Array(Vec<Attr>),
    Map(Vec<(String, Attr)>),
}

impl From<&Value> for Attr {
    fn from(value: &Value) -> Attr {
        match value {
            Value::Null => Attr::Str(String::new()),
            Value::Bool(b) => Attr::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Attr::Int(i),
                None => Attr::Double(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => Attr::Str(s.clone()),
            Value::Array(items) => Attr::Array(items.iter().map(Attr::from).collect()),
            Value::Object(map) => Attr::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Attr::from(v)))
                    .collect(),
            ),
        }
    }
}

impl From<&str> for Attr {
    fn from(value: &str) -> Attr {
        Attr::Str(value.to_owned())
    }
}

impl From<String> for Attr {
    fn from(value: String) -> Attr {
        Attr::Str(value)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSpan {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// `None` for OK, the message for an error.
    pub error: Option<String>,
    pub attributes: Vec<(String, Attr)>,
}

/// The resource every exported span belongs to.
pub fn resource_attributes() -> Vec<(String, Attr)> {
    vec![
        ("service.name".into(), "ragprobe".into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
    ]
}

fn mlflow_span_type(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Chain => "CHAIN",
        SpanKind::Retriever => "RETRIEVER",
        SpanKind::Embedding => "EMBEDDING",
        // MLflow has no prompt-rendering type; PARSER is the closest.
        SpanKind::Prompt => "PARSER",
        SpanKind::Llm => "LLM",
        SpanKind::Evaluator => "EVALUATOR",
    }
}

fn openinference_kind(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Chain | SpanKind::Prompt => "CHAIN",
        SpanKind::Retriever => "RETRIEVER",
        SpanKind::Embedding => "EMBEDDING",
        SpanKind::Llm => "LLM",
        SpanKind::Evaluator => "EVALUATOR",
    }
}

/// The OTLP trace id (32 hex digits) a record is exported under: its trace's, or for a run
/// that recorded none, one made of its start time and seed — the same at every export of
/// the record, never the same for two executions.
pub fn trace_id(record: &RunRecord) -> String {
    match &record.trace {
        Some(trace) => trace.trace_id.clone(),
        None => format!(
            "{:016x}{:016x}",
            record.started_at_ns,
            record.seed ^ u64::from(record.run)
        ),
    }
}

/// What one record is exported as: itself, or for a conversation run one record per turn,
/// each its own trace (the turn's span and everything under it) with the run's session id
/// on its root span, so a backend that groups traces by `session.id` (MLflow's sessions)
/// shows the conversation as a chat. The turn traces' ids are derived from the run's, the
/// same at every export.
pub fn exported(record: &RunRecord) -> Vec<std::borrow::Cow<'_, RunRecord>> {
    use std::borrow::Cow;
    if record.turns.is_empty() {
        return vec![Cow::Borrowed(record)];
    }
    let own = trace_id(record);
    let session = format!("ragprobe-{own}");
    record
        .turns
        .iter()
        .map(|turn| {
            let mut view = record.turn_as_run(turn, Some(turn_trace_id(&own, turn.turn)));
            if let Some(root) = view
                .trace
                .as_mut()
                .and_then(|t| t.spans.iter_mut().find(|s| s.parent_span_id.is_none()))
            {
                root.attributes
                    .insert(SESSION_KEY.into(), session.clone().into());
            }
            Cow::Owned(view)
        })
        .collect()
}

/// Whether an exported record is a conversation's scripted turn (history, never asked).
pub fn is_scripted(record: &RunRecord) -> bool {
    record
        .trace
        .as_ref()
        .and_then(|t| t.spans.iter().find(|s| s.parent_span_id.is_none()))
        .is_some_and(|root| root.attributes.contains_key("scripted"))
}

/// Where a conversation turn's root span keeps its session id before export.
const SESSION_KEY: &str = "session";

/// A conversation turn's trace id: FNV-1a of the run's and the turn's number, 32 hex digits.
fn turn_trace_id(run_trace_id: &str, turn: u32) -> String {
    let hash = |salt: u8| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in run_trace_id
            .bytes()
            .chain([0, salt])
            .chain(turn.to_le_bytes())
        {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    format!("{:016x}{:016x}", hash(1), hash(2))
}

/// Every span of one run, root first; a conversation run's as one trace per turn
/// ([`exported`]).
pub fn spans_for(record: &RunRecord, suite: &str) -> Vec<OtlpSpan> {
    exported(record)
        .iter()
        .flat_map(|unit| spans_of_one(unit, suite))
        .collect()
}

/// Every span of one exported record, root first. Records without a trace (a run that
/// timed out before its chain reported one) get a root span of their own, so the run
/// still shows.
pub fn spans_of_one(record: &RunRecord, suite: &str) -> Vec<OtlpSpan> {
    let Some(trace) = &record.trace else {
        let mut root = OtlpSpan {
            trace_id: trace_id(record),
            span_id: format!("{:016x}", record.seed | 1),
            parent_span_id: None,
            name: "rag-chain".into(),
            start_ns: record.started_at_ns,
            end_ns: record.started_at_ns + (record.duration_ms * 1e6) as u64,
            error: record.error.clone(),
            attributes: Vec::new(),
        };
        root_attributes(&mut root.attributes, record, suite);
        return vec![root];
    };
    let offending: Vec<(String, Vec<String>)> = record
        .verdict
        .iter()
        .flat_map(|v| v.rules.iter())
        .filter(|r| !r.passed && !r.offending_documents.is_empty())
        .map(|r| (r.id.clone(), r.offending_documents.clone()))
        .collect();
    trace
        .spans
        .iter()
        .map(|span| {
            if span.service.is_some() {
                return received_span(&trace.trace_id, span, &offending);
            }
            let mut attributes: Vec<(String, Attr)> = vec![
                ("mlflow.spanType".into(), mlflow_span_type(span.kind).into()),
                (
                    "openinference.span.kind".into(),
                    openinference_kind(span.kind).into(),
                ),
            ];
            match span.kind {
                SpanKind::Chain => {
                    root_attributes(&mut attributes, record, suite);
                    turn_attributes(&mut attributes, span);
                }
                SpanKind::Retriever => {
                    retriever_attributes(&mut attributes, record, &offending, &span.attributes)
                }
                SpanKind::Prompt => {
                    let template = span
                        .attributes
                        .get("template")
                        .cloned()
                        .unwrap_or(Value::Null);
                    attributes.extend([
                        ("input.value".into(), record.question.clone().into()),
                        ("output.value".into(), record.prompt.clone().into()),
                        (
                            "mlflow.spanInputs".into(),
                            Attr::from(&json!({"template": template, "question": record.question})),
                        ),
                        ("mlflow.spanOutputs".into(), record.prompt.clone().into()),
                    ]);
                }
                SpanKind::Llm => llm_attributes(&mut attributes, record, &span.attributes),
                SpanKind::Evaluator => evaluator_attributes(&mut attributes, &span.attributes),
                SpanKind::Embedding => {}
            }
            for (key, value) in &span.attributes {
                attributes.push((format!("ragprobe.{key}"), Attr::from(value)));
            }
            otlp_span(&trace.trace_id, span, attributes)
        })
        .collect()
}

/// A span the service exported to ragprobe's receiver goes on as its instrumentation wrote
/// it, plus what MLflow needs to show it as its kind (`mlflow.spanType`, and a retriever's
/// documents as `mlflow.spanOutputs`) and the rules its documents broke.
fn received_span(trace_id: &str, span: &Span, offending: &[(String, Vec<String>)]) -> OtlpSpan {
    let mut attributes: Vec<(String, Attr)> = span
        .attributes
        .iter()
        .map(|(key, value)| (key.clone(), Attr::from(value)))
        .collect();
    if !span.attributes.contains_key("mlflow.spanType") {
        attributes.push(("mlflow.spanType".into(), mlflow_span_type(span.kind).into()));
    }
    if span.kind == SpanKind::Retriever
        && let Some(documents) = crate::receiver::retrieved_documents(std::slice::from_ref(span))
    {
        if !span.attributes.contains_key("mlflow.spanOutputs") {
            attributes.push((
                "mlflow.spanOutputs".into(),
                Attr::from(&Value::Array(documents.clone())),
            ));
        }
        for (i, doc) in documents.iter().enumerate() {
            let id = doc.get("id").map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let broken: Vec<Attr> = offending
                .iter()
                .filter(|(_, ids)| id.as_ref().is_some_and(|id| ids.contains(id)))
                .map(|(rule, _)| rule.as_str().into())
                .collect();
            if !broken.is_empty() {
                attributes.push((
                    format!("ragprobe.documents.{i}.violated_rules"),
                    Attr::Array(broken),
                ));
            }
        }
    }
    otlp_span(trace_id, span, attributes)
}

fn otlp_span(trace_id: &str, span: &Span, attributes: Vec<(String, Attr)>) -> OtlpSpan {
    OtlpSpan {
        trace_id: trace_id.to_owned(),
        span_id: span.span_id.clone(),
        parent_span_id: span.parent_span_id.clone(),
        name: span.name.clone(),
        start_ns: span.start_ns,
        end_ns: span.end_ns,
        error: match &span.status {
            SpanStatus::Ok => None,
            SpanStatus::Error { message } => Some(message.clone()),
        },
        attributes,
    }
}

/// A judge's call as MLflow and OpenInference show one: the prompt in, the verdict out.
fn evaluator_attributes(attributes: &mut Vec<(String, Attr)>, recorded: &Map<String, Value>) {
    let get = |key: &str| recorded.get(key).cloned().unwrap_or(Value::Null);
    let verdict =
        json!({"verdict": get("verdict"), "reason": get("reason"), "score": get("score")});
    attributes.extend([
        ("input.value".into(), Attr::from(&get("prompt"))),
        ("output.value".into(), verdict.to_string().into()),
        (
            "mlflow.spanInputs".into(),
            Attr::from(&json!({"prompt": get("prompt")})),
        ),
        ("mlflow.spanOutputs".into(), Attr::from(&verdict)),
    ]);
}

/// A conversation turn's root span: the session MLflow groups the turns by, and the turn.
fn turn_attributes(attributes: &mut Vec<(String, Attr)>, span: &Span) {
    let Some(session) = span.attributes.get(SESSION_KEY).and_then(Value::as_str) else {
        return;
    };
    attributes.push(("session.id".into(), session.into()));
    if let Some(turn) = span.attributes.get("turn") {
        attributes.push((
            "mlflow.traceTag.ragprobe.turn".into(),
            turn.to_string().into(),
        ));
    }
    if span.attributes.contains_key("scripted") {
        attributes.push(("mlflow.traceTag.ragprobe.scripted".into(), "true".into()));
    }
}

fn root_attributes(attributes: &mut Vec<(String, Attr)>, record: &RunRecord, suite: &str) {
    let violated: Vec<Attr> = record
        .verdict
        .iter()
        .flat_map(|v| v.rules.iter())
        .filter(|r| !r.passed)
        .map(|r| r.id.as_str().into())
        .collect();
    attributes.extend([
        ("input.value".into(), record.question.clone().into()),
        ("output.value".into(), record.answer.clone().into()),
        (
            "mlflow.spanInputs".into(),
            Attr::from(&json!({"question": record.question})),
        ),
        ("mlflow.spanOutputs".into(), record.answer.clone().into()),
        ("mlflow.traceTag.ragprobe.suite".into(), suite.into()),
        (
            "mlflow.traceTag.ragprobe.case".into(),
            record.case.clone().into(),
        ),
        (
            "mlflow.traceTag.ragprobe.run".into(),
            record.run.to_string().into(),
        ),
        (
            "mlflow.traceTag.ragprobe.verdict".into(),
            record.status.label().into(),
        ),
        (
            "mlflow.traceTag.ragprobe.seed".into(),
            record.seed.to_string().into(),
        ),
        (
            "mlflow.traceTag.ragprobe.version".into(),
            env!("CARGO_PKG_VERSION").into(),
        ),
        ("ragprobe.violated_rules".into(), Attr::Array(violated)),
    ]);
    if let Some(error) = &record.error {
        attributes.push(("ragprobe.error".into(), error.clone().into()));
    }
}

fn retriever_attributes(
    attributes: &mut Vec<(String, Attr)>,
    record: &RunRecord,
    offending: &[(String, Vec<String>)],
    recorded: &Map<String, Value>,
) {
    let query = recorded
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or(&record.question)
        .to_owned();
    let documents: Vec<Value> = record
        .retrieved
        .iter()
        .map(|d| json!({"page_content": d.text, "metadata": d.metadata, "id": d.id}))
        .collect();
    attributes.extend([
        ("input.value".into(), query.clone().into()),
        (
            "mlflow.spanInputs".into(),
            Attr::from(&json!({"query": query})),
        ),
        (
            "mlflow.spanOutputs".into(),
            Attr::from(&Value::Array(documents)),
        ),
    ]);
    for (i, doc) in record.retrieved.iter().enumerate() {
        let prefix = format!("retrieval.documents.{i}.document");
        let broken: Vec<Attr> = offending
            .iter()
            .filter(|(_, ids)| ids.contains(&doc.id))
            .map(|(rule, _)| rule.as_str().into())
            .collect();
        attributes.extend([
            (format!("{prefix}.id"), doc.id.clone().into()),
            (format!("{prefix}.content"), doc.text.clone().into()),
            (
                format!("{prefix}.metadata"),
                Value::Object(doc.metadata.clone()).to_string().into(),
            ),
        ]);
        // No score is no attribute: OTLP has no null.
        if let Some(score) = doc.score {
            attributes.push((format!("{prefix}.score"), Attr::Double(score)));
        }
        if !broken.is_empty() {
            attributes.push((
                format!("ragprobe.documents.{i}.violated_rules"),
                Attr::Array(broken),
            ));
        }
    }
}

fn llm_attributes(
    attributes: &mut Vec<(String, Attr)>,
    record: &RunRecord,
    recorded: &Map<String, Value>,
) {
    let model = recorded
        .get("model")
        .or_else(|| recorded.get("generator"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    attributes.extend([
        ("llm.model_name".into(), model.clone().into()),
        ("gen_ai.request.model".into(), model.into()),
        ("input.value".into(), record.prompt.clone().into()),
        ("output.value".into(), record.answer.clone().into()),
        ("llm.input_messages.0.message.role".into(), "user".into()),
        (
            "llm.input_messages.0.message.content".into(),
            record.prompt.clone().into(),
        ),
        (
            "llm.output_messages.0.message.role".into(),
            "assistant".into(),
        ),
        (
            "llm.output_messages.0.message.content".into(),
            record.answer.clone().into(),
        ),
        (
            "mlflow.spanInputs".into(),
            Attr::from(&json!({"messages": [{"role": "user", "content": record.prompt}]})),
        ),
        ("mlflow.spanOutputs".into(), record.answer.clone().into()),
    ]);
    if let Some(t) = recorded.get("temperature").and_then(Value::as_f64) {
        attributes.push(("gen_ai.request.temperature".into(), Attr::Double(t)));
    }
    if let Some(reason) = recorded.get("finish_reason").and_then(Value::as_str) {
        attributes.push((
            "gen_ai.response.finish_reasons".into(),
            Attr::Array(vec![reason.into()]),
        ));
    }
    // Token usage is exported only when a model reported it: the extractive generator
    // is not a model and has none.
    let usage = |key: &str| recorded.get(key).and_then(Value::as_i64);
    if let (Some(input), Some(output)) = (usage("input_tokens"), usage("output_tokens")) {
        attributes.extend([
            ("gen_ai.usage.input_tokens".into(), Attr::Int(input)),
            ("gen_ai.usage.output_tokens".into(), Attr::Int(output)),
            (
                "mlflow.chat.tokenUsage".into(),
                Attr::from(&json!({
                    "input_tokens": input,
                    "output_tokens": output,
                    "total_tokens": input + output,
                })),
            ),
        ]);
    }
}
