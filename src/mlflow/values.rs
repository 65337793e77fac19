//! What a suite run becomes in an MLflow run: params (what was run), metrics (how it went,
//! per suite and per case) and tags (the verdict). Pure functions of the report, so what
//! MLflow shows is what summary.json says.

use crate::model::meta::Meta;
use crate::model::summary::{CaseOutcome, CaseStats, SourceSummary, SuiteReport, SuiteResult};
use crate::stats::{nearest_rank, ratio};

/// Params, metrics and tags, ready for `runs/log-batch`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunValues {
    pub params: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
    pub tags: Vec<(String, String)>,
}

/// Metric, param and tag keys MLflow accepts: `^[/\w.\- :]*$` (ASCII letters and digits
/// here: Python's `\w` and Rust's alphanumerics differ outside ASCII), no empty, `.` or
/// `..` segment, no leading or trailing `/`, at most 250 characters.
pub fn key(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let segments: Vec<String> = mapped
        .split('/')
        .map(|s| match s.trim() {
            "" | "." | ".." => "_".to_owned(),
            _ => s.to_owned(),
        })
        .collect();
    let mut key: String = segments.join("/").chars().take(250).collect();
    while key.ends_with('/') {
        key.pop();
        key.push('_');
    }
    key
}

/// An id as one segment of a metric key: the id itself when MLflow takes it as is, else
/// its readable part and a short hash, so two ids never share a key.
fn id_segment(id: &str) -> String {
    let plain = key(&id.replace('/', "_"));
    if plain == id && plain.len() <= 120 {
        return plain;
    }
    let mut h: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        h ^= u32::from(byte);
        h = h.wrapping_mul(0x0100_0193);
    }
    let readable: String = plain.chars().take(100).collect();
    format!("{readable}-{h:08x}")
}

/// A case's part of a metric key: `case/<id>`.
fn case_key(case: &CaseStats) -> String {
    // The id is one segment: a `/` in it would make a folder in MLflow's metric tree.
    format!("case/{}", id_segment(&case.id))
}

/// How MLflow's run status reads a suite result: the evaluation finished (whatever its
/// verdict), failed to finish, or was stopped.
pub fn run_status(result: SuiteResult) -> &'static str {
    match result {
        SuiteResult::Pass | SuiteResult::Fail => "FINISHED",
        SuiteResult::Error | SuiteResult::Incomplete => "FAILED",
        SuiteResult::Interrupted => "KILLED",
    }
}

/// Everything logged for `report`; `durations` are every run's wall times in ms (for the
/// suite's latency quantiles), `git_commit` the suite's repository HEAD if any.
pub fn run_values(
    report: &SuiteReport,
    meta: &Meta,
    durations: &mut [f64],
    git_commit: Option<&str>,
) -> RunValues {
    let mut metrics = Vec::new();
    let mut metric = |k: String, v: f64| {
        if v.is_finite() {
            metrics.push((key(&k), v));
        }
    };
    suite_metrics(report, durations, &mut metric);
    for case in &report.stats.cases {
        case_metrics(case, &mut metric);
    }
    gate_metrics(report, &mut metric);
    RunValues {
        params: params(meta, git_commit),
        metrics,
        tags: tags(report),
    }
}

/// What was run: the suite, its chain and settings, the version and commit — all from
/// meta.json and the run's record, so a later publish logs the same values (MLflow
/// refuses a param that changes).
fn params(meta: &Meta, git_commit: Option<&str>) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut param = |k: &str, v: String| params.push((k.to_owned(), v));
    param("suite", meta.suite_name.clone());
    param("suite_file", meta.suite_path.display().to_string());
    param("chain", meta.chain.trim().to_owned());
    param("seed", meta.seed.to_string());
    match &meta.adaptive {
        // `runs: auto`: each case ran until decided; the fixed count applies to no case
        // when every case is adaptive.
        Some(a) => {
            param("runs_per_case", "auto".to_owned());
            param("max_runs", a.max_runs.to_string());
            param("min_runs", a.min_runs.to_string());
            param("tolerance", a.tolerance.to_string());
        }
        None => param("runs_per_case", meta.runs.to_string()),
    }
    param("cases", meta.cases.len().to_string());
    param("ragprobe_version", meta.ragprobe_version.clone());
    if let Some(commit) = git_commit {
        param("git_commit", commit.to_owned());
    }
    if let Some(shard) = &meta.shard {
        param("shard", shard.clone());
    }
    if let Some(chain) = &meta.chain_path {
        param("chain_file", chain.display().to_string());
    }
    params
}

/// The suite as a whole: every evaluated run counts once; retrieval means are over the
/// cases that name sources, each case its own mean.
fn suite_metrics(
    report: &SuiteReport,
    durations: &mut [f64],
    metric: &mut impl FnMut(String, f64),
) {
    let stats = &report.stats;
    let evaluated: u32 = stats.cases.iter().map(|c| c.evaluated).sum();
    let passed: u32 = stats.cases.iter().map(|c| c.passed).sum();
    metric("pass_rate".into(), ratio(passed, evaluated));
    metric("error_rate".into(), stats.error_rate);
    metric("runs".into(), f64::from(stats.runs));
    let count =
        |outcome: CaseOutcome| stats.cases.iter().filter(|c| c.outcome == outcome).count() as f64;
    metric("cases_passed".into(), count(CaseOutcome::Pass));
    metric("cases_flaky".into(), count(CaseOutcome::Flaky));
    metric("cases_failed".into(), count(CaseOutcome::Fail));
    metric("cases_error".into(), count(CaseOutcome::Error));
    metric("cases_gate_failed".into(), report.failed.len() as f64);
    durations.sort_by(f64::total_cmp);
    if !durations.is_empty() {
        metric("latency_p50_ms".into(), nearest_rank(durations, 0.5));
        metric("latency_p95_ms".into(), nearest_rank(durations, 0.95));
    }
    if let Some(usage) = &stats.usage {
        metric("usage/calls".into(), usage.calls as f64);
        metric(
            "usage/model_input_tokens".into(),
            usage.model_input_tokens as f64,
        );
        metric(
            "usage/model_output_tokens".into(),
            usage.model_output_tokens as f64,
        );
        metric(
            "usage/judge_input_tokens".into(),
            usage.judge_input_tokens as f64,
        );
        metric(
            "usage/judge_output_tokens".into(),
            usage.judge_output_tokens as f64,
        );
        if let Some(cost) = usage.cost_usd {
            metric("usage/cost_usd".into(), cost);
        }
    }
    // A judged rule's flip rate over the suite: split runs over evaluated runs.
    let mut flips: Vec<(String, f64, u32)> = Vec::new();
    for case in &stats.cases {
        for rule in &case.rules {
            if let Some(rate) = rule.judge_flip_rate {
                let split = rate * f64::from(case.evaluated);
                match flips.iter_mut().find(|(id, _, _)| *id == rule.id) {
                    Some(entry) => {
                        entry.1 += split;
                        entry.2 += case.evaluated;
                    }
                    None => flips.push((rule.id.clone(), split, case.evaluated)),
                }
            }
        }
    }
    for (id, split, evaluated) in &flips {
        metric(
            format!("rule/{}/judge_flip_rate", id_segment(id)),
            split / f64::from((*evaluated).max(1)),
        );
    }
    // A rule over the suite: its violations over the evaluated runs of the cases it judged.
    let mut rules: Vec<(String, u32, u32)> = Vec::new();
    for case in &stats.cases {
        for rule in &case.rules {
            match rules.iter_mut().find(|(id, _, _)| *id == rule.id) {
                Some(entry) => {
                    entry.1 += rule.violations;
                    entry.2 += case.evaluated;
                }
                None => rules.push((rule.id.clone(), rule.violations, case.evaluated)),
            }
        }
    }
    for (id, violations, evaluated) in &rules {
        metric(
            format!("rule/{}/violation_rate", id_segment(id)),
            ratio(*violations, *evaluated),
        );
    }
    if let Some(means) = &stats.sources {
        let mut mean = |name: &str, m: &crate::model::summary::MeanCi| {
            metric(format!("retrieval/{name}"), m.mean);
        };
        mean("precision", &means.precision);
        mean("recall", &means.recall);
        mean("hit_rate", &means.hit_rate);
        mean("mrr", &means.mrr);
        mean("ndcg", &means.ndcg);
        mean("average_precision", &means.average_precision);
    }
    if let Some(adaptive) = &report.adaptive {
        metric("adaptive/runs_used".into(), f64::from(adaptive.runs_used));
        let saved: u32 = stats
            .cases
            .iter()
            .filter_map(|c| c.adaptive.map(|a| a.runs_saved))
            .sum();
        metric("adaptive/runs_saved".into(), f64::from(saved));
    }
}

fn case_metrics(case: &CaseStats, metric: &mut impl FnMut(String, f64)) {
    let prefix = case_key(case);
    metric(format!("{prefix}/pass_rate"), case.pass_rate);
    metric(
        format!("{prefix}/error_rate"),
        ratio(case.errors, case.runs),
    );
    if let Some(adaptive) = case.adaptive {
        metric(format!("{prefix}/runs_used"), f64::from(adaptive.runs_used));
    }
    if case.evaluated + case.errors > 0 {
        metric(format!("{prefix}/latency_p50_ms"), case.latency.p50_ms);
        metric(format!("{prefix}/latency_p95_ms"), case.latency.p95_ms);
    }
    for rule in &case.rules {
        metric(
            format!("{prefix}/rule/{}/violation_rate", id_segment(&rule.id)),
            rule.rate,
        );
        if let Some(flips) = rule.judge_flip_rate {
            metric(
                format!("{prefix}/rule/{}/judge_flip_rate", id_segment(&rule.id)),
                flips,
            );
        }
        if let Some(corrected) = rule.judge_corrected.as_ref().and_then(|c| c.pass_rate) {
            metric(
                format!("{prefix}/rule/{}/pass_rate_corrected", id_segment(&rule.id)),
                corrected,
            );
        }
    }
    if let Some(sources) = &case.sources {
        retrieval_metrics(&format!("{prefix}/retrieval"), sources, metric);
    }
    // A conversation: each asked turn's pass rate, and how often it broke each check.
    for turn in case.turns.iter().filter(|t| !t.scripted) {
        let judged = turn.asked - turn.errors;
        if judged == 0 {
            continue;
        }
        let at = format!("{prefix}/turn/{}", turn.turn);
        metric(format!("{at}/pass_rate"), ratio(turn.passed, judged));
        for broken in &turn.broken {
            metric(
                format!("{at}/broken/{}", id_segment(&broken.check)),
                ratio(broken.runs, judged),
            );
        }
    }
}

/// With a baseline: the gate's counts, the suite's pass-rate change with its clustered
/// interval, and each case's raw and adjusted p-values and q-value.
fn gate_metrics(report: &SuiteReport, metric: &mut impl FnMut(String, f64)) {
    let Some(gate) = &report.gate else {
        return;
    };
    metric("baseline/regressions".into(), gate.regressions as f64);
    metric("baseline/improvements".into(), gate.improvements as f64);
    metric("baseline/moved".into(), gate.moved as f64);
    metric(
        "baseline/pass_rate_before".into(),
        gate.pass_rate.before.mean,
    );
    metric(
        "baseline/pass_rate_change".into(),
        gate.pass_rate.change.mean,
    );
    metric(
        "baseline/pass_rate_change_ci_low".into(),
        gate.pass_rate.change.ci95[0],
    );
    metric(
        "baseline/pass_rate_change_ci_high".into(),
        gate.pass_rate.change.ci95[1],
    );
    if let Some(drop) = gate.power.median_drop {
        metric("baseline/detectable_drop_median".into(), drop);
    }
    for case in &report.baseline_cases {
        let prefix = format!("case/{}/baseline", id_segment(&case.id));
        metric(format!("{prefix}/p_value"), case.p_value);
        metric(format!("{prefix}/p_adjusted"), case.p_adjusted);
        metric(format!("{prefix}/q_value"), case.q_value);
        if let Some(drop) = case.detectable_drop {
            metric(format!("{prefix}/detectable_drop"), drop);
        }
    }
}

fn retrieval_metrics(prefix: &str, s: &SourceSummary, metric: &mut impl FnMut(String, f64)) {
    metric(format!("{prefix}/precision"), s.precision);
    metric(format!("{prefix}/recall"), s.recall);
    metric(format!("{prefix}/hit_rate"), s.hit_rate);
    metric(format!("{prefix}/mrr"), s.mrr);
    metric(format!("{prefix}/ndcg"), s.ndcg);
    metric(format!("{prefix}/average_precision"), s.average_precision);
}

/// The verdict, as tags a run list can filter on.
fn tags(report: &SuiteReport) -> Vec<(String, String)> {
    let mut tags = vec![
        (
            "ragprobe.verdict".to_owned(),
            format!("{:?}", report.result).to_lowercase(),
        ),
        (
            "ragprobe.exit_code".to_owned(),
            report.exit_code.to_string(),
        ),
    ];
    if let Some(gate) = &report.gate {
        tags.push(("ragprobe.gate".to_owned(), gate.describe()));
        let regressed: Vec<&str> = report
            .baseline_cases
            .iter()
            .filter(|c| c.change == crate::model::summary::Change::Regression)
            .map(|c| c.id.as_str())
            .collect();
        if !regressed.is_empty() {
            tags.push((
                "ragprobe.regressed_cases".to_owned(),
                regressed.join(", ").chars().take(8000).collect(),
            ));
        }
    }
    if !report.failed.is_empty() {
        // Tag values hold 8000 characters at most.
        tags.push((
            "ragprobe.failed_cases".to_owned(),
            report.failed.join(", ").chars().take(8000).collect(),
        ));
    }
    tags
}

/// The HEAD commit of the repository holding `path`, if git says there is one.
pub fn git_commit(path: &std::path::Path) -> Option<String> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_what_mlflow_accepts() {
        assert_eq!(
            key("case/aws-instance-1/pass_rate"),
            "case/aws-instance-1/pass_rate"
        );
        assert_eq!(key("case/a#b=c/x"), "case/a_b_c/x");
        assert_eq!(key("case/☃ 😀/x"), "case/_ _/x");
        // Thai and Devanagari vowel signs: alphanumeric to Rust, not `\w` to Python.
        assert_eq!(key("case/\u{e01}\u{e34}/x"), "case/__/x");
        assert_eq!(
            key(&format!("{}/", "k".repeat(249))),
            format!("{}_", "k".repeat(249))
        );
        assert_eq!(key("/a//b/"), "_/a/_/b/_");
        assert_eq!(key("x/../y"), "x/_/y");
        assert_eq!(key(&"k".repeat(300)).len(), 250);
    }

    #[test]
    fn ids_that_mlflow_would_change_keep_apart() {
        assert_eq!(id_segment("cost"), "cost");
        let a = id_segment("a/b");
        let b = id_segment("a_b");
        let c = id_segment("a#b");
        assert_eq!(b, "a_b");
        assert!(
            a.starts_with("a_b-") && c.starts_with("a_b-") && a != c,
            "{a} {c}"
        );
        assert_ne!(
            id_segment(&"x".repeat(300)),
            id_segment(&format!("{}y", "x".repeat(299)))
        );
    }

    #[test]
    fn an_adaptive_run_says_auto_and_its_bounds() {
        let meta: Meta = serde_json::from_value(serde_json::json!({
            "ragprobe_version": "0.1.0", "suite_name": "s", "suite_path": "s.yaml",
            "suite_fingerprint": 1, "seed": 42, "runs": 10, "cases": ["a"], "chain": "c",
            "created_at": "2026-11-28T00:00:00Z",
            "adaptive": {"min_runs": 3, "max_runs": 100, "tolerance": 0.05, "alpha": 0.05,
                         "undecided": "observed"},
            "adaptive_cases": ["a"]
        }))
        .expect("meta");
        let params = params(&meta, None);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("runs_per_case"), Some("auto"));
        assert_eq!(get("max_runs"), Some("100"));
        assert_eq!(get("tolerance"), Some("0.05"));
    }
}
