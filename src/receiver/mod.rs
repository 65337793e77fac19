//! An OTLP/HTTP receiver on loopback, for the spans a service records while ragprobe runs
//! it (OpenInference's LangChain instrumentor, MLflow tracing exporting OTLP, any
//! OpenTelemetry SDK). The service continues the `traceparent` ragprobe sends, so its spans
//! carry the run's trace id; the run collects them from the [`Inbox`] and nests them under
//! its root span.

pub mod decode;
pub mod inbox;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Map, Value, json};

pub use inbox::{Collected, Inbox, InboxLimits, ReceiverCounts};

use crate::trace::{Span, SpanKind};

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("`{0}` is not an address to listen on (write 127.0.0.1:4318)")]
    Address(String),
    #[error("{0} is not a loopback address; the OTLP receiver listens on loopback only")]
    NotLoopback(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// A listening receiver; it stops when dropped.
pub struct Receiver {
    pub inbox: Arc<Inbox>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on `addr` (`127.0.0.1:4318`, `localhost:0`, or the same as an http URL).
    /// Must be called inside a tokio runtime.
    pub async fn start(addr: &str) -> Result<Receiver, ReceiverError> {
        let addr = parse_addr(addr)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ReceiverError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ReceiverError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let inbox = Arc::new(Inbox::new(InboxLimits::default()));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&inbox)));
        Ok(Receiver { inbox, addr, task })
    }

    /// The traces endpoint a service's exporter is pointed at.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    pub fn counts(&self) -> ReceiverCounts {
        self.inbox.counts()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn parse_addr(text: &str) -> Result<SocketAddr, ReceiverError> {
    let trimmed = text
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .trim_end_matches("/v1/traces");
    let (host, port) = trimmed
        .rsplit_once(':')
        .ok_or_else(|| ReceiverError::Address(text.to_owned()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| ReceiverError::Address(text.to_owned()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = match host {
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        other => other
            .parse()
            .map_err(|_| ReceiverError::Address(text.to_owned()))?,
    };
    if !ip.is_loopback() {
        return Err(ReceiverError::NotLoopback(ip.to_string()));
    }
    Ok(SocketAddr::new(ip, port))
}

/// The documents a service's own retriever span returned, as JSON documents
/// (`{id, page_content, metadata, score}`) for the chain's document reader: from the
/// span's JSON `output.value` when it lists them (OpenInference's LangChain instrumentor
/// writes whole `Document`s there, ids included, while its `retrieval.documents.N.document.*`
/// attributes carry no id), else those attributes, else MLflow's `mlflow.spanOutputs`. The
/// retriever span that ended last is the one whose documents reached the answer.
pub fn retrieved_documents(spans: &[Span]) -> Option<Vec<Value>> {
    let mut retrievers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Retriever)
        .collect();
    retrievers.sort_by_key(|s| s.end_ns);
    retrievers.into_iter().rev().find_map(|span| {
        output_documents(&span.attributes)
            .or_else(|| openinference_documents(&span.attributes))
            .or_else(|| mlflow_documents(&span.attributes))
    })
}

fn output_documents(attributes: &Map<String, Value>) -> Option<Vec<Value>> {
    let text = attributes.get("output.value")?.as_str()?;
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Object(mut object) => match object.remove("documents") {
            Some(Value::Array(items)) if items.iter().all(Value::is_object) => Some(items),
            _ => None,
        },
        Value::Array(items) if items.iter().all(Value::is_object) => Some(items),
        _ => None,
    }
}

fn openinference_documents(attributes: &Map<String, Value>) -> Option<Vec<Value>> {
    let mut documents: Vec<Map<String, Value>> = Vec::new();
    for (key, value) in attributes {
        let Some(rest) = key.strip_prefix("retrieval.documents.") else {
            continue;
        };
        let Some((index, field)) = rest.split_once(".document.") else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        if index >= 10_000 {
            continue;
        }
        if documents.len() <= index {
            documents.resize_with(index + 1, Map::new);
        }
        let field = match field {
            "content" => "page_content",
            other => other,
        };
        let value = match (field, value) {
            // OpenInference writes metadata as a JSON string.
            ("metadata", Value::String(text)) => {
                serde_json::from_str(text).unwrap_or_else(|_| json!({"raw": text}))
            }
            _ => value.clone(),
        };
        documents[index].insert(field.to_owned(), value);
    }
    (!documents.is_empty()).then(|| documents.into_iter().map(Value::Object).collect())
}

fn mlflow_documents(attributes: &Map<String, Value>) -> Option<Vec<Value>> {
    let outputs = attributes.get("mlflow.spanOutputs")?;
    let parsed = match outputs {
        Value::String(text) => serde_json::from_str(text).ok()?,
        other => other.clone(),
    };
    match parsed {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::SpanStatus;

    #[test]
    fn addresses_are_loopback_only() {
        assert_eq!(
            parse_addr("127.0.0.1:4318").expect("ok").to_string(),
            "127.0.0.1:4318"
        );
        assert_eq!(
            parse_addr("http://localhost:0/v1/traces")
                .expect("ok")
                .port(),
            0
        );
        assert!(parse_addr("[::1]:4318").is_ok());
        assert!(matches!(
            parse_addr("0.0.0.0:4318"),
            Err(ReceiverError::NotLoopback(_))
        ));
        assert!(matches!(parse_addr("4318"), Err(ReceiverError::Address(_))));
    }

    fn retriever(end_ns: u64, attributes: Value) -> Span {
        Span {
            span_id: format!("{end_ns:016x}"),
            parent_span_id: None,
            name: "retriever".into(),
            kind: SpanKind::Retriever,
            start_ns: 0,
            end_ns,
            status: SpanStatus::Ok,
            attributes: attributes.as_object().cloned().unwrap_or_default(),
            service: Some("svc".into()),
        }
    }

    #[test]
    fn documents_come_from_the_last_retriever_in_either_convention() {
        let early = retriever(1, json!({"retrieval.documents.0.document.id": "early"}));
        let late = retriever(
            2,
            json!({
                "retrieval.documents.1.document.id": "4",
                "retrieval.documents.1.document.metadata": "{\"docs\": \"aws\"}",
                "retrieval.documents.0.document.content": "text",
                "retrieval.documents.0.document.score": 0.5,
                "retrieval.documents.0.document.id": "2",
            }),
        );
        let docs = retrieved_documents(&[late, early]).expect("documents");
        assert_eq!(
            docs,
            vec![
                json!({"id": "2", "page_content": "text", "score": 0.5}),
                json!({"id": "4", "metadata": {"docs": "aws"}}),
            ]
        );
        let mlflow = retriever(
            3,
            json!({"mlflow.spanOutputs": "[{\"page_content\": \"t\", \"metadata\": {\"source\": \"a\"}}]"}),
        );
        let docs = retrieved_documents(&[mlflow]).expect("documents");
        assert_eq!(docs[0]["metadata"]["source"], "a");
        assert!(retrieved_documents(&[retriever(4, json!({}))]).is_none());
        // OpenInference's LangChain spans: whole Documents in output.value win over the
        // id-less attributes.
        let langchain = retriever(
            5,
            json!({
                "retrieval.documents.0.document.content": "t",
                "output.value": "{\"documents\": [{\"id\": \"4\", \"page_content\": \"t\", \"metadata\": {\"docs\": \"aws\"}}]}",
            }),
        );
        let docs = retrieved_documents(&[langchain]).expect("documents");
        assert_eq!(docs[0]["id"], "4");
    }
}
