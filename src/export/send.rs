//! Sending traces to an OTLP/HTTP endpoint (MLflow ≥ 3.6, an OpenTelemetry Collector,
//! Jaeger, Phoenix), while a suite runs or afterwards.
//!
//! The streaming exporter never slows the runs: traces go into a bounded queue that a
//! background task drains in batches; when the queue is full a trace is dropped and
//! counted. The first failure is reported once on stderr, the rest are counted.
//! Header values (API keys) are never printed, logged or written into a report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::export::otlp::OtlpSpan;
use crate::export::{json, proto};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Protobuf,
    Json,
}

#[derive(Clone)]
pub struct OtlpTarget {
    pub endpoint: String,
    /// Sent with every request; values are secrets.
    pub headers: Vec<(String, String)>,
    pub protocol: Protocol,
}

impl std::fmt::Debug for OtlpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl OtlpTarget {
    /// Flags first, then the standard `OTEL_EXPORTER_OTLP_*` variables. `None` when
    /// neither names an endpoint.
    pub fn resolve(
        endpoint: Option<&str>,
        headers: &[String],
        protocol: Option<&str>,
    ) -> Result<Option<OtlpTarget>, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let endpoint = match endpoint {
            Some(url) => url.to_owned(),
            None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(url) => url,
                None => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    Some(base) => format!("{}/v1/traces", base.trim_end_matches('/')),
                    None => return Ok(None),
                },
            },
        };
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(format!(
                "OTLP endpoint `{}` is not an http(s) URL (OTLP/gRPC is not supported)",
                redact_url(&endpoint)
            ));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        let from_env =
            env("OTEL_EXPORTER_OTLP_TRACES_HEADERS").or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS"));
        for item in from_env.iter().flat_map(|list| list.split(',')) {
            pairs.push(parse_header(item, true)?);
        }
        for item in headers {
            pairs.push(parse_header(item, false)?);
        }
        let protocol = match protocol
            .map(str::to_owned)
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => Protocol::Protobuf,
            Some("http/json") => Protocol::Json,
            Some(other) => {
                return Err(format!(
                    "OTLP protocol `{other}` is not supported: use http/protobuf or http/json"
                ));
            }
        };
        Ok(Some(OtlpTarget {
            endpoint,
            headers: pairs,
            protocol,
        }))
    }

    /// The endpoint without credentials, and header names without values.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        let protocol = match self.protocol {
            Protocol::Protobuf => "http/protobuf",
            Protocol::Json => "http/json",
        };
        if names.is_empty() {
            format!("{} ({protocol})", redact_url(&self.endpoint))
        } else {
            format!(
                "{} ({protocol}; headers {} redacted)",
                redact_url(&self.endpoint),
                names.join(", ")
            )
        }
    }
}

/// `KEY=VALUE`; in the environment variable, values are percent-encoded.
fn parse_header(item: &str, percent_encoded: bool) -> Result<(String, String), String> {
    let Some((key, value)) = item.split_once('=') else {
        return Err(format!(
            "OTLP header `{}` is not KEY=VALUE",
            item.split(':').next().unwrap_or_default().trim()
        ));
    };
    let value = value.trim();
    let value = if percent_encoded {
        percent_decode(value)
    } else {
        value.to_owned()
    };
    Ok((key.trim().to_owned(), value))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A URL without `user:password@`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// The HTTP client for exports: the shared one, with a 10 s limit per request.
pub fn client() -> Result<reqwest::Client, String> {
    crate::backend::http_client(Some(Duration::from_secs(10)))
}

/// Sends one batch; an error says what the endpoint answered, never the headers.
pub async fn post(
    client: &reqwest::Client,
    target: &OtlpTarget,
    spans: &[OtlpSpan],
) -> Result<(), String> {
    let (body, content_type) = match target.protocol {
        Protocol::Protobuf => (proto::encode(spans), "application/x-protobuf"),
        Protocol::Json => (
            serde_json::to_vec(&json::request(spans)).map_err(|e| e.to_string())?,
            "application/json",
        ),
    };
    let mut request = client
        .post(&target.endpoint)
        .header("content-type", content_type)
        .body(body);
    for (key, value) in &target.headers {
        request = request.header(key.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| {
        format!(
            "cannot reach {}: {}",
            redact_url(&target.endpoint),
            root_cause(&e)
        )
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(300).collect();
    Err(format!(
        "{} answered HTTP {status}: {excerpt}",
        redact_url(&target.endpoint)
    ))
}

fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// What an exporter did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub first_error: Option<String>,
}

impl ExportReport {
    pub fn summary(&self, target: &OtlpTarget) -> String {
        let mut line = format!(
            "otlp: {} traces exported to {}, {} failed, {} dropped",
            self.sent,
            target.describe(),
            self.failed,
            self.dropped
        );
        if let Some(error) = &self.first_error {
            line.push_str(&format!(" (first error: {error})"));
        }
        line
    }
}

/// Traces per request.
const BATCH_TRACES: usize = 64;
/// Traces waiting at most; beyond, new traces are dropped rather than slow the runs.
const QUEUE_TRACES: usize = 4096;

/// Exports traces in the background while a suite runs.
pub struct StreamExporter {
    queue: mpsc::Sender<Vec<OtlpSpan>>,
    dropped: Arc<AtomicU64>,
    task: JoinHandle<ExportReport>,
}

impl StreamExporter {
    pub fn start(target: OtlpTarget, client: reqwest::Client) -> StreamExporter {
        let (queue, mut receiver) = mpsc::channel::<Vec<OtlpSpan>>(QUEUE_TRACES);
        let task = tokio::spawn(async move {
            let mut report = ExportReport::default();
            let mut batch: Vec<OtlpSpan> = Vec::new();
            let mut traces = 0;
            loop {
                let next = tokio::time::timeout(Duration::from_millis(200), receiver.recv()).await;
                let closed = matches!(next, Ok(None));
                let idle = next.is_err();
                if let Ok(Some(spans)) = next {
                    batch.extend(spans);
                    traces += 1;
                }
                let due = traces >= BATCH_TRACES || (traces > 0 && (closed || idle));
                if due {
                    match post(&client, &target, &batch).await {
                        Ok(()) => report.sent += traces as u64,
                        Err(error) => {
                            report.failed += traces as u64;
                            if report.first_error.is_none() {
                                eprintln!(
                                    "warning: otlp export failed, the runs go on (further failures are counted): {error}"
                                );
                                report.first_error = Some(error);
                            }
                        }
                    }
                    batch.clear();
                    traces = 0;
                }
                if closed {
                    return report;
                }
            }
        });
        StreamExporter {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            task,
        }
    }

    /// Queues one trace; never waits.
    pub fn offer(&self, spans: Vec<OtlpSpan>) {
        if self.queue.try_send(spans).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued and reports.
    pub async fn finish(self) -> ExportReport {
        drop(self.queue);
        let mut report = self.task.await.unwrap_or_else(|e| ExportReport {
            first_error: Some(format!("the export task failed: {e}")),
            ..Default::default()
        });
        report.dropped = self.dropped.load(Ordering::Relaxed);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers_keep_secrets_out_of_messages() {
        assert_eq!(
            redact_url("https://user:s3cret@mlflow.example/v1/traces"),
            "https://mlflow.example/v1/traces"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:5000/v1/traces"),
            "http://127.0.0.1:5000/v1/traces"
        );
        let target = OtlpTarget {
            endpoint: "http://u:p@h/v1/traces".into(),
            headers: vec![("authorization".into(), "Bearer s3cret".into())],
            protocol: Protocol::Json,
        };
        let described = format!("{} {target:?}", target.describe());
        assert!(
            !described.contains("s3cret") && !described.contains("u:p"),
            "{described}"
        );
        assert!(described.contains("authorization"));
    }

    #[test]
    fn header_lists_parse_and_decode() {
        assert_eq!(
            parse_header("x-api-key=a%20b%3D", true),
            Ok(("x-api-key".to_owned(), "a b=".to_owned()))
        );
        assert_eq!(
            parse_header("x-mlflow-experiment-id=1", false),
            Ok(("x-mlflow-experiment-id".to_owned(), "1".to_owned()))
        );
        let err = parse_header("Authorization: Bearer s3cret", false).expect_err("no =");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
