//! Streaming traces to an OTLP endpoint while a suite runs, the standard environment
//! variables, failures that are counted and never fatal, and secrets that never reach a
//! report, a log line or a trace.

use crate::common::sink::Sink;
use crate::common::{ragprobe, run_suite, text};
use prost::Message;

const SECRET: &str = "sekrit-7f3a9c";

#[test]
fn runs_stream_their_traces_with_headers_and_secrets_stay_out_of_reports() {
    let sink = Sink::start(200);
    let out = tempfile::tempdir().expect("tempdir");
    let header = format!("authorization=Bearer {SECRET}");
    let output = run_suite(
        "suites/databricks/before-fix.yaml",
        out.path(),
        &["--runs", "3", "--otlp", &sink.url, "--otlp-header", &header],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "the export does not change the verdict"
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("otlp: 6 traces exported"), "{stderr}");

    let requests = sink.requests();
    assert!(!requests.is_empty());
    let mut traces = std::collections::BTreeSet::new();
    for request in &requests {
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/x-protobuf")
        );
        assert_eq!(header("authorization"), Some(format!("Bearer {SECRET}")));
        let decoded =
            ragprobe::export::proto::ExportTraceServiceRequest::decode(request.body.as_slice())
                .expect("valid OTLP protobuf");
        for span in &decoded.resource_spans[0].scope_spans[0].spans {
            if span.parent_span_id.is_empty() {
                traces.insert(span.trace_id.clone());
            }
        }
    }
    assert_eq!(traces.len(), 6, "one root span per run");

    // The secret is nowhere but in the request headers.
    assert!(!stderr.contains(SECRET) && !text(&output.stdout).contains(SECRET));
    for entry in std::fs::read_dir(out.path()).expect("report folder") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("readable");
        let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(!found, "{} contains the secret", path.display());
    }
}

#[test]
fn otel_environment_variables_choose_endpoint_headers_and_json() {
    let sink = Sink::start(200);
    let out = tempfile::tempdir().expect("tempdir");
    let output = ragprobe()
        .args([
            "run",
            "suites/databricks/after-fix.yaml",
            "--runs",
            "2",
            "--progress",
            "none",
            "--out",
        ])
        .arg(out.path())
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &sink.url)
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            format!("x-api-key={SECRET},x-mlflow-experiment-id=7"),
        )
        .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
        .output()
        .expect("ragprobe runs");
    assert_eq!(output.status.code(), Some(0));
    let requests = sink.requests();
    let request = requests.first().expect("a request");
    assert!(
        request
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json")
    );
    assert!(
        request
            .headers
            .iter()
            .any(|(k, v)| k == "x-mlflow-experiment-id" && v == "7")
    );
    assert!(
        request
            .headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == SECRET)
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("OTLP JSON");
    assert!(body["resourceSpans"][0]["scopeSpans"][0]["spans"].is_array());
    assert!(!text(&output.stderr).contains(SECRET));
}

#[test]
fn export_failures_are_reported_once_counted_and_not_fatal() {
    let sink = Sink::start(500);
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "3", "--otlp", &sink.url],
    );
    assert_eq!(output.status.code(), Some(0), "the suite still passes");
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches("otlp export failed").count(), 1, "{stderr}");
    assert!(stderr.contains("0 traces exported"), "{stderr}");
    assert!(stderr.contains("6 failed"), "{stderr}");

    // Unreachable: a one-line cause, and `export` exits 3.
    let output = ragprobe()
        .arg("export")
        .arg(out.path())
        .args(["--otlp", "http://127.0.0.1:1/v1/traces"])
        .output()
        .expect("export runs");
    assert_eq!(output.status.code(), Some(3));
    assert!(text(&output.stderr).contains("cannot reach http://127.0.0.1:1/v1/traces"));
}

#[test]
fn export_writes_otlp_json_lines() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/before-fix.yaml",
        out.path(),
        &["--runs", "2"],
    );
    let file = out.path().join("traces.jsonl");
    let output = ragprobe()
        .arg("export")
        .arg(out.path())
        .arg("--out")
        .arg(&file)
        .output()
        .expect("export runs");
    assert_eq!(output.status.code(), Some(0));
    let text = std::fs::read_to_string(&file).expect("written");
    let spans: usize = text
        .lines()
        .map(|line| {
            let request: serde_json::Value =
                serde_json::from_str(line).expect("one request per line");
            request["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(spans, 4 * 4, "four runs of four spans");

    let output = ragprobe()
        .arg("export")
        .arg(out.path())
        .output()
        .expect("runs");
    assert_eq!(
        output.status.code(),
        Some(2),
        "nowhere to export is a usage error"
    );
}
