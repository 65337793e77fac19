//! Model-judged checks against `openai-loopback`'s judge mode (a documented rule: an answer
//! sentence found in no context line fails groundedness). The tests check the plumbing —
//! verdicts on rules and expectations, EVALUATOR spans, repeats and their agreement,
//! replies that cannot be read, servers without structured output, located mistakes — not
//! a real judge's quality.

use crate::common::servers::{ROOT, loopback};
use crate::common::{ragprobe, records, text};
use ragprobe::model::record::RunStatus;
use ragprobe::trace::SpanKind;

fn suite(
    dir: &std::path::Path,
    model_url: &str,
    judge: &str,
    extra_rules: &str,
) -> std::path::PathBuf {
    let path = dir.join("suite.yaml");
    std::fs::write(
        &path,
        format!(
            "name: judged\n\
             chain:\n  retriever: {{kind: memory, corpus: '{ROOT}/suites/databricks/corpus.jsonl', k: 2}}\n  \
             prompt_file: '{ROOT}/examples/chains/support-prompt.j2'\n  \
             llm: {{kind: openai, base_url: '{model_url}', model: loopback-chat, temperature: 1.0}}\n\
             {judge}\
             runs: 8\nseed: 11\nvars: {{product: Databricks}}\n\
             rules:\n  - id: judged-grounded\n    answer: {{judge: {{criterion: groundedness}}}}\n{extra_rules}\
             cases:\n  - id: storage\n    question: How does Databricks store databases?\n  \
             - id: cost\n    question: How much does it cost to run a database?\n    \
             expect: {{answer: {{judge: {{criterion: relevance}}}}}}\n"
        ),
    )
    .expect("suite");
    path
}

fn run(path: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    ragprobe()
        .arg("run")
        .arg(path)
        .args(["--progress", "none", "--out"])
        .arg(out)
        .output()
        .expect("runs")
}

fn judge_line(url: &str, extra: &str) -> String {
    format!("judge: {{kind: openai, base_url: '{url}', model: loopback-judge{extra}}}\n")
}

#[test]
fn a_judge_fails_answers_with_unsupported_sentences_and_records_its_reasoning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = loopback(&["--unsupported-rate", "0.5"]);
    let path = suite(dir.path(), &model.url, &judge_line(&model.url, ""), "");
    let out = dir.path().join("out");
    let output = run(&path, &out);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let runs = records(&out);
    let (mut failed, mut passed) = (0, 0);
    for record in &runs {
        assert_ne!(record.status, RunStatus::Error, "{:?}", record.error);
        let verdict = record.verdict.as_ref().expect("judged");
        let rule = verdict
            .rules
            .iter()
            .find(|r| r.id == "judged-grounded")
            .expect("rule");
        let trace = record.trace.as_ref().expect("trace");
        let evaluators: Vec<_> = trace
            .spans
            .iter()
            .filter(|s| s.kind == SpanKind::Evaluator)
            .collect();
        let expected = if record.case == "cost" { 2 } else { 1 };
        assert_eq!(
            evaluators.len(),
            expected,
            "one EVALUATOR span per judged check"
        );
        let span = evaluators
            .iter()
            .find(|s| s.attributes["check"] == "judged-grounded")
            .expect("the rule's judgement");
        assert_eq!(
            span.parent_span_id.as_deref(),
            Some(trace.spans[0].span_id.as_str())
        );
        assert_eq!(span.attributes["model"], "loopback-judge");
        assert!(
            span.attributes["prompt"]
                .as_str()
                .unwrap_or("")
                .contains(&record.answer)
        );
        assert!(span.attributes["input_tokens"].as_i64().unwrap_or(0) > 0);
        // The loopback judge's rule: fail exactly when a sentence is in no context line,
        // i.e. when the model appended one of its unsupported claims.
        let copied = record
            .retrieved
            .iter()
            .flat_map(|d| ragprobe::chain::text::sentences(&d.text))
            .collect::<Vec<_>>();
        let unsupported = ragprobe::chain::text::sentences(&record.answer)
            .into_iter()
            .any(|s| !copied.contains(&s));
        assert_eq!(rule.passed, !unsupported, "{}", record.answer);
        if rule.passed {
            passed += 1;
            assert_eq!(span.attributes["verdict"], "pass");
        } else {
            failed += 1;
            assert_eq!(span.attributes["verdict"], "fail");
            let detail = rule.detail.as_deref().unwrap_or_default();
            assert!(
                detail.starts_with("judge (groundedness): fail: the sentence"),
                "{detail}"
            );
        }
    }
    assert!(failed > 0 && passed > 0, "{failed} failed, {passed} passed");

    let show = ragprobe()
        .arg("show")
        .arg(&out)
        .arg("--failed")
        .output()
        .expect("show");
    let tree = text(&show.stdout);
    assert!(tree.contains("EVALUATOR judge judged-grounded"), "{tree}");
    assert!(
        tree.contains("groundedness · loopback-judge · fail"),
        "{tree}"
    );
    let json = ragprobe()
        .arg("show")
        .arg(&out)
        .arg("--failed")
        .arg("--json")
        .output()
        .expect("show --json");
    let attribute = crate::common::exported_span_attributes(&json.stdout, "judge judged-grounded");
    assert_eq!(
        attribute("mlflow.spanType"),
        Some(serde_json::json!({"stringValue": "EVALUATOR"}))
    );
}

#[test]
fn repeated_judgements_vote_and_their_disagreement_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = loopback(&["--judge-flip-rate", "0.3"]);
    let path = suite(
        dir.path(),
        &model.url,
        &judge_line(&model.url, ", repeats: 3"),
        "",
    );
    let out = dir.path().join("out");
    run(&path, &out);
    let spans: Vec<_> = records(&out)
        .into_iter()
        .flat_map(|r| r.trace.expect("trace").spans)
        .filter(|s| s.kind == SpanKind::Evaluator)
        .collect();
    assert_eq!(spans.len(), 8 + 16);
    let mut split = 0;
    for span in &spans {
        let votes: Vec<bool> =
            serde_json::from_value(span.attributes["votes"].clone()).expect("votes");
        assert_eq!(votes.len(), 3);
        let passes = votes.iter().filter(|v| **v).count();
        assert_eq!(
            span.attributes["verdict"] == "pass",
            passes >= 2,
            "majority: {votes:?}"
        );
        let agreement = span.attributes["agreement"].as_f64().expect("agreement");
        if passes == 1 || passes == 2 {
            split += 1;
            assert!((agreement - 2.0 / 3.0).abs() < 1e-9);
        } else {
            assert_eq!(agreement, 1.0);
        }
    }
    // With 30% of verdicts flipped, three repeats disagree on about two answers in three.
    assert!(
        split > 4 && split < spans.len(),
        "{split} of {} split",
        spans.len()
    );
}

#[test]
fn replies_without_a_verdict_are_errors_and_servers_without_structured_output_still_judge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = loopback(&["--judge-malformed-rate", "1.0"]);
    let path = suite(dir.path(), &model.url, &judge_line(&model.url, ""), "");
    let out = dir.path().join("malformed");
    let output = run(&path, &out);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stdout));
    for record in records(&out) {
        assert_eq!(record.status, RunStatus::Error);
        let error = record.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("judge for `judged-grounded`: the reply holds no JSON object"),
            "{error}"
        );
        assert!(record.verdict.is_none(), "never a silent pass or fail");
    }

    // A server that refuses response_format (400): the judge asks again without it and
    // reads the verdict out of the prose around it.
    let model = loopback(&["--refuse-response-format"]);
    let path = suite(dir.path(), &model.url, &judge_line(&model.url, ""), "");
    let out = dir.path().join("prose");
    let output = run(&path, &out);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert!(records(&out).iter().all(|r| r.status == RunStatus::Passed));
}

#[test]
fn judged_checks_without_a_judge_or_a_reference_are_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = suite(dir.path(), "http://127.0.0.1:9/v1", "", "");
    let output = ragprobe()
        .arg("validate")
        .arg(&path)
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("suite.yaml:")
            && stderr.contains("a judged check needs the suite's `judge:`"),
        "{stderr}"
    );

    let rules = "  - id: correct\n    answer: {judge: {criterion: correctness}}\n";
    let path = suite(
        dir.path(),
        "http://127.0.0.1:9/v1",
        &judge_line("http://127.0.0.1:9/v1", ""),
        rules,
    );
    let output = ragprobe()
        .arg("validate")
        .arg(&path)
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "correctness compares with `expect.reference_answer`, which case(s) storage, cost lack"
        ),
        "{stderr}"
    );
}

#[test]
fn calibrate_compares_the_judge_with_the_shipped_labels() {
    let model = loopback(&["--unsupported-rate", "0.2", "--judge-flip-rate", "0.1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("judged");
    let output = ragprobe()
        .args([
            "run",
            "examples/judge/suite.yaml",
            "--progress",
            "none",
            "--out",
        ])
        .arg(&out)
        .env("OPENAI_BASE_URL", &model.url)
        .env("JUDGE_BASE_URL", &model.url)
        .output()
        .expect("runs");
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        text(&output.stderr)
    );
    let labels = "examples/judge/labels.jsonl";
    let output = ragprobe()
        .args([
            "calibrate",
            "--suite",
            "examples/judge/suite.yaml",
            "--labels",
            labels,
            "--report",
        ])
        .arg(&out)
        .output()
        .expect("calibrate");
    let printed = text(&output.stdout);

    // The matrix, recomputed from the records and the labels.
    let runs = records(&out);
    let mut confusion = [[0u32; 2]; 2];
    for line in std::fs::read_to_string(labels).expect("labels").lines() {
        let label: serde_json::Value = serde_json::from_str(line).expect("json");
        let record = runs
            .iter()
            .find(|r| r.case == label["case"] && u64::from(r.run) == label["run"])
            .expect("labelled run recorded");
        let votes = record.verdict.as_ref().expect("v").rules[0]
            .judge_votes
            .clone()
            .expect("judged");
        let judge_fail = votes.iter().filter(|v| **v).count() * 2 <= votes.len();
        confusion[usize::from(judge_fail)][usize::from(label["label"] == "fail")] += 1;
    }
    let agreement = ragprobe::stats::cohen_kappa(confusion);
    assert!(
        printed.contains(&format!(
            "rule judged-grounded: 40 labelled runs · agreement {:.1}% · Cohen's kappa {:.2}",
            agreement.observed * 100.0,
            agreement.kappa
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "  judge pass   {:>10}  {:>10}",
            confusion[0][0], confusion[0][1]
        )),
        "{printed}"
    );
    // Both kinds of disagreement occur: the flips and the claims the judge misses.
    assert!(confusion[1][1] > 0 && confusion[0][0] > 0, "{confusion:?}");
    let expected = if agreement.kappa >= 0.6 { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(expected), "{printed}");

    // Too few labels to say: a warning and exit 1.
    let few = dir.path().join("few.jsonl");
    std::fs::write(
        &few,
        "{\"case\": \"cost\", \"run\": 0, \"rule\": \"judged-grounded\", \"label\": \"pass\"}\n",
    )
    .expect("labels");
    let output = ragprobe()
        .args([
            "calibrate",
            "--suite",
            "examples/judge/suite.yaml",
            "--labels",
        ])
        .arg(&few)
        .arg("--report")
        .arg(&out)
        .output()
        .expect("calibrate");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("warning: too few labels to say (1 runs"));

    // A label that names no recorded run is located in the labels file.
    std::fs::write(
        &few,
        "{\"case\": \"cost\", \"run\": 0, \"rule\": \"judged-grounded\", \"label\": \"pass\"}\n\
         {\"case\": \"cost\", \"run\": 99, \"rule\": \"judged-grounded\", \"label\": \"fail\"}\n",
    )
    .expect("labels");
    let output = ragprobe()
        .args([
            "calibrate",
            "--suite",
            "examples/judge/suite.yaml",
            "--labels",
        ])
        .arg(&few)
        .arg("--report")
        .arg(&out)
        .output()
        .expect("calibrate");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("few.jsonl:2: no run 99 of case `cost`"),
        "{stderr}"
    );
}
