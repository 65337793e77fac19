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

/// A chain file for the example service's LangChain-shaped routes.
fn langchain_chain(
    dir: &std::path::Path,
    service: &crate::common::servers::Process,
    yaml: &str,
) -> String {
    let base = service.url.trim_end_matches("/ask");
    chain_file(dir, "chain.yaml", &yaml.replace("{BASE}", base))
        .display()
        .to_string()
}

#[test]
fn langserve_preset_needs_only_a_url_and_where_the_id_is() {
    let service = rag_service(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    // LangServe's documents carry their id in metadata.source: without saying so, every
    // run is an error that names the setting and what the document holds.
    let chain = langchain_chain(
        dir.path(),
        &service,
        "kind: http\nurl: {BASE}/support\npreset: langserve\n",
    );
    let out = dir.path().join("no-id");
    let output = run_suite(BEFORE, &out, &["--runs", "2", "--chain", &chain]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stdout));
    let runs = records(&out);
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("document 0 has no id")
            && error.contains("metadata.source")
            && error.contains("document_id"),
        "{error}"
    );

    let chain = langchain_chain(
        dir.path(),
        &service,
        "kind: http\nurl: {BASE}/support\npreset: langserve\ndocument_id: /metadata/source\n",
    );
    let out = dir.path().join("ok");
    let output = run_suite(BEFORE, &out, &["--runs", "2", "--chain", &chain]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let runs = records(&out);
    let cost = runs.iter().find(|r| r.case == "cost").expect("cost run");
    assert_eq!(cost.status, RunStatus::Failed);
    assert_eq!(cost.retrieved[0].id, "4");
    assert_eq!(cost.retrieved[0].metadata["docs"], "aws");
    assert_eq!(cost.retrieved[0].score, None, "LangServe sends no score");
    // No spans from the service: ragprobe's own, read from the response.
    let trace = cost.trace.as_ref().expect("trace");
    let retrieve = trace
        .spans
        .iter()
        .find(|s| s.kind == ragprobe::trace::SpanKind::Retriever)
        .expect("a RETRIEVER span");
    assert_eq!(retrieve.attributes["ragprobe.derived_from"], "response");
    assert_eq!(retrieve.attributes["document_ids"][0], "4");
    let show = crate::common::show(&out, &["--case", "cost"]);
    let tree = text(&show.stdout);
    assert!(
        tree.contains("retrieve") && tree.contains("score —"),
        "{tree}"
    );
}

#[test]
fn retrievalqa_preset_and_a_reply_of_another_shape() {
    let service = rag_service(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = langchain_chain(
        dir.path(),
        &service,
        "kind: http\nurl: {BASE}/qa\npreset: retrievalqa\ndocument_id: /metadata/source\n",
    );
    let out = dir.path().join("qa");
    let output = run_suite(BEFORE, &out, &["--runs", "2", "--chain", &chain]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let runs = records(&out);
    assert!(runs.iter().all(|r| r.status != RunStatus::Error));
    // The RetrievalQA preset against the LangServe route: one line, the keys it found.
    let chain = langchain_chain(
        dir.path(),
        &service,
        "kind: http\nurl: {BASE}/support/invoke\npreset: retrievalqa\n",
    );
    let out = dir.path().join("mismatch");
    let output = run_suite(BEFORE, &out, &["--runs", "1", "--chain", &chain]);
    assert_eq!(output.status.code(), Some(3));
    let error = records(&out)[0].error.clone().unwrap_or_default();
    assert_eq!(
        error,
        "malformed response: no answer at /result (the response's top-level keys: metadata, output)"
    );
}
