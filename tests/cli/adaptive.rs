//! `runs: auto`: cases stop when a sequential test decides them; what is recorded depends
//! on the seed alone (not the concurrency), and resume and merge reach the same verdicts.

use std::path::Path;

use crate::common::{merge, ragprobe, records, resume, run_suite, text, validate};

const BEFORE: &str = "suites/databricks/before-fix.yaml";

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
        .expect("json")
}

/// (case, runs used, why it stopped, outcome) per case.
fn stops(dir: &Path) -> Vec<(String, u64, String, String)> {
    summary(dir)["stats"]["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_owned(),
                c["adaptive"]["runs_used"].as_u64().unwrap_or(0),
                c["adaptive"]["stop"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                c["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// (case, run, answer) of every recorded run, sorted.
fn recorded(dir: &Path) -> Vec<(String, u32, String)> {
    let mut runs: Vec<(String, u32, String)> = records(dir)
        .into_iter()
        .map(|r| (r.case, r.run, r.answer))
        .collect();
    runs.sort();
    runs
}

#[test]
fn cases_stop_when_decided_whatever_the_concurrency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wide = dir.path().join("wide");
    let output = run_suite(BEFORE, &wide, &["--runs", "auto", "-j", "8"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    // Every run must pass: storage passes after 59 (0.95^59 < 0.05), cost fails at the
    // first failure once min_runs (3) is reached.
    assert_eq!(
        stops(&wide),
        [
            ("storage".into(), 59, "decided_pass".into(), "pass".into()),
            ("cost".into(), 3, "decided_fail".into(), "fail".into())
        ]
    );
    assert!(
        stdout.contains("2 cases × runs: auto (3–100 a case; 62 used of 200)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("storage  59/100  decided pass  41"),
        "{stdout}"
    );
    assert!(
        stdout.contains("62 runs of at most 200 (138 saved"),
        "{stdout}"
    );
    // Runs past a decision are never recorded: runs 0..58 and 0..2, nothing else.
    let runs = recorded(&wide);
    assert_eq!(runs.len(), 62);
    let narrow = dir.path().join("narrow");
    run_suite(BEFORE, &narrow, &["--runs", "auto", "-j", "1"]);
    assert_eq!(
        recorded(&narrow),
        runs,
        "the concurrency changed what was recorded"
    );
    assert_eq!(stops(&narrow), stops(&wide));
    let html = std::fs::read_to_string(wide.join("report.html")).expect("report.html");
    assert!(html.contains("decided pass after 59 of 100 runs (41 saved)"));
    let md = std::fs::read_to_string(wide.join("summary.md")).expect("summary.md");
    assert!(md.contains("decided fail · 3 of 100 runs"), "{md}");
}

#[test]
fn resume_and_merge_reach_the_same_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole");
    run_suite(BEFORE, &whole, &["--runs", "auto"]);
    // A crash after 30 runs: the first 30 lines are kept, the reports are gone.
    let cut = dir.path().join("cut");
    run_suite(BEFORE, &cut, &["--runs", "auto"]);
    let lines: Vec<String> = std::fs::read_to_string(cut.join("runs.jsonl"))
        .expect("runs")
        .lines()
        .take(30)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(cut.join("runs.jsonl"), lines.concat()).expect("cut");
    std::fs::remove_file(cut.join("summary.json")).expect("no summary");
    let output = resume(&cut);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(stops(&cut), stops(&whole));
    assert_eq!(recorded(&cut), recorded(&whole));
    // Shards take whole cases; merged, they are the whole run.
    let shards: Vec<_> = ["1/2", "2/2"]
        .iter()
        .map(|shard| {
            let out = dir.path().join(format!("shard-{}", &shard[..1]));
            let output = run_suite(BEFORE, &out, &["--runs", "auto", "--shard", shard]);
            assert!(
                matches!(output.status.code(), Some(0 | 1)),
                "{}",
                text(&output.stderr)
            );
            out
        })
        .collect();
    assert!(records(&shards[0]).iter().all(|r| r.case == "storage"));
    assert!(records(&shards[1]).iter().all(|r| r.case == "cost"));
    let merged = dir.path().join("merged");
    let output = merge(&shards, &merged);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(stops(&merged), stops(&whole));
    assert_eq!(summary(&merged)["result"], "fail");
}

/// Answers BAD on the share of runs its question ends with, by the run's seed.
const RATED_PROGRAM: &str = "import json,sys,random\n\
    r=json.load(sys.stdin)\n\
    rate=float(r['question'].split()[-1])\n\
    bad=random.Random(r['seed']).random()<rate\n\
    print(json.dumps({'answer':'BAD' if bad else 'fine','documents':[]}))";

/// A command chain that answers BAD on a set share of runs per question (by the run's
/// seed), under a rule that forbids BAD.
fn rated_suite(dir: &Path, extra: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("chain.yaml"),
        format!(
            "kind: command\ncmd: [python3, -c, {}]\n",
            serde_json::json!(RATED_PROGRAM)
        ),
    )
    .expect("chain");
    let suite = dir.join("suite.yaml");
    std::fs::write(
        &suite,
        format!(
            "name: rated\nchain: chain.yaml\nruns: auto\nseed: 3\nmin_pass_rate: 0.8\n{extra}\
             rules:\n  - id: no-bad\n    answer: {{not_contains: BAD}}\n    max_rate: 0.2\n\
             cases:\n  - id: clean\n    question: bad rate 0.0\n  - id: broken\n    question: bad rate 0.7\n  \
             - id: borderline\n    question: bad rate 0.2\n"
        ),
    )
    .expect("suite");
    suite
}

#[test]
fn known_bad_rates_are_decided_and_undecided_follows_its_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = rated_suite(dir.path(), "max_runs: 40\nundecided: fail\n");
    let out = dir.path().join("out");
    let output = run_suite(suite.to_str().expect("utf-8"), &out, &["-j", "4"]);
    let stops = stops(&out);
    let by_case = |id: &str| stops.iter().find(|s| s.0 == id).cloned().expect(id);
    assert_eq!(by_case("clean").2, "decided_pass", "{stops:?}");
    assert_eq!(by_case("broken").2, "decided_fail", "{stops:?}");
    assert!(by_case("broken").1 < 15, "{stops:?}");
    // On the threshold itself: 40 runs cannot tell, and `undecided: fail` fails it.
    assert_eq!(by_case("borderline").1, 40, "{stops:?}");
    assert_eq!(by_case("borderline").2, "undecided", "{stops:?}");
    assert_eq!(by_case("borderline").3, "fail", "{stops:?}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn runs_settings_are_checked_where_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (extra, says) in [
        (
            "runs: often\n",
            "`often` is not a number of runs: write a number, or `auto`",
        ),
        ("tolerance: 0\n", "tolerance must be above 0"),
        (
            "min_runs: 50\nmax_runs: 10\n",
            "min_runs (50) is more than max_runs (10)",
        ),
    ] {
        let path = dir.path().join("suite.yaml");
        std::fs::write(
            &path,
            format!(
                "name: s\nchain: {{retriever: {{kind: memory, corpus: '{}/suites/databricks/corpus.jsonl', k: 2}}, llm: {{kind: extractive}}}}\n{extra}cases:\n  - id: a\n    question: q\n    runs: 5\n",
                crate::common::servers::ROOT
            ),
        )
        .expect("suite");
        let (code, _, stderr) = validate(&path);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(says), "{extra}: {stderr}");
        assert!(
            stderr.contains("a case's `runs` can only be `auto`")
                || extra.starts_with("runs: often"),
            "{stderr}"
        );
    }
    let output = ragprobe()
        .args(["run", BEFORE, "--runs", "sometimes"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("not a number of runs or `auto`"));
}

#[test]
fn against_a_baseline_cases_stop_when_the_change_is_decided_and_merge_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The same case, BAD on 0% of 40 baseline runs and on 50% now; it passes its own
    // min_pass_rate 0.4 either way, but it got worse than the baseline. (Against 10
    // baseline runs no valid test could call even a 30-point drop: too few to know the
    // baseline's rate.)
    let write = |name: &str, rate: &str| {
        std::fs::write(
            dir.path().join("chain.yaml"),
            format!(
                "kind: command\ncmd: [python3, -c, {}]\n",
                serde_json::json!(RATED_PROGRAM)
            ),
        )
        .expect("chain");
        let suite = dir.path().join(name);
        std::fs::write(
            &suite,
            format!(
                "name: drift\nchain: chain.yaml\nseed: 5\nmin_pass_rate: 0.4\ncases:\n  - id: answer\n    \
                 question: bad rate {rate}\n    expect: {{answer: {{not_contains: BAD}}}}\n"
            ),
        )
        .expect("suite");
        suite
    };
    let before = write("before.yaml", "0.0");
    let baseline = dir.path().join("baseline");
    run_suite(
        before.to_str().expect("utf-8"),
        &baseline,
        &["--runs", "40"],
    );
    let now = write("now.yaml", "0.5");
    let shard = dir.path().join("shard");
    let output = run_suite(
        now.to_str().expect("utf-8"),
        &shard,
        &[
            "--runs",
            "auto",
            "--shard",
            "1/1",
            "--baseline",
            baseline.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let (_, used, stop, _) = stops(&shard).remove(0);
    assert_eq!(stop, "decided_regression");
    assert!(used < 20, "{used}");
    // Merged with the baseline the shard ran against, the same stop; without it, the
    // case's own tests are still open there and the merge says so.
    let merged = dir.path().join("merged");
    let output = ragprobe()
        .args(["merge", "--out"])
        .arg(&merged)
        .args(["--baseline", baseline.to_str().expect("utf-8")])
        .arg(&shard)
        .output()
        .expect("merge");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(stops(&merged), stops(&shard));
    let without = dir.path().join("without");
    let output = merge(std::slice::from_ref(&shard), &without);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stdout));
}
