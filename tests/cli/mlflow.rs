//! Traces round-trip through a real MLflow tracking server: exported over OTLP (protobuf
//! while running, JSON afterwards), read back through MLflow's own REST API with their span
//! types, the retriever's documents and metadata, inputs/outputs and searchable tags.
//!
//! Needs MLflow in `.venv` (bash .ci/run installs it) or at $RAGPROBE_MLFLOW.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::servers::{spawn_group, stop_group};
use crate::common::{records, run_suite, text};
use serde_json::{Value, json};

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

fn mlflow_binary() -> PathBuf {
    std::env::var_os("RAGPROBE_MLFLOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/mlflow"))
}

fn start() -> Server {
    let binary = mlflow_binary();
    assert!(
        binary.exists(),
        "{} is missing: run bash .ci/run, which installs MLflow into .venv",
        binary.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
    let child = spawn_group(
        Command::new(&binary)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .arg("--default-artifact-root")
            .arg(dir.path().join("artifacts"))
            .stdout(Stdio::null())
            .stderr(log),
    )
    .expect("mlflow server starts");
    let base = format!("http://127.0.0.1:{port}");
    let server = Server {
        child,
        base,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while ureq::get(format!("{}/health", server.base)).call().is_err() {
        assert!(
            Instant::now() < deadline,
            "MLflow did not start within 120 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    server
}

fn post(url: &str, body: Value) -> Value {
    ureq::post(url)
        .send_json(&body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .body_mut()
        .read_json()
        .expect("JSON")
}

fn experiment(server: &Server, name: &str) -> String {
    let created = post(
        &format!("{}/api/2.0/mlflow/experiments/create", server.base),
        json!({ "name": name }),
    );
    created["experiment_id"]
        .as_str()
        .expect("experiment id")
        .to_owned()
}

fn search(server: &Server, experiment: &str, filter: Option<&str>) -> Vec<Value> {
    let mut body = json!({
        "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment}}],
        "max_results": 100,
    });
    if let Some(filter) = filter {
        body["filter"] = json!(filter);
    }
    post(
        &format!("{}/api/3.0/mlflow/traces/search", server.base),
        body,
    )["traces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map(|kv| &kv["value"])
        .unwrap_or(&Value::Null)
}

/// An OTLP-JSON-shaped value (as MLflow returns spans) back to plain JSON.
fn plain(value: &Value) -> Value {
    if let Some(s) = value.get("string_value") {
        return s.clone();
    }
    if let Some(d) = value.get("double_value") {
        return d.clone();
    }
    if let Some(values) = value
        .get("array_value")
        .and_then(|a| a["values"].as_array())
    {
        return Value::Array(values.iter().map(plain).collect());
    }
    if let Some(values) = value
        .get("kvlist_value")
        .and_then(|a| a["values"].as_array())
    {
        return Value::Object(
            values
                .iter()
                .filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), plain(&kv["value"]))))
                .collect(),
        );
    }
    value.clone()
}

#[test]
fn traces_round_trip_through_mlflow() {
    let server = start();
    let streamed = experiment(&server, "ragprobe-streamed");
    let exported = experiment(&server, "ragprobe-exported");

    // Streamed while running, OTLP/protobuf.
    let before = tempfile::tempdir().expect("tempdir");
    let header = format!("x-mlflow-experiment-id={streamed}");
    let output = run_suite(
        "suites/databricks/before-fix.yaml",
        before.path(),
        &[
            "--runs",
            "3",
            "--otlp",
            &format!("{}/v1/traces", server.base),
            "--otlp-header",
            &header,
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("otlp: 6 traces exported"),
        "{}",
        text(&output.stderr)
    );

    let traces = search(&server, &streamed, None);
    assert_eq!(traces.len(), 6);
    assert!(
        traces.iter().all(|t| t["state"] == "OK"),
        "every trace complete: {traces:?}"
    );
    // MLflow names a trace tr- + the OTLP trace id.
    let stored = records(before.path());
    let cost_run = stored
        .iter()
        .find(|r| r.case == "cost" && r.run == 0)
        .expect("cost run 0");
    let trace_id = format!("tr-{}", cost_run.trace.as_ref().expect("trace").trace_id);
    assert!(
        traces.iter().any(|t| t["trace_id"] == trace_id.as_str()),
        "{trace_id}"
    );

    // Tags are searchable: all failing runs of case cost.
    let failing = search(
        &server,
        &streamed,
        Some("tag.`ragprobe.case` = 'cost' AND tag.`ragprobe.verdict` = 'failed'"),
    );
    assert_eq!(failing.len(), 3);
    let tags = &failing[0]["tags"];
    assert_eq!(tags["ragprobe.suite"], "databricks-support-before-fix");
    assert_eq!(tags["ragprobe.version"], env!("CARGO_PKG_VERSION"));

    // The whole trace: span types, retriever documents with metadata, inputs/outputs.
    let trace: Value = ureq::get(format!(
        "{}/api/3.0/mlflow/traces/get?trace_id={trace_id}",
        server.base
    ))
    .call()
    .expect("get trace")
    .body_mut()
    .read_json()
    .expect("JSON");
    let spans = trace["trace"]["spans"].as_array().expect("spans");
    let mut types: Vec<String> = spans
        .iter()
        .map(|s| {
            plain(attribute(s, "mlflow.spanType"))
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["CHAIN", "LLM", "PARSER", "RETRIEVER"]);
    let retriever = spans
        .iter()
        .find(|s| plain(attribute(s, "mlflow.spanType")) == "RETRIEVER")
        .expect("retriever span");
    let documents = plain(attribute(retriever, "mlflow.spanOutputs"));
    let ids: Vec<&str> = documents
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["4", "2"]);
    assert_eq!(documents[0]["metadata"]["docs"], "aws");
    assert!(
        documents[0]["page_content"]
            .as_str()
            .unwrap_or("")
            .contains("t4g.micro")
    );
    assert_eq!(
        plain(attribute(retriever, "mlflow.spanInputs"))["query"],
        "How much does it cost to run a database?"
    );
    let root = spans
        .iter()
        .find(|s| plain(attribute(s, "mlflow.spanType")) == "CHAIN")
        .expect("root span");
    assert_eq!(
        plain(attribute(root, "mlflow.spanOutputs")),
        cost_run.answer.as_str()
    );

    // A trace fetched from the server becomes a case.
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = dir.path().join("regressions.yaml");
    let output = crate::common::ragprobe()
        .args([
            "import",
            "--mlflow",
            &server.base,
            "--trace-id",
            &trace_id,
            "--suite",
        ])
        .arg(&suite)
        .output()
        .expect("import runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let yaml = std::fs::read_to_string(&suite).expect("suite written");
    assert!(yaml.contains("4 {\"docs\":\"aws\"}"), "{yaml}");
    let cases = crate::common::suite_cases(&suite);
    assert_eq!(
        cases[0].question,
        "How much does it cost to run a database?"
    );
    let draft = crate::common::drafted_not_contains(&cases[0]);
    assert_eq!(draft, std::slice::from_ref(&cost_run.answer), "{yaml}");

    // Exported afterwards, OTLP/JSON, into another experiment.
    let after = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/after-fix.yaml",
        after.path(),
        &["--runs", "2", "--seed", "99"],
    );
    let output = crate::common::ragprobe()
        .arg("export")
        .arg(after.path())
        .args([
            "--otlp",
            &format!("{}/v1/traces", server.base),
            "--otlp-protocol",
            "http/json",
        ])
        .args([
            "--otlp-header",
            &format!("x-mlflow-experiment-id={exported}"),
        ])
        .output()
        .expect("export runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let traces = search(&server, &exported, None);
    assert_eq!(traces.len(), 4);
    assert!(
        traces
            .iter()
            .all(|t| t["tags"]["ragprobe.verdict"] == "passed")
    );
}
