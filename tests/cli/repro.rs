//! `repro` and `triage` on the reference incident, on the embedded chain and through the
//! OpenAI protocol; `run --shard` and `merge` against an unsharded run.

use crate::common::servers::{ROOT, loopback, openai_chain};
use crate::common::{ragprobe, records, text};

const COST: &str = "How much does it cost to run a database?";
const BAD: &str = r"matches: t4g\.micro";

/// `ragprobe <command> <args>`: exit code, and stdout followed by stderr.
fn subcommand(command: &str, args: &[&str]) -> (i32, String) {
    let output = ragprobe()
        .arg(command)
        .args(args)
        .output()
        .expect("ragprobe runs");
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout) + &text(&output.stderr),
    )
}

fn repro(args: &[&str]) -> (i32, String) {
    subcommand("repro", args)
}

fn triage(args: &[&str]) -> (i32, String) {
    subcommand("triage", args)
}

/// The shipped support chain asked the cost question, then `extra`.
fn on_support_chain<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--chain",
        "suites/databricks/chains/support.yaml",
        "--question",
        COST,
        "--var",
        "product=Databricks",
    ];
    args.extend_from_slice(extra);
    args
}

/// The number after `runs: ` in repro's output.
fn runs_made(output: &str) -> u32 {
    output
        .lines()
        .find_map(|l| l.strip_prefix("runs: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no runs line in {output}"))
}

#[test]
fn repro_finds_the_rate_with_fewer_runs_than_a_fixed_loop() {
    let (code, out) = repro(&on_support_chain(&[
        "--bad",
        BAD,
        "--rule",
        "{docs: databricks}",
    ]));
    assert_eq!(code, 0, "{out}");
    let runs = runs_made(&out);
    assert!((16..100).contains(&runs), "{runs} runs\n{out}");
    assert!(
        out.contains("stopped when the 95% interval was within ±10%"),
        "{out}"
    );
    assert!(out.contains("reproduction rate"), "{out}");
    // The first bad run's trace, with the aws document marked.
    assert!(out.contains("first bad run: run"), "{out}");
    assert!(
        out.contains(r#"4  score 2.1395  {"docs":"aws"}  ✗ rule"#),
        "{out}"
    );
    // Retrieval is deterministic here: the contrast says the difference is in generation.
    assert!(
        out.contains("the difference arises after retrieval, in generation"),
        "{out}"
    );
}

#[test]
fn repro_without_the_bad_answer_exits_1_at_the_budget() {
    let (code, out) = repro(&on_support_chain(&[
        "--bad",
        "contains: Kubernetes",
        "--max-runs",
        "24",
        "--precision",
        "0.02",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("runs: 24 (stopped at the budget of 24 runs)"),
        "{out}"
    );
    assert!(out.contains("not reproduced within the budget"), "{out}");
}

#[test]
fn repro_stops_early_when_zero_bad_runs_already_bound_the_rate() {
    let (code, out) = repro(&on_support_chain(&["--bad", "contains: Kubernetes"]));
    assert_eq!(code, 1, "{out}");
    // 0 of 16: the 95% interval [0%, 19.4%] is within ±10%.
    assert!(
        out.contains("runs: 16 (stopped when the 95% interval was within ±10%)"),
        "{out}"
    );
}

#[test]
fn repro_saves_a_regression_case_that_catches_the_bad_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = dir.path().join("regressions.yaml");
    let chain = format!("{ROOT}/suites/databricks/chains/support.yaml");
    let suite_arg = suite.to_string_lossy().into_owned();
    let (code, out) = repro(&[
        "--chain",
        &chain,
        "--question",
        COST,
        "--bad",
        BAD,
        "--var",
        "product=Databricks",
        "--save-case",
        &suite_arg,
    ]);
    assert_eq!(code, 0, "{out}");
    let yaml = std::fs::read_to_string(&suite).expect("suite written");
    let cases = crate::common::suite_cases(&suite);
    let check = cases[0]
        .expect
        .as_ref()
        .and_then(|e| e.answer.as_ref())
        .expect("an answer check");
    assert_eq!(
        check.not_matches.as_ref().map(|p| p.0.as_str()),
        Some(r"t4g\.micro"),
        "{yaml}"
    );
    assert!(
        check.matches.is_none() && check.contains.is_none(),
        "{yaml}"
    );
    // The saved suite runs, and its case fails on the runs that give the bad answer.
    let text_with_vars = yaml.replace("runs: 20\n", "runs: 20\nvars: {product: Databricks}\n");
    std::fs::write(&suite, text_with_vars).expect("vars");
    let report = dir.path().join("report");
    let output = crate::common::run_suite(&suite_arg, &report, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let runs = records(&report);
    let failing = runs
        .iter()
        .filter(|r| r.answer.contains("t4g.micro"))
        .count();
    assert!(failing > 0);
    assert!(
        runs.iter()
            .filter(|r| r.answer.contains("t4g.micro"))
            .all(|r| r.status == ragprobe::model::record::RunStatus::Failed)
    );
}

#[test]
fn repro_takes_the_question_from_a_trace() {
    let (code, out) = repro(&[
        "--chain",
        "suites/databricks/chains/support.yaml",
        "--trace",
        "tests/fixtures/traces/mlflow-trace.json",
        "--bad",
        BAD,
        "--var",
        "product=Databricks",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(&format!("repro: {COST:?}")), "{out}");
}

#[test]
fn triage_names_the_aws_document_and_proposes_the_filter() {
    let (code, out) = triage(&[
        "--suite",
        "suites/databricks/before-fix.yaml",
        "--case",
        "cost",
        "--bad",
        BAD,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("cause: the retriever returned an aws-tagged document (4) for a good query; the bad answer disappears when it is removed, and does not appear without context."),
        "{out}"
    );
    assert!(
        out.contains(r#"suggested fix: retriever filter {"docs":"databricks"}"#),
        "{out}"
    );
    for condition in [
        "(a) context as retrieved",
        "(b) rule-violating documents removed",
        "(c) expected sources only (2, 3)",
        "(d) no context",
        "(e) retriever replayed",
    ] {
        assert!(out.contains(condition), "{condition}\n{out}");
    }
}

#[test]
fn repro_and_triage_work_through_the_openai_protocol() {
    let server = loopback(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = openai_chain(dir.path(), &server.url, "{}");
    let common = [
        "--chain",
        chain.as_str(),
        "--question",
        COST,
        "--bad",
        BAD,
        "--var",
        "product=Databricks",
        "--rule",
        "{docs: databricks}",
    ];
    let (code, out) = repro(&common);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("LLM chat"), "{out}");
    let (code, out) = triage(&common);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("cause: the retriever returned an aws-tagged document (4)"),
        "{out}"
    );
    assert!(
        out.contains(r#"suggested fix: retriever filter {"docs":"databricks"}"#),
        "{out}"
    );
}

#[test]
fn triage_of_a_command_chain_runs_what_it_can_and_names_what_it_cannot() {
    let (code, out) = triage(&[
        "--suite",
        "suites/databricks/before-fix.yaml",
        "--case",
        "cost",
        "--chain",
        "examples/chains/service-command.yaml",
        "--bad",
        "contains: Database instances",
        "--runs",
        "10",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(a) context as retrieved"), "{out}");
    for line in [
        "(b) rule-violating documents removed: not run: a command chain's input has no context override",
        "(d) no context: not run: a command chain's input has no context override",
        "(f) with the suggested filter: not run: a command chain's input has no retriever filter",
        "(e) the service's retriever, as its responses show: 4 {\"docs\":\"aws\"} ✗ only-databricks-docs",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn triage_of_an_http_service_tries_the_filter_for_real() {
    let service = crate::common::servers::rag_service(&[]);
    let output = ragprobe()
        .args([
            "triage",
            "--suite",
            "suites/databricks/before-fix.yaml",
            "--case",
            "cost",
            "--chain",
            "examples/chains/service-http.yaml",
            "--bad",
            "contains: Database instances",
        ])
        .env("RAG_SERVICE_URL", &service.url)
        .output()
        .expect("triage");
    let out = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{out}{}",
        text(&output.stderr)
    );
    let rate = |key: &str| -> (u32, u32) {
        let line = out
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in\n{out}"));
        let numbers: Vec<u32> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (numbers[numbers.len() - 1], numbers[numbers.len() - 2])
    };
    let (a_bad, a_runs) = rate("(a) context as retrieved");
    assert_eq!(a_runs, 30);
    assert!(a_bad > 0, "{out}");
    assert_eq!(
        rate("(b) rule-violating documents removed"),
        (0, 30),
        "{out}"
    );
    assert_eq!(rate("(d) no context"), (0, 30), "{out}");
    assert_eq!(
        rate("(f) with filter {\"docs\":\"databricks\"} (the suggested fix)"),
        (0, 30),
        "{out}"
    );
    assert!(
        out.contains("cause: the retriever returned an aws-tagged document (4)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "tried: 0 of 30 runs bad with it, {a_bad} of 30 without"
        )),
        "{out}"
    );
}

#[test]
fn shards_merge_into_the_unsharded_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = "suites/databricks/before-fix.yaml";
    let mut shards = Vec::new();
    for k in 1..=3 {
        let out = dir.path().join(format!("shard-{k}"));
        let output = crate::common::run_suite(suite, &out, &["--shard", &format!("{k}/3")]);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
        let runs = records(&out).len();
        assert!((13..=14).contains(&runs), "shard {k}: {runs} runs");
        shards.push(out);
    }
    let whole = dir.path().join("whole");
    crate::common::run_suite(suite, &whole, &[]);

    // A missing shard is refused.
    let output = ragprobe()
        .args(["merge"])
        .args(&shards[..2])
        .arg("--out")
        .arg(dir.path().join("partial"))
        .output()
        .expect("merge runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("shards missing: 3/3"));

    let merged = dir.path().join("merged");
    let output = crate::common::merge(&shards, &merged);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));

    // Same runs, same content (times and trace ids aside: those are per execution).
    let content = |dir: &std::path::Path| {
        let mut runs: Vec<_> = records(dir)
            .into_iter()
            .map(|r| {
                let ids: Vec<String> = r.retrieved.iter().map(|d| d.id.clone()).collect();
                let spans = r.trace.map(|t| t.spans.len());
                (
                    r.case,
                    r.run,
                    r.seed,
                    r.answer,
                    r.prompt,
                    ids,
                    format!("{:?}", r.status),
                    spans,
                )
            })
            .collect();
        runs.sort();
        runs
    };
    assert_eq!(content(&merged), content(&whole));
    // Same statistics and verdicts.
    let summary = |dir: &std::path::Path| {
        let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary");
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");
        strip_times(&mut value);
        value
    };
    assert_eq!(summary(&merged), summary(&whole));
    assert!(merged.join("report.html").exists() && merged.join("junit.xml").exists());
}

/// Removes what differs between two runs of the same seed: paths, times, latencies, and
/// trace and span ids (new for every execution).
fn strip_times(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for key in [
                "out_dir",
                "suite_path",
                "latency",
                "duration_ms",
                "started_at_ns",
                "start_ns",
                "end_ns",
                "trace_id",
                "span_id",
                "parent_span_id",
            ] {
                map.remove(key);
            }
            map.values_mut().for_each(strip_times);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_times),
        _ => {}
    }
}
