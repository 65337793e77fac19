//! Model-judged checks against `openai-loopback`'s judge mode (a documented rule: an answer
//! sentence found in no context line fails groundedness). The tests check the plumbing —
//! verdicts on rules and expectations, EVALUATOR spans, repeats and their agreement,
//! replies that cannot be read, servers without structured output, located mistakes — not
//! a real judge's quality.

use crate::common::servers::{loopback, reference_suite};
use crate::common::{ragprobe, records, text};
use ragprobe::model::record::RunStatus;
use ragprobe::trace::SpanKind;

fn suite(
    dir: &std::path::Path,
    model_url: &str,
    judge: &str,
    extra_rules: &str,
) -> std::path::PathBuf {
    reference_suite(
        dir,
        "judged",
        model_url,
        &format!(
            "{judge}runs: 8\nseed: 11\n\
             rules:\n  - id: judged-grounded\n    answer: {{judge: {{criterion: groundedness}}}}\n{extra_rules}"
        ),
        "{answer: {judge: {criterion: relevance}}}",
    )
}

fn run(path: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    crate::common::run_suite(path.to_str().expect("utf-8"), out, &[])
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

    let show = crate::common::show(&out, &["--failed"]);
    let tree = text(&show.stdout);
    assert!(tree.contains("EVALUATOR judge judged-grounded"), "{tree}");
    assert!(
        tree.contains("groundedness · loopback-judge · fail"),
        "{tree}"
    );
    let json = crate::common::show(&out, &["--failed", "--json"]);
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
    let (code, _, stderr) = crate::common::validate(&path);
    assert_eq!(code, Some(2));
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
    let (code, _, stderr) = crate::common::validate(&path);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(
            "correctness compares with `expect.reference_answer`, which case(s) storage, cost lack"
        ),
        "{stderr}"
    );
}

/// A calibrated judge: each judged rule's pass rate corrected for the judge's sensitivity
/// and specificity (Rogan–Gladen), beside the raw rate, in summary.json and the terminal.
#[test]
fn a_calibrated_judge_has_its_pass_rates_corrected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = loopback(&["--unsupported-rate", "0.3"]);
    // Se 40/50 = 0.8, Sp 45/50 = 0.9.
    std::fs::write(
        dir.path().join("cal.json"),
        r#"{"labels": "people.jsonl", "rules": {"judged-grounded": {"judge_pass_human_pass": 40, "judge_pass_human_fail": 5, "judge_fail_human_pass": 10, "judge_fail_human_fail": 45}}}"#,
    )
    .expect("calibration");
    let path = suite(
        dir.path(),
        &model.url,
        &judge_line(&model.url, ", calibration: cal.json"),
        "",
    );
    let out = dir.path().join("out");
    let output = run(&path, &out);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("json");
    for case in summary["stats"]["cases"].as_array().expect("cases") {
        let rule = case["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["id"] == "judged-grounded")
            .expect("judged rule");
        let evaluated = case["evaluated"].as_u64().expect("n") as u32;
        let violations = rule["violations"].as_u64().expect("v") as u32;
        let expected =
            ragprobe::stats::rogan_gladen(evaluated - violations, evaluated, [[40, 5], [10, 45]]);
        let corrected = &rule["judge_corrected"];
        assert!(
            (corrected["pass_rate"].as_f64().expect("rate") - expected.pass_rate.expect("rate"))
                .abs()
                < 1e-12,
            "{corrected}"
        );
        assert!((corrected["sensitivity"].as_f64().expect("se") - 0.8).abs() < 1e-12);
    }
    assert!(
        text(&output.stdout).contains("corrected for the judge (judged"),
        "{}",
        text(&output.stdout)
    );
    // Too few labels: the raw rate stands, and the report says why.
    std::fs::write(
        dir.path().join("cal.json"),
        r#"{"rules": {"judged-grounded": {"judge_pass_human_pass": 9, "judge_pass_human_fail": 1, "judge_fail_human_pass": 1, "judge_fail_human_fail": 3}}}"#,
    )
    .expect("calibration");
    let out = dir.path().join("few");
    let output = run(&path, &out);
    assert!(
        text(&output.stdout).contains("not corrected for the judge: too few labels to correct"),
        "{}",
        text(&output.stdout)
    );
    // A calibration that cannot be read is located at judge.calibration.
    std::fs::write(dir.path().join("cal.json"), "{\"rules\": 3}").expect("calibration");
    let output = ragprobe()
        .args(["validate"])
        .arg(&path)
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("is not a calibration"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn calibrate_compares_the_judge_with_the_shipped_labels() {
    let model = loopback(&["--unsupported-rate", "0.2", "--judge-flip-rate", "0.1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("judged");
    crate::common::run_judged_example(&out, &model.url, &[]);
    let calibrate = |labels: &std::path::Path| {
        ragprobe()
            .args([
                "calibrate",
                "--suite",
                "examples/judge/suite.yaml",
                "--labels",
            ])
            .arg(labels)
            .arg("--report")
            .arg(&out)
            .output()
            .expect("calibrate")
    };
    let labels = "examples/judge/labels.jsonl";
    let saved = dir.path().join("calibration.json");
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
        .arg("--save")
        .arg(&saved)
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
    // --save writes the same counts, and they are the ones the example suite ships with.
    let written: ragprobe::model::calibration::Calibration =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("saved")).expect("json");
    assert_eq!(written.rules["judged-grounded"].matrix(), confusion);
    let shipped: ragprobe::model::calibration::Calibration = serde_json::from_str(
        &std::fs::read_to_string("examples/judge/calibration.json").expect("shipped"),
    )
    .expect("json");
    assert_eq!(shipped.rules, written.rules);
    let expected = if agreement.kappa >= 0.6 { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(expected), "{printed}");

    // Too few labels to say: a warning and exit 1.
    let few = dir.path().join("few.jsonl");
    std::fs::write(
        &few,
        "{\"case\": \"cost\", \"run\": 0, \"rule\": \"judged-grounded\", \"label\": \"pass\"}\n",
    )
    .expect("labels");
    let output = calibrate(&few);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("warning: too few labels to say (1 runs"));

    // A label that names no recorded run is located in the labels file.
    std::fs::write(
        &few,
        "{\"case\": \"cost\", \"run\": 0, \"rule\": \"judged-grounded\", \"label\": \"pass\"}\n\
         {\"case\": \"cost\", \"run\": 99, \"rule\": \"judged-grounded\", \"label\": \"fail\"}\n",
    )
    .expect("labels");
    let output = calibrate(&few);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("few.jsonl:2: no run 99 of case `cost`"),
        "{stderr}"
    );
}

#[test]
fn runs_are_priced_and_a_budget_stops_new_runs_until_resumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = loopback(&[]);
    let path = dir.join_suite(&model.url);
    let out = dir.path().join("priced");
    let output = run(&path, &out);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("model usage"), "{stdout}");

    // The suite's totals are the runs' sums, priced at the suite's rates.
    let runs = records(&out);
    let (mut calls, mut model_in, mut model_out, mut judge_in, mut judge_out) = (0, 0, 0, 0, 0);
    for record in &runs {
        let usage = record.usage.expect("every run made calls");
        // One model call and one judgement per judged check (cost also judges its answer).
        let judged = if record.case == "cost" { 2 } else { 1 };
        assert_eq!(usage.calls, 1 + judged);
        assert!(usage.model_input_tokens > 0 && usage.judge_input_tokens > 0);
        let expected = (usage.model_input_tokens as f64 * 0.15
            + usage.model_output_tokens as f64 * 0.6
            + usage.judge_input_tokens as f64 * 2.5
            + usage.judge_output_tokens as f64 * 10.0)
            / 1e6;
        assert!((usage.cost_usd.expect("priced") - expected).abs() < 1e-12);
        calls += usage.calls;
        model_in += usage.model_input_tokens;
        model_out += usage.model_output_tokens;
        judge_in += usage.judge_input_tokens;
        judge_out += usage.judge_output_tokens;
    }
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("summary.json"),
    )
    .expect("json");
    let total = &summary["stats"]["usage"];
    assert_eq!(total["calls"], calls);
    assert_eq!(total["model_input_tokens"], model_in);
    assert_eq!(total["model_output_tokens"], model_out);
    assert_eq!(total["judge_input_tokens"], judge_in);
    assert_eq!(total["judge_output_tokens"], judge_out);
    let cost: f64 = runs.iter().filter_map(|r| r.usage?.cost_usd).sum();
    assert!((total["cost_usd"].as_f64().expect("cost") - cost).abs() < 1e-9);

    // A budget of 10 calls, one run at a time: runs start until 10 calls are spent.
    let out = dir.path().join("budget");
    let output = crate::common::run_suite(
        path.to_str().expect("utf-8"),
        &out,
        &["--max-calls", "10", "--concurrency", "1"],
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stdout));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(
            "result: INCOMPLETE · the budget stopped it: --max-calls 10 reached (10 calls"
        ) && stdout.contains("5 of 16 runs recorded · complete them with: ragprobe run --resume"),
        "{stdout}"
    );
    assert_eq!(records(&out).len(), 5);
    let output = crate::common::resume(&out);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    assert_eq!(records(&out).len(), 16);

    // A cost budget needs prices.
    let unpriced = suite(dir.path(), &model.url, &judge_line(&model.url, ""), "");
    let output = crate::common::run_suite(
        unpriced.to_str().expect("utf-8"),
        &dir.path().join("unpriced"),
        &["--max-cost", "0.01"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("gives its models no price"));
}

trait PricedSuite {
    fn join_suite(&self, model_url: &str) -> std::path::PathBuf;
}

impl PricedSuite for tempfile::TempDir {
    /// The judged suite with prices on the chain's model and the judge.
    fn join_suite(&self, model_url: &str) -> std::path::PathBuf {
        let path = suite(
            self.path(),
            model_url,
            &judge_line(
                model_url,
                ", price: {input_per_million: 2.5, output_per_million: 10.0}",
            ),
            "",
        );
        let text = std::fs::read_to_string(&path).expect("suite");
        let priced = text.replace(
            "temperature: 1.0}",
            "temperature: 1.0, price: {input_per_million: 0.15, output_per_million: 0.6}}",
        );
        std::fs::write(&path, priced).expect("suite");
        path
    }
}
