//! OTLP/protobuf (`application/x-protobuf`, the OTLP default) for an export: ragprobe's
//! spans as the messages in `model::otlp_proto`.

use prost::Message;

use crate::export::otlp::{Attr, OtlpSpan, resource_attributes};
pub use crate::model::otlp_proto::*;

fn any(attr: &Attr) -> AnyValue {
    use any_value::Value;
    AnyValue {
        value: Some(match attr {
            Attr::Str(s) => Value::StringValue(s.clone()),
            Attr::Int(i) => Value::IntValue(*i),
            Attr::Double(d) => Value::DoubleValue(*d),
            Attr::Bool(b) => Value::BoolValue(*b),
            Attr::Array(items) => Value::ArrayValue(ArrayValue {
                values: items.iter().map(any).collect(),
            }),
            Attr::Map(entries) => Value::KvlistValue(KeyValueList {
                values: key_values(entries),
            }),
        }),
    }
}

fn key_values(entries: &[(String, Attr)]) -> Vec<KeyValue> {
    entries
        .iter()
        .map(|(key, attr)| KeyValue {
            key: key.clone(),
            value: Some(any(attr)),
        })
        .collect()
}

/// Hex ids to bytes; an id that is not hex becomes empty (and the backend rejects it).
fn id_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .unwrap_or_default()
}

pub fn request(spans: &[OtlpSpan]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: key_values(&resource_attributes()),
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "ragprobe".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                spans: spans
                    .iter()
                    .map(|s| Span {
                        trace_id: id_bytes(&s.trace_id),
                        span_id: id_bytes(&s.span_id),
                        parent_span_id: s
                            .parent_span_id
                            .as_deref()
                            .map(id_bytes)
                            .unwrap_or_default(),
                        name: s.name.clone(),
                        kind: 1,
                        start_time_unix_nano: s.start_ns,
                        end_time_unix_nano: s.end_ns,
                        attributes: key_values(&s.attributes),
                        status: Some(match &s.error {
                            None => Status {
                                message: String::new(),
                                code: 1,
                            },
                            Some(message) => Status {
                                message: message.clone(),
                                code: 2,
                            },
                        }),
                    })
                    .collect(),
            }],
        }],
    }
}

pub fn encode(spans: &[OtlpSpan]) -> Vec<u8> {
    request(spans).encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_raw_bytes_and_the_request_decodes() {
        assert_eq!(id_bytes("00ff10"), [0, 255, 16]);
        assert!(id_bytes("zz").is_empty());
        let span = OtlpSpan {
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            span_id: "0123456789abcdef".into(),
            parent_span_id: None,
            name: "rag-chain".into(),
            start_ns: 1,
            end_ns: 2,
            error: None,
            attributes: vec![("k".into(), Attr::Map(vec![("n".into(), Attr::Int(3))]))],
        };
        let bytes = encode(std::slice::from_ref(&span));
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let decoded = &back.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(decoded.trace_id.len(), 16);
        assert_eq!(decoded.span_id.len(), 8);
        assert_eq!(decoded.start_time_unix_nano, 1);
        assert_eq!(decoded.attributes[0].key, "k");
    }
}
