//! The OTLP receiver against the example service exporting its spans over OTLP/JSON: the
//! spans join their runs under the root, the documents can come from the service's own
//! retriever span, late spans are waited for within the grace period and dropped after it,
//! spans of traces no run sent are counted and dropped, and bad settings are located.

use crate::common::servers::{Process, chain_file, free_port, rag_service};
use crate::common::{records, run_suite, text};
use ragprobe::model::record::RunStatus;
use ragprobe::trace::SpanKind;

const BEFORE: &str = "suites/databricks/before-fix.yaml";

/// The example service exporting to a receiver at a free port; returns the service, the
/// receiver's address and a chain file with `extra` keys.
fn exporting_service(
    dir: &std::path::Path,
    flags: &[&str],
    extra: &str,
) -> (Process, String, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let endpoint = format!("http://{addr}/v1/traces");
    let mut args = vec!["--otlp", endpoint.as_str()];
    args.extend_from_slice(flags);
    let service = rag_service(&args);
    let chain = chain_file(
        dir,
        "chain.yaml",
        &format!(
            "kind: http\nurl: {}\nreceive_otlp: {addr}\n{extra}",
            service.url
        ),
    );
    (service, addr, chain.display().to_string())
}

#[test]
fn service_spans_join_the_run_and_documents_come_from_its_retriever_span() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The response's documents are not where this chain looks: they come from the spans.
    let (_service, _, chain) = exporting_service(
        dir.path(),
        &[],
        "documents_from: spans\ndocuments_pointer: /not_there\n",
    );
    let out = dir.path().join("out");
    let output = run_suite(BEFORE, &out, &["--runs", "3", "--chain", &chain]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("otlp receiver: 18 spans joined their runs"),
        "{stderr}"
    );
    let runs = records(&out);
    let cost = runs.iter().find(|r| r.case == "cost").expect("cost");
    assert_eq!(cost.status, RunStatus::Failed);
    assert_eq!(cost.retrieved[0].id, "4");
    assert_eq!(cost.retrieved[0].metadata["docs"], "aws");
    assert_eq!(cost.retrieved[0].score, Some(2.0));
    assert!(cost.retrieved[0].text.contains("t4g.micro"));

    let trace = cost.trace.as_ref().expect("trace");
    let root = &trace.spans[0];
    assert_eq!(root.attributes["received_spans"], 3);
    assert_eq!(root.attributes["received_complete"], true);
    let top = trace
        .spans
        .iter()
        .find(|s| s.name == "support-service")
        .expect("the service's top span");
    assert_eq!(top.parent_span_id.as_deref(), Some(root.span_id.as_str()));
    assert_eq!(top.service.as_deref(), Some("rag-service"));
    let retriever = trace
        .spans
        .iter()
        .find(|s| s.kind == SpanKind::Retriever)
        .expect("the service's retriever span");
    assert_eq!(
        retriever.parent_span_id.as_deref(),
        Some(top.span_id.as_str())
    );
    assert_eq!(
        retriever.attributes["retrieval.documents.0.document.id"],
        "4"
    );
    assert!(
        !trace
            .spans
            .iter()
            .any(|s| s.attributes.contains_key("ragprobe.derived_from")),
        "no derived spans when the service's own arrived"
    );

    let show = crate::common::show(&out, &["--case", "cost"]);
    let tree = text(&show.stdout);
    assert!(tree.contains("└─ CHAIN support-service"), "{tree}");
    assert!(tree.contains("from rag-service"), "{tree}");
    assert!(
        tree.contains("├─ RETRIEVER keyword-search")
            && tree.contains(r#"4  score 2.0000  {"docs":"aws"}  ✗ only-databricks-docs"#),
        "{tree}"
    );
    // Exported as OTLP, the service's retriever span keeps its own attributes and gains
    // what MLflow shows: its type and its documents.
    let json = crate::common::show(&out, &["--case", "cost", "--json"]);
    let attribute = crate::common::exported_span_attributes(&json.stdout, "keyword-search");
    assert_eq!(
        attribute("retrieval.documents.0.document.id"),
        Some(serde_json::json!({"stringValue": "4"}))
    );
    assert_eq!(
        attribute("mlflow.spanType"),
        Some(serde_json::json!({"stringValue": "RETRIEVER"}))
    );
    assert!(attribute("mlflow.spanOutputs").is_some());
    assert!(attribute("ragprobe.documents.0.violated_rules").is_some());
}

#[test]
fn late_spans_are_waited_for_within_the_grace_and_dropped_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Exported 300 ms after the reply: the default grace (5 s) waits for them.
    let (_service, _, chain) = exporting_service(dir.path(), &["--otlp-delay-ms", "300"], "");
    let out = dir.path().join("waited");
    let output = run_suite(BEFORE, &out, &["--runs", "2", "--chain", &chain]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    for run in records(&out) {
        let root = &run.trace.as_ref().expect("trace").spans[0];
        assert_eq!(root.attributes["received_complete"], true, "{root:?}");
        let waited = root.attributes["received_wait_ms"].as_f64().expect("ms");
        assert!(waited >= 250.0, "waited {waited} ms");
    }

    // With a 10 ms grace the runs are recorded without them; what comes later (while the
    // other 99 runs go on) is dropped and counted.
    let dir = tempfile::tempdir().expect("tempdir");
    let (_service, _, chain) = exporting_service(
        dir.path(),
        &["--otlp-delay-ms", "100"],
        "span_grace_ms: 10\n",
    );
    let out = dir.path().join("late");
    let output = run_suite(
        BEFORE,
        &out,
        &["--runs", "50", "--concurrency", "1", "--chain", &chain],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("late spans dropped") && stderr.contains("raise span_grace_ms"),
        "{stderr}"
    );
    let runs = records(&out);
    let first = &runs[0].trace.as_ref().expect("trace").spans[0];
    assert_eq!(first.attributes["received_complete"], false);
}

#[test]
fn spans_of_traces_no_run_sent_are_dropped_and_silence_stops_the_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The service starts traces of its own instead of continuing `traceparent`.
    let (_service, _, chain) =
        exporting_service(dir.path(), &["--otlp-new-trace"], "span_grace_ms: 300\n");
    let out = dir.path().join("out");
    let output = run_suite(
        BEFORE,
        &out,
        &["--runs", "3", "--concurrency", "1", "--chain", &chain],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("spans of traces no run sent dropped"),
        "{stderr}"
    );
    let runs = records(&out);
    let waits: Vec<f64> = runs
        .iter()
        .map(|r| {
            r.trace.as_ref().expect("trace").spans[0].attributes["received_wait_ms"]
                .as_f64()
                .expect("ms")
        })
        .collect();
    // The first run waits the whole grace; once nothing has ever joined, no run waits.
    assert!(waits[0] >= 250.0, "{waits:?}");
    assert!(waits[1..].iter().all(|w| *w < 100.0), "{waits:?}");
    // Without the service's spans, the run still has the tree shape: derived spans.
    let trace = runs[0].trace.as_ref().expect("trace");
    assert!(trace.spans.iter().any(|s| s.kind == SpanKind::Retriever));
}

#[test]
fn receiver_settings_that_cannot_work_are_located_or_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = chain_file(
        dir.path(),
        "chain.yaml",
        "kind: http\nurl: http://127.0.0.1:9/ask\nreceive_otlp: 0.0.0.0:4318\n",
    );
    let (code, _, stderr) = crate::common::validate(&chain);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("chain.yaml:3:15") && stderr.contains("loopback only"),
        "{stderr}"
    );

    let chain = chain_file(
        dir.path(),
        "spans.yaml",
        "kind: http\nurl: http://127.0.0.1:9/ask\ndocuments_from: spans\n",
    );
    let output = run_suite(
        BEFORE,
        &dir.path().join("out"),
        &["--chain", chain.to_str().expect("utf-8")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("`documents_from: spans` needs the service's spans"),
        "{}",
        text(&output.stderr)
    );

    // The flag is checked the same way.
    let output = run_suite(
        BEFORE,
        &dir.path().join("out2"),
        &["--receive-otlp", "10.1.2.3:4318"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("loopback"),
        "{}",
        text(&output.stderr)
    );
}
