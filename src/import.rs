//! Traces from tracing backends back into ragprobe: a production trace becomes a case.
//!
//! Three shapes are read: OTLP JSON (camelCase, typed values, hex ids), MLflow's REST
//! `traces/get` (snake_case typed values, base64 ids) and MLflow's `Trace.to_json()`
//! (attribute values as JSON-encoded strings). All become plain spans, then the question,
//! the answer and the retrieved documents are read from the attributes MLflow and
//! OpenInference define.

use serde_json::{Map, Value};

/// A span with plain-JSON attribute values.
#[derive(Debug, Clone)]
pub struct PlainSpan {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub attributes: Map<String, Value>,
    /// Unix nanoseconds, 0 when the shape gives none.
    pub start_ns: u64,
}

/// What a trace says happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub trace_id: String,
    pub question: String,
    pub answer: String,
    /// Retrieved documents: id and metadata, in rank order.
    pub documents: Vec<(String, Value)>,
    /// Assessments on the trace that said it failed (MLflow feedback): name and rationale.
    pub failed: Vec<(String, String)>,
    /// Facts an expectation on the trace says a good answer holds (`expected_facts`).
    pub expected_facts: Vec<String>,
    /// When the trace began (its earliest span), to put a session's turns in order.
    pub started_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not a trace this reader knows: {0}")]
    Shape(String),
    #[error("the trace has no {0}")]
    Missing(&'static str),
    #[error("no such trace `{wanted}` in the file (traces there: {})", known.join(", "))]
    NoSuchTrace { wanted: String, known: Vec<String> },
}

/// A trace file that cannot be read as one.
#[derive(Debug, thiserror::Error)]
pub enum TraceFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: crate::config::files::ReadError,
    },
    #[error("{}: not JSON: {source}", path.display())]
    NotJson {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
}

/// A trace file as JSON: one document, or (OTLP JSON Lines files) the first line that
/// parses.
pub fn read_trace_file(path: &std::path::Path) -> Result<Value, TraceFileError> {
    let text = crate::config::files::read_capped(path, crate::config::files::MAX_INPUT_BYTES)
        .map_err(|source| TraceFileError::Read {
            path: path.to_owned(),
            source,
        })?;
    serde_json::from_str(&text)
        .or_else(|e| {
            text.lines()
                .find_map(|l| serde_json::from_str(l).ok())
                .ok_or(e)
        })
        .map_err(|source| TraceFileError::NotJson {
            path: path.to_owned(),
            source,
        })
}

/// Every trace document in a file: the file as one JSON document, or each line of a
/// JSON Lines file that parses (OTLP file exporters write a request per line).
pub fn read_trace_documents(path: &std::path::Path) -> Result<Vec<Value>, TraceFileError> {
    let text = crate::config::files::read_capped(path, crate::config::files::MAX_INPUT_BYTES)
        .map_err(|source| TraceFileError::Read {
            path: path.to_owned(),
            source,
        })?;
    match serde_json::from_str(&text) {
        Ok(document) => Ok(vec![document]),
        Err(error) => {
            let lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if lines.is_empty() {
                return Err(TraceFileError::NotJson {
                    path: path.to_owned(),
                    source: error,
                });
            }
            Ok(lines)
        }
    }
}

/// OTLP requests joined into one, so a trace whose spans were exported in several batches
/// (a line each) is read whole; documents of other shapes are kept as they are.
pub fn merge_otlp(documents: Vec<Value>) -> Vec<Value> {
    let mut resource_spans = Vec::new();
    let mut others = Vec::new();
    for document in documents {
        match document.get("resourceSpans").and_then(Value::as_array) {
            Some(items) => resource_spans.extend(items.iter().cloned()),
            None => others.push(document),
        }
    }
    if !resource_spans.is_empty() {
        others.insert(0, serde_json::json!({"resourceSpans": resource_spans}));
    }
    others
}

/// An OTLP or MLflow-REST typed value (`stringValue` / `string_value`, …) as plain JSON.
fn typed(value: &Value) -> Value {
    let field = |camel: &str, snake: &str| value.get(camel).or_else(|| value.get(snake));
    if let Some(s) = field("stringValue", "string_value") {
        return s.clone();
    }
    if let Some(b) = field("boolValue", "bool_value") {
        return b.clone();
    }
    if let Some(i) = field("intValue", "int_value") {
        // OTLP JSON writes 64-bit integers as strings.
        return i
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .map_or(i.clone(), Value::from);
    }
    if let Some(d) = field("doubleValue", "double_value") {
        return d.clone();
    }
    if let Some(list) = field("arrayValue", "array_value") {
        return Value::Array(
            list["values"]
                .as_array()
                .map(|v| v.iter().map(typed).collect())
                .unwrap_or_default(),
        );
    }
    if let Some(list) = field("kvlistValue", "kvlist_value") {
        return Value::Object(key_values(&list["values"]));
    }
    Value::Null
}

fn key_values(list: &Value) -> Map<String, Value> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), typed(&kv["value"]))))
                .collect()
        })
        .unwrap_or_default()
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// Spans of every trace in `document`, whichever of the three shapes it is.
pub fn spans(document: &Value) -> Result<Vec<(String, PlainSpan)>, ImportError> {
    let mut out = Vec::new();
    if let Some(resource_spans) = document.get("resourceSpans").and_then(Value::as_array) {
        for scope in resource_spans
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        {
            for span in scope["spans"].as_array().cloned().unwrap_or_default() {
                let trace_id = text(&span["traceId"]).unwrap_or_default();
                out.push((
                    trace_id,
                    PlainSpan {
                        span_id: text(&span["spanId"]).unwrap_or_default(),
                        parent_span_id: text(&span["parentSpanId"]).filter(|p| !p.is_empty()),
                        name: text(&span["name"]).unwrap_or_default(),
                        attributes: key_values(&span["attributes"]),
                        start_ns: nanos(&span["startTimeUnixNano"]),
                    },
                ));
            }
        }
        return Ok(out);
    }
    // MLflow: `{trace: {trace_info, spans}}` from REST, `{info, data: {spans}}` from to_json.
    let (info, spans) = if let Some(trace) = document.get("trace") {
        (&trace["trace_info"], &trace["spans"])
    } else if let Some(data) = document.get("data") {
        (&document["info"], &data["spans"])
    } else {
        return Err(ImportError::Shape(
            "expected OTLP JSON (resourceSpans), MLflow REST ({trace: …}) or MLflow to_json ({info, data})".into(),
        ));
    };
    let trace_id = text(&info["trace_id"]).unwrap_or_default();
    for span in spans.as_array().cloned().unwrap_or_default() {
        let attributes = match &span["attributes"] {
            // to_json: every value is a JSON-encoded string.
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let decoded = v
                        .as_str()
                        .and_then(|s| serde_json::from_str(s).ok())
                        .unwrap_or_else(|| v.clone());
                    (k.clone(), decoded)
                })
                .collect(),
            list => key_values(list),
        };
        out.push((
            trace_id.clone(),
            PlainSpan {
                span_id: text(&span["span_id"]).unwrap_or_default(),
                parent_span_id: text(&span["parent_span_id"]).filter(|p| !p.is_empty()),
                name: text(&span["name"]).unwrap_or_default(),
                attributes,
                start_ns: nanos(&span["start_time_unix_nano"])
                    .max(nanos(&span["start_time_ns"]))
                    .max(nanos(&span["start_time"])),
            },
        ));
    }
    Ok(out)
}

/// A time in nanoseconds written as a number or as a decimal string (OTLP JSON).
fn nanos(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// The attributes that name a conversation: OpenTelemetry's `session.id`, the GenAI
/// conventions' `gen_ai.conversation.id`, MLflow's session metadata.
const SESSION_KEYS: [&str; 3] = [
    "session.id",
    "gen_ai.conversation.id",
    "mlflow.trace.session",
];

/// The traces of `document` that belong to `session`, each with its start (its earliest
/// span), in time order.
pub fn session_traces(document: &Value, session: &str) -> Result<Vec<(String, u64)>, ImportError> {
    let all = spans(document)?;
    let mut traces: Vec<(String, u64)> = Vec::new();
    for (trace_id, span) in &all {
        let belongs = SESSION_KEYS
            .iter()
            .any(|k| span.attributes.get(*k).and_then(Value::as_str) == Some(session));
        if belongs && !traces.iter().any(|(id, _)| id == trace_id) {
            let start = all
                .iter()
                .filter(|(id, s)| id == trace_id && s.start_ns > 0)
                .map(|(_, s)| s.start_ns)
                .min()
                .unwrap_or(0);
            traces.push((trace_id.clone(), start));
        }
    }
    traces.sort_by_key(|(_, start)| *start);
    Ok(traces)
}

fn kind(span: &PlainSpan) -> String {
    span.attributes
        .get("mlflow.spanType")
        .or_else(|| span.attributes.get("openinference.span.kind"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// A question or answer from inputs/outputs that may be a string or an object.
fn message(value: Option<&Value>, keys: &[&str]) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => keys
            .iter()
            .find_map(|k| map.get(*k).and_then(|v| message(Some(v), keys))),
        Value::Array(items) => items.iter().rev().find_map(|v| message(Some(v), keys)),
        _ => None,
    }
}

/// What the trace `trace_id` (or the first trace, if `None`) observed.
pub fn observe(document: &Value, trace_id: Option<&str>) -> Result<Observed, ImportError> {
    let all = spans(document)?;
    let wanted = |id: &str| {
        trace_id.is_none_or(|want| {
            let want = want.trim_start_matches("tr-");
            id.trim_start_matches("tr-") == want
        })
    };
    let chosen: Vec<&(String, PlainSpan)> = all.iter().filter(|(id, _)| wanted(id)).collect();
    if let (Some(want), true, false) = (trace_id, chosen.is_empty(), all.is_empty()) {
        let mut known: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
        known.dedup();
        known.truncate(10);
        return Err(ImportError::NoSuchTrace {
            wanted: want.to_owned(),
            known,
        });
    }
    let first_trace = chosen
        .first()
        .map(|(id, _)| id.clone())
        .ok_or(ImportError::Missing("spans"))?;
    let spans: Vec<&PlainSpan> = chosen
        .iter()
        .filter(|(id, _)| *id == first_trace)
        .map(|(_, s)| s)
        .collect();
    let parentless = |s: &&&PlainSpan| {
        s.parent_span_id
            .as_ref()
            .is_none_or(|p| !spans.iter().any(|o| &o.span_id == p))
    };
    // A retriever span whose parent was not exported is not the root: its output is
    // documents, never the answer.
    let root = spans
        .iter()
        .filter(parentless)
        .find(|s| kind(s) != "RETRIEVER")
        .or_else(|| spans.iter().find(parentless))
        .ok_or(ImportError::Missing("root span"))?;
    let question_keys = [
        "question", "query", "input", "content", "inputs", "messages",
    ];
    // RetrievalQA answers in `result`, LangServe in `output`, chat models in `content`.
    let answer_keys = [
        "answer",
        "result",
        "output",
        "content",
        "text",
        "outputs",
        "choices",
        "message",
        "generations",
    ];
    let question = message(root.attributes.get("mlflow.spanInputs"), &question_keys)
        .or_else(|| message(root.attributes.get("input.value"), &question_keys))
        .ok_or(ImportError::Missing(
            "question (mlflow.spanInputs or input.value on the root span)",
        ))?;
    // A blank answer is no answer: the next place is looked at.
    let answer_of = |span: &PlainSpan| {
        message(span.attributes.get("mlflow.spanOutputs"), &answer_keys)
            .filter(|a| !a.trim().is_empty())
            .or_else(|| {
                message(span.attributes.get("output.value"), &answer_keys)
                    .filter(|a| !a.trim().is_empty())
            })
    };
    let answer = (kind(root) != "RETRIEVER")
        .then(|| answer_of(root))
        .flatten()
        .or_else(|| {
            // The last model call's output, when the root's output holds no answer.
            spans
                .iter()
                .rev()
                .filter(|s| matches!(kind(s).as_str(), "LLM" | "CHAT_MODEL"))
                .find_map(|s| answer_of(s))
        })
        .unwrap_or_default();
    let mut documents = Vec::new();
    if let Some(retriever) = spans.iter().find(|s| kind(s) == "RETRIEVER") {
        if let Some(items) = retriever
            .attributes
            .get("mlflow.spanOutputs")
            .and_then(Value::as_array)
        {
            for item in items {
                let metadata = item
                    .get("metadata")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                let id = item
                    .get("id")
                    .or_else(|| metadata.get("id"))
                    .or_else(|| metadata.get("doc_uri"))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
                if let Some(id) = id {
                    documents.push((id, metadata));
                }
            }
        }
        if documents.is_empty() {
            for i in 0.. {
                let prefix = format!("retrieval.documents.{i}.document");
                let Some(id) = retriever.attributes.get(&format!("{prefix}.id")) else {
                    break;
                };
                let metadata = match retriever.attributes.get(&format!("{prefix}.metadata")) {
                    Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
                    Some(other) => other.clone(),
                    None => Value::Null,
                };
                documents.push((
                    id.as_str().map_or_else(|| id.to_string(), str::to_owned),
                    metadata,
                ));
            }
        }
    }
    let (failed, expected_facts) = assessments(document);
    let started_ns = spans
        .iter()
        .map(|s| s.start_ns)
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(0);
    Ok(Observed {
        trace_id: first_trace,
        question,
        answer,
        documents,
        failed,
        expected_facts,
        started_ns,
    })
}

/// The trace's assessments (MLflow 3: `info.assessments`): the feedback that said it
/// failed, and the facts an expectation says a good answer holds.
fn assessments(document: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let info = document
        .get("trace")
        .map_or(&document["info"], |t| &t["trace_info"]);
    let mut failed = Vec::new();
    let mut facts = Vec::new();
    for assessment in info["assessments"].as_array().into_iter().flatten() {
        let name = assessment["assessment_name"]
            .as_str()
            .or_else(|| assessment["name"].as_str())
            .unwrap_or("assessment")
            .to_owned();
        if let Some(value) = assessment.get("feedback").map(|f| &f["value"]) {
            let said_no = match value {
                Value::Bool(b) => !b,
                Value::String(s) => {
                    matches!(
                        s.to_ascii_lowercase().as_str(),
                        "no" | "fail" | "false" | "bad"
                    )
                }
                _ => false,
            };
            if said_no {
                let why = assessment["rationale"].as_str().unwrap_or_default();
                failed.push((name, why.to_owned()));
            }
        } else if let Some(value) = assessment.get("expectation").map(|e| &e["value"]) {
            match value {
                Value::Array(items) => {
                    facts.extend(items.iter().filter_map(|v| v.as_str().map(str::to_owned)))
                }
                Value::String(s) if name == "expected_facts" => facts.push(s.clone()),
                _ => {}
            }
        }
    }
    (failed, facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An MLflow `to_json` trace: a root span with `inputs`/`outputs` and, optionally, a
    /// child LLM span with its own output.
    fn trace(inputs: Value, outputs: Value, llm_output: Option<Value>) -> Value {
        let encode = |v: &Value| Value::String(v.to_string());
        let mut spans = vec![json!({
            "span_id": "r", "name": "RetrievalQA",
            "attributes": {
                "mlflow.spanType": encode(&json!("CHAIN")),
                "mlflow.spanInputs": encode(&inputs),
                "mlflow.spanOutputs": encode(&outputs),
            }
        })];
        if let Some(output) = llm_output {
            spans.push(json!({
                "span_id": "l", "parent_span_id": "r", "name": "ChatOpenAI",
                "attributes": {
                    "mlflow.spanType": encode(&json!("CHAT_MODEL")),
                    "mlflow.spanOutputs": encode(&output),
                }
            }));
        }
        json!({"info": {"trace_id": "tr-1"}, "data": {"spans": spans}})
    }

    #[test]
    fn retrievalqa_answers_in_result() {
        let observed = observe(
            &trace(
                json!({"query": "How much?"}),
                json!({"query": "How much?", "result": "Use t4g.micro.", "source_documents": []}),
                None,
            ),
            None,
        )
        .expect("observed");
        assert_eq!(observed.question, "How much?");
        assert_eq!(observed.answer, "Use t4g.micro.");
    }

    #[test]
    fn langserve_answers_under_output() {
        let observed = observe(
            &trace(
                json!({"input": {"question": "How much?"}}),
                json!({"output": {"answer": "It depends.", "context": []}}),
                None,
            ),
            None,
        )
        .expect("observed");
        assert_eq!(observed.question, "How much?");
        assert_eq!(observed.answer, "It depends.");
    }

    #[test]
    fn without_an_answer_at_the_root_the_last_model_call_answers() {
        let observed = observe(
            &trace(
                json!({"query": "How much?"}),
                json!({"query": "How much?", "source_documents": []}),
                Some(json!({"content": "From the model."})),
            ),
            None,
        )
        .expect("observed");
        assert_eq!(observed.answer, "From the model.");
        let observed = observe(
            &trace(json!({"query": "q"}), json!({"result": "  "}), None),
            None,
        )
        .expect("observed");
        assert_eq!(observed.answer, "", "a blank answer is no answer");
        let observed = observe(
            &trace(
                json!({"query": "q"}),
                json!({"result": " "}),
                Some(json!({"content": "From the model."})),
            ),
            None,
        )
        .expect("observed");
        assert_eq!(
            observed.answer, "From the model.",
            "past a blank root answer"
        );
    }

    /// Found by a hostile tester: a trace whose RETRIEVER span's parent was not exported
    /// drafted a `not_contains` of a document's text, and the assessment that failed was
    /// ignored. The answer comes from the chain, never a retriever; failed assessments and
    /// expected facts are read.
    #[test]
    fn import_reads_the_failed_assessment_and_never_answers_from_a_retriever() {
        let encode = |v: &Value| Value::String(v.to_string());
        let document = json!({
            "info": {"trace_id": "tr-9", "assessments": [
                {"assessment_name": "no_aws_advice", "feedback": {"value": false},
                 "rationale": "recommends t4g.micro"},
                {"assessment_name": "expected_facts", "expectation": {"value": ["Delta", "S3"]}},
                {"assessment_name": "relevance", "feedback": {"value": true}}
            ]},
            "data": {"spans": [
                {"span_id": "ret", "parent_span_id": "gone", "name": "retrieve",
                 "attributes": {"mlflow.spanType": encode(&json!("RETRIEVER")),
                                "mlflow.spanOutputs": encode(&json!([{"page_content": "t4g.micro instances are cheap", "metadata": {"id": "4"}}]))}},
                {"span_id": "root", "name": "chat",
                 "attributes": {"mlflow.spanType": encode(&json!("CHAIN")),
                                "mlflow.spanInputs": encode(&json!({"question": "How much?"})),
                                "mlflow.spanOutputs": encode(&json!({"answer": "Use t4g.micro."}))}}
            ]}
        });
        let observed = observe(&document, None).expect("reads");
        assert_eq!(observed.question, "How much?");
        assert_eq!(observed.answer, "Use t4g.micro.");
        assert_eq!(
            observed.failed,
            vec![(
                "no_aws_advice".to_owned(),
                "recommends t4g.micro".to_owned()
            )]
        );
        assert_eq!(
            observed.expected_facts,
            vec!["Delta".to_owned(), "S3".to_owned()]
        );
    }
}
