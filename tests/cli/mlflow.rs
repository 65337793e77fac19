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

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Stops the server (as a crash would: the group is killed) and hands back its data.
    fn stop(mut self) -> tempfile::TempDir {
        stop_group(&mut self.child);
        self.dir.take().expect("data folder")
    }

    fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }
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

pub(crate) fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    start_in(dir, port)
}

/// `mlflow server` on `port` with its database and artifacts in `dir` (so a server can be
/// stopped and started again on the same data). Artifacts go through the server's proxy,
/// as `mlflow server` does by default.
fn start_in(dir: tempfile::TempDir, port: u16) -> Server {
    let binary = mlflow_binary();
    assert!(
        binary.exists(),
        "{} is missing: run bash .ci/run, which installs MLflow into .venv",
        binary.display()
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("server.log"))
        .expect("log");
    let child = spawn_group(
        Command::new(&binary)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                dir.path().join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .arg("--serve-artifacts")
            .stdout(Stdio::null())
            .stderr(log),
    )
    .expect("mlflow server starts");
    let base = format!("http://127.0.0.1:{port}");
    let server = Server {
        child,
        base,
        dir: Some(dir),
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

pub(crate) fn experiment(server: &Server, name: &str) -> String {
    let created = post(
        &format!("{}/api/2.0/mlflow/experiments/create", server.base),
        json!({ "name": name }),
    );
    created["experiment_id"]
        .as_str()
        .expect("experiment id")
        .to_owned()
}

pub(crate) fn search(server: &Server, experiment: &str, filter: Option<&str>) -> Vec<Value> {
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

pub(crate) fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map(|kv| &kv["value"])
        .unwrap_or(&Value::Null)
}

/// An OTLP-JSON-shaped value (as MLflow returns spans) back to plain JSON.
pub(crate) fn plain(value: &Value) -> Value {
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

    // Found by a hostile tester: the streamed folder published into another experiment got
    // a run with 0 traces (they stayed in the first experiment, linked and assessed there).
    let output = crate::common::ragprobe()
        .arg("export")
        .arg(before.path())
        .args([
            "--mlflow",
            &server.base,
            "--experiment",
            "ragprobe-published",
        ])
        .output()
        .expect("publish");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let published = experiment_id(&server, "ragprobe-published");
    assert_eq!(
        search(&server, &published, None).len(),
        6,
        "traces of its own"
    );
    assert_eq!(
        search(&server, &streamed, None).len(),
        6,
        "the first experiment's untouched"
    );
}

pub(crate) fn get(url: &str) -> Value {
    ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_json()
        .expect("JSON")
}

/// The experiment's id, read back by name.
pub(crate) fn experiment_id(server: &Server, name: &str) -> String {
    let found = get(&format!(
        "{}/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
        server.base,
        name.replace(' ', "%20")
    ));
    found["experiment"]["experiment_id"]
        .as_str()
        .expect("experiment id")
        .to_owned()
}

/// The run a report folder went to last, from its mlflow.json.
fn run_of(dir: &std::path::Path) -> Value {
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("mlflow.json")).expect("mlflow.json"),
    )
    .expect("JSON");
    file["runs"]
        .as_array()
        .and_then(|runs| runs.last())
        .cloned()
        .expect("a run")
}

fn run_data(server: &Server, run_id: &str) -> Value {
    get(&format!(
        "{}/api/2.0/mlflow/runs/get?run_id={run_id}",
        server.base
    ))["run"]
        .clone()
}

fn pairs(list: &Value) -> std::collections::HashMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv["key"].as_str()?.to_owned(), kv["value"].clone())))
        .collect()
}

fn assessment<'a>(trace: &'a Value, name: &str, kind: &str) -> &'a Value {
    trace["assessments"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|a| a["assessment_name"] == name && a.get(kind).is_some())
        })
        .unwrap_or_else(|| panic!("no {kind} `{name}` on {trace}"))
}

/// One CI build: the reference suite, 3 runs per case, logged to `experiment`.
fn ci_build(
    server: &Server,
    experiment: &str,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "--runs",
        "3",
        "--mlflow",
        &server.base,
        "--experiment",
        experiment,
    ];
    args.extend_from_slice(extra);
    run_suite("suites/databricks/before-fix.yaml", out, &args)
}

#[test]
fn suite_runs_become_mlflow_runs_with_linked_traces_and_assessments() {
    let server = start();
    let experiment_name = "support bot CI";
    // Two CI builds of the same suite, same seed: two runs, twice the traces.
    let builds: Vec<tempfile::TempDir> = (0..2)
        .map(|_| {
            let out = tempfile::tempdir().expect("tempdir");
            let output = ci_build(&server, experiment_name, out.path(), &[]);
            assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
            let stderr = text(&output.stderr);
            assert!(
                stderr.contains("6 traces linked") && stderr.contains("8 report files"),
                "{stderr}"
            );
            out
        })
        .collect();
    let experiment = experiment_id(&server, experiment_name);
    let runs: Vec<Value> = builds.iter().map(|b| run_of(b.path())).collect();
    assert_ne!(runs[0]["run_id"], runs[1]["run_id"]);

    for (build, run) in builds.iter().zip(&runs) {
        let run_id = run["run_id"].as_str().expect("run id");
        assert_eq!(run["experiment_id"], experiment.as_str());
        let data = run_data(&server, run_id);
        assert_eq!(data["info"]["status"], "FINISHED");
        let params = pairs(&data["data"]["params"]);
        assert_eq!(params["suite"], "databricks-support-before-fix");
        assert_eq!(params["seed"], "42");
        assert_eq!(params["runs_per_case"], "3");
        assert_eq!(params["ragprobe_version"], env!("CARGO_PKG_VERSION"));
        assert!(params["git_commit"].as_str().is_some_and(|c| c.len() == 40));
        let tags = pairs(&data["data"]["tags"]);
        assert_eq!(tags["ragprobe.verdict"], "fail");
        assert_eq!(tags["ragprobe.exit_code"], "1");
        assert_eq!(tags["ragprobe.failed_cases"], "cost");
        let metrics = pairs(&data["data"]["metrics"]);
        assert_eq!(metrics["pass_rate"], 0.5);
        assert_eq!(metrics["case/cost/pass_rate"], 0.0);
        assert_eq!(metrics["case/storage/pass_rate"], 1.0);
        assert_eq!(
            metrics["case/cost/rule/only-databricks-docs/violation_rate"],
            1.0
        );
        assert_eq!(metrics["rule/only-databricks-docs/violation_rate"], 0.5);
        assert_eq!(metrics["case/cost/retrieval/recall"], 0.5);
        assert!(metrics["case/cost/latency_p95_ms"].as_f64().is_some());
        let artifacts = get(&format!(
            "{}/api/2.0/mlflow/artifacts/list?run_id={run_id}",
            server.base
        ));
        let mut files: Vec<&str> = artifacts["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f["path"].as_str())
            .collect();
        files.sort_unstable();
        assert_eq!(
            files,
            [
                "junit.xml",
                "meta.json",
                "report.html",
                "results.parquet",
                "retrieved.parquet",
                "runs.jsonl",
                "summary.json",
                "summary.md"
            ]
        );

        // Every trace of the folder is in the experiment, linked to its run, complete.
        let linked = search(&server, &experiment, Some(&format!("run_id = '{run_id}'")));
        let mut linked_ids: Vec<String> = linked
            .iter()
            .filter_map(|t| t["trace_id"].as_str().map(str::to_owned))
            .collect();
        let mut own: Vec<String> = records(build.path())
            .iter()
            .map(|r| format!("tr-{}", r.trace.as_ref().expect("trace").trace_id))
            .collect();
        linked_ids.sort();
        own.sort();
        assert_eq!(linked_ids, own);
        assert!(linked.iter().all(|t| t["state"] == "OK"));

        // A failing run's verdicts, as assessments on its trace.
        let stored = records(build.path());
        let cost = stored.iter().find(|r| r.case == "cost").expect("cost run");
        let trace_id = format!("tr-{}", cost.trace.as_ref().expect("trace").trace_id);
        let trace = linked
            .iter()
            .find(|t| t["trace_id"] == trace_id.as_str())
            .expect("cost trace");
        let passed = assessment(trace, "passed", "feedback");
        assert_eq!(passed["feedback"]["value"], false);
        assert_eq!(passed["source"]["source_type"], "CODE");
        assert_eq!(passed["source"]["source_id"], "ragprobe");
        let rule = assessment(trace, "only-databricks-docs", "feedback");
        assert_eq!(rule["feedback"]["value"], false);
        assert!(
            rule["rationale"]
                .as_str()
                .is_some_and(|r| r.contains("offending documents: 4")),
            "{rule}"
        );
        let sources = assessment(trace, "expect.sources", "feedback");
        assert_eq!(sources["feedback"]["value"], false);
        assert!(
            sources["rationale"]
                .as_str()
                .is_some_and(|r| r.contains("missing 3"))
        );
        let expected = assessment(trace, "expected_retrieved_context", "expectation");
        assert_eq!(
            expected["expectation"]["serialized_value"]["value"]
                .as_str()
                .map(|v| serde_json::from_str::<Value>(v).expect("JSON")),
            Some(json!([{"doc_uri": "2"}, {"doc_uri": "3"}])),
            "{expected}"
        );
        assert_eq!(
            search(
                &server,
                &experiment,
                Some(&format!(
                    "run_id = '{run_id}' AND feedback.`passed` = 'false'"
                ))
            )
            .len(),
            3,
            "the three cost runs fail"
        );
    }
    assert_eq!(search(&server, &experiment, None).len(), 12);

    // Publishing a folder again adds nothing twice.
    let output = crate::common::ragprobe()
        .arg("export")
        .arg(builds[0].path())
        .args(["--mlflow", &server.base, "--experiment", experiment_name])
        .output()
        .expect("export runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("(0 sent now), 0 assessments written"),
        "{stderr}"
    );
    assert_eq!(search(&server, &experiment, None).len(), 12);

    // Into another experiment: the traces get ids of their own there (MLflow keeps a
    // trace where it first arrived), and the first experiment is left as it was.
    let output = crate::common::ragprobe()
        .arg("export")
        .arg(builds[0].path())
        .args([
            "--mlflow",
            &server.base,
            "--experiment",
            "support bot archive",
        ])
        .output()
        .expect("export runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let archive = experiment_id(&server, "support bot archive");
    let archived = search(&server, &archive, None);
    assert_eq!(archived.len(), 6);
    assert!(archived.iter().all(|t| {
        t["assessments"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["assessment_name"] == "passed"))
    }));
    assert_eq!(search(&server, &experiment, None).len(), 12);

    // The next build gates on the last one, taken from MLflow.
    let third = tempfile::tempdir().expect("tempdir");
    let output = ci_build(
        &server,
        experiment_name,
        third.path(),
        &["--baseline", "mlflow:"],
    );
    let stdout = text(&output.stdout);
    let last = runs[1]["run_id"].as_str().expect("run id");
    assert!(
        stdout.contains(&format!("against baseline mlflow run {last}")),
        "{stdout}"
    );

    // Production feedback back into cases: every trace a filter matches, one case per question.
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = dir.path().join("regressions.yaml");
    let output = crate::common::ragprobe()
        .args([
            "import",
            "--mlflow",
            &server.base,
            "--experiment",
            experiment_name,
        ])
        .args(["--filter", "feedback.`passed` = 'false'", "--suite"])
        .arg(&suite)
        .output()
        .expect("import runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("9 traces of experiment `support bot CI` matched; imported 1 case"),
        "{stdout}"
    );
    let cases = crate::common::suite_cases(&suite);
    assert_eq!(cases.len(), 1);
    assert_eq!(
        cases[0].question,
        "How much does it cost to run a database?"
    );
}

#[test]
fn mlflow_down_mid_suite_keeps_every_result_and_publishes_later() {
    use std::io::{BufRead, BufReader};

    let server = start();
    let model = crate::common::servers::loopback(&["--latency-ms", "150"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = crate::common::servers::openai_chain(dir.path(), &model.url, "{}");
    let out = dir.path().join("report");
    let mut child = Command::new(crate::common::BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "suites/databricks/before-fix.yaml",
            "--progress",
            "none",
        ])
        .args([
            "--chain",
            &chain,
            "--runs",
            "6",
            "-j",
            "1",
            "--mlflow",
            &server.base,
        ])
        .arg("--out")
        .arg(&out)
        .env_remove("CI")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("ragprobe starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    while !seen.contains("mlflow: logging to run") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("stderr") > 0,
            "ragprobe ended early: {seen}"
        );
        seen.push_str(&line);
    }
    let port = server.port();
    let data = server.stop();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("stderr");
    let status = child.wait().expect("ragprobe ends");
    assert_eq!(status.code(), Some(3), "{seen}{rest}");
    assert!(rest.contains("error: mlflow:"), "{rest}");
    assert!(
        rest.contains("--mlflow"),
        "names the command that publishes later: {rest}"
    );
    // The suite's own results are all there.
    assert_eq!(records(&out).len(), 12);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("JSON");
    assert_eq!(summary["result"], "fail");
    assert!(out.join("report.html").exists());

    // The server is back: the folder is published into the run begun before the crash.
    let server = start_in(data, port);
    let output = crate::common::ragprobe()
        .arg("export")
        .arg(&out)
        .args(["--mlflow", &server.base])
        .output()
        .expect("export runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let run = run_of(&out);
    let run_id = run["run_id"].as_str().expect("run id");
    let data = run_data(&server, run_id);
    assert_eq!(data["info"]["status"], "FINISHED");
    let experiment = run["experiment_id"].as_str().expect("experiment");
    let linked = search(&server, experiment, Some(&format!("run_id = '{run_id}'")));
    assert_eq!(linked.len(), 12);
    assert!(linked.iter().all(|t| {
        t["assessments"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["assessment_name"] == "passed"))
    }));
}

#[test]
fn a_tracking_uri_that_is_not_a_server_is_named_and_left_alone() {
    // As MLflow's Python client is often configured; no server is needed to see it.
    let out = tempfile::tempdir().expect("tempdir");
    let output = crate::common::ragprobe()
        .env("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
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
        .output()
        .expect("ragprobe runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("MLFLOW_TRACKING_URI `sqlite:///mlflow.db` is not a tracking server"),
        "{stderr}"
    );
    assert!(!out.path().join("mlflow.json").exists());
    // Named on the command line, the same URI is an error: nothing runs.
    let output = crate::common::ragprobe()
        .args([
            "run",
            "suites/databricks/after-fix.yaml",
            "--mlflow",
            "sqlite:///mlflow.db",
            "--out",
        ])
        .arg(out.path().join("second"))
        .output()
        .expect("ragprobe runs");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
}

/// `merge --mlflow`: shards that ran on machines sharing no disk, each published to MLflow
/// with its build's group, are fetched and merged exactly as a local merge of the same
/// folders; the merged report goes to one parent run the shards are nested under. An
/// incomplete group is exit 3, a mixed one exit 2.
#[test]
fn shards_merge_through_mlflow_as_a_local_merge_does() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    let shard = |name: &str, shard: &str, group: &str| {
        let out = dir.path().join(name);
        let output = ci_build(
            &server,
            "sharded",
            &out,
            &["--shard", shard, "--group", group],
        );
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        out
    };
    let shards = [shard("s1", "1/2", "build-7"), shard("s2", "2/2", "build-7")];
    let merge_mlflow = |group: &str, out: &str| {
        crate::common::ragprobe()
            .args(["merge", "--mlflow", &server.base, "--experiment", "sharded"])
            .args(["--group", group, "--out"])
            .arg(dir.path().join(out))
            .output()
            .expect("merges")
    };
    let output = merge_mlflow("build-7", "from-mlflow");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("group build-7: 2 shards"), "{stderr}");
    let local = crate::common::merge(&shards, &dir.path().join("local"));
    assert_eq!(local.status.code(), Some(1));
    // The same runs, byte for byte, and the same verdicts.
    let sorted_runs = |name: &str| {
        let text = std::fs::read_to_string(dir.path().join(name).join("runs.jsonl")).expect("runs");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted_runs("from-mlflow"), sorted_runs("local"));
    assert_eq!(sorted_runs("local").len(), 6);
    let verdicts = |name: &str| {
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(name).join("summary.json")).expect("summary"),
        )
        .expect("json");
        let cases: Vec<Value> = summary["stats"]["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(|c| {
                json!([
                    c["id"],
                    c["outcome"],
                    c["passed"],
                    c["runs"],
                    c["pass_rate"]
                ])
            })
            .collect();
        json!([summary["result"], summary["failed"], cases])
    };
    assert_eq!(verdicts("from-mlflow"), verdicts("local"));
    // One parent for the group, holding the merged report; the shards nested under it.
    let parent = run_of(&dir.path().join("from-mlflow"));
    let parent_id = parent["run_id"].as_str().expect("parent id").to_owned();
    let parent_tags = pairs(&run_data(&server, &parent_id)["data"]["tags"]);
    assert_eq!(parent_tags["ragprobe.role"], "group");
    assert_eq!(parent_tags["ragprobe.group"], "build-7");
    for shard in &shards {
        let child = run_of(shard)["run_id"].as_str().expect("id").to_owned();
        let tags = pairs(&run_data(&server, &child)["data"]["tags"]);
        assert_eq!(tags["mlflow.parentRunId"], parent_id.as_str());
        assert_eq!(tags["ragprobe.role"], "shard");
    }
    let listed = get(&format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/{}/{parent_id}/artifacts/summary.json",
        server.base,
        parent["experiment_id"].as_str().expect("experiment")
    ));
    assert_eq!(
        listed["result"], "fail",
        "the merged summary is the parent's artifact"
    );
    // Merging again updates the same parent.
    let again = merge_mlflow("build-7", "again");
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    assert_eq!(
        run_of(&dir.path().join("again"))["run_id"],
        parent_id.as_str()
    );

    // A build whose second shard never published: incomplete, exit 3.
    shard("lone", "1/2", "build-8");
    let output = merge_mlflow("build-8", "incomplete");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("shard 2/2 missing; found 1 of 2"),
        "{}",
        text(&output.stderr)
    );
    // Shards of two differently split builds under one group: refused, exit 2.
    shard("mixed-a", "1/2", "build-9");
    shard("mixed-b", "1/3", "build-9");
    let output = merge_mlflow("build-9", "mixed");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("mixes builds"),
        "{}",
        text(&output.stderr)
    );
    assert!(
        !dir.path().join("mixed").exists(),
        "nothing written for a mixed group"
    );
}

#[test]
fn a_conversation_run_is_an_mlflow_session_and_imports_back_as_a_conversation() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("chat");
    let output = run_suite(
        "suites/databricks/conversation.yaml",
        &out,
        &[
            "--runs",
            "2",
            "--filter",
            "storage-then-cost",
            "--mlflow",
            &server.base,
            "--experiment",
            "chat bot",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let experiment = experiment_id(&server, "chat bot");
    // Two runs of two turns: four traces, two sessions of two.
    let traces = search(&server, &experiment, None);
    assert_eq!(traces.len(), 4, "{traces:?}");
    let mut sessions: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for trace in &traces {
        let session = trace["trace_metadata"]["mlflow.trace.session"]
            .as_str()
            .unwrap_or_else(|| panic!("no session on {trace}"))
            .to_owned();
        sessions.entry(session).or_default().push(trace.clone());
    }
    assert_eq!(sessions.len(), 2);
    assert!(sessions.values().all(|t| t.len() == 2));
    // MLflow searches a session by its metadata; each turn is tagged with its number.
    let (session, turns) = sessions.iter().next().expect("a session");
    let found = search(
        &server,
        &experiment,
        Some(&format!("metadata.`mlflow.trace.session` = '{session}'")),
    );
    assert_eq!(found.len(), 2);
    let mut numbers: Vec<&str> = turns
        .iter()
        .filter_map(|t| t["tags"]["ragprobe.turn"].as_str())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, ["1", "2"]);
    // The failed turn carries its rule's feedback; the run links both turns.
    let run = run_of(&out);
    let run_id = run["run_id"].as_str().expect("the folder went to a run");
    let metrics = pairs(&run_data(&server, run_id)["data"]["metrics"]);
    assert_eq!(
        metrics["case/storage-then-cost/turn/1/pass_rate"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        metrics["case/storage-then-cost/turn/2/pass_rate"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        metrics["case/storage-then-cost/turn/2/broken/only-databricks-docs"].as_f64(),
        Some(1.0)
    );

    // `import --session` turns the session back into a conversation case.
    let suite = dir.path().join("regressions.yaml");
    std::fs::write(
        &suite,
        format!(
            "name: regressions\nchain: {}/suites/databricks/chains/support.yaml\nvars: {{product: Databricks}}\ncases:\n",
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .expect("suite");
    let imported = crate::common::ragprobe()
        .args([
            "import",
            "--mlflow",
            &server.base,
            "--experiment",
            "chat bot",
        ])
        .args(["--session", session])
        .arg("--suite")
        .arg(&suite)
        .output()
        .expect("import");
    assert_eq!(
        imported.status.code(),
        Some(0),
        "{}",
        text(&imported.stderr)
    );
    let cases = crate::common::suite_cases(&suite);
    let turns = cases[0].turns.as_ref().expect("a conversation");
    assert_eq!(turns.len(), 2);
    assert_eq!(
        turns[0].question,
        "Are Databricks databases just files on S3?"
    );
    assert!(
        turns[0]
            .answer
            .as_deref()
            .is_some_and(|a| a.contains("Delta"))
    );
    assert_eq!(turns[1].question, "And what does that cost?");
    assert!(turns[1].answer.is_none());
    let (code, _, stderr) = crate::common::validate(&suite);
    assert_eq!(code, Some(0), "{stderr}");
}
