//! The `http` and `command` adapters against the example RAG service: answers and
//! documents are read by pointer, the service's spans join the run's trace through
//! `traceparent`, and a failing program is an error with its own words.

use crate::common::servers::{chain_file, rag_service};
use crate::common::{ragprobe, records, run_suite, text};
use ragprobe::model::record::RunStatus;

const BEFORE: &str = "suites/databricks/before-fix.yaml";

/// Checks what both adapters must deliver on the cost case.
fn check_cost_runs(dir: &std::path::Path) {
    let runs = records(dir);
    let cost: Vec<_> = runs.iter().filter(|r| r.case == "cost").collect();
    assert!(!cost.is_empty());
    for run in cost {
        assert_eq!(run.status, RunStatus::Failed, "{:?}", run.error);
        assert_eq!(run.retrieved[0].id, "4");
        assert_eq!(run.retrieved[0].metadata["docs"], "aws");
        assert!(!run.answer.is_empty());
        let trace = run.trace.as_ref().expect("trace");
        let root = &trace.spans[0];
        assert!(root.parent_span_id.is_none());
        let search = trace
            .spans
            .iter()
            .find(|s| s.name == "keyword-search")
            .expect("the service's retriever span joined the trace");
        assert_eq!(
            search.parent_span_id.as_deref(),
            Some(root.span_id.as_str())
        );
        assert_eq!(search.kind, ragprobe::trace::SpanKind::Retriever);
    }
}

/// `ragprobe run` of the reference suite on the example service over HTTP.
fn run_on_service(
    service: &crate::common::servers::Process,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    ragprobe()
        .args([
            "run",
            BEFORE,
            "--progress",
            "none",
            "--chain",
            "examples/chains/service-http.yaml",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .env("RAG_SERVICE_URL", &service.url)
        .output()
        .expect("runs")
}

#[test]
fn http_adapter_reads_the_service_and_its_spans_join_the_trace() {
    let service = rag_service(&[]);
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_on_service(&service, out.path(), &["--runs", "3"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    check_cost_runs(out.path());
}

#[test]
fn command_adapter_runs_a_program_per_question() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        BEFORE,
        out.path(),
        &[
            "--runs",
            "2",
            "--chain",
            "examples/chains/service-command.yaml",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    check_cost_runs(out.path());
}

#[test]
fn the_fix_in_the_service_passes_the_rule() {
    let service = rag_service(&["--filter-docs", "databricks"]);
    let out = tempfile::tempdir().expect("tempdir");
    run_on_service(&service, out.path(), &["--runs", "2", "--case", "cost"]);
    let runs = records(out.path());
    assert!(runs.iter().all(|r| {
        r.retrieved
            .iter()
            .all(|d| d.metadata["docs"] == "databricks")
    }));
}

#[test]
fn a_failing_program_is_an_error_in_its_own_words() {
    let out = tempfile::tempdir().expect("tempdir");
    let chain = chain_file(
        out.path(),
        "chain.yaml",
        "kind: command\ncmd: [sh, -c, 'echo index is locked >&2; exit 4']\n",
    );
    let output = run_suite(
        BEFORE,
        &out.path().join("report"),
        &["--runs", "1", "--chain", &chain.to_string_lossy()],
    );
    assert_eq!(output.status.code(), Some(3));
    let runs = records(&out.path().join("report"));
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("exit status: 4") && error.contains("index is locked"),
        "{error}"
    );
}

#[test]
fn keys_of_another_chain_kind_are_located_errors() {
    let out = tempfile::tempdir().expect("tempdir");
    let chain = chain_file(
        out.path(),
        "chain.yaml",
        "kind: http\nurl: http://127.0.0.1:9/ask\nretriever: {kind: memory, corpus: x.jsonl}\n",
    );
    let output = ragprobe()
        .args(["run", BEFORE, "--chain"])
        .arg(&chain)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("chain.yaml:3:1"), "{stderr}");
    assert!(
        stderr.contains("`retriever` does not apply to a http chain"),
        "{stderr}"
    );
}
