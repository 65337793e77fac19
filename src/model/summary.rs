//! What `summary.json` holds: one suite run's result, its per-case statistics and, with a
//! baseline, each case against it. `run` writes it; `--baseline` and `diff` read it back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::record::{RunRecord, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuiteResult {
    Pass,
    Fail,
    Error,
    Interrupted,
    /// Fewer runs in the folder than planned, with nothing left to run them (a `merge`
    /// of unfinished shards): the numbers describe part of the plan only.
    Incomplete,
}

/// Everything the summary shows about one suite run.
#[derive(Debug, Serialize, Deserialize)]
pub struct SuiteReport {
    pub suite: String,
    pub suite_path: PathBuf,
    pub out_dir: PathBuf,
    pub chain: String,
    pub seed: u64,
    pub runs_per_case: u32,
    pub planned_runs: u32,
    pub result: SuiteResult,
    pub exit_code: i32,
    /// What was compared against, with `--baseline`: a report folder, or an MLflow run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Each case against the baseline, with `--baseline`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_cases: Vec<BaselineCase>,
    /// With `--baseline`: the gate over all cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    /// Cases that fail the gate: below their thresholds, or (with a baseline) over a rule's
    /// allowed rate or significantly worse than the baseline.
    #[serde(default)]
    pub failed: Vec<String>,
    pub stats: SuiteStats,
    /// What became of the traces streamed with `--otlp` (absent without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_export: Option<TraceExport>,
    /// `--max-cost` / `--max-calls` kept runs from starting: which, and what was spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_spent: Option<String>,
    /// With a baseline: the retrieval measures against it, paired over cases (reported,
    /// not gated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_retrieval: Vec<RetrievalChange>,
    /// With `runs: auto`: the stopping settings and what they spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveRuns>,
}

/// `runs: auto` over the suite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdaptiveRuns {
    pub settings: crate::sequential::AdaptiveSettings,
    /// Runs the adaptive cases recorded, and what `runs: max_runs` would have made.
    pub runs_used: u32,
    pub max_runs_total: u32,
    /// Runs that finished after their case was decided (in flight then): paid for, not
    /// recorded. Known only to the process that ran them (0 after resume or merge).
    pub dropped: u32,
    /// With a baseline: what a fixed number of runs per case would need for the same
    /// guarantees (the family-wise error, and 80% power at a drop of `detect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_design: Option<FixedDesign>,
}

/// A fixed design with the adaptive run's guarantees, case by case against the baseline's
/// runs and rates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixedDesign {
    pub detect: f64,
    /// Runs the cases that a fixed design can size would need, summed.
    pub runs: u64,
    /// Runs the adaptive run used on those same cases.
    pub adaptive_runs: u64,
    /// Cases no fixed number of runs (up to 100,000) could size against this baseline.
    pub unreachable: usize,
}

impl SuiteReport {
    /// "20 runs" or "runs: auto, 3–100 a case".
    pub fn runs_label(&self) -> String {
        match &self.adaptive {
            Some(a) => format!(
                "runs: auto ({}–{} a case; {} used of {})",
                a.settings.min_runs, a.settings.max_runs, a.runs_used, a.max_runs_total
            ),
            None => format!(
                "{} run{}",
                self.runs_per_case,
                if self.runs_per_case == 1 { "" } else { "s" }
            ),
        }
    }
}

/// What a run is gated against: an earlier summary, and where it came from (a report
/// folder, or an MLflow run).
#[derive(Debug)]
pub struct Baseline {
    pub label: String,
    pub summary: SuiteReport,
}

/// How many of a run's traces reached the OTLP endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceExport {
    /// The endpoint, without credentials.
    pub endpoint: String,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl TraceExport {
    /// Traces were to be sent and none arrived.
    pub fn all_failed(&self) -> bool {
        self.sent == 0 && self.failed + self.dropped > 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseOutcome {
    Pass,
    Flaky,
    Fail,
    Error,
}

impl CaseOutcome {
    pub fn label(self) -> &'static str {
        match self {
            CaseOutcome::Pass => "PASS",
            CaseOutcome::Flaky => "FLAKY",
            CaseOutcome::Fail => "FAIL",
            CaseOutcome::Error => "ERROR",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(self, CaseOutcome::Fail)
    }

    /// No run of the case could be evaluated.
    pub fn is_error(self) -> bool {
        matches!(self, CaseOutcome::Error)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleStats {
    pub id: String,
    pub severity: Severity,
    pub max_rate: f64,
    pub violations: u32,
    pub rate: f64,
    pub exceeded: bool,
    /// A model-judged rule with `judge.repeats` > 1: the share of evaluated runs on which
    /// the repeated judgements disagreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_flip_rate: Option<f64>,
    /// A model-judged rule whose judge was calibrated against people's labels: its pass rate
    /// corrected for the judge's errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_corrected: Option<JudgeCorrected>,
}

/// A judged pass rate corrected for the judge's measured sensitivity (it passes what people
/// pass) and specificity (it fails what people fail), by Rogan and Gladen (1978); the 95%
/// interval carries the uncertainty of the run counts and of the calibration labels (delta
/// method, Greenland 1996). No correction when the labels are too few or the judge is no
/// better than chance: `note` says which.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgeCorrected {
    /// The rule's pass rate as the judge counted it.
    pub observed: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 2]>,
    pub sensitivity: f64,
    pub specificity: f64,
    /// Labelled runs people passed and failed.
    pub labelled_pass: u32,
    pub labelled_fail: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSummary {
    pub precision: f64,
    pub recall: f64,
    pub hit_rate: f64,
    pub mrr: f64,
    pub ndcg: f64,
    /// trec_eval's map_cut at the case's k (0 in summaries written before it).
    #[serde(default)]
    pub average_precision: f64,
    /// The cutoff (the retriever's k, or `expect.k`; 0 when runs returned no fixed number).
    #[serde(default)]
    pub k: usize,
    /// Standard deviation across the case's runs (0 for a deterministic retriever).
    #[serde(default)]
    pub ndcg_sd: f64,
    #[serde(default)]
    pub average_precision_sd: f64,
    #[serde(default)]
    pub recall_sd: f64,
}

/// A failing run, in a line or two: enough for a CI failure message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailingRun {
    pub run: u32,
    pub seed: u64,
    /// `rule-id: detail` or `expect.x: detail`, one per broken check.
    pub broken: Vec<String>,
    pub retrieved: Vec<String>,
    pub answer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// The slowest run.
    #[serde(default)]
    pub max_ms: f64,
    /// Run durations in `LATENCY_BINS` equal bins from 0 to `max_ms`, for the report's chart.
    #[serde(default)]
    pub histogram: Vec<u32>,
}

/// Bins of [`Latency::histogram`].
pub const LATENCY_BINS: usize = 24;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseStats {
    pub id: String,
    pub question: String,
    pub tags: Vec<String>,
    pub outcome: CaseOutcome,
    /// Why the case failed, one line each.
    pub reasons: Vec<String>,
    pub runs: u32,
    pub evaluated: u32,
    pub errors: u32,
    pub passed: u32,
    pub pass_rate: f64,
    pub pass_rate_ci95: [f64; 2],
    pub min_pass_rate: f64,
    pub k: u32,
    /// Chance that k runs drawn without replacement all pass.
    pub pass_all_k: f64,
    /// Chance that at least one of k runs passes.
    pub pass_at_k: f64,
    pub flaky: bool,
    pub rules: Vec<RuleStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<SourceSummary>,
    pub latency: Latency,
    pub distinct_answers: usize,
    /// The first infrastructure error met, if any run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_error: Option<String>,
    /// The first failing runs, by run index.
    pub failing_runs: Vec<FailingRun>,
    /// A failing run to show: the one that broke the most checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_failure: Option<RunRecord>,
    /// Model calls, tokens and (where priced) cost over the case's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::model::record::Usage>,
    /// With `runs: auto`: how many runs the case used and why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<AdaptiveCase>,
    /// A conversation case's turns, over its runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<TurnStats>,
}

/// One turn of a conversation case, over the case's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnStats {
    /// 1 for the first turn.
    pub turn: u32,
    pub question: String,
    /// The suite scripts this turn's answer: it is history, never asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scripted: bool,
    /// Runs that asked this turn (an error on an earlier turn ends its run).
    pub asked: u32,
    pub passed: u32,
    pub errors: u32,
    /// What broke on this turn (rule ids, `expect.answer`, `expect.sources`), most runs
    /// first.
    #[serde(default)]
    pub broken: Vec<TurnBroken>,
}

/// A check broken on a turn, and on how many runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnBroken {
    pub check: String,
    pub runs: u32,
}

impl TurnStats {
    /// `only-databricks-docs 20/20, expect.answer 5/20` (empty when nothing broke).
    pub fn describe_broken(&self) -> String {
        let judged = self.asked - self.errors;
        self.broken
            .iter()
            .map(|b| format!("{} {}/{judged}", b.check, b.runs))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An adaptive case's stopping, as reports show it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AdaptiveCase {
    pub runs_used: u32,
    pub max_runs: u32,
    pub stop: crate::sequential::Stop,
    /// Runs not made against a fixed `max_runs` (`runs: max_runs`).
    pub runs_saved: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteStats {
    pub suite: String,
    pub cases: Vec<CaseStats>,
    pub runs: u32,
    pub errors: u32,
    pub error_rate: f64,
    pub max_error_rate: f64,
    pub errors_exceeded: bool,
    /// Model calls, tokens and (where every case is priced) cost over the suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::model::record::Usage>,
    /// The expected-source metrics over the cases that name sources: each case's mean over
    /// its runs, averaged over cases, with a 95% interval over cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<SourceMeans>,
    /// The mean of the cases' pass rates, with a 95% interval that treats each case's runs
    /// as a cluster (runs of one question are not independent samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_rate: Option<MeanCi>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceMeans {
    pub cases: usize,
    pub precision: MeanCi,
    pub recall: MeanCi,
    pub hit_rate: MeanCi,
    pub mrr: MeanCi,
    pub ndcg: MeanCi,
    pub average_precision: MeanCi,
}

/// A mean over cases with its 95% t-interval (the mean itself for one case).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct MeanCi {
    pub mean: f64,
    pub ci95: [f64; 2],
}

impl SuiteStats {
    pub fn failed_cases(&self) -> impl Iterator<Item = &CaseStats> {
        self.cases.iter().filter(|c| c.outcome.is_failure())
    }
}

impl Change {
    /// How summaries name the change.
    pub fn label(self) -> &'static str {
        match self {
            Change::Regression => "REGRESSION",
            Change::Improvement => "improvement",
            Change::Unchanged => "unchanged",
            Change::OnlyInA => "only in A",
            Change::OnlyInB => "only in B",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineCase {
    pub id: String,
    pub baseline_passed: u32,
    pub baseline_evaluated: u32,
    pub passed: u32,
    pub evaluated: u32,
    pub change: Change,
    /// The case's own one-sided p-value, in the direction its pass rate moved.
    pub p_value: f64,
    /// The same after the correction for the number of cases: the case is a regression
    /// (or improvement) when this is at or below `significance`.
    #[serde(default = "one")]
    pub p_adjusted: f64,
    /// Benjamini–Hochberg q-value of the two-sided p-value: "moved either way" at a false
    /// discovery rate of q. Diagnosis, not the gate.
    #[serde(default = "one")]
    pub q_value: f64,
    /// The level `p_adjusted` is held to: the suite's, or the case's if stricter.
    pub significance: f64,
    /// The smallest drop that counts (pass-rate share).
    #[serde(default)]
    pub min_effect: f64,
    #[serde(default)]
    pub test: CaseTest,
    /// The smallest drop from the baseline's pass rate this comparison detects with 80%
    /// power, at these run counts and the correction's level; `None` when none can be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectable_drop: Option<f64>,
}

fn one() -> f64 {
    1.0
}

/// Which per-case test judged a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseTest {
    /// One-sided Fisher exact test on the run counts (fixed run counts, `min_effect` 0).
    #[default]
    Fisher,
    /// Fisher's test, and the Farrington–Manning score test of a drop beyond `min_effect`:
    /// both must call it.
    FisherAndScore,
    /// A side stopped adaptively (`runs: auto`): the always-valid p-value of the mixture
    /// likelihood ratio, valid at whatever run the case stopped.
    AlwaysValid,
}

impl CaseTest {
    pub fn label(self) -> &'static str {
        match self {
            CaseTest::Fisher => "Fisher",
            CaseTest::FisherAndScore => "Fisher + score test",
            CaseTest::AlwaysValid => "always-valid",
        }
    }
}

/// How the cases share the false-alarm budget (`correction:` in a suite, `--correction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Holm's step-down with each case's exact null distribution: a case whose run counts
    /// cannot reach a small p-value spends none of the budget.
    #[default]
    #[serde(alias = "discrete-holm")]
    DiscreteHolm,
    /// Holm's step-down (every case charged as a continuous test).
    Holm,
    /// Every case on its own at `significance`: a suite of m unchanged cases fails about
    /// 1 − (1 − α)^m of builds. Kept for single-case suites and old reports.
    None,
}

impl Correction {
    pub fn label(self) -> &'static str {
        match self {
            Correction::DiscreteHolm => "discrete Holm",
            Correction::Holm => "Holm",
            Correction::None => "no correction",
        }
    }
}

/// The gate over all compared cases: the method, what it found, the suite's pass rate
/// on both sides, and how large a drop it could see.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gate {
    pub correction: Correction,
    /// The family-wise error rate: the chance that an unchanged chain fails the build.
    pub significance: f64,
    /// Cases compared (in both reports, with evaluated runs on both sides).
    pub compared: usize,
    pub regressions: usize,
    pub improvements: usize,
    /// Cases whose q-value is at or below `significance`: moved either way.
    pub moved: usize,
    /// The p-value at or below which a case is a regression whatever the others do (the
    /// procedure's first step).
    pub threshold: f64,
    /// The suite's pass rate (mean of the cases' pass rates) before and after, and the
    /// change, with 95% intervals clustered by case.
    pub pass_rate: SuitePassRate,
    pub power: GatePower,
}

impl Gate {
    /// "discrete Holm over 200 cases, family-wise error 0.05"
    pub fn describe(&self) -> String {
        match self.correction {
            Correction::None => format!(
                "each case on its own at {} (no correction for {} cases)",
                self.significance, self.compared
            ),
            c => format!(
                "{} over {} case{}, family-wise error {}",
                c.label(),
                self.compared,
                if self.compared == 1 { "" } else { "s" },
                self.significance
            ),
        }
    }
}

/// The suite's pass rate on both sides, with 95% intervals that treat the runs of one case
/// as a cluster (they share a question: not independent samples).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SuitePassRate {
    pub cases: usize,
    pub before: MeanCi,
    pub after: MeanCi,
    /// After − before, paired by case.
    pub change: MeanCi,
}

/// What the gate could detect with 80% power at these run counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatePower {
    /// The per-case level a single regressed case faces.
    pub level: f64,
    /// The median and largest detectable drop over the cases that can be gated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_drop: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_drop: Option<f64>,
    /// Cases no drop would fail at these run counts (too few runs, or a baseline at 0%).
    #[serde(default)]
    pub ungateable: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// B passes significantly less often than A.
    Regression,
    /// B passes significantly more often than A.
    Improvement,
    /// Any difference is within what flakiness explains.
    Unchanged,
    OnlyInA,
    OnlyInB,
}

pub const SUMMARY_FILE: &str = "summary.json";
/// The report files written beside summary.json.
pub const MARKDOWN_FILE: &str = "summary.md";
pub const JUNIT_FILE: &str = "junit.xml";
pub const HTML_FILE: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a ragprobe report summary: {source}")]
    Summary {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn read_summary(dir: &Path) -> Result<SuiteReport, SummaryError> {
    let path = dir.join(SUMMARY_FILE);
    let text = crate::config::files::read_capped(&path, crate::config::files::MAX_INPUT_BYTES)
        .map_err(|source| SummaryError::Read {
            path: path.clone(),
            source: match source {
                crate::config::files::ReadError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            },
        })?;
    serde_json::from_str(&text).map_err(|source| SummaryError::Summary { path, source })
}

/// A paired comparison of one measure over cases (B − A).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairedTest {
    pub cases: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// Mean of the per-case differences, B − A.
    pub mean_difference: f64,
    /// Cohen's d_z: the mean difference over the differences' standard deviation.
    pub effect_size: f64,
    /// Two-sided paired randomization (sign-flip) test: exact up to 16 cases, else 10,000
    /// seeded random flips with the +1 correction.
    pub p_randomization: f64,
    /// Two-sided paired t-test.
    pub p_t: f64,
}

/// One retrieval measure, A (earlier) against B (later), paired over cases.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrievalChange {
    /// `ndcg`, `average_precision`, `recall`, `precision`, `mrr`.
    pub measure: String,
    pub test: PairedTest,
    /// The cases that moved most (B − A), largest change first, at most three.
    pub moved_most: Vec<(String, f64)>,
    /// Set on the gated measure only: a regression when B's mean is lower and the paired
    /// randomization test's p-value is below the significance level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

/// The retrieval measure whose significant drop counts as a regression (`retrieval_gate:`
/// in a suite, `--retrieval-gate` for `diff`); one measure, so five correlated tests do not
/// multiply the false alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RetrievalGate {
    #[default]
    Ndcg,
    AveragePrecision,
    Recall,
    Precision,
    Mrr,
    /// Report retrieval changes, never fail on them.
    Off,
}

impl RetrievalGate {
    /// The measure's name in [`RetrievalChange::measure`], or `None` when off.
    pub fn measure(self) -> Option<&'static str> {
        match self {
            RetrievalGate::Ndcg => Some("ndcg"),
            RetrievalGate::AveragePrecision => Some("average_precision"),
            RetrievalGate::Recall => Some("recall"),
            RetrievalGate::Precision => Some("precision"),
            RetrievalGate::Mrr => Some("mrr"),
            RetrievalGate::Off => None,
        }
    }
}

/// Whether any of the changes is a gated retrieval regression.
pub fn retrieval_regressed(changes: &[RetrievalChange]) -> bool {
    changes.iter().any(|c| c.change == Some(Change::Regression))
}
