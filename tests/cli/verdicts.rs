//! The gate at real suite sizes (issue: "verdicts CI can trust"): 200 unchanged cases must
//! not fail the build, 10 truly regressed ones among them must, the smallest change that
//! matters, the suite's clustered pass rate, the power figures and `ragprobe plan`.

use std::path::{Path, PathBuf};

use crate::common::{ragprobe, run_suite, text};

const QUESTION: &str = "How much does it cost to run a database?";
/// The same chain answers this one with t4g.micro about 45 points more often.
const WORSE: &str = "How are database instances billed?";

/// `cases` copies of the reference cost question, each checked for AWS instance types;
/// the first `worse` ask the worse question. About 76% of the cost question's runs pass.
fn wide_suite(dir: &Path, name: &str, cases: usize, worse: usize, extra: &str) -> PathBuf {
    let mut text = format!(
        "name: wide\nchain: {}/suites/databricks/chains/support.yaml\nruns: 20\nmin_pass_rate: 0.1\n\
         vars: {{product: Databricks}}\n{extra}cases:\n",
        env!("CARGO_MANIFEST_DIR")
    );
    for i in 0..cases {
        let question = if i < worse { WORSE } else { QUESTION };
        text.push_str(&format!(
            "  - id: c{i:04}\n    question: {question}\n    expect: {{answer: {{not_matches: \"t[0-9]g?\\\\.(nano|micro|small)\"}}}}\n"
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("suite");
    path
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
        .expect("json")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[test]
fn the_baseline_gate_does_not_cry_wolf_on_200_unchanged_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = wide_suite(dir.path(), "suite.yaml", 200, 0, "");
    let baseline = dir.path().join("seed-1");
    let output = run_suite(path(&suite), &baseline, &["--seed", "1", "-q"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    // Before the correction each of these builds failed, naming 4–7 cases.
    for seed in ["2", "3"] {
        let out = dir.path().join(format!("seed-{seed}"));
        let output = run_suite(
            path(&suite),
            &out,
            &["--seed", seed, "--baseline", path(&baseline)],
        );
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{stdout}");
        assert!(
            stdout.contains("gate: discrete Holm over 200 cases, family-wise error 0.05"),
            "{stdout}"
        );
        assert!(stdout.contains("200 unchanged cases not shown"), "{stdout}");
        let s = summary(&out);
        let gate = &s["gate"];
        assert_eq!(gate["compared"], 200);
        assert_eq!(gate["regressions"], 0);
        // The suite's pass rate, before and after, with an interval clustered by case.
        let change = &gate["pass_rate"]["change"];
        let [low, high] =
            [change["ci95"][0].as_f64(), change["ci95"][1].as_f64()].map(|v| v.expect("a number"));
        assert!(low < 0.0 && high > 0.0, "{change}");
        assert!(high - low < 0.1, "{change}");
        // Every case carries its raw p-value, its adjusted one and its q-value.
        for case in s["baseline_cases"].as_array().expect("cases") {
            let p = case["p_value"].as_f64().expect("p");
            let adjusted = case["p_adjusted"].as_f64().expect("adjusted");
            assert!(adjusted >= p - 1e-12, "{case}");
            assert!(case["q_value"].as_f64().is_some());
        }
    }
    // The old behaviour, still reachable: each case alone at 0.05 fails the build.
    let diff = ragprobe()
        .args(["diff", "--correction", "none", "--format", "json"])
        .arg(&baseline)
        .arg(dir.path().join("seed-2"))
        .arg("--out")
        .arg(dir.path().join("none.html"))
        .output()
        .expect("diff");
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff.stderr));
    let report: serde_json::Value = serde_json::from_slice(&diff.stdout).expect("json");
    assert!(report["regressions"].as_u64().expect("count") >= 1);
    let corrected = ragprobe()
        .arg("diff")
        .arg(&baseline)
        .arg(dir.path().join("seed-2"))
        .output()
        .expect("diff");
    assert_eq!(
        corrected.status.code(),
        Some(0),
        "{}",
        text(&corrected.stdout)
    );
    assert!(text(&corrected.stdout).contains("result: 0 regressions"));
}

#[test]
fn ten_truly_worse_cases_among_200_are_caught_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = wide_suite(dir.path(), "before.yaml", 200, 0, "");
    let after = wide_suite(dir.path(), "after.yaml", 200, 10, "");
    let baseline = dir.path().join("before");
    run_suite(
        path(&before),
        &baseline,
        &["--seed", "7", "--runs", "40", "-q"],
    );
    let out = dir.path().join("after");
    let output = run_suite(
        path(&after),
        &out,
        &["--seed", "8", "--runs", "40", "--baseline", path(&baseline)],
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let s = summary(&out);
    let failed: Vec<String> = s["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect();
    let truly: Vec<&String> = failed.iter().filter(|id| id.as_str() < "c0010").collect();
    assert!(truly.len() >= 5, "found {failed:?}");
    assert!(
        failed.len() - truly.len() <= 1,
        "named unregressed cases: {failed:?}"
    );
    for case in s["baseline_cases"].as_array().expect("cases") {
        let regressed = case["change"] == "regression";
        assert_eq!(
            regressed,
            failed.contains(&case["id"].as_str().expect("id").to_owned()),
            "{case}"
        );
        if regressed {
            assert!(case["p_adjusted"].as_f64().expect("p") <= 0.05);
        }
    }
    // The result line names a handful and counts the rest.
    if failed.len() > 5 {
        assert!(
            stdout.contains(&format!("{} more", failed.len() - 5)),
            "{stdout}"
        );
    }
    // A min_effect beyond the drop keeps the build green: the team said it does not care.
    let diff = ragprobe()
        .args(["diff", "--min-effect", "0.6"])
        .arg(&baseline)
        .arg(&out)
        .output()
        .expect("diff");
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stdout));
    assert!(
        text(&diff.stdout).contains("a drop must exceed min_effect (60.0 pp"),
        "{}",
        text(&diff.stdout)
    );
}

#[test]
fn plan_says_how_many_runs_a_drop_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = wide_suite(dir.path(), "suite.yaml", 200, 0, "");
    let output = ragprobe()
        .args([
            "plan",
            path(&suite),
            "--pass-rate",
            "0.76",
            "--detect",
            "0.44",
        ])
        .args(["--format", "json"])
        .output()
        .expect("plan");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let runs = plan["runs_per_case"].as_u64().expect("runs") as u32;
    // Fisher's power at α/200 for 76% → 32%, computed independently of the plan.
    let level = 0.05 / 200.0;
    let power = |n| ragprobe::power::power(0.76, 0.44, n, n, level);
    assert!(power(runs) >= 0.8 && power(runs - 1) < 0.8, "{runs}");
    assert!((40..=70).contains(&runs), "{runs}");
    // A case that cannot drop that far says so.
    let output = ragprobe()
        .args([
            "plan",
            path(&suite),
            "--pass-rate",
            "0.3",
            "--detect",
            "0.44",
        ])
        .output()
        .expect("plan");
    assert!(
        text(&output.stdout).contains("cannot drop by 44 points: the baseline passes 30% of runs"),
        "{}",
        text(&output.stdout)
    );
    // Neither a baseline nor a rate: a usage error.
    let output = ragprobe()
        .args(["plan", path(&suite)])
        .output()
        .expect("plan");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn min_effect_at_or_above_detect_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let suite = wide_suite(
        dir.path(),
        "suite.yaml",
        2,
        0,
        "min_effect: 0.3\ndetect: 0.2\n",
    );
    let output = ragprobe()
        .args(["validate", path(&suite)])
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("suite.yaml:6:"), "{stderr}");
    assert!(
        stderr.contains("min_effect (0.3) must be below detect (0.2)"),
        "{stderr}"
    );
}
