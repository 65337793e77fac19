//! OTLP/JSON (`application/json`): ids as hex, 64-bit integers as strings, as the OTLP
//! specification's JSON mapping says.

use serde_json::{Value, json};

use crate::export::otlp::{Attr, OtlpSpan, resource_attributes};

fn value(attr: &Attr) -> Value {
    match attr {
        Attr::Str(s) => json!({ "stringValue": s }),
        Attr::Int(i) => json!({ "intValue": i.to_string() }),
        Attr::Double(d) => json!({ "doubleValue": d }),
        Attr::Bool(b) => json!({ "boolValue": b }),
        Attr::Array(items) => {
            json!({ "arrayValue": { "values": items.iter().map(value).collect::<Vec<_>>() } })
        }
        Attr::Map(entries) => json!({ "kvlistValue": { "values": key_values(entries) } }),
    }
}

fn key_values(entries: &[(String, Attr)]) -> Vec<Value> {
    entries
        .iter()
        .map(|(key, attr)| json!({ "key": key, "value": value(attr) }))
        .collect()
}

fn span(span: &OtlpSpan) -> Value {
    let mut out = json!({
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": 1,
        "startTimeUnixNano": span.start_ns.to_string(),
        "endTimeUnixNano": span.end_ns.to_string(),
        "attributes": key_values(&span.attributes),
        "status": match &span.error {
            None => json!({ "code": 1 }),
            Some(message) => json!({ "code": 2, "message": message }),
        },
    });
    if let Some(parent) = &span.parent_span_id {
        out["parentSpanId"] = json!(parent);
    }
    out
}

/// An `ExportTraceServiceRequest` holding `spans`.
pub fn request(spans: &[OtlpSpan]) -> Value {
    json!({
        "resourceSpans": [{
            "resource": { "attributes": key_values(&resource_attributes()) },
            "scopeSpans": [{
                "scope": { "name": "ragprobe", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans.iter().map(span).collect::<Vec<_>>(),
            }],
        }],
    })
}
