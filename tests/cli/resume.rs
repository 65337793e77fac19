//! A killed or interrupted run keeps every finished run readable, and `--resume` completes
//! the plan without losing or duplicating a run.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, records, resume, run_suite, text};

const SLOW: &str = "tests/fixtures/slow.yaml";
const PLANNED: usize = 120;

fn start(out: &Path) -> Child {
    Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", SLOW, "--progress", "none", "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ragprobe starts")
}

/// Waits until at least `lines` runs are on disk (bounded: the whole plan takes ~1 s).
fn wait_for_runs(out: &Path, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count = std::fs::read_to_string(out.join("runs.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if count >= lines {
            return;
        }
        assert!(Instant::now() < deadline, "only {count} runs after 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn keys(dir: &Path) -> Vec<(String, u32)> {
    records(dir).into_iter().map(|r| (r.case, r.run)).collect()
}

/// Sorted (case, run, answer) triples: what a run produced, timing aside.
fn answers(dir: &Path) -> Vec<(String, u32, String)> {
    let mut all: Vec<_> = records(dir)
        .into_iter()
        .map(|r| (r.case, r.run, r.answer))
        .collect();
    all.sort();
    all
}

#[test]
fn killed_run_resumes_without_losing_or_duplicating_runs() {
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = start(out.path());
    wait_for_runs(out.path(), 20);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let partial = keys(out.path());
    assert!(
        partial.len() >= 20 && partial.len() < PLANNED,
        "{} runs",
        partial.len()
    );

    let output = resume(out.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let all = keys(out.path());
    assert_eq!(all.len(), PLANNED, "every planned run, once");
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), PLANNED, "no run twice");
    for key in &partial {
        assert!(unique.contains(key));
    }

    // The resumed report holds exactly what an uninterrupted run with the seed holds.
    let fresh = tempfile::tempdir().expect("tempdir");
    run_suite(SLOW, fresh.path(), &[]);
    assert_eq!(answers(out.path()), answers(fresh.path()));
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_finished_runs_and_exits_130() {
    let out = tempfile::tempdir().expect("tempdir");
    let child = start(out.path());
    wait_for_runs(out.path(), 10);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let output = child.wait_with_output().expect("exits");
    assert_eq!(output.status.code(), Some(130));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("result: INTERRUPTED"), "{stdout}");
    assert!(
        stdout.contains("resume with: ragprobe run --resume"),
        "{stdout}"
    );

    let saved = keys(out.path()).len();
    assert!((10..PLANNED).contains(&saved), "{saved}");
    let summary = std::fs::read_to_string(out.path().join("summary.json")).expect("summary");
    assert!(summary.contains("\"interrupted\""));

    let output = resume(out.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(keys(out.path()).len(), PLANNED);
}

#[test]
fn resuming_a_finished_report_runs_nothing_more() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(
        "suites/databricks/after-fix.yaml",
        out.path(),
        &["--runs", "2"],
    );
    let before = std::fs::read_to_string(out.path().join("runs.jsonl")).expect("runs");
    let output = resume(out.path());
    assert_eq!(output.status.code(), Some(0));
    let after = std::fs::read_to_string(out.path().join("runs.jsonl")).expect("runs");
    assert_eq!(before, after);
}
