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
