//! Selection, repetition, output formats, tolerances and exit codes.

use crate::common::{ragprobe, records, run_suite, text};
use serde_json::Value;

#[test]
fn case_filter_and_runs_select_what_runs() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "suites/databricks/before-fix.yaml",
        out.path(),
        &["--case", "storage", "--runs", "4"],
    );
    assert_eq!(output.status.code(), Some(0), "only the passing case ran");
    let runs = records(out.path());
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.case == "storage"));

    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "suites/databricks/before-fix.yaml",
        out.path(),
        &["--filter", "tag:pricing", "--runs", "2"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(records(out.path()).iter().all(|r| r.case == "cost"));
}

#[test]
fn a_folder_runs_every_suite_in_it_and_the_worst_exit_code_wins() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite("suites", out.path(), &["--runs", "3", "--quiet"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.contains("result: PASS"));
    assert!(stdout.contains("result: FAIL · 1 of 2 cases failed: cost"));
    assert!(stdout.contains(
        "result: FAIL · 2 of 2 cases failed: storage-then-cost, cost-after-a-scripted-answer"
    ));
    for suite in [
        "databricks-support-after-fix",
        "databricks-support-before-fix",
        "databricks-support-conversation",
    ] {
        assert_eq!(records(&out.path().join(suite)).len(), 6, "{suite}");
    }
}

#[test]
fn json_format_is_one_document_with_the_exit_code() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "2", "--format", "json"],
    );
    let doc: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["suites"][0]["result"], "pass");
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("summary.json")).expect("summary.json"),
    )
    .expect("JSON");
    assert_eq!(saved["stats"], doc["suites"][0]["stats"]);
}

#[test]
fn tolerated_and_warn_rules_make_a_flaky_pass() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "tests/fixtures/tolerance.yaml",
        out.path(),
        &["--format", "json"],
    );
    let doc: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(output.status.code(), Some(0), "{doc}");
    let cost = &doc["suites"][0]["stats"]["cases"][0];
    assert_eq!(cost["outcome"], "flaky");
    // The warn rule broke on every run and changed nothing.
    assert_eq!(cost["rules"][0]["violations"], 20);
    assert_eq!(cost["rules"][0]["exceeded"], false);
    let answer_rule = &cost["rules"][1];
    let rate = answer_rule["rate"].as_f64().expect("rate");
    assert!(rate > 0.0 && rate <= 0.5, "{answer_rule}");
    assert_eq!(
        cost["pass_rate"], 1.0,
        "tolerated violations count as passes"
    );

    // The same rule with no tolerance fails the case.
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "suites/databricks/before-fix.yaml",
        out.path(),
        &["--case", "cost"],
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn min_pass_rate_per_case() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "tests/fixtures/min-pass-rate.yaml",
        out.path(),
        &["--format", "json"],
    );
    let doc: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let cases = &doc["suites"][0]["stats"]["cases"];
    assert_eq!(cases[0]["id"], "cost-lenient");
    assert_eq!(cases[0]["outcome"], "flaky", "{}", cases[0]);
    assert_eq!(cases[1]["outcome"], "fail", "{}", cases[1]);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn timeouts_are_errors_not_wrong_answers_and_exit_3() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite("tests/fixtures/timeout.yaml", out.path(), &[]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stdout));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("ERROR"), "{stdout}");
    assert!(stdout.contains("timed out after 20 ms"), "{stdout}");
    let runs = records(out.path());
    assert_eq!(runs.len(), 3);
    assert!(
        runs.iter()
            .all(|r| r.verdict.is_none() && r.error.is_some())
    );
}

#[test]
fn an_existing_report_folder_is_not_overwritten() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "1"],
    );
    let output = run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "1"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--resume"));
    assert_eq!(records(out.path()).len(), 2);
}

#[test]
fn help_lists_the_exit_codes() {
    let output = ragprobe().args(["run", "--help"]).output().expect("runs");
    let help = text(&output.stdout);
    for line in [
        "0    all checks passed",
        "1    checks failed",
        "2    usage or configuration error",
        "3    the chain could not be evaluated",
    ] {
        assert!(help.contains(line), "{line} missing from {help}");
    }
}

#[test]
fn run_without_a_path_runs_the_suites_folder() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = ragprobe()
        .args([
            "run",
            "--runs",
            "1",
            "--quiet",
            "--progress",
            "none",
            "--out",
        ])
        .arg(out.path())
        .output()
        .expect("ragprobe runs");
    assert_eq!(
        output.status.code(),
        Some(1),
        "before-fix fails, after-fix passes"
    );
    assert!(
        out.path()
            .join("databricks-support-before-fix/runs.jsonl")
            .is_file()
    );
    assert!(
        out.path()
            .join("databricks-support-after-fix/runs.jsonl")
            .is_file()
    );
}
