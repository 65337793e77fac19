//! Broken suites stop before any run, with file:line:column, a fix hint and exit code 2.

use crate::common::{ragprobe, text, validate};

const BROKEN: &[&str] = &[
    "unknown-key",
    "wrong-type",
    "bad-regex",
    "bad-rate",
    "missing-corpus",
    "unknown-source",
    "bad-operator",
    "undefined-var",
    "syntax",
];

#[test]
fn every_broken_suite_names_file_line_column_and_a_hint() {
    let mut all = String::new();
    for name in BROKEN {
        let path = format!("tests/fixtures/broken/{name}.yaml");
        let (code, stdout, stderr) = validate(&path);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            regex_lite_location(first),
            "{name}: no file:line:column in {first:?}"
        );
        assert!(stderr.contains("\n  hint: "), "{name}: no hint in {stderr}");
        all.push_str(&format!("== {name}\n{stderr}"));
    }
    insta::assert_snapshot!(all);
}

/// `error: some/file.yaml:12:5: …` (or a corpus file).
fn regex_lite_location(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("error: ") else {
        return false;
    };
    let parts: Vec<&str> = rest.splitn(4, ':').collect();
    parts.len() == 4 && parts[1].parse::<usize>().is_ok() && parts[2].parse::<usize>().is_ok()
}

#[test]
fn run_refuses_a_broken_suite_before_any_run() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = ragprobe()
        .args(["run", "tests/fixtures/broken/unknown-source.yaml", "--out"])
        .arg(out.path())
        .output()
        .expect("ragprobe runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("unknown-source.yaml:10:11"));
    assert!(!out.path().join("runs.jsonl").exists(), "nothing may run");
}

#[test]
fn a_malformed_corpus_line_is_reported_at_its_line() {
    let (code, _, stderr) = validate("tests/fixtures/bad-corpus/suite.yaml");
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: tests/fixtures/bad-corpus/corpus.jsonl:3:"),
        "{stderr}"
    );
}

#[test]
fn validate_accepts_the_shipped_suites_and_runs_nothing() {
    let (code, stdout, stderr) = validate("suites");
    assert_eq!(code, Some(0), "{stderr}");
    // Three suites and the three chain files beside them.
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok: ")).count(), 6);
    assert!(stdout.contains(
        "conversation.yaml (databricks-support-conversation): 2 cases, 2 rules, 5 documents"
    ));
    assert!(stdout.contains(
        "before-fix.yaml (databricks-support-before-fix): 2 cases, 2 rules, 5 documents"
    ));
    assert!(stdout.contains("chains/support.yaml (chain): memory retriever"));
}

#[test]
fn validate_checks_a_chain_file_with_located_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = dir.path().join("chain.yaml");
    std::fs::write(
        &chain,
        "kind: http\nurl: http://127.0.0.1:9/chain\npreset: langserve\n",
    )
    .expect("chain");
    let (code, stdout, stderr) = validate(&chain);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("(chain): RAG service at POST http://127.0.0.1:9/chain/invoke"),
        "{stdout}"
    );
    std::fs::write(
        &chain,
        "kind: http\nurl: http://127.0.0.1:9/chain\npreset: langserv\n",
    )
    .expect("chain");
    let (code, _, stderr) = validate(&chain);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("chain.yaml:3:9: preset: unknown variant `langserv`"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["run", "no/such/suite.yaml"],
        vec!["run", "suites/databricks/before-fix.yaml", "--case", "nope"],
        vec!["run", "--resume", "tests/fixtures"],
        vec!["run", "suites", "--resume", "x"],
        vec!["run", "--runs", "many"],
    ] {
        let output = ragprobe().args(&args).output().expect("ragprobe runs");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}
