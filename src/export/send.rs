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

use crate::backend::client::root_cause;
use crate::backend::error::ClientError;
use crate::events::{Event, Reporter};
use crate::export::otlp::{self, OtlpSpan};
use crate::export::{json, proto};
use crate::model::summary::TraceExport;
use crate::secrets::redact_url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Protobuf,
    Json,
}

/// OTLP settings (flags or `OTEL_EXPORTER_OTLP_*`) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpConfigError {
    #[error("OTLP endpoint `{0}` is not an http(s) URL (OTLP/gRPC is not supported)")]
    NotHttp(String),
    /// Names the header only: its value may be a secret.
    #[error("OTLP header `{0}` is not KEY=VALUE")]
    Header(String),
    /// A name with spaces or control characters, or a value with CR/LF: refused before
    /// anything is sent (it could smuggle a second header into every request).
    #[error(
        "OTLP header `{0}` is not a valid HTTP header (a name without spaces or control characters, a value without line breaks)"
    )]
    InvalidHeader(String),
    #[error("OTLP protocol `{0}` is not supported: use http/protobuf or http/json")]
    Protocol(String),
}

/// A batch of traces that did not reach the endpoint. Never holds a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("cannot reach {endpoint}: {cause}")]
    Unreachable { endpoint: String, cause: String },
    #[error("{endpoint} answered HTTP {code}: {body}")]
    Status {
        endpoint: String,
        code: u16,
        body: String,
    },
    /// A 404, 405 or an HTML page: the URL is a server, but not its OTLP traces endpoint.
    #[error("{endpoint} is not an OTLP traces endpoint (HTTP {code}{}); try {suggestion}", if *html { ", an HTML page" } else { "" })]
    NotOtlp {
        endpoint: String,
        code: u16,
        html: bool,
        suggestion: String,
    },
    #[error("cannot encode the traces: {0}")]
    Encode(String),
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
    ) -> Result<Option<OtlpTarget>, OtlpConfigError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        // As the OpenTelemetry exporter spec says: the generic variable is a base URL that
        // gets `/v1/traces`; the traces variable is used as given. `--otlp` takes either:
        // a URL with no path is a base.
        let endpoint = match endpoint {
            Some(url) => with_traces_path_if_base(url),
            None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(url) => with_traces_path_if_base(&url),
                None => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    Some(base) => format!("{}/v1/traces", base.trim_end_matches('/')),
                    None => return Ok(None),
                },
            },
        };
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(OtlpConfigError::NotHttp(redact_url(&endpoint)));
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
        crate::secrets::remember_url(&endpoint);
        for (name, value) in &pairs {
            crate::secrets::remember_header(name, value);
        }
        let protocol = match protocol
            .map(str::to_owned)
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => Protocol::Protobuf,
            Some("http/json") => Protocol::Json,
            Some(other) => return Err(OtlpConfigError::Protocol(other.to_owned())),
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
fn parse_header(item: &str, percent_encoded: bool) -> Result<(String, String), OtlpConfigError> {
    let Some((key, value)) = item.split_once('=') else {
        return Err(OtlpConfigError::Header(
            item.split(':').next().unwrap_or_default().trim().to_owned(),
        ));
    };
    let value = value.trim();
    let value = if percent_encoded {
        crate::secrets::percent_decoded(value)
    } else {
        value.to_owned()
    };
    let key = key.trim().to_owned();
    let shown: String = key.escape_debug().collect();
    if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err()
        || reqwest::header::HeaderValue::from_str(&value).is_err()
    {
        return Err(OtlpConfigError::InvalidHeader(shown));
    }
    Ok((key, value))
}

/// `http://host:4318` and `http://host:4318/` become `http://host:4318/v1/traces`; a URL
/// with a path is kept.
pub fn with_traces_path_if_base(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let path = &rest[path_start..];
    if path.is_empty() || path == "/" {
        format!("{scheme}://{}/v1/traces", &rest[..path_start])
    } else {
        url.to_owned()
    }
}

/// Where the traces endpoint of the server at `url` most likely is: its origin and
/// `/v1/traces` (MLflow, the Collector, Jaeger and Phoenix all serve it there).
fn suggested_endpoint(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let origin = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
            format!("{scheme}://{origin}/v1/traces")
        }
        None => url.to_owned(),
    }
}

/// The HTTP client for exports: the shared one, with a 10 s limit per request.
pub fn client() -> Result<reqwest::Client, ClientError> {
    crate::backend::client::http_client(Some(Duration::from_secs(10)))
}

/// Sends one batch; an error says what the endpoint answered, never the headers.
/// The most of a collector's error reply kept: enough to quote, never a flood.
const ERROR_BODY_BYTES: u64 = 64 * 1024;

pub async fn post(
    client: &reqwest::Client,
    target: &OtlpTarget,
    spans: &[OtlpSpan],
) -> Result<(), ExportError> {
    let (body, content_type) = match target.protocol {
        Protocol::Protobuf => (proto::encode(spans), "application/x-protobuf"),
        Protocol::Json => (
            serde_json::to_vec(&json::request(spans))
                .map_err(|e| ExportError::Encode(e.to_string()))?,
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
    let mut response = request.send().await.map_err(|e| ExportError::Unreachable {
        endpoint: redact_url(&target.endpoint),
        cause: root_cause(&e),
    })?;
    let status = response.status();
    let html = crate::backend::client::is_html(&response);
    if status.is_success() && !html {
        return Ok(());
    }
    if matches!(status.as_u16(), 404 | 405) || html {
        return Err(ExportError::NotOtlp {
            endpoint: redact_url(&target.endpoint),
            code: status.as_u16(),
            html,
            suggestion: redact_url(&suggested_endpoint(&target.endpoint)),
        });
    }
    let text = crate::backend::read_capped(&mut response, ERROR_BODY_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|e| e.to_string());
    Err(ExportError::Status {
        endpoint: redact_url(&target.endpoint),
        code: status.as_u16(),
        // A collector may echo the request's headers: secrets out before anything keeps it.
        body: crate::secrets::quote(&text),
    })
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
    /// What summary.json records of it.
    pub fn outcome(&self, target: &OtlpTarget) -> TraceExport {
        TraceExport {
            endpoint: redact_url(&target.endpoint),
            sent: self.sent,
            failed: self.failed,
            dropped: self.dropped,
            first_error: self
                .first_error
                .as_deref()
                .map(|e| crate::secrets::scrub(e).into_owned()),
        }
    }

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
                                crate::out::eprintln(&format!(
                                    "warning: otlp export failed, the runs go on (further failures are counted): {error}"
                                ));
                                report.first_error = Some(error.to_string());
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

/// The streaming exporter as a reporter: each finished run's trace, as OTLP spans.
pub struct TraceStreamer {
    exporter: StreamExporter,
    suite: String,
}

impl TraceStreamer {
    pub fn start(target: OtlpTarget, client: reqwest::Client) -> TraceStreamer {
        TraceStreamer {
            exporter: StreamExporter::start(target, client),
            suite: String::new(),
        }
    }

    /// Sends what is queued and reports.
    pub async fn finish(self) -> ExportReport {
        self.exporter.finish().await
    }
}

impl Reporter for TraceStreamer {
    fn write_event(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::SuiteStarted { suite, .. } => self.suite = suite.clone(),
            Event::RunFinished(record) => {
                self.exporter.offer(otlp::spans_for(record, &self.suite));
            }
            Event::SuiteFinished { .. } | Event::CaseDecided { .. } => {}
        }
        // Exporting never stops the runs: failures and drops are counted and reported.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers_keep_secrets_out_of_messages() {
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
    fn a_base_url_gets_the_traces_path() {
        assert_eq!(
            with_traces_path_if_base("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000/v1/traces"
        );
        assert_eq!(
            with_traces_path_if_base("http://127.0.0.1:5000/"),
            "http://127.0.0.1:5000/v1/traces"
        );
        assert_eq!(
            with_traces_path_if_base("http://h:4318/custom/traces"),
            "http://h:4318/custom/traces"
        );
        assert_eq!(
            suggested_endpoint("http://h:5000/api/otel?x=1"),
            "http://h:5000/v1/traces"
        );
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
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
