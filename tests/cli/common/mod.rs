//! Helpers shared by the integration tests: the real binary, and redactions that keep
//! snapshots free of timings and temporary paths.

#![allow(dead_code)]

pub mod servers;
pub mod sink;

use std::path::{Path, PathBuf};

pub const BIN: &str = env!("CARGO_BIN_EXE_ragprobe");

/// The built `ragprobe`, run from the repository root, with no CI variable so that tests
/// see the same defaults wherever they run (progress is switched off explicitly).
pub fn ragprobe() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::new(BIN);
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command.env_remove("CI");
    // A developer's own MLflow settings must not send test runs to their server.
    for name in [
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_TRACKING_TOKEN",
    ] {
        command.env_remove(name);
    }
    // Nor may the CI these tests run in turn them into GitHub annotations or shards.
    for name in [
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_TOKEN",
        "GITHUB_EVENT_PATH",
        "CI_NODE_INDEX",
        "CI_NODE_TOTAL",
        "CIRCLE_NODE_INDEX",
        "CIRCLE_NODE_TOTAL",
        "BUILDKITE_PARALLEL_JOB",
        "BUILDKITE_PARALLEL_JOB_COUNT",
        "JOB_COMPLETION_INDEX",
    ] {
        command.env_remove(name);
    }
    command
}

/// Runs `ragprobe run` with the given extra arguments, results into `out`.
pub fn run_suite(suite: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    ragprobe()
        .args(["run", suite, "--progress", "none", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("ragprobe runs")
}

/// `ragprobe validate PATH`: exit code, stdout and stderr.
pub fn validate(path: impl AsRef<std::ffi::OsStr>) -> (Option<i32>, String, String) {
    let output = ragprobe()
        .arg("validate")
        .arg(path)
        .output()
        .expect("ragprobe runs");
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// `ragprobe show DIR ARGS…`.
pub fn show(dir: &Path, args: &[&str]) -> std::process::Output {
    ragprobe()
        .arg("show")
        .arg(dir)
        .args(args)
        .output()
        .expect("ragprobe runs")
}

/// Runs `ragprobe merge SHARDS… --out OUT`.
pub fn merge(shards: &[PathBuf], out: &Path) -> std::process::Output {
    ragprobe()
        .arg("merge")
        .args(shards)
        .arg("--out")
        .arg(out)
        .output()
        .expect("ragprobe merges")
}

/// Runs `ragprobe run --resume DIR`.
pub fn resume(out: &Path) -> std::process::Output {
    ragprobe()
        .args(["run", "--progress", "none", "--resume"])
        .arg(out)
        .output()
        .expect("ragprobe resumes")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Filters for insta: durations, and the temporary output folder.
pub fn redactions(out: &Path) -> Vec<(String, String)> {
    vec![
        (regex_escape(&out.display().to_string()), "[OUT]".to_owned()),
        (r"\d+\.\d+ ms".to_owned(), "[ms]".to_owned()),
    ]
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Reads `runs.jsonl` back through the library, as the aggregation stage does.
pub fn records(dir: &Path) -> Vec<ragprobe::model::record::RunRecord> {
    ragprobe::store::RunReader::open(dir)
        .expect("runs.jsonl exists")
        .map(|r| r.expect("every complete line parses"))
        .collect()
}

/// The cases of a suite file, parsed as ragprobe parses them.
pub fn suite_cases(path: &Path) -> Vec<ragprobe::suite::schema::CaseSpec> {
    let text = std::fs::read_to_string(path).expect("suite written");
    let spec: ragprobe::suite::schema::SuiteSpec =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    spec.cases
}

/// The `expect.answer.not_contains` list `import` drafts for a case.
pub fn drafted_not_contains(case: &ragprobe::suite::schema::CaseSpec) -> Vec<String> {
    case.expect
        .as_ref()
        .and_then(|e| e.answer.as_ref())
        .and_then(|a| a.not_contains.as_ref())
        .map(|list| list.0.clone())
        .expect("a not_contains draft")
}

/// The span named `name` in `show --json`'s output (an OTLP ExportTraceServiceRequest),
/// as a function from attribute key to its OTLP value.
pub fn exported_span_attributes(
    show_json: &[u8],
    name: &str,
) -> impl Fn(&str) -> Option<serde_json::Value> {
    let document: serde_json::Value = serde_json::from_slice(show_json).expect("show --json");
    let span = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .and_then(|spans| spans.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no span {name} in {document}"));
    move |key: &str| {
        span["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|kv| kv["key"] == key))
            .map(|kv| kv["value"].clone())
    }
}

/// Runs the judged example suite (examples/judge/suite.yaml) with `model_url` as model and
/// judge; checks it finished (pass or fail), with `extra` flags.
pub fn run_judged_example(out: &Path, model_url: &str, extra: &[&str]) {
    let output = ragprobe()
        .args(["run", "examples/judge/suite.yaml", "--progress", "none"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .env("OPENAI_BASE_URL", model_url)
        .env("JUDGE_BASE_URL", model_url)
        .output()
        .expect("runs");
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        text(&output.stderr)
    );
}

/// The terminal's `turns` section of `ragprobe run`: its heading to the blank line.
pub fn turns_section(stdout: &str) -> String {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("turns"))
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}
