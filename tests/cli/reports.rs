//! The files beside runs.jsonl: results.parquet, report.html, summary.md, junit.xml; and
//! `ragprobe diff` and `--baseline` on the reference scenario.

use std::path::Path;

use crate::common::{ragprobe, redactions, run_suite, text};

const BEFORE: &str = "suites/databricks/before-fix.yaml";
const AFTER: &str = "suites/databricks/after-fix.yaml";

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn filters(out: &Path) -> Vec<(String, String)> {
    let mut filters = redactions(out);
    filters.extend([
        (r"nonce-[0-9a-f]{32}".to_owned(), "nonce-[NONCE]".to_owned()),
        (
            r#"nonce="[0-9a-f]{32}""#.to_owned(),
            r#"nonce="[NONCE]""#.to_owned(),
        ),
        (
            r#"<td class="num latency"[^>]*>[^<]*</td>"#.to_owned(),
            "<td>[latency]</td>".to_owned(),
        ),
        (r#""d":[0-9.e-]+"#.to_owned(), r#""d":[ms]"#.to_owned()),
        (
            r#""sp":\[\[.*?\]\]"#.to_owned(),
            r#""sp":[spans]"#.to_owned(),
        ),
        // Charts drawn from run times (their drawing is reviewed in src/report/svg.rs).
        (
            r#"(?s)<svg class="chart (latency|latency-shift|waterfall)".*?</svg>"#.to_owned(),
            "[chart of times]".to_owned(),
        ),
    ]);
    filters
}

macro_rules! snapshot {
    ($name:expr, $value:expr, $filters:expr) => {{
        let filters = $filters;
        insta::with_settings!({ filters => filters.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>() }, {
            insta::assert_snapshot!($name, $value);
        });
    }};
}

#[test]
fn every_report_file_is_written_and_reviewed() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(BEFORE, out.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    for name in [
        "runs.jsonl",
        "results.parquet",
        "summary.json",
        "summary.md",
        "junit.xml",
        "report.html",
    ] {
        assert!(out.path().join(name).is_file(), "{name} missing");
    }
    snapshot!(
        "before_fix_summary_md",
        read(out.path(), "summary.md"),
        filters(out.path())
    );
    snapshot!(
        "before_fix_junit_xml",
        read(out.path(), "junit.xml"),
        filters(out.path())
    );
    snapshot!(
        "before_fix_report_html",
        read(out.path(), "report.html"),
        filters(out.path())
    );
}

#[test]
fn charts_add_little_to_a_large_report() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(BEFORE, out.path(), &["--runs", "5000"]);
    let page = read(out.path(), "report.html");
    let charts: usize = page
        .match_indices("<svg class=\"chart")
        .map(|(at, _)| page[at..].find("</svg>").map_or(0, |end| end + 6))
        .sum();
    // 10,000 runs: the charts are drawn per case, not per run.
    assert!(charts > 0);
    assert!(
        charts * 10 < page.len(),
        "charts {charts} bytes of a {} byte page",
        page.len()
    );
}

#[test]
fn diff_draws_its_changes_as_charts() {
    let before = tempfile::tempdir().expect("tempdir");
    let after = tempfile::tempdir().expect("tempdir");
    run_suite(BEFORE, before.path(), &[]);
    run_suite(AFTER, after.path(), &[]);
    ragprobe()
        .arg("diff")
        .args([before.path(), after.path()])
        .output()
        .expect("diff runs");
    let page = read(after.path(), "diff.html");
    let start = page.find("<h2>At a glance</h2>").expect("charts");
    let end = page[start..].find("<h2>Retrieval").expect("retrieval") + start;
    // cost improved by 100 points; document 3 entered, 4 left; one waterfall per side.
    snapshot!("diff_charts", &page[start..end], filters(after.path()));
    assert_eq!(page.matches(r#"<svg class="chart waterfall""#).count(), 4);
    assert!(!page.contains("<script"));
}

#[test]
fn junit_has_one_testcase_per_case_with_failing_runs_in_the_failure_text() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(BEFORE, out.path(), &[]);
    let junit = read(out.path(), "junit.xml");
    assert_eq!(junit.matches("<testcase ").count(), 2);
    assert_eq!(junit.matches("<failure ").count(), 1);
    assert!(
        junit.contains("run 2 (seed"),
        "the first failing runs are listed"
    );
    assert!(junit.contains("t4g.micro"));

    // A flaky case passes, with its failing runs as flaky reruns.
    let out = tempfile::tempdir().expect("tempdir");
    run_suite("tests/fixtures/tolerance.yaml", out.path(), &[]);
    let junit = read(out.path(), "junit.xml");
    assert!(!junit.contains("<failure "), "{junit}");
    assert!(junit.contains("<flakyFailure"), "{junit}");
}

#[test]
fn hostile_text_is_escaped_everywhere() {
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite("tests/fixtures/hostile/suite.yaml", out.path(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let html = read(out.path(), "report.html");
    for raw in [
        "<script>window.__pwned",
        "<img src=x",
        "<svg onload",
        "<b>suite</b>",
        "<i>docs</i>",
        "</script><script>",
    ] {
        assert!(!html.contains(raw), "report.html contains raw {raw:?}");
    }
    assert!(
        html.contains("hostile &lt;b&gt;suite&lt;&#x2f;b&gt;")
            || html.contains("hostile &lt;b&gt;suite&lt;/b&gt;")
    );
    assert_eq!(
        html.matches("<script").count(),
        2,
        "only the data block and the page script"
    );
    let markdown = read(out.path(), "summary.md");
    let outside = markdown_outside_code(&markdown);
    assert!(
        !outside.contains("<script") && !outside.contains("<img") && !outside.contains("<svg"),
        "markup outside code spans and blocks: {outside}"
    );
    assert!(
        markdown.contains("`case <script>window.__pwned = 5</script>`"),
        "{markdown}"
    );
    let junit = read(out.path(), "junit.xml");
    assert!(!junit.contains("<script>"), "{junit}");

    let diff_out = out.path().join("diff.html");
    let output = ragprobe()
        .arg("diff")
        .args([out.path(), out.path()])
        .arg("--out")
        .arg(&diff_out)
        .output()
        .expect("diff runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let diff = std::fs::read_to_string(&diff_out).expect("diff.html");
    assert!(!diff.contains("<script"), "diff.html has no script at all");
    assert!(!diff.contains("<img src=x"));
}

#[test]
fn diff_shows_document_4_leaving_and_the_answer_changing() {
    let before = tempfile::tempdir().expect("tempdir");
    let after = tempfile::tempdir().expect("tempdir");
    run_suite(BEFORE, before.path(), &[]);
    run_suite(AFTER, after.path(), &[]);
    let output = ragprobe()
        .arg("diff")
        .args([before.path(), after.path()])
        .args(["--format", "json"])
        .output()
        .expect("diff runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "an improvement is not a failure"
    );
    let diff: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let case = |id: &str| {
        diff["cases"]
            .as_array()
            .and_then(|c| c.iter().find(|x| x["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("case {id}"))
    };
    let cost = case("cost");
    assert_eq!(cost["change"], "improvement");
    let docs = cost["documents"].as_array().expect("documents");
    let doc = |id: &str| docs.iter().find(|d| d["id"] == id).cloned().expect("doc");
    assert_eq!(doc("4")["kind"], "left");
    assert_eq!(doc("4")["a_runs"], 20);
    assert_eq!(doc("3")["kind"], "entered");
    assert_eq!(cost["answer"]["changed"], true);
    let violations = cost["rules"].as_array().expect("rules");
    assert!(violations.iter().all(|r| r["b_rate"] == 0.0));
    assert_eq!(violations[0]["a_rate"], 1.0);
    let storage = case("storage");
    assert_eq!(storage["change"], "unchanged");
    assert_eq!(storage["answer"]["changed"], false);
    assert!(after.path().join("diff.html").is_file());

    let output = ragprobe()
        .arg("diff")
        .args([before.path(), after.path()])
        .output()
        .expect("diff runs");
    // The latency line goes first: the general `N.N ms` filter would cut it in half.
    let mut filters = vec![(
        r"latency p50 [^\n]*".to_owned(),
        "latency [redacted]".to_owned(),
    )];
    filters.extend(redactions(before.path()));
    filters.extend(redactions(after.path()));
    snapshot!("diff_before_after", text(&output.stdout), filters);
}

#[test]
fn diff_calls_a_significant_drop_a_regression_and_exits_1() {
    let good = tempfile::tempdir().expect("tempdir");
    let worse = tempfile::tempdir().expect("tempdir");
    run_suite("tests/fixtures/regression/baseline.yaml", good.path(), &[]);
    run_suite("tests/fixtures/regression/current.yaml", worse.path(), &[]);
    let output = ragprobe()
        .arg("diff")
        .args([good.path(), worse.path()])
        .output()
        .expect("diff runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("REGRESSION"));
}

#[test]
fn baseline_gates_on_regressions_and_rules_not_on_old_failures() {
    // A significant drop against the baseline fails.
    let good = tempfile::tempdir().expect("tempdir");
    run_suite("tests/fixtures/regression/baseline.yaml", good.path(), &[]);
    let worse = tempfile::tempdir().expect("tempdir");
    let baseline = good.path().to_string_lossy().into_owned();
    let output = run_suite(
        "tests/fixtures/regression/current.yaml",
        worse.path(),
        &["--baseline", &baseline],
    );
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("REGRESSION"), "{stdout}");
    assert!(stdout.contains("against baseline"), "{stdout}");

    // A case that already failed and did not get worse passes the gate.
    let first = tempfile::tempdir().expect("tempdir");
    let output = run_suite("tests/fixtures/min-pass-rate.yaml", first.path(), &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "cost-strict fails on its own"
    );
    let second = tempfile::tempdir().expect("tempdir");
    let baseline = first.path().to_string_lossy().into_owned();
    let output = run_suite(
        "tests/fixtures/min-pass-rate.yaml",
        second.path(),
        &["--baseline", &baseline],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));

    // A rule over its allowed rate fails whatever the baseline says.
    let first = tempfile::tempdir().expect("tempdir");
    run_suite(BEFORE, first.path(), &[]);
    let second = tempfile::tempdir().expect("tempdir");
    let baseline = first.path().to_string_lossy().into_owned();
    let output = run_suite(BEFORE, second.path(), &["--baseline", &baseline]);
    assert_eq!(output.status.code(), Some(1));

    // A missing baseline is a usage error before anything runs.
    let out = tempfile::tempdir().expect("tempdir");
    let output = run_suite(BEFORE, out.path(), &["--baseline", "no/such/dir"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!out.path().join("runs.jsonl").exists());
}

#[test]
fn results_parquet_has_one_row_per_run() {
    let out = tempfile::tempdir().expect("tempdir");
    run_suite(BEFORE, out.path(), &["--runs", "7"]);
    let frame = polars::prelude::LazyFrame::scan_parquet(
        polars::prelude::PlRefPath::new(
            out.path()
                .join("results.parquet")
                .to_string_lossy()
                .as_ref(),
        ),
        Default::default(),
    )
    .and_then(|f| f.collect())
    .expect("parquet reads");
    assert_eq!(frame.height(), 14);
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    for column in [
        "suite",
        "case",
        "run",
        "seed",
        "status",
        "violations",
        "retrieved",
        "recall",
        "answer",
        "duration_ms",
    ] {
        assert!(
            names.iter().any(|n| n == column),
            "{column} missing from {names:?}"
        );
    }
}

#[test]
fn diff_lists_cases_only_on_one_side() {
    let both = tempfile::tempdir().expect("tempdir");
    let one = tempfile::tempdir().expect("tempdir");
    run_suite(BEFORE, both.path(), &["--runs", "2"]);
    run_suite(BEFORE, one.path(), &["--runs", "2", "--case", "storage"]);
    let output = ragprobe()
        .arg("diff")
        .args([both.path(), one.path()])
        .args(["--format", "json"])
        .output()
        .expect("diff runs");
    let diff: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let changes: Vec<(&str, &str)> = diff["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| Some((c["id"].as_str()?, c["change"].as_str()?)))
        .collect();
    assert_eq!(changes, [("storage", "unchanged"), ("cost", "only_in_a")]);
    let output = ragprobe()
        .arg("diff")
        .args([one.path(), both.path()])
        .output()
        .expect("diff runs");
    assert!(
        text(&output.stdout).contains("cost (only in B)"),
        "{}",
        text(&output.stdout)
    );
}

/// The markdown with code spans and fenced blocks removed: what a renderer would
/// interpret as markup.
fn markdown_outside_code(markdown: &str) -> String {
    let mut outside = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                outside.push_str(part);
            }
        }
        outside.push('\n');
    }
    outside
}
