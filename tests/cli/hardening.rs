//! Regression tests for the hardening issue: one writer per folder, no mixed suites, no
//! secret in any output, no unbounded read, no injected markup, documented exit codes.
//! Each test reproduces a probe that once failed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::servers::{chain_file, loopback, openai_chain};
use crate::common::sink::Sink;
use crate::common::{BIN, ragprobe, records, resume, run_suite, text};

const SLOW: &str = "tests/fixtures/slow.yaml";

fn wait_for_lines(path: &Path, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let count = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if count >= lines {
            return;
        }
        assert!(Instant::now() < deadline, "only {count} lines after 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn write(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write fixture");
    path
}

/// Every file under `dir`, as text (lossy), with its name.
fn all_files(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(all_files(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read");
            found.push((path.display().to_string(), text(&bytes)));
        }
    }
    found
}

// 1. Two writers, one folder.
#[test]
fn a_second_writer_is_refused_and_a_killed_writer_leaves_no_lock() {
    let out = tempfile::tempdir().expect("tempdir");
    let mut first = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", SLOW, "--progress", "none", "--out"])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("first writer starts");
    wait_for_lines(&out.path().join("runs.jsonl"), 5);

    let plain = run_suite(SLOW, out.path(), &[]);
    assert_eq!(plain.status.code(), Some(2));
    assert!(
        text(&plain.stderr).contains(&format!("pid {}", first.id())),
        "{}",
        text(&plain.stderr)
    );
    let second = run_suite(SLOW, out.path(), &["--force"]);
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another ragprobe"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    let resumed = resume(out.path());
    assert_eq!(resumed.status.code(), Some(2), "{}", text(&resumed.stderr));

    // kill -9: the kernel drops the lock; the next resume finishes the plan exactly.
    first.kill().expect("kill");
    first.wait().expect("reaped");
    let resumed = resume(out.path());
    assert!(
        matches!(resumed.status.code(), Some(0 | 1)),
        "{}",
        text(&resumed.stderr)
    );
    let keys: std::collections::HashSet<(String, u32)> = records(out.path())
        .into_iter()
        .map(|r| (r.case, r.run))
        .collect();
    assert_eq!(keys.len(), 120);
    assert_eq!(records(out.path()).len(), 120, "no run recorded twice");
}

// 2. Suites whose names map to one folder name.
#[test]
fn suites_with_the_same_slug_get_their_own_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = format!(
        "{}/suites/databricks/corpus.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let suite = |name: &str, phrase: &str| {
        format!(
            "name: {name}\nchain:\n  retriever: {{kind: memory, corpus: '{corpus}', k: 2}}\nruns: 3\nseed: 1\n\
             cases:\n  - id: storage\n    question: How does Databricks store databases?\n    \
             expect: {{answer: {{contains: ['{phrase}']}}}}\n"
        )
    };
    write(dir.path(), "a.yaml", &suite("Support Bot", "Delta"));
    write(
        dir.path(),
        "b.yaml",
        &suite("support-bot", "no such phrase"),
    );
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(&dir.path().display().to_string(), out.path(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let passing = records(&out.path().join("support-bot"));
    let failing = records(&out.path().join("support-bot-2"));
    assert_eq!((passing.len(), failing.len()), (3, 3));
    assert!(
        passing
            .iter()
            .all(|r| r.verdict.as_ref().is_some_and(|v| v.passed))
    );
    assert!(
        failing
            .iter()
            .all(|r| r.verdict.as_ref().is_some_and(|v| !v.passed))
    );

    // A folder is never resumed by another suite: rename the suite and resume.
    write(dir.path(), "a.yaml", &suite("Another Bot", "Delta"));
    let resumed = resume(&out.path().join("support-bot"));
    let stderr = text(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("started by suite `Support Bot`"),
        "{stderr}"
    );
}

// 3 and 4. URL credentials and echoed secrets reach no output.
#[test]
fn secrets_echoed_by_a_server_reach_no_file_stream_or_trace() {
    use base64::Engine;
    let password = "pa55-w0rd-secret";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("probe:{password}"));
    // (the API key, if any; what must appear nowhere)
    let cases: [(Option<&str>, Vec<&str>); 3] = [
        (
            Some("sk-live-0123456789abcdef"),
            vec!["sk-live-0123456789abcdef", password],
        ),
        // No key: the client sends the URL's credentials as Basic, which the server echoes.
        (None, vec![basic.as_str(), password]),
        // A key the server echoes JSON-escaped.
        (
            Some(r#"sk-live-q"uo\te/sl<&>"#),
            vec![r#"q\"uo"#, r#"q"uo"#, password],
        ),
    ];
    for (key, secrets) in cases {
        let server = loopback(&["--echo-auth-401"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let base = server
            .url
            .replacen("http://", &format!("http://probe:{password}@"), 1);
        let chain = openai_chain(dir.path(), &base, "{retries: 0}");
        if key.is_some() {
            let chain_text = std::fs::read_to_string(&chain).expect("chain");
            std::fs::write(
                &chain,
                chain_text.replace(
                    "model: loopback-chat",
                    "model: loopback-chat\n  api_key_env: PROBE_KEY",
                ),
            )
            .expect("chain with key");
        }
        let sink = Sink::start(200);
        let otlp = sink.url.replacen("http://", "http://otel:otlp-pw-77@", 1);
        let out = tempfile::tempdir().expect("tempdir");
        let output = ragprobe()
            .env("PROBE_KEY", key.unwrap_or_default())
            .args(["run", "suites/databricks/before-fix.yaml", "--runs", "2"])
            .args(["--progress", "lines", "--otlp", &otlp])
            .args(["--otlp-header", "x-api-key=otlp-header-88"])
            .args(["--chain", &chain, "--out"])
            .arg(out.path())
            .output()
            .expect("ragprobe runs");
        assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
        let runs = std::fs::read_to_string(out.path().join("runs.jsonl")).expect("runs");
        assert!(
            runs.contains("invalid credentials"),
            "the 401 is recorded: {runs}"
        );
        assert!(runs.contains("[redacted]"), "{runs}");
        let exported = ragprobe()
            .arg("export")
            .arg(out.path())
            .arg("--out")
            .arg(out.path().join("export.jsonl"))
            .output()
            .expect("export");
        assert_eq!(exported.status.code(), Some(0));
        let shown = ragprobe()
            .arg("show")
            .arg(out.path())
            .output()
            .expect("show");
        let mut places = all_files(out.path());
        places.push(("stdout".into(), text(&output.stdout)));
        places.push(("stderr".into(), text(&output.stderr)));
        places.push(("show".into(), text(&shown.stdout)));
        for request in sink.requests() {
            places.push(("otlp".into(), text(&request.body)));
        }
        assert!(places.len() > 10, "{places:?}");
        for (place, content) in &places {
            for secret in secrets.iter().chain(&["otlp-pw-77", "otlp-header-88"]) {
                assert!(!content.contains(secret), "{secret} in {place}");
            }
        }
        let html = std::fs::read_to_string(out.path().join("report.html")).expect("html");
        assert!(
            html.contains("http://127.0.0.1"),
            "the URL is shown, without credentials"
        );
    }
}

// 7. A command chain that never stops printing.
#[test]
fn a_command_that_never_stops_printing_is_stopped_at_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = chain_file(
        dir.path(),
        "chain.yaml",
        "kind: command\ncmd: [sh, -c, 'cat >/dev/null; cat /dev/zero']\n\
         limits: {max_response_bytes: 1048576}\n",
    );
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "2", "--chain", &chain.display().to_string()],
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let runs = records(out.path());
    assert_eq!(runs.len(), 4);
    let errors: Vec<Option<String>> = runs.iter().map(|r| r.error.clone()).collect();
    assert!(
        errors.iter().all(|e| e
            .as_deref()
            .is_some_and(|e| e.contains("printed more than 1048576 bytes"))),
        "{errors:?}"
    );
}

// 5. A last line torn inside a UTF-8 character.
#[test]
fn a_last_line_torn_inside_a_utf8_character_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = write(
        dir.path(),
        "corpus.jsonl",
        "{\"id\": \"1\", \"text\": \"Données stockées en Delta — café.\", \"metadata\": {}}\n",
    );
    let suite = write(
        dir.path(),
        "s.yaml",
        &format!(
            "name: utf8\nchain:\n  retriever: {{kind: memory, corpus: '{}', k: 1}}\nruns: 4\n\
             cases:\n  - id: q\n    question: données café\n",
            corpus.display()
        ),
    );
    let out = dir.path().join("out");
    let first = run_suite(&suite.display().to_string(), &out, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let path = out.join("runs.jsonl");
    let bytes = std::fs::read(&path).expect("runs");
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("several lines")
        + 1;
    // Cut right after the first byte of a two-byte character in the last line.
    let cut = bytes[last_start..]
        .iter()
        .position(|b| *b == 0xC3)
        .expect("a multi-byte character")
        + last_start
        + 1;
    std::fs::write(&path, &bytes[..cut]).expect("tear");
    std::fs::remove_file(out.join("summary.json")).expect("remove summary");
    let resumed = resume(&out);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert_eq!(records(&out).len(), 4);
    assert!(std::str::from_utf8(&std::fs::read(&path).expect("runs")).is_ok());
}

// 6. --out into a folder with the user's own files; --force for a report folder.
#[test]
fn out_refuses_a_users_folder_and_force_replaces_only_a_report() {
    let mine = tempfile::tempdir().expect("tempdir");
    write(mine.path(), "notes.txt", "my notes");
    let output = run_suite(
        "suites/databricks/after-fix.yaml",
        mine.path(),
        &["--runs", "1"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not a ragprobe report (notes.txt)"),
        "{stderr}"
    );
    let names: Vec<_> = std::fs::read_dir(mine.path()).expect("list").collect();
    assert_eq!(names.len(), 1, "nothing was added to the user's folder");
    let forced = run_suite(
        "suites/databricks/after-fix.yaml",
        mine.path(),
        &["--runs", "1", "--force"],
    );
    assert_eq!(
        forced.status.code(),
        Some(2),
        "--force does not touch a user's folder"
    );

    let out = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "1"],
    );
    write(out.path(), "notes.txt", "kept");
    let again = run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "2"],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("--force"));
    let forced = run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "2", "--force"],
    );
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    assert_eq!(records(out.path()).len(), 4, "two cases × the new 2 runs");
    assert_eq!(
        std::fs::read_to_string(out.path().join("notes.txt")).expect("kept"),
        "kept"
    );
}

// 7. Unbounded response bodies.
#[test]
fn an_endless_body_is_cut_at_the_cap_and_recorded_as_an_error() {
    let server = loopback(&["--endless-body"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = openai_chain(
        dir.path(),
        &server.url,
        "{retries: 0, max_response_bytes: 1048576}",
    );
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "suites/databricks/before-fix.yaml",
        out.path(),
        &["--runs", "2", "--chain", &chain],
    );
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let runs = records(out.path());
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| {
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("larger than 1048576 bytes"))
    }));
    assert!(out.path().join("summary.json").exists());
}

// 8. Unbounded inputs: endless files, loops in templates.
#[test]
fn endless_files_and_runaway_templates_are_refused_before_any_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = |chain: &str| {
        format!("name: bounded\nchain:\n{chain}\ncases:\n  - id: q\n    question: q\n")
    };
    let zero = write(
        dir.path(),
        "zero.yaml",
        &suite("  retriever: {kind: memory, corpus: /dev/zero, k: 1}"),
    );
    write(dir.path(), "c.jsonl", "{\"id\": \"1\", \"text\": \"t\"}\n");
    let prompt = write(
        dir.path(),
        "loop.yaml",
        &suite(
            "  retriever: {kind: memory, corpus: c.jsonl, k: 1}\n  prompt: \"{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\"",
        ),
    );
    let prompt_file = write(
        dir.path(),
        "prompt-file.yaml",
        &suite("  retriever: {kind: memory, corpus: c.jsonl, k: 1}\n  prompt_file: /dev/zero"),
    );
    for (path, expected) in [
        (&zero, "not a regular file"),
        (&prompt, "more work than a render may"),
        (&prompt_file, "not a regular file"),
    ] {
        let output = ragprobe()
            .arg("validate")
            .arg(path)
            .output()
            .expect("validate runs");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{expected} not in {stderr}");
    }
}

// 9. Report injection.
#[test]
fn hostile_text_stays_text_in_every_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "corpus.jsonl",
        "{\"id\": \"d1\", \"text\": \"Databases are stored \\u001b]0;pwned\\u0007\\u001b[2J in Delta [link](http://evil) \\ufffe.\", \"metadata\": {\"docs\": \"aws\"}}\n",
    );
    let suite = write(
        dir.path(),
        "s.yaml",
        "name: hostile\nchain:\n  retriever: {kind: memory, corpus: corpus.jsonl, k: 1}\nruns: 2\n\
         rules:\n  - id: \"only-databricks https://evil.example/p www.evil.example\"\n    retrieved: {every: {docs: databricks}}\n\
         cases:\n  - id: storage\n    question: \"How are databases stored? ![img](http://evil/x.png) \\uFFFF\"\n",
    );
    let out = dir.path().join("out");
    let output = run_suite(&suite.display().to_string(), &out, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(stdout.contains("\\u{1b}]0;pwned"), "{stdout}");
    let shown = ragprobe().arg("show").arg(&out).output().expect("show");
    assert!(!text(&shown.stdout).contains('\u{1b}'));
    assert!(!text(&shown.stdout).contains('\u{7}'));

    let markdown = std::fs::read_to_string(out.join("summary.md")).expect("md");
    assert!(
        markdown.contains("`How are databases stored? ![img](http://evil/x.png)"),
        "the question is a code span: {markdown}"
    );
    assert!(
        markdown.contains("```text\nDatabases are stored"),
        "{markdown}"
    );
    for line in markdown.lines().filter(|l| l.contains("evil")) {
        assert!(
            line.contains('`') || line.starts_with("Databases"),
            "a URL outside a code span or block: {line}"
        );
    }
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit");
    assert!(
        !junit
            .chars()
            .any(|c| matches!(c, '\u{fffe}' | '\u{ffff}')
                || (c.is_control() && !"\t\n\r".contains(c))),
        "junit.xml holds characters XML cannot: {junit:?}"
    );

    // The separator ragprobe joins rule ids with cannot be in an id.
    let separator = write(
        dir.path(),
        "sep.yaml",
        "name: sep\nchain:\n  retriever: {kind: memory, corpus: corpus.jsonl, k: 1}\n\
         rules:\n  - id: \"a\\x1fb\"\n    retrieved: {every: {docs: x}}\n\
         cases:\n  - id: \"c\\x1fd\"\n    question: q\n",
    );
    let output = ragprobe()
        .arg("validate")
        .arg(&separator)
        .output()
        .expect("validate");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sep.yaml:5:9: rules[0].id"), "{stderr}");
    assert!(stderr.contains("sep.yaml:8:9: cases[0].id"), "{stderr}");
}

// 10. Silent clamps, ignored flags, wrong exit codes.
#[test]
fn wrong_values_and_conflicting_flags_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "c.jsonl", "{\"id\": \"1\", \"text\": \"t\"}\n");
    let suite = write(
        dir.path(),
        "s.yaml",
        "name: s\nchain:\n  retriever: {kind: memory, corpus: c.jsonl, k: 1}\n  \
         llm: {kind: extractive, temperature: -1}\ncases:\n  - id: q\n    question: q\n",
    );
    let sentences = write(
        dir.path(),
        "m.yaml",
        "name: s\nchain:\n  retriever: {kind: memory, corpus: c.jsonl, k: 1}\n  \
         llm: {kind: extractive, max_sentences: 0}\ncases:\n  - id: q\n    question: q\n",
    );
    let duplicate = write(
        dir.path(),
        "d.yaml",
        "name: s\nchain:\n  retriever: {kind: memory, corpus: c.jsonl, k: 1}\nruns: 2\nruns: 3\n\
         cases:\n  - id: q\n    question: q\n",
    );
    for (path, expected) in [
        (&suite, "s.yaml:4:40: chain.llm.temperature"),
        (&sentences, "m.yaml:4:42: chain.llm.max_sentences"),
        (&duplicate, "d.yaml:5:7: duplicate field `runs`"),
    ] {
        let output = ragprobe().arg("validate").arg(path).output().expect("runs");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{expected} not in {stderr}");
    }
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "1"],
    );
    for flags in [
        &["--chain", "suites/databricks/chains/support.yaml"][..],
        &["--runs", "0"][..],
        &["--shard", "1/2"][..],
    ] {
        let output = ragprobe()
            .args(["run", "--resume"])
            .arg(out.path())
            .args(flags)
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(2), "{flags:?}");
    }
    for flag in ["--runs", "--concurrency", "--timeout-ms"] {
        let output = run_suite(
            "suites/databricks/after-fix.yaml",
            &out.path().join("zero"),
            &[flag, "0"],
        );
        assert_eq!(output.status.code(), Some(2), "{flag} 0");
    }
}

#[test]
fn a_merge_of_unfinished_shards_is_incomplete_not_a_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = (dir.path().join("1"), dir.path().join("2"));
    for (shard, folder) in [("1/2", &one), ("2/2", &two)] {
        let output = run_suite(
            "suites/databricks/after-fix.yaml",
            folder,
            &["--runs", "10", "--shard", shard],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    // Shard 2 lost all but its first 3 runs.
    let runs = std::fs::read_to_string(two.join("runs.jsonl")).expect("runs");
    let kept: String = runs.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(two.join("runs.jsonl"), kept).expect("truncate");
    let merged = ragprobe()
        .arg("merge")
        .arg(&one)
        .arg(&two)
        .arg("--out")
        .arg(dir.path().join("all"))
        .output()
        .expect("merge");
    let stdout = text(&merged.stdout);
    assert_eq!(merged.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("result: INCOMPLETE · 13 of 20 planned runs"),
        "{stdout}"
    );
}

#[test]
fn a_failure_to_write_results_after_the_runs_keeps_them_and_exits_3() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "3"],
    );
    // summary.json cannot be replaced: a folder stands in its place (as a full disk would
    // refuse the write).
    std::fs::remove_file(out.path().join("summary.json")).expect("remove");
    std::fs::create_dir_all(out.path().join("summary.json/blocked")).expect("block");
    let resumed = resume(out.path());
    let stderr = text(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("summary.json"), "{stderr}");
    assert_eq!(records(out.path()).len(), 6, "the runs are kept");
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// 11. triage without --bad names the right cause.
#[test]
fn triage_of_the_reference_case_blames_the_unfiltered_retriever() {
    let output = ragprobe()
        .args([
            "triage",
            "--suite",
            "suites/databricks/before-fix.yaml",
            "--case",
            "cost",
        ])
        .output()
        .expect("triage");
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("cause: the retriever returned an aws-tagged document"),
        "{stdout}"
    );
    assert!(
        stdout.contains("suggested fix: retriever filter {\"docs\":\"databricks\"}"),
        "{stdout}"
    );
}

// 12. repro checks the template before the first run.
#[test]
fn repro_with_a_template_that_cannot_render_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = chain_file(
        dir.path(),
        "chain.yaml",
        "retriever: {kind: memory, corpus: '{ROOT}/suites/databricks/corpus.jsonl', k: 2}\n\
         prompt: 'Answer for {{ vars.product }}: {{ question }}'\n",
    );
    let output = ragprobe()
        .args([
            "repro",
            "--question",
            "cost?",
            "--bad",
            "contains: [t4g]",
            "--chain",
        ])
        .arg(&chain)
        .output()
        .expect("repro");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("prompt template fails"), "{stderr}");
    assert!(stderr.contains("--var NAME=VALUE"), "{stderr}");
    assert!(text(&output.stdout).is_empty());
}

// 13. A reader that goes away.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/before-fix.yaml",
        out.path(),
        &["--runs", "2"],
    );
    for args in [&["show", "--json"][..], &["show"][..]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = Command::new(BIN)
            .args(args)
            .arg(out.path())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("show runs");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

// 14. Help and messages.
#[test]
fn help_and_messages_say_what_each_command_does() {
    let help = |args: &[&str]| text(&ragprobe().args(args).output().expect("help runs").stdout);
    assert!(help(&["validate", "--help"]).contains("0    every suite, chain and corpus is valid"));
    assert!(!help(&["validate", "--help"]).contains("130"));
    assert!(help(&["diff", "--help"]).contains("1    at least one regression"));
    assert!(help(&["merge", "--help"]).contains("Print only the result line"));
    assert!(help(&["repro", "--help"]).contains("0    the bad answer was reproduced"));
    let version = Command::new(env!("CARGO_BIN_EXE_openai-loopback"))
        .arg("--version")
        .output()
        .expect("loopback runs");
    assert!(text(&version.stdout).starts_with("openai-loopback "));

    let validated = ragprobe()
        .args(["validate", "tests/fixtures/min-pass-rate.yaml"])
        .output()
        .expect("validate");
    assert!(
        text(&validated.stdout).contains(", 1 rule,")
            || text(&validated.stdout).contains(", 0 rules,"),
        "{}",
        text(&validated.stdout)
    );

    let out = tempfile::tempdir().expect("tempdir");
    let (before, after) = (out.path().join("before"), out.path().join("after"));
    run_suite("suites/databricks/before-fix.yaml", &before, &[]);
    run_suite("suites/databricks/after-fix.yaml", &after, &[]);
    let diff = ragprobe()
        .arg("diff")
        .arg(&before)
        .arg(&after)
        .output()
        .expect("diff");
    assert!(
        text(&diff.stdout).contains("result: 0 regressions, 1 improvement, 2 cases compared"),
        "{}",
        text(&diff.stdout)
    );
    let show = ragprobe()
        .args(["show", "--case", "nope"])
        .arg(&before)
        .output()
        .expect("show");
    assert_eq!(show.status.code(), Some(2));
    assert!(
        text(&show.stderr).contains("(cases: storage, cost)"),
        "{}",
        text(&show.stderr)
    );

    let import = ragprobe()
        .args(["import", "--trace-id", "0123456789abcdef", "--mlflow-json"])
        .arg("tests/fixtures/traces/mlflow-trace.json")
        .arg("--suite")
        .arg(out.path().join("imported.yaml"))
        .output()
        .expect("import");
    assert_eq!(import.status.code(), Some(2));
    assert!(
        text(&import.stderr).contains("no such trace `0123456789abcdef`"),
        "{}",
        text(&import.stderr)
    );
}

#[test]
fn a_case_whose_every_run_errored_shows_no_pass_k() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = chain_file(
        dir.path(),
        "chain.yaml",
        &format!(
            "kind: http\nurl: http://127.0.0.1:{}/ask\nlimits: {{retries: 0}}\n",
            crate::common::servers::free_port()
        ),
    );
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "2", "--chain", &chain.display().to_string()],
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(!stdout.contains("(k=0)"), "{stdout}");
    assert!(stdout.contains("ERROR    0/0"), "{stdout}");
}

// 15. init and completions.
#[test]
fn init_writes_a_suite_that_runs_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let init = ragprobe()
        .arg("init")
        .arg(dir.path())
        .output()
        .expect("init");
    assert_eq!(init.status.code(), Some(0), "{}", text(&init.stderr));
    let suite = dir.path().join("suites/example/suite.yaml");
    let out = dir.path().join("out");
    let run = run_suite(&suite.display().to_string(), &out, &[]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stdout));
    assert!(text(&run.stdout).contains("result: PASS · 2 cases passed"));

    std::fs::OpenOptions::new()
        .append(true)
        .open(&suite)
        .and_then(|mut f| f.write_all(b"# mine\n"))
        .expect("edit");
    let again = ragprobe()
        .arg("init")
        .arg(dir.path())
        .output()
        .expect("init");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        std::fs::read_to_string(&suite)
            .expect("suite")
            .ends_with("# mine\n")
    );

    let script = ragprobe()
        .args(["completions", "bash"])
        .output()
        .expect("completions");
    assert_eq!(script.status.code(), Some(0));
    assert!(text(&script.stdout).contains("_ragprobe()"));
    assert!(text(&script.stdout).contains("--resume"));
}
