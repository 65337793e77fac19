//! An OpenAI-compatible model behind the in-repo loopback server: the reference incident
//! reproduces through the real protocol, token usage reaches the trace, and faults (5xx,
//! 429 bursts with Retry-After, malformed bodies, timeouts, a dead endpoint) are retried
//! or recorded as errors, never as wrong answers.

use std::time::Instant;

use crate::common::servers::{
    Process, chain_file, free_port, loopback, loopback_stats, openai_chain,
};
use crate::common::{records, run_suite, text};
use ragprobe::model::record::RunStatus;

const BEFORE: &str = "suites/databricks/before-fix.yaml";

fn run(
    server: &Process,
    limits: &str,
    extra: &[&str],
) -> (std::process::Output, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let chain = openai_chain(out.path(), &server.url, limits);
    let mut args = vec!["--chain", chain.as_str()];
    args.extend_from_slice(extra);
    let output = run_suite(BEFORE, &out.path().join("report"), &args);
    (output, out)
}

#[test]
fn the_incident_reproduces_through_the_openai_protocol_with_token_usage() {
    let server = loopback(&[]);
    let (output, out) = run(&server, "{}", &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let runs = records(&out.path().join("report"));
    assert_eq!(runs.len(), 40);
    let cost: Vec<_> = runs.iter().filter(|r| r.case == "cost").collect();
    let t4g = cost
        .iter()
        .filter(|r| r.answer.contains("t4g.micro"))
        .count();
    assert!(
        t4g > 0 && t4g < cost.len(),
        "t4g.micro on {t4g}/{} runs",
        cost.len()
    );
    assert!(runs.iter().all(|r| r.status != RunStatus::Error));

    let trace = cost[0].trace.as_ref().expect("trace");
    let llm = trace
        .spans
        .iter()
        .find(|s| s.name == "chat")
        .expect("LLM span");
    assert_eq!(llm.attributes["model"], "loopback-chat");
    assert_eq!(llm.attributes["finish_reason"], "stop");
    assert!(llm.attributes["input_tokens"].as_i64().unwrap_or(0) > 20);
    assert!(llm.attributes["output_tokens"].as_i64().unwrap_or(0) > 0);
    assert_eq!(loopback_stats(&server)["chat"], 40);

    // The same seed gives the same answers: the run seed is sent with each request.
    let (_, again) = run(&server, "{}", &[]);
    let answers = |dir: &std::path::Path| {
        let mut runs = records(dir);
        runs.sort_by_key(|r| (r.case.clone(), r.run));
        runs.into_iter().map(|r| r.answer).collect::<Vec<_>>()
    };
    assert_eq!(
        answers(&out.path().join("report")),
        answers(&again.path().join("report"))
    );
}

#[test]
fn server_errors_are_retried_and_every_run_completes() {
    let server = loopback(&["--error-rate", "0.1", "--seed", "3"]);
    let (output, out) = run(&server, "{backoff_ms: 5, max_backoff_ms: 50}", &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "checks fail as without faults"
    );
    let runs = records(&out.path().join("report"));
    assert!(runs.iter().all(|r| r.status != RunStatus::Error));
    let stats = loopback_stats(&server);
    let errors = stats["errors"].as_u64().unwrap_or(0);
    assert!(errors > 0, "{stats}");
    assert_eq!(stats["requests"].as_u64(), Some(40 + errors));
}

#[test]
fn a_429_burst_is_waited_out_as_retry_after_asks() {
    let server = loopback(&["--burst-429", "6", "--retry-after", "0.3"]);
    let started = Instant::now();
    let (output, out) = run(&server, "{}", &["--runs", "3"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let runs = records(&out.path().join("report"));
    assert!(runs.iter().all(|r| r.status != RunStatus::Error));
    assert_eq!(loopback_stats(&server)["throttled"], 6);
    let retried = runs
        .iter()
        .flat_map(|r| r.trace.iter().flat_map(|t| t.spans.iter()))
        .filter(|s| s.attributes.get("attempts").and_then(|a| a.as_u64()) > Some(1))
        .count();
    assert!(retried >= 1, "some runs needed a second attempt");
    // Retry-After is honoured, not replaced by a shorter backoff.
    assert!(started.elapsed().as_millis() >= 300);
}

#[test]
fn malformed_bodies_are_errors_on_their_run_and_the_suite_exits_3() {
    let server = loopback(&["--malformed-rate", "1.0"]);
    let (output, out) = run(&server, "{}", &["--runs", "3"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stdout));
    let runs = records(&out.path().join("report"));
    assert_eq!(runs.len(), 6);
    for run in &runs {
        assert_eq!(run.status, RunStatus::Error);
        let error = run.error.as_deref().unwrap_or_default();
        assert!(error.contains("malformed response"), "{error}");
        assert!(
            run.verdict.is_none(),
            "an error is not judged as a wrong answer"
        );
    }
    // Not retried: a malformed body is not a transient fault.
    assert_eq!(loopback_stats(&server)["requests"], 6);
}

#[test]
fn a_slow_model_times_out_per_request() {
    let server = loopback(&["--latency-ms", "400"]);
    let (output, out) = run(
        &server,
        "{timeout_ms: 50, retries: 1, backoff_ms: 5}",
        &["--runs", "1"],
    );
    assert_eq!(output.status.code(), Some(3));
    let runs = records(&out.path().join("report"));
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("no answer within 50 ms (after 2 attempts)"),
        "{error}"
    );
}

#[test]
fn a_dead_endpoint_is_one_line_and_exit_3() {
    let port = free_port();
    let out = tempfile::tempdir().expect("tempdir");
    let chain = openai_chain(
        out.path(),
        &format!("http://127.0.0.1:{port}/v1"),
        "{retries: 1, backoff_ms: 5}",
    );
    let output = run_suite(
        BEFORE,
        &out.path().join("report"),
        &["--chain", &chain, "--runs", "1"],
    );
    assert_eq!(output.status.code(), Some(3));
    let runs = records(&out.path().join("report"));
    let error = runs[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("Connection refused"), "{error}");
    assert!(!error.contains('\n'));
}

#[test]
fn the_client_side_rate_limit_spaces_requests() {
    let server = loopback(&[]);
    let started = Instant::now();
    // 20 requests at 10/s with a burst of 10: the last ten wait about a second.
    let (output, _out) = run(
        &server,
        "{requests_per_second: 10}",
        &["--runs", "10", "--concurrency", "16"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        started.elapsed().as_millis() >= 900,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_unset_api_key_variable_stops_before_any_run() {
    let out = tempfile::tempdir().expect("tempdir");
    let yaml = "retriever: {kind: memory, corpus: '{ROOT}/suites/databricks/corpus.jsonl'}\n\
                llm: {kind: openai, base_url: 'http://127.0.0.1:9/v1', model: m, api_key_env: RAGPROBE_TEST_NO_SUCH_KEY}\n";
    let chain = chain_file(out.path(), "chain.yaml", yaml);
    let output = run_suite(
        BEFORE,
        &out.path().join("report"),
        &["--chain", &chain.to_string_lossy()],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("chain.yaml:2:"), "{stderr}");
    assert!(stderr.contains("RAGPROBE_TEST_NO_SUCH_KEY"), "{stderr}");
}

#[test]
fn credentials_in_a_url_stay_out_of_reports_and_messages() {
    let server = loopback(&[]);
    let secret = "sekrit-9c1e";
    let with_secret = server
        .url
        .replace("http://", &format!("http://probe:{secret}@"));
    let dead = format!("http://probe:{secret}@127.0.0.1:{}/v1", free_port());
    for (url, expected) in [(with_secret, 1), (dead, 3)] {
        let out = tempfile::tempdir().expect("tempdir");
        let chain = openai_chain(out.path(), "${RAGPROBE_TEST_MODEL_URL}", "{retries: 0}");
        let report = out.path().join("report");
        let output = crate::common::ragprobe()
            .args([
                "run",
                BEFORE,
                "--progress",
                "none",
                "--runs",
                "2",
                "--chain",
                &chain,
            ])
            .arg("--out")
            .arg(&report)
            .env("RAGPROBE_TEST_MODEL_URL", &url)
            .output()
            .expect("runs");
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{}",
            text(&output.stderr)
        );
        let said = text(&output.stdout) + &text(&output.stderr);
        assert!(!said.contains(secret), "{said}");
        for entry in std::fs::read_dir(&report).expect("report") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("file");
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{} holds the secret",
                path.display()
            );
        }
    }
}
