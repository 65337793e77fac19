//! An OTLP/HTTP traces request (protobuf or JSON) as ragprobe spans, each with its trace
//! id. A span's kind comes from the conventions instrumentations write
//! (`openinference.span.kind`, MLflow's `mlflow.spanType`); its attributes are kept as
//! values, with long strings cut so one chatty span cannot hold megabytes.

use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::otlp_proto::{self, ExportTraceServiceRequest, any_value};
use crate::trace::{Span, SpanKind, SpanStatus};

/// Longest attribute string kept, in bytes; the rest is replaced by a marker.
pub const MAX_ATTRIBUTE_BYTES: usize = 32 * 1024;
/// Attribute bytes kept per span: beyond them whole attributes are dropped (and counted),
/// so 990 attributes of 32 KiB cannot make one span 31 MiB.
pub const MAX_SPAN_ATTRIBUTE_BYTES: usize = 256 * 1024;

/// A span as received: its trace id (32 hex digits) and the span.
#[derive(Debug, Clone)]
pub struct Received {
    pub trace_id: String,
    pub span: Span,
    /// Attribute bytes not kept (over [`MAX_SPAN_ATTRIBUTE_BYTES`], or cut from long
    /// strings).
    pub dropped_bytes: u64,
}

impl Received {
    /// About what the span holds in memory: its name and attributes as JSON text.
    pub fn size(&self) -> usize {
        self.span.name.len()
            + self
                .span
                .attributes
                .iter()
                .map(|(k, v)| k.len() + json_size(v))
                .sum::<usize>()
            + 128
    }
}

/// About how many bytes `value` takes as JSON text.
fn json_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 12,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(|v| json_size(v) + 1).sum::<usize>() + 2,
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() + 4 + json_size(v))
                .sum::<usize>()
                + 2
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an OTLP ExportTraceServiceRequest in protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not an OTLP ExportTraceServiceRequest in JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn protobuf(body: &[u8]) -> Result<Vec<Received>, DecodeError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    let mut out = Vec::new();
    for resource in request.resource_spans {
        let service = service_name(
            resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .map(|kv| (kv.key.as_str(), kv.value.as_ref().map(any_to_json))),
        );
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = kv.value.as_ref().map(any_to_json).unwrap_or(Value::Null);
                        (kv.key.clone(), value)
                    })
                    .collect();
                let status = span.status.unwrap_or_default();
                out.push(received(
                    Parts {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        start_ns: span.start_time_unix_nano,
                        end_ns: span.end_time_unix_nano,
                        error: (status.code == 2).then_some(status.message),
                        attributes,
                    },
                    &service,
                ));
            }
        }
    }
    Ok(out)
}

pub fn json(body: &[u8]) -> Result<Vec<Received>, DecodeError> {
    let request: JsonRequest = serde_json::from_slice(body)?;
    let mut out = Vec::new();
    for resource in request.resource_spans {
        let service = service_name(
            resource
                .resource
                .attributes
                .iter()
                .map(|kv| (kv.key.as_str(), kv.value.as_ref().map(json_any))),
        );
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        (
                            kv.key.clone(),
                            kv.value.as_ref().map_or(Value::Null, json_any),
                        )
                    })
                    .collect();
                out.push(received(
                    Parts {
                        trace_id: span.trace_id.to_ascii_lowercase(),
                        span_id: span.span_id.to_ascii_lowercase(),
                        parent_span_id: span.parent_span_id.to_ascii_lowercase(),
                        name: span.name,
                        start_ns: span.start_time_unix_nano.0,
                        end_ns: span.end_time_unix_nano.0,
                        error: (span.status.code.0 == 2).then_some(span.status.message),
                        attributes,
                    },
                    &service,
                ));
            }
        }
    }
    Ok(out)
}

/// The resource's `service.name` (OpenTelemetry's default when it has none).
fn service_name<'a>(mut attributes: impl Iterator<Item = (&'a str, Option<Value>)>) -> String {
    attributes
        .find(|(key, _)| *key == "service.name")
        .and_then(|(_, value)| value?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown_service".into())
}

struct Parts {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    start_ns: u64,
    end_ns: u64,
    error: Option<String>,
    attributes: Map<String, Value>,
}

fn received(parts: Parts, service: &str) -> Received {
    let mut attributes = parts.attributes;
    let mut dropped_bytes = 0u64;
    for value in attributes.values_mut() {
        dropped_bytes += cut_long_strings(value) as u64;
    }
    // Whole attributes beyond the span's budget go, the kind-defining ones kept first.
    let mut kept = 0usize;
    let keys: Vec<String> = attributes.keys().cloned().collect();
    for key in keys {
        let size = key.len() + attributes.get(&key).map_or(0, json_size);
        let defines_kind = matches!(key.as_str(), "openinference.span.kind" | "mlflow.spanType");
        if kept + size > MAX_SPAN_ATTRIBUTE_BYTES && !defines_kind {
            attributes.remove(&key);
            dropped_bytes += size as u64;
        } else {
            kept += size;
        }
    }
    if dropped_bytes > 0 {
        attributes.insert(
            "ragprobe.attribute_bytes_dropped".into(),
            Value::from(dropped_bytes),
        );
    }
    Received {
        dropped_bytes,
        trace_id: parts.trace_id,
        span: Span {
            span_id: parts.span_id,
            parent_span_id: Some(parts.parent_span_id).filter(|p| !p.is_empty()),
            kind: kind_of(&attributes),
            name: parts.name,
            start_ns: parts.start_ns,
            end_ns: parts.end_ns.max(parts.start_ns),
            status: match parts.error {
                Some(message) => SpanStatus::Error { message },
                None => SpanStatus::Ok,
            },
            attributes,
            service: Some(service.to_owned()),
        },
    }
}

/// The kind an instrumentation gave a span: OpenInference's attribute, else MLflow's
/// (which MLflow JSON-quotes: `"\"RETRIEVER\""`), else a CHAIN step.
pub fn kind_of(attributes: &Map<String, Value>) -> SpanKind {
    let named = ["openinference.span.kind", "mlflow.spanType"]
        .iter()
        .find_map(|key| attributes.get(*key).and_then(Value::as_str))
        .map(|k| k.trim_matches('"').to_ascii_uppercase());
    match named.as_deref() {
        Some("RETRIEVER" | "RERANKER") => SpanKind::Retriever,
        Some("LLM" | "CHAT_MODEL") => SpanKind::Llm,
        Some("EMBEDDING") => SpanKind::Embedding,
        Some("PROMPT" | "PARSER") => SpanKind::Prompt,
        _ => SpanKind::Chain,
    }
}

/// Cuts every string longer than [`MAX_ATTRIBUTE_BYTES`]; returns the bytes cut.
fn cut_long_strings(value: &mut Value) -> usize {
    match value {
        Value::String(text) if text.len() > MAX_ATTRIBUTE_BYTES => {
            let mut end = MAX_ATTRIBUTE_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let dropped = text.len() - end;
            text.truncate(end);
            text.push_str(&format!("… [{dropped} more bytes not kept by ragprobe]"));
            dropped
        }
        Value::Array(items) => items.iter_mut().map(cut_long_strings).sum(),
        Value::Object(map) => map.values_mut().map(cut_long_strings).sum(),
        _ => 0,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn any_to_json(value: &otlp_proto::AnyValue) -> Value {
    use any_value::Value as V;
    match &value.value {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(V::ArrayValue(items)) => Value::Array(items.values.iter().map(any_to_json).collect()),
        Some(V::KvlistValue(list)) => Value::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, any_to_json),
                    )
                })
                .collect(),
        ),
    }
}

// OTLP/JSON: the protobuf messages' JSON mapping, camelCase, ids as hex, 64-bit integers
// as strings or numbers.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonRequest {
    #[serde(default)]
    resource_spans: Vec<JsonResourceSpans>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonResourceSpans {
    #[serde(default)]
    resource: JsonResource,
    #[serde(default)]
    scope_spans: Vec<JsonScopeSpans>,
}

#[derive(Deserialize, Default)]
struct JsonResource {
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
}

#[derive(Deserialize)]
struct JsonScopeSpans {
    #[serde(default)]
    spans: Vec<JsonSpan>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: String,
    span_id: String,
    #[serde(default)]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    start_time_unix_nano: Uint64,
    #[serde(default)]
    end_time_unix_nano: Uint64,
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
    #[serde(default)]
    status: JsonStatus,
}

#[derive(Deserialize, Default)]
struct JsonStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: StatusCode,
}

/// A status code as a number (2) or the enum's name (`STATUS_CODE_ERROR`).
#[derive(Default)]
struct StatusCode(i64);

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(StatusCode(match Value::deserialize(d)? {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::String(s) if s == "STATUS_CODE_ERROR" => 2,
            Value::String(s) if s == "STATUS_CODE_OK" => 1,
            _ => 0,
        }))
    }
}

/// A 64-bit integer as a JSON number or string.
#[derive(Default)]
struct Uint64(u64);

impl<'de> Deserialize<'de> for Uint64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_u64()
                .map(Uint64)
                .ok_or_else(|| serde::de::Error::custom("not an unsigned integer")),
            Value::String(s) => s.parse().map(Uint64).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom("not an integer")),
        }
    }
}

#[derive(Deserialize)]
struct JsonKeyValue {
    key: String,
    #[serde(default)]
    value: Option<Value>,
}

/// `{"stringValue": …}`, `{"intValue": "3"}`, `{"arrayValue": {"values": […]}}`, … as a
/// plain JSON value.
fn json_any(value: &Value) -> Value {
    let Some(object) = value.as_object() else {
        return Value::Null;
    };
    if let Some(s) = object.get("stringValue") {
        return s.clone();
    }
    if let Some(b) = object.get("boolValue") {
        return b.clone();
    }
    if let Some(i) = object.get("intValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map_or(i.clone(), Value::from),
            other => other.clone(),
        };
    }
    if let Some(d) = object.get("doubleValue") {
        return d.clone();
    }
    if let Some(items) = object.get("arrayValue") {
        return Value::Array(
            items
                .get("values")
                .and_then(Value::as_array)
                .map(|values| values.iter().map(json_any).collect())
                .unwrap_or_default(),
        );
    }
    if let Some(list) = object.get("kvlistValue") {
        return Value::Object(
            list.get("values")
                .and_then(Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .filter_map(|kv| {
                            let key = kv.get("key")?.as_str()?.to_owned();
                            Some((key, kv.get("value").map_or(Value::Null, json_any)))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        );
    }
    Value::Null
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::otlp_proto::*;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }

    #[test]
    fn protobuf_spans_keep_ids_kind_service_and_attributes() {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("support".into()),
                    )],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: None,
                    spans: vec![otlp_proto::Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![1; 8],
                        parent_span_id: vec![2; 8],
                        name: "VectorStoreRetriever".into(),
                        kind: 1,
                        start_time_unix_nano: 10,
                        end_time_unix_nano: 5,
                        attributes: vec![
                            kv(
                                "openinference.span.kind",
                                any_value::Value::StringValue("RETRIEVER".into()),
                            ),
                            kv("k", any_value::Value::IntValue(2)),
                            kv(
                                "long",
                                any_value::Value::StringValue("x".repeat(MAX_ATTRIBUTE_BYTES + 9)),
                            ),
                        ],
                        status: Some(Status {
                            message: "boom".into(),
                            code: 2,
                        }),
                    }],
                }],
            }],
        };
        let spans = protobuf(&request.encode_to_vec()).expect("decodes");
        assert_eq!(spans.len(), 1);
        let got = &spans[0];
        assert_eq!(got.trace_id, "ab".repeat(16));
        assert_eq!(got.span.span_id, "0101010101010101");
        assert_eq!(got.span.parent_span_id.as_deref(), Some("0202020202020202"));
        assert_eq!(got.span.kind, SpanKind::Retriever);
        assert_eq!(got.span.service.as_deref(), Some("support"));
        assert_eq!(got.span.end_ns, 10, "an end before the start is clamped");
        assert_eq!(got.span.attributes["k"], 2);
        let long = got.span.attributes["long"].as_str().expect("string");
        assert!(
            long.ends_with("[9 more bytes not kept by ragprobe]"),
            "{long:.40}"
        );
        assert!(matches!(&got.span.status, SpanStatus::Error { message } if message == "boom"));
        assert!(protobuf(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn json_spans_read_camel_case_string_integers_and_nested_values() {
        let body = br#"{"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "svc"}}]},
          "scopeSpans": [{"spans": [{
            "traceId": "0AF7651916CD43DD8448EB211C80319C", "spanId": "B7AD6B7169203331",
            "name": "ChatOpenAI", "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": 1700000000500000000,
            "status": {"code": "STATUS_CODE_OK"},
            "attributes": [
              {"key": "mlflow.spanType", "value": {"stringValue": "\"CHAT_MODEL\""}},
              {"key": "llm.token_count.prompt", "value": {"intValue": "42"}},
              {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
              {"key": "meta", "value": {"kvlistValue": {"values": [
                {"key": "docs", "value": {"stringValue": "aws"}}]}}}
            ]}]}]}]}"#;
        let spans = json(body).expect("decodes");
        let span = &spans[0].span;
        assert_eq!(spans[0].trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span.parent_span_id, None);
        assert_eq!(span.kind, SpanKind::Llm);
        assert_eq!(span.duration_ns(), 500_000_000);
        assert_eq!(span.attributes["llm.token_count.prompt"], 42);
        assert_eq!(span.attributes["tags"], serde_json::json!(["a"]));
        assert_eq!(span.attributes["meta"], serde_json::json!({"docs": "aws"}));
        assert_eq!(span.status, SpanStatus::Ok);
        assert!(json(b"{\"resourceSpans\": 3}").is_err());
    }
}
