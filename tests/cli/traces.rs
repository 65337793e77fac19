//! Every run carries a trace; `ragprobe show` prints it as a tree or as OTLP JSON with the
//! attributes MLflow, OpenInference and the GenAI conventions read.

use crate::common::{ragprobe, run_suite, text};
use serde_json::Value;

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn show_prints_the_failing_run_as_a_tree() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite("suites/databricks/before-fix.yaml", out.path(), &[]);
    let output = ragprobe()
        .arg("show")
        .arg(out.path())
        .args(["--case", "cost", "--failed"])
        .output()
        .expect("show runs");
    assert_eq!(output.status.code(), Some(0));
    let tree = text(&output.stdout);
    assert!(
        tree.contains("4  score 2.1395  {\"docs\":\"aws\"}  ✗ only-databricks-docs"),
        "{tree}"
    );
    insta::with_settings!({ filters => vec![
        (r"\d+\.\d+ ms", "[ms]"),
        (r"\b[0-9a-f]{32}\b", "[trace id]"),
    ] }, {
        insta::assert_snapshot!(tree);
    });

    let output = ragprobe()
        .arg("show")
        .arg(out.path())
        .args(["--case", "cost", "--run", "2"])
        .output()
        .expect("show runs");
    assert!(
        text(&output.stdout).contains("t4g.micro"),
        "run 2 is the t4g.micro answer"
    );

    let output = ragprobe()
        .arg("show")
        .arg(out.path())
        .args(["--case", "storage", "--failed"])
        .output()
        .expect("show runs");
    assert_eq!(output.status.code(), Some(2), "storage never fails");

    // Not a terminal: no waterfall unless asked for.
    assert!(!tree.contains("waterfall ("));
    let output = ragprobe()
        .arg("show")
        .arg(out.path())
        .args(["--case", "cost", "--waterfall"])
        .output()
        .expect("show runs");
    let drawn = text(&output.stdout);
    let lines: Vec<&str> = drawn
        .lines()
        .skip_while(|l| !l.starts_with("waterfall (0 → "))
        .collect();
    // The root spans the whole axis; its children are indented under it, in start order.
    assert_eq!(lines.len(), 5, "{drawn}");
    assert!(
        lines[1].starts_with("  chain rag-chain") && lines[1].contains(&"█".repeat(40)),
        "{drawn}"
    );
    assert!(lines[2].starts_with("    retriever retrieve"), "{drawn}");
    assert!(
        lines[3].starts_with("    prompt") && lines[4].starts_with("    llm"),
        "{drawn}"
    );
    for line in &lines[2..] {
        assert!(line.contains('█') && line.ends_with(" ms"), "{line}");
    }
}

#[test]
fn show_json_is_otlp_with_mlflow_and_openinference_attributes() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/before-fix.yaml",
        out.path(),
        &["--runs", "3"],
    );
    let output = ragprobe()
        .arg("show")
        .arg(out.path())
        .args(["--case", "cost", "--run", "1", "--json"])
        .output()
        .expect("show runs");
    let request: Value = serde_json::from_slice(&output.stdout).expect("OTLP JSON");
    let spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .expect("spans");
    assert_eq!(spans.len(), 4);
    let root = &spans[0];
    assert!(root.get("parentSpanId").is_none(), "root first");
    let trace_id = root["traceId"].as_str().expect("trace id");
    assert_eq!(trace_id.len(), 32);
    for span in spans {
        assert_eq!(span["traceId"], trace_id);
        assert_eq!(span["spanId"].as_str().map(str::len), Some(16));
        let start: u64 = span["startTimeUnixNano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("start");
        let end: u64 = span["endTimeUnixNano"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("end");
        assert!(end >= start);
    }
    let kinds: Vec<&str> = spans
        .iter()
        .filter_map(|s| attribute(s, "mlflow.spanType")?["stringValue"].as_str())
        .collect();
    assert_eq!(kinds, ["CHAIN", "RETRIEVER", "PARSER", "LLM"]);
    assert_eq!(
        attribute(root, "mlflow.traceTag.ragprobe.case").map(|v| &v["stringValue"]),
        Some(&Value::from("cost"))
    );
    assert_eq!(
        attribute(root, "mlflow.traceTag.ragprobe.verdict").map(|v| &v["stringValue"]),
        Some(&Value::from("failed"))
    );
    let retriever = &spans[1];
    assert_eq!(
        attribute(retriever, "openinference.span.kind").map(|v| &v["stringValue"]),
        Some(&Value::from("RETRIEVER"))
    );
    assert_eq!(
        attribute(retriever, "retrieval.documents.0.document.id").map(|v| &v["stringValue"]),
        Some(&Value::from("4"))
    );
    let outputs = attribute(retriever, "mlflow.spanOutputs").expect("outputs");
    let first = &outputs["arrayValue"]["values"][0]["kvlistValue"]["values"];
    let keys: Vec<&str> = first
        .as_array()
        .expect("kv")
        .iter()
        .filter_map(|kv| kv["key"].as_str())
        .collect();
    assert_eq!(keys, ["id", "metadata", "page_content"]);
    let llm = &spans[3];
    assert_eq!(
        attribute(llm, "gen_ai.request.model").map(|v| &v["stringValue"]),
        Some(&Value::from("extractive"))
    );
    assert!(
        attribute(llm, "gen_ai.usage.input_tokens").is_none(),
        "the extractive generator reports no tokens"
    );
}
