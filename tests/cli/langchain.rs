//! The reference suites through a real LangChain service (examples/langchain/app.py in
//! .venv: LCEL over InMemoryVectorStore, ChatOpenAI on openai-loopback, LangServe,
//! OpenInference spans exported to ragprobe's receiver): without the filter the cost case
//! fails with document 4 in the service's own RETRIEVER span (in `show`, `show --json` and
//! a real MLflow server's trace); with it the suite passes; triage names the aws document
//! and confirms the filter by running it.
//!
//! Needs the example's packages in `.venv` (bash .ci/run installs them).

use std::path::Path;
use std::process::Command;

use crate::common::servers::{Process, ROOT, free_port, loopback, spawn_announcing};
use crate::common::{ragprobe, records, text};
use ragprobe::model::record::RunStatus;
use ragprobe::trace::SpanKind;

const BEFORE: &str = "suites/databricks/before-fix.yaml";
const AFTER: &str = "suites/databricks/after-fix.yaml";
const CHAIN: &str = "examples/langchain/chain.yaml";

/// The model, the LangChain service exporting to a receiver address, and that address.
struct Stack {
    _model: Process,
    service: Process,
    receive: String,
}

fn stack() -> Stack {
    let python = Path::new(ROOT).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run bash .ci/run, which installs the LangChain example into .venv",
        python.display()
    );
    let model = loopback(&[]);
    let receive = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(python);
    command
        .arg(Path::new(ROOT).join("examples/langchain/app.py"))
        .args(["--port", "0"])
        .env("OPENAI_BASE_URL", &model.url)
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://{receive}/v1/traces"),
        );
    let service = spawn_announcing(command, "the LangChain example service");
    Stack {
        _model: model,
        service,
        receive,
    }
}

impl Stack {
    fn ragprobe(&self, args: &[&str]) -> std::process::Output {
        ragprobe()
            .args(args)
            .env("LANGCHAIN_SERVICE_URL", &self.service.url)
            .env("RAGPROBE_RECEIVE_OTLP", &self.receive)
            .output()
            .expect("ragprobe runs")
    }

    fn run(&self, suite: &str, chain: &str, out: &Path, extra: &[&str]) -> std::process::Output {
        let out = out.to_str().expect("utf-8 path");
        let mut args = vec![
            "run",
            suite,
            "--chain",
            chain,
            "--progress",
            "none",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        self.ragprobe(&args)
    }
}

#[test]
fn the_langchain_service_fails_with_its_own_retriever_span_and_the_filter_fixes_it() {
    let stack = stack();
    let dir = tempfile::tempdir().expect("tempdir");
    let before = dir.path().join("before");
    let output = stack.run(BEFORE, CHAIN, &before, &["--runs", "4"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("spans joined their runs"), "{stderr}");
    assert!(!stderr.contains("dropped"), "{stderr}");

    let runs = records(&before);
    let cost = runs
        .iter()
        .find(|r| r.case == "cost" && r.run == 0)
        .expect("cost run");
    assert_eq!(cost.status, RunStatus::Failed);
    assert_eq!(cost.retrieved[0].id, "4");
    assert_eq!(cost.retrieved[0].metadata["docs"], "aws");
    let trace = cost.trace.as_ref().expect("trace");
    let retriever = trace
        .spans
        .iter()
        .find(|s| s.kind == SpanKind::Retriever)
        .expect("a RETRIEVER span");
    assert_eq!(
        retriever.service.as_deref(),
        Some("langchain-support"),
        "the service's own span, not one derived by ragprobe"
    );
    assert_eq!(retriever.attributes["openinference.span.kind"], "RETRIEVER");
    let documents =
        ragprobe::receiver::retrieved_documents(std::slice::from_ref(retriever)).expect("docs");
    assert_eq!(documents[0]["id"], "4");
    // The service's spans hang under the run's root through its top span.
    let root = &trace.spans[0];
    assert_eq!(root.attributes["received_complete"], true);
    assert!(trace.spans.iter().any(|s| {
        s.service.is_some() && s.parent_span_id.as_deref() == Some(root.span_id.as_str())
    }));
    assert!(
        trace
            .spans
            .iter()
            .any(|s| s.kind == SpanKind::Llm && s.attributes.get("llm.model_name").is_some())
    );

    let show = stack.ragprobe(&["show", before.to_str().expect("utf-8"), "--case", "cost"]);
    let tree = text(&show.stdout);
    assert!(tree.contains("from langchain-support"), "{tree}");
    assert!(tree.contains("RETRIEVER SupportRetriever"), "{tree}");
    assert!(
        tree.contains(r#"4  score —  {"docs":"aws"}  ✗ only-databricks-docs"#),
        "{tree}"
    );
    assert!(tree.contains("LLM ChatOpenAI"), "{tree}");
    let json = stack.ragprobe(&[
        "show",
        before.to_str().expect("utf-8"),
        "--case",
        "cost",
        "--json",
    ]);
    let attribute = crate::common::exported_span_attributes(&json.stdout, "SupportRetriever");
    let outputs = attribute("mlflow.spanOutputs").expect("documents for MLflow");
    assert!(
        outputs.to_string().contains(r#""stringValue":"4""#),
        "{outputs}"
    );

    // The fix: the retriever asked for Databricks documents only; everything passes.
    let after = dir.path().join("after");
    let output = stack.run(
        AFTER,
        "examples/langchain/chain-filtered.yaml",
        &after,
        &["--runs", "4"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(records(&after).iter().all(|r| {
        r.retrieved
            .iter()
            .all(|d| d.metadata["docs"] == "databricks")
    }));

    // Triage names the aws document and runs the filter for real.
    let output = stack.ragprobe(&[
        "triage", "--suite", BEFORE, "--case", "cost", "--chain", CHAIN,
    ]);
    let report = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{report}{}",
        text(&output.stderr)
    );
    assert!(
        report.contains("cause: the retriever returned an aws-tagged document (4)"),
        "{report}"
    );
    let filtered = report
        .lines()
        .find(|l| l.starts_with("(f) with filter {\"docs\":\"databricks\"}"))
        .unwrap_or_else(|| panic!("no filter condition in\n{report}"));
    assert!(filtered.contains(" 30    0 "), "{filtered}");
    assert!(
        report.contains("tried: 0 of 30 runs bad with it"),
        "{report}"
    );
}

#[test]
fn the_langchain_service_spans_reach_mlflow_under_the_run() {
    let server = crate::mlflow::start();
    let stack = stack();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let output = stack.run(
        BEFORE,
        CHAIN,
        &out,
        &[
            "--runs",
            "2",
            "--mlflow",
            &server.base,
            "--experiment",
            "langchain",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let cost = records(&out)
        .into_iter()
        .find(|r| r.case == "cost")
        .expect("cost run");
    let trace_id = format!("tr-{}", cost.trace.as_ref().expect("trace").trace_id);
    let trace = crate::mlflow::get(&format!(
        "{}/api/3.0/mlflow/traces/get?trace_id={trace_id}",
        server.base
    ));
    let spans = trace["trace"]["spans"].as_array().expect("spans");
    let retriever = spans
        .iter()
        .find(|s| s["name"] == "SupportRetriever")
        .unwrap_or_else(|| panic!("the service's retriever span in MLflow: {trace}"));
    assert_eq!(
        crate::mlflow::plain(crate::mlflow::attribute(retriever, "mlflow.spanType")),
        "RETRIEVER"
    );
    let documents = crate::mlflow::plain(crate::mlflow::attribute(retriever, "mlflow.spanOutputs"));
    assert_eq!(documents[0]["id"], "4", "{documents}");
    assert_eq!(documents[0]["metadata"]["docs"], "aws");
    // The chain's model call is there too, with its tokens.
    assert!(spans.iter().any(|s| s["name"] == "ChatOpenAI"));
}
