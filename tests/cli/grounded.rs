//! The offline `grounded` answer check against `openai-loopback --unsupported-rate`: every
//! appended claim no document makes is named with its support and best document, answers
//! made of the documents' own sentences pass, and a threshold outside (0, 1] is located.

use crate::common::servers::{loopback, reference_suite};
use crate::common::{records, run_suite, text};

fn suite(dir: &std::path::Path, base_url: &str, check: &str) -> std::path::PathBuf {
    reference_suite(
        dir,
        "grounded",
        base_url,
        &format!("runs: 6\nseed: 3\nrules:\n  - id: grounded\n    answer: {check}\n"),
        "{answer: {grounded: {}}}",
    )
}

#[test]
fn sentences_no_retrieved_document_supports_fail_with_their_best_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every answer gets one unsupported claim appended.
    let model = loopback(&["--unsupported-rate", "1.0"]);
    let path = suite(dir.path(), &model.url, "{grounded: {min_support: 0.8}}");
    let out = dir.path().join("bad");
    let output = run_suite(path.to_str().expect("utf-8"), &out, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let runs = records(&out);
    let mut flagged = 0;
    for run in &runs {
        let verdict = run.verdict.as_ref().expect("judged");
        let rule = verdict
            .rules
            .iter()
            .find(|r| r.id == "grounded")
            .expect("rule");
        if rule.passed {
            // Only the negation of a document in that document's words gets through: the
            // documented blind spot of a lexical check.
            assert!(
                run.answer
                    .contains("Databases are not built on Delta Lake."),
                "{}",
                run.answer
            );
            continue;
        }
        flagged += 1;
        let detail = rule.detail.as_deref().unwrap_or_default();
        assert!(
            detail.starts_with("unsupported sentence (support ")
                && detail.contains("best document"),
            "{detail}"
        );
        // The sentence named is the one appended, not one copied from a document.
        let quoted = detail.split(": \"").nth(1).unwrap_or_default();
        assert!(
            !quoted.is_empty() && run.answer.contains(quoted.trim_end_matches('"')),
            "{detail}"
        );
    }
    assert!(flagged >= runs.len() / 2, "{flagged} of {}", runs.len());
    // The case's expectation (default min_support 0.8) fails the same runs.
    let cost = runs
        .iter()
        .find(|r| r.case == "cost" && !r.verdict.as_ref().expect("v").passed);
    let failure = &cost
        .expect("a failing cost run")
        .verdict
        .as_ref()
        .expect("v")
        .failed_expectations;
    assert!(
        failure.iter().any(|f| f.check == "expect.answer"),
        "{failure:?}"
    );

    // Answers made of the retrieved documents' own sentences pass.
    let model = loopback(&[]);
    let path = suite(dir.path(), &model.url, "{grounded: {min_support: 0.8}}");
    let out = dir.path().join("good");
    let output = run_suite(path.to_str().expect("utf-8"), &out, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
}

#[test]
fn a_support_threshold_outside_zero_to_one_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = suite(
        dir.path(),
        "http://127.0.0.1:9/v1",
        "{grounded: {min_support: 1.5}}",
    );
    let (code, _, stderr) = crate::common::validate(&path);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("suite.yaml:")
            && stderr.contains("min_support 1.5 is not a share in (0, 1]"),
        "{stderr}"
    );
}
